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
        Ok(Self {
            table_name: required("TABLE_NAME")?,
            bucket_name: required("BUCKET_NAME")?,
            cleanup_queue_url: required("CLEANUP_QUEUE_URL")?,
            s3_force_path_style: flag("S3_FORCE_PATH_STYLE")?,
        })
    }
}

pub(crate) fn required(name: &'static str) -> Result<String, ConfigError> {
    match env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name)),
    }
}

pub(crate) fn flag(name: &'static str) -> Result<bool, ConfigError> {
    match env::var(name).as_deref() {
        Err(_) | Ok("") | Ok("false") | Ok("0") => Ok(false),
        Ok("true") | Ok("1") => Ok(true),
        Ok(other) => Err(ConfigError::Invalid { name, value: other.to_owned(), why: "expected true or false" }),
    }
}
