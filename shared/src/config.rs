//! Configuration, read once at cold start from the environment. A missing or
//! malformed value stops the function before it serves anything.

use std::env;

#[derive(Debug, Clone)]
pub struct Config {
    /// The single DynamoDB table holding every item type (`TABLE_NAME`).
    pub table_name: String,
    /// The bucket holding upload bytes (`BUCKET_NAME`).
    pub bucket_name: String,
    /// The cleanup queue's URL (`CLEANUP_QUEUE_URL`).
    pub cleanup_queue_url: String,
    /// Address S3 as `endpoint/bucket/key` rather than `bucket.endpoint/key`
    /// (`S3_FORCE_PATH_STYLE`, default false). Emulators on loopback need it.
    pub s3_force_path_style: bool,
    /// Sizes, quota and lifetimes of upload sessions.
    pub uploads: UploadPolicy,
    /// Requests all the browser tokens one key minted may make in 60 s
    /// (`KEY_RATE_LIMIT`, the template's `KeyRateLimit`, which the web ACL
    /// applies to the key itself; 0 or unset: not counted).
    pub key_rate_limit: Option<u64>,
    /// The EventBridge bus upload events go to (`EVENT_BUS_NAME`; only the
    /// publishers need it).
    pub event_bus_name: Option<String>,
    /// The `Source` of upload events (`EVENT_SOURCE`, default `upload-sessions`).
    pub event_source: String,
}

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// S3's limits on multipart uploads and objects.
pub mod s3_limits {
    use super::{GIB, MIB, TIB};
    pub const MIN_PART: u64 = 5 * MIB;
    pub const MAX_PART: u64 = 5 * GIB;
    pub const MAX_PARTS: u64 = 10_000;
    pub const MAX_OBJECT: u64 = 5 * TIB;
    /// A single `PUT` may carry at most this much.
    pub const MAX_SINGLE_PUT: u64 = 5 * GIB;
}

/// How uploads are sized, counted and timed. Every value has a default and
/// an environment variable; out-of-range values stop the function at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPolicy {
    /// Bytes of completed uploads an owner may hold (`QUOTA_BYTES`, default 10 GiB).
    pub quota_bytes: u64,
    /// Largest declared size accepted (`MAX_UPLOAD_BYTES`, default and at most 5 TiB).
    pub max_upload_bytes: u64,
    /// Sizes at or above this go multipart (`MULTIPART_THRESHOLD_BYTES`,
    /// default 64 MiB, 1 byte to 5 GiB).
    pub multipart_threshold_bytes: u64,
    /// Preferred part size (`PART_SIZE_BYTES`, default 16 MiB, 5 MiB to 5 GiB);
    /// raised for huge uploads so no upload needs more than 10,000 parts.
    pub part_size_bytes: u64,
    /// A pending session expires this long after creation
    /// (`SESSION_EXPIRY_SECONDS`, default 86400, 60 s to 7 days).
    pub session_expiry_seconds: i64,
    /// Lifetime of a presigned URL (`PRESIGNED_URL_TTL_SECONDS`, default 900,
    /// 1 s to 1 hour). Deleted uploads get a final cleanup pass once every
    /// URL handed out for them has expired.
    pub url_ttl_seconds: i64,
    /// How long a confirm waits for S3 to complete a multipart upload before
    /// answering 202 and leaving the rest to a retry or the sweeper
    /// (`CONFIRM_WAIT_SECONDS`, default 20, 0 to 25: API Gateway gives up
    /// on an integration after 29 s).
    pub confirm_wait_seconds: u64,
    /// Pending sessions an owner may have at once (`MAX_PENDING_UPLOADS`,
    /// default 100, 1 to 100,000).
    pub max_pending_uploads: u64,
}

impl Default for UploadPolicy {
    fn default() -> Self {
        Self {
            quota_bytes: 10 * GIB,
            max_upload_bytes: s3_limits::MAX_OBJECT,
            multipart_threshold_bytes: 64 * MIB,
            part_size_bytes: 16 * MIB,
            session_expiry_seconds: 86_400,
            url_ttl_seconds: 900,
            confirm_wait_seconds: 20,
            max_pending_uploads: 100,
        }
    }
}

impl UploadPolicy {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |name, default, min, max| number_in(env, name, default, min, max);
        let d = Self::default();
        Ok(Self {
            quota_bytes: number("QUOTA_BYTES", d.quota_bytes, 0, u64::MAX / 2)?,
            max_upload_bytes: number("MAX_UPLOAD_BYTES", d.max_upload_bytes, 1, s3_limits::MAX_OBJECT)?,
            multipart_threshold_bytes: number(
                "MULTIPART_THRESHOLD_BYTES",
                d.multipart_threshold_bytes,
                1,
                s3_limits::MAX_SINGLE_PUT,
            )?,
            part_size_bytes: number("PART_SIZE_BYTES", d.part_size_bytes, s3_limits::MIN_PART, s3_limits::MAX_PART)?,
            session_expiry_seconds: number("SESSION_EXPIRY_SECONDS", d.session_expiry_seconds as u64, 60, 7 * 86_400)?
                as i64,
            url_ttl_seconds: number("PRESIGNED_URL_TTL_SECONDS", d.url_ttl_seconds as u64, 1, 3600)? as i64,
            confirm_wait_seconds: number("CONFIRM_WAIT_SECONDS", d.confirm_wait_seconds, 0, 25)?,
            max_pending_uploads: number("MAX_PENDING_UPLOADS", d.max_pending_uploads, 1, 100_000)?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value {value:?}: {why}")]
    Invalid { name: &'static str, value: String, why: &'static str },
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env_lookup)
    }

    /// Reads the configuration through `env`, a stand-in for the process
    /// environment (the local stack resolves the template's variables).
    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            table_name: required(env, "TABLE_NAME")?,
            bucket_name: required(env, "BUCKET_NAME")?,
            cleanup_queue_url: required(env, "CLEANUP_QUEUE_URL")?,
            s3_force_path_style: flag(env, "S3_FORCE_PATH_STYLE")?,
            uploads: UploadPolicy::from_lookup(env)?,
            key_rate_limit: Some(number_in(env, "KEY_RATE_LIMIT", 0, 0, 2_000_000_000)?).filter(|n| *n > 0),
            event_bus_name: env("EVENT_BUS_NAME").filter(|v| !v.trim().is_empty()),
            event_source: env("EVENT_SOURCE")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "upload-sessions".into()),
        })
    }
}

fn env_lookup(name: &str) -> Option<String> {
    env::var(name).ok()
}

fn required(env: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<String, ConfigError> {
    match env(name) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn flag(env: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    match env(name).as_deref() {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(ConfigError::Invalid { name, value: other.to_owned(), why: "expected true or false" }),
    }
}

/// A whole number from the process environment, `default` when unset.
pub fn number(name: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    number_in(&env_lookup, name, default, min, max)
}

fn number_in(
    env: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match env(name).as_deref() {
        None | Some("") => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            Ok(_) => Err(ConfigError::Invalid { name, value: v.to_owned(), why: "out of range" }),
            Err(_) => Err(ConfigError::Invalid { name, value: v.to_owned(), why: "expected a whole number" }),
        },
    }
}
