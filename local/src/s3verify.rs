//! A local S3 that checks what moto does not: a verifying S3 endpoint for the
//! tests of presigned URLs, checksums and browser uploads.
//!
//! moto accepts any presigned URL (it checks neither the SigV4 signature nor
//! the expiry) and stores whatever checksum a client claims. This server is
//! [`s3s`] (the S3 protocol, SigV4 verification) over [`s3s_fs`] (objects in
//! a folder), started in-process on loopback by the tests that need it
//! ([`VerifyingS3::start`]) or by hand (`cargo xtask s3verify`). It signs
//! in one fixed key ([`Signers::Fixed`]), or any key id with one secret
//! ([`Signers::AnyKeyId`], as the local stack's functions sign).
//!
//! What s3s itself verifies, on every request (there is no anonymous access:
//! an unsigned request is `403 AccessDenied`):
//!
//! - SigV4 header auth: the signature over method, path, query, every signed
//!   header and the payload hash (`x-amz-content-sha256`, which it then
//!   checks against the body), `x-amz-date` within 15 minutes of the clock,
//!   the credential's date equal to `x-amz-date`'s; aws-chunked bodies chunk
//!   by chunk, with their trailers.
//! - SigV4 query auth (presigned URLs): the signature over method, path,
//!   query and the headers named in `X-Amz-SignedHeaders` (a signed header
//!   that is missing or altered changes the canonical request:
//!   `403 SignatureDoesNotMatch`); `X-Amz-Date + X-Amz-Expires` not passed
//!   (`403 AccessDenied`, "Request has expired").
//! - Not checked by s3s: the credential's region (any region signs), an
//!   `X-Amz-Expires` over 7 days, and headers sent beside a presigned URL
//!   that it does not sign (added here, see below).
//!
//! What s3s-fs checks, and what it lacks, and what `Verifying` (the S3
//! implementation served here, delegating the storage to s3s-fs) adds; each
//! addition is what real S3 does:
//!
//! - `PutObject`: s3s-fs verifies `Content-MD5` and any `x-amz-checksum-*`
//!   value (`400 BadDigest`) but only after it has stored the bytes, so a
//!   refused object is left in place; and answers an
//!   `x-amz-content-sha256` mismatch with a 500. Here the body is read and
//!   every digest checked first (`BadDigest`, `InvalidDigest`,
//!   `XAmzContentSHA256Mismatch`, `IncompleteBody`), then stored. More than
//!   one `x-amz-checksum-*` value, a malformed one, or
//!   `x-amz-sdk-checksum-algorithm` without its value is `400
//!   InvalidRequest`, as on S3.
//! - `If-None-Match: *` (PUT and `CompleteMultipartUpload`): s3s-fs checks
//!   it, but not atomically with the write; here one lock holds the check and
//!   the write together, so two racing conditional PUTs cannot both succeed.
//! - Tagging: s3s-fs ignores `x-amz-tagging` and has no tagging operations.
//!   Here the header is validated (URL-encoded, unique keys, at most 10 tags,
//!   S3's lengths and characters) and stored; `Get`/`Put`/`DeleteObjectTagging`
//!   are served; a multipart upload's tags go to its object on completion.
//! - `UploadPart`: s3s-fs checks neither `Content-MD5` nor checksums, and
//!   keeps no ETag or checksum per part. Here both are verified before the
//!   part is stored, a part whose algorithm differs from its upload's is
//!   `400 InvalidRequest`, and an unknown upload is `404 NoSuchUpload`.
//! - `ListParts`: s3s-fs lists no ETags or checksums and answers an empty
//!   list for an unknown or completed upload. Here: ETag, size and checksum
//!   of every part in order, `max-parts`/`part-number-marker` paging, and
//!   `404 NoSuchUpload`.
//! - `CompleteMultipartUpload`: s3s-fs checks the part order and the 5 MiB
//!   minimum, not the ETags. Here every listed part must exist with that ETag
//!   (`400 InvalidPart`), in ascending order (`400 InvalidPartOrder`), and for
//!   an upload created with a checksum algorithm each part must name its
//!   checksum, equal to the one stored (`InvalidRequest` when missing,
//!   `InvalidPart` when different); the object then carries S3's COMPOSITE
//!   checksum (`base64(H(part digests))-N`).
//! - `HeadObject`/`GetObject` return checksums only with
//!   `x-amz-checksum-mode: ENABLED`, with their type; `GetObject` applies the
//!   signed `response-content-*` overrides (s3s-fs ignores them).
//! - `AbortMultipartUpload` of an unknown upload is `404 NoSuchUpload`;
//!   `ListMultipartUploads` is served (s3s-fs has none).
//! - Bucket CORS (`Put`/`Get`/`DeleteBucketCors`), and answers to browsers:
//!   `OPTIONS` preflights evaluated against the bucket's rules as S3 does,
//!   `Access-Control-*` headers on matching requests (s3s answers `OPTIONS`
//!   with 501).
//! - A presigned request carrying an `x-amz-*` header its URL does not sign
//!   is `403 AccessDenied` ("There were headers present in the request which
//!   were not signed"), as on S3.
//!
//! - Lifecycle configurations are kept and returned (so the local stack can
//!   provision its bucket here), never applied, as with moto.
//!
//! Not emulated: versioning, lifecycle expiry, bucket policies, encryption,
//! region checks, FULL_OBJECT checksums of multipart uploads (501), parts
//! completed with gaps in their numbers (s3s-fs refuses them), bodies over
//! [`MAX_BODY`] (read into memory to be verified before they are stored).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::crypto::{Checksum as _, Crc32, Crc32c, Crc64Nvme, Md5, Sha1, Sha256};
use s3s::dto::*;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use s3s_fs::FileSystem;

/// The access key the server accepts (with [`SECRET_KEY`]) under
/// [`Signers::Fixed`].
pub const ACCESS_KEY: &str = "AKIAS3VERIFYLOCAL000";
pub const SECRET_KEY: &str = "s3verify+local/secret/key/for/loopback/only";
/// The region clients sign for (s3s accepts any; S3 would not).
pub const REGION: &str = "us-east-1";
/// The largest body `PutObject` or `UploadPart` takes: bodies are read into
/// memory so that every digest is checked before anything is stored.
pub const MAX_BODY: usize = 256 * 1024 * 1024;
/// S3's smallest part, except the last.
const MIN_PART: u64 = 5 * 1024 * 1024;

/// Who may sign requests.
#[derive(Clone, Debug)]
pub enum Signers {
    /// [`ACCESS_KEY`] with [`SECRET_KEY`], nothing else (the tests).
    Fixed,
    /// Any access key id, all with this one secret: the local stack signs
    /// each function's calls with its logical id as access key id
    /// (`Stack::function_env`) and the secret `testing`. Signatures are
    /// verified all the same.
    AnyKeyId(String),
}

struct AnyKeyId(String);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for AnyKeyId {
    async fn get_secret_key(&self, _access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        Ok(self.0.as_str().into())
    }
}

/// A verifying S3 server on loopback, storing objects in a folder of its
/// own. Dropping it stops the server and removes the folder (when the
/// server made it).
pub struct VerifyingS3 {
    /// `http://127.0.0.1:<port>`, path-style.
    pub endpoint: String,
    pub root: PathBuf,
    remove_root: bool,
    server: tokio::task::JoinHandle<()>,
    state: Arc<State>,
}

/// One request the server answered, as its access log has it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    /// `/<bucket>/<key>`.
    pub path: String,
    /// The query string, as sent (presigned URLs carry their signature here).
    pub query: String,
    pub status: u16,
}

impl Logged {
    /// The value of the query parameter `name` (`partNumber`, `uploadId`).
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

/// The most requests the log keeps (the oldest go first).
const LOG_LIMIT: usize = 10_000;

impl VerifyingS3 {
    /// Starts a server on a free loopback port with an empty folder of its
    /// own under the system's temporary folder.
    pub async fn start() -> Result<Self> {
        Self::start_with(Signers::Fixed).await
    }

    /// As [`VerifyingS3::start`], for `signers`.
    pub async fn start_with(signers: Signers) -> Result<Self> {
        Self::start_in_temp(SocketAddr::from(([127, 0, 0, 1], 0)), signers).await
    }

    /// As [`VerifyingS3::start_with`], listening on `addr` (`0.0.0.0:5056`,
    /// say, for `cargo xtask dev`); the endpoint names loopback when its
    /// address is unspecified.
    pub async fn start_in_temp(addr: SocketAddr, signers: Signers) -> Result<Self> {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| anyhow!("random folder name: {e}"))?;
        let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let root = std::env::temp_dir().join(format!("s3verify-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let mut server = Self::start_on(addr, &root, signers).await?;
        server.remove_root = true;
        Ok(server)
    }

    /// Starts a server on `addr` storing objects in the existing folder
    /// `root` (left in place when the server stops), for `signers`.
    pub async fn start_on(addr: SocketAddr, root: &Path, signers: Signers) -> Result<Self> {
        let fs = FileSystem::new(root).map_err(|e| anyhow!("s3s-fs on {}: {e:?}", root.display()))?;
        let state = Arc::new(State::default());
        let mut builder = S3ServiceBuilder::new(Verifying { fs, state: state.clone() });
        match signers {
            Signers::Fixed => builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY)),
            Signers::AnyKeyId(secret) => builder.set_auth(AnyKeyId(secret)),
        }
        let front = Arc::new(Front { service: builder.build(), state: state.clone() });
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the verifying S3 to {addr}"))?;
        let local = listener.local_addr()?;
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let front = front.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| front.clone().handle(req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let reachable = SocketAddr::new(crate::moto::reachable(local.ip()), local.port());
        Ok(Self { endpoint: format!("http://{reachable}"), root: root.to_owned(), remove_root: false, server, state })
    }

    /// The requests answered so far (at most the last 10,000), in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    /// An S3 client of this server: [`ACCESS_KEY`] and [`SECRET_KEY`],
    /// path-style, the project's HTTP client.
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_as(ACCESS_KEY, SECRET_KEY)
    }

    /// An S3 client of this server signing with `access_key` and `secret`.
    pub fn client_as(&self, access_key: &str, secret: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(access_key, secret, None, None, "s3verify"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .http_client(shared::aws::https_client())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for VerifyingS3 {
    fn drop(&mut self) {
        self.server.abort();
        if self.remove_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

// ---------------------------------------------------------------------------
// What the server keeps beside s3s-fs's files (in memory: the server lives
// as long as its folder does).

#[derive(Default)]
struct State {
    inner: Mutex<Inner>,
    /// Held across every check-then-write of an object (conditional PUT,
    /// completion, deletion), so a condition holds when the write lands.
    writes: tokio::sync::Mutex<()>,
    /// Every request answered, oldest first ([`VerifyingS3::requests`]).
    log: Mutex<std::collections::VecDeque<Logged>>,
}

#[derive(Default)]
struct Inner {
    /// Every object written through the server: its tags and checksum.
    objects: HashMap<(String, String), ObjectExtra>,
    /// Unfinished multipart uploads, by upload id.
    uploads: HashMap<String, Upload>,
    /// Each bucket's CORS rules.
    cors: HashMap<String, Vec<CORSRule>>,
    /// Each bucket's lifecycle rules: kept and returned, never applied.
    lifecycle: HashMap<String, LifecycleRules>,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Clone, Default)]
struct ObjectExtra {
    tags: Vec<(String, String)>,
    checksum: Option<StoredChecksum>,
}

#[derive(Clone)]
struct StoredChecksum {
    algorithm: Algorithm,
    /// Base64, with `-<parts>` for a composite checksum.
    value: String,
    composite: bool,
}

struct Upload {
    bucket: String,
    key: String,
    initiated: SystemTime,
    tags: Vec<(String, String)>,
    algorithm: Option<Algorithm>,
    parts: BTreeMap<i32, StoredPart>,
}

struct StoredPart {
    /// Hex MD5 of the part, as s3s-fs computes it (S3's part ETag).
    e_tag: String,
    size: u64,
    last_modified: SystemTime,
    /// Base64 raw digest, when the part carried a checksum.
    checksum: Option<String>,
}

// ---------------------------------------------------------------------------
// Checksums.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    const ALL: [Algorithm; 5] = [Self::Crc32, Self::Crc32c, Self::Crc64Nvme, Self::Sha1, Self::Sha256];

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// S3's name (`x-amz-checksum-algorithm`).
    fn name(self) -> &'static str {
        match self {
            Self::Crc32 => ChecksumAlgorithm::CRC32,
            Self::Crc32c => ChecksumAlgorithm::CRC32C,
            Self::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
            Self::Sha1 => ChecksumAlgorithm::SHA1,
            Self::Sha256 => ChecksumAlgorithm::SHA256,
        }
    }

    fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Crc32 => Crc32::checksum(bytes).to_vec(),
            Self::Crc32c => Crc32c::checksum(bytes).to_vec(),
            Self::Crc64Nvme => Crc64Nvme::checksum(bytes).to_vec(),
            Self::Sha1 => Sha1::checksum(bytes).to_vec(),
            Self::Sha256 => Sha256::checksum(bytes).to_vec(),
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    fn dto(self) -> ChecksumAlgorithm {
        ChecksumAlgorithm::from_static(self.name())
    }
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Canonical padded base64 only, as S3 reads checksum values.
fn unb64(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s).ok().filter(|raw| STANDARD.encode(raw) == s)
}

/// The checksum fields of S3's inputs and outputs, in [`Algorithm::ALL`]'s order.
struct ChecksumFields<'a>([&'a mut Option<String>; 5]);

macro_rules! checksum_fields {
    ($x:expr) => {
        ChecksumFields([
            &mut $x.checksum_crc32,
            &mut $x.checksum_crc32c,
            &mut $x.checksum_crc64nvme,
            &mut $x.checksum_sha1,
            &mut $x.checksum_sha256,
        ])
    };
}

impl ChecksumFields<'_> {
    /// The one checksum value given, if any.
    fn given(&self) -> S3Result<Option<(Algorithm, String)>> {
        let given: Vec<(Algorithm, String)> =
            Algorithm::ALL.into_iter().zip(self.0.iter()).filter_map(|(a, v)| Some((a, (*v).clone()?))).collect();
        match given.len() {
            0 => Ok(None),
            1 => Ok(given.into_iter().next()),
            _ => Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            )),
        }
    }

    /// Sets exactly `checksum` (clearing the others).
    fn set(self, checksum: Option<(Algorithm, String)>) {
        for (a, field) in Algorithm::ALL.into_iter().zip(self.0) {
            *field = checksum.as_ref().filter(|(c, _)| *c == a).map(|(_, v)| v.clone());
        }
    }
}

/// The checksum a `PutObject` or `UploadPart` declares: one
/// `x-amz-checksum-*` value (a header, or a trailer of an aws-chunked body),
/// agreeing with `x-amz-sdk-checksum-algorithm` when that is given.
fn declared_checksum(
    given: Option<(Algorithm, String)>,
    trailers: Option<HeaderMap>,
    sdk_algorithm: Option<&ChecksumAlgorithm>,
) -> S3Result<Option<(Algorithm, String)>> {
    let mut declared = given;
    if let Some(trailers) = trailers {
        for a in Algorithm::ALL {
            if let Some(v) = trailers.get(a.header()) {
                if declared.is_some() {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                    ));
                }
                let v = v
                    .to_str()
                    .map_err(|_| s3_error!(InvalidRequest, "Value for {} trailing header is invalid.", a.header()))?;
                declared = Some((a, v.to_owned()));
            }
        }
    }
    if let Some((a, v)) = &declared {
        if unb64(v).is_none_or(|raw| raw.len() != a.digest_len()) {
            return Err(s3_error!(InvalidRequest, "Value for {} header is invalid.", a.header()));
        }
    }
    if let Some(named) = sdk_algorithm {
        let named_alg = Algorithm::parse(named.as_str())
            .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm provided is unsupported."))?;
        match &declared {
            None => {
                return Err(s3_error!(
                    InvalidRequest,
                    "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found."
                ))
            }
            Some((a, _)) if *a != named_alg => {
                return Err(s3_error!(
                    InvalidRequest,
                    "Value for x-amz-sdk-checksum-algorithm header is invalid: {} names another algorithm than {}",
                    named.as_str(),
                    a.header()
                ))
            }
            Some(_) => {}
        }
    }
    Ok(declared)
}

/// `Content-MD5` (base64 of 16 bytes) against the body.
fn check_content_md5(content_md5: Option<&str>, body: &[u8]) -> S3Result<()> {
    let Some(given) = content_md5 else { return Ok(()) };
    let raw = unb64(given)
        .filter(|r| r.len() == 16)
        .ok_or_else(|| s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid."))?;
    if raw != Md5::checksum(body) {
        return Err(s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."));
    }
    Ok(())
}

fn check_checksum(declared: Option<&(Algorithm, String)>, body: &[u8]) -> S3Result<()> {
    if let Some((a, v)) = declared {
        let actual = b64(&a.digest(body));
        if &actual != v {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                a.header()
            ));
        }
    }
    Ok(())
}

/// Reads a request body whole (at most [`MAX_BODY`] bytes), turning the
/// errors of s3s's verifying streams into S3's answers.
async fn read_body(body: Option<StreamingBlob>, content_length: Option<i64>) -> S3Result<Bytes> {
    let mut body = body.ok_or_else(|| s3_error!(IncompleteBody))?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            let text = e.to_string();
            if text.contains("Sha256Mismatch") {
                let mut err = S3Error::with_message(
                    S3ErrorCode::Custom("XAmzContentSHA256Mismatch".into()),
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                );
                err.set_status_code(StatusCode::BAD_REQUEST);
                err
            } else if text.contains("SignatureMismatch") {
                s3_error!(SignatureDoesNotMatch, "a chunk signature does not match")
            } else {
                s3_error!(IncompleteBody, "the request body ended early: {text}")
            }
        })?;
        if buf.len() + chunk.len() > MAX_BODY {
            return Err(s3_error!(EntityTooLarge, "this local server reads at most {MAX_BODY} bytes a request"));
        }
        buf.extend_from_slice(&chunk);
    }
    if let Some(len) = content_length {
        if len != buf.len() as i64 {
            return Err(s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header."
            ));
        }
    }
    Ok(buf.freeze())
}

fn blob(bytes: Bytes) -> StreamingBlob {
    StreamingBlob::from(s3s::Body::from(bytes))
}

// ---------------------------------------------------------------------------
// Tags.

/// `x-amz-tagging`: URL-encoded `key=value` pairs, as S3 reads it.
fn parse_tagging(header: Option<&str>) -> S3Result<Vec<(String, String)>> {
    let Some(header) = header else { return Ok(Vec::new()) };
    let tags: Vec<(String, String)> =
        url::form_urlencoded::parse(header.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    validate_tags(&tags)?;
    Ok(tags)
}

fn validate_tags(tags: &[(String, String)]) -> S3Result<()> {
    if tags.len() > 10 {
        let mut err =
            S3Error::with_message(S3ErrorCode::Custom("BadRequest".into()), "Object tags cannot be greater than 10");
        err.set_status_code(StatusCode::BAD_REQUEST);
        return Err(err);
    }
    let allowed = |s: &str| s.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "+-=._:/@".contains(c));
    for (i, (k, v)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(other, _)| other == k) {
            return Err(s3_error!(InvalidTag, "Cannot provide multiple Tags with the same key"));
        }
        if k.is_empty() || k.chars().count() > 128 || !allowed(k) {
            return Err(s3_error!(InvalidTag, "The TagKey you have provided is invalid"));
        }
        if v.chars().count() > 256 || !allowed(v) {
            return Err(s3_error!(InvalidTag, "The TagValue you have provided is invalid"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The S3 implementation: s3s-fs plus what it lacks.

struct Verifying {
    fs: FileSystem,
    state: Arc<State>,
}

fn upload_of<'a>(inner: &'a mut Inner, bucket: &str, key: &str, upload_id: &str) -> S3Result<&'a mut Upload> {
    match inner.uploads.get_mut(upload_id) {
        Some(u) if u.bucket == bucket && u.key == key => Ok(u),
        _ => Err(s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        )),
    }
}

fn no_such_key() -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist.")
}

/// A request for another operation with `req`'s identity, headers and URI.
fn with_input<T, U>(req: &S3Request<T>, input: U) -> S3Request<U> {
    S3Request {
        input,
        method: req.method.clone(),
        uri: req.uri.clone(),
        headers: req.headers.clone(),
        extensions: http::Extensions::new(),
        credentials: req.credentials.clone(),
        region: req.region.clone(),
        service: req.service.clone(),
        trailing_headers: None,
    }
}

#[async_trait::async_trait]
impl S3 for Verifying {
    async fn create_bucket(&self, req: S3Request<CreateBucketInput>) -> S3Result<S3Response<CreateBucketOutput>> {
        self.fs.create_bucket(req).await
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn delete_bucket(&self, req: S3Request<DeleteBucketInput>) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket.clone();
        let out = self.fs.delete_bucket(req).await?;
        let mut inner = self.state.lock();
        inner.objects.retain(|(b, _), _| *b != bucket);
        inner.uploads.retain(|_, u| u.bucket != bucket);
        inner.cors.remove(&bucket);
        inner.lifecycle.remove(&bucket);
        Ok(out)
    }

    async fn list_buckets(&self, req: S3Request<ListBucketsInput>) -> S3Result<S3Response<ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn list_objects(&self, req: S3Request<ListObjectsInput>) -> S3Result<S3Response<ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn put_object(&self, mut req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let tags = parse_tagging(req.input.tagging.as_deref())?;
        let body = read_body(req.input.body.take(), req.input.content_length).await?;
        let trailers = req.trailing_headers.take().and_then(|t| t.take());
        let given = checksum_fields!(req.input).given()?;
        let declared = declared_checksum(given, trailers, req.input.checksum_algorithm.as_ref())?;
        check_content_md5(req.input.content_md5.as_deref(), &body)?;
        check_checksum(declared.as_ref(), &body)?;

        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        let conditional = req.input.if_none_match.as_ref().is_some_and(ETagCondition::is_any);
        // s3s-fs stores what it is given: the verified bytes, and only the
        // verified checksum (it checks it again, harmlessly).
        req.input.body = Some(blob(body));
        req.input.checksum_algorithm = None;
        checksum_fields!(req.input).set(declared.clone());
        let _write = self.state.writes.lock().await;
        if conditional && self.state.lock().objects.contains_key(&(bucket.clone(), key.clone())) {
            return Err(s3_error!(PreconditionFailed, "At least one of the pre-conditions you specified did not hold"));
        }
        let mut out = self.fs.put_object(req).await?;
        let checksum = declared.map(|(algorithm, value)| StoredChecksum { algorithm, value, composite: false });
        if checksum.is_some() {
            out.output.checksum_type = Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT));
        }
        self.state.lock().objects.insert((bucket, key), ObjectExtra { tags, checksum });
        Ok(out)
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = &req.input;
        let id = (input.bucket.clone(), input.key.clone());
        let mode = input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let whole = input.range.is_none() && input.part_number.is_none();
        let overrides = (
            input.response_content_type.clone(),
            input.response_content_disposition.clone(),
            input.response_cache_control.clone(),
            input.response_content_encoding.clone(),
            input.response_content_language.clone(),
            input.response_expires.clone(),
        );
        let mut out = self.fs.get_object(req).await?;
        let extra = self.state.lock().objects.get(&id).cloned().unwrap_or_default();
        let o = &mut out.output;
        checksum_fields!(o).set(None);
        o.checksum_type = None;
        if let (true, true, Some(c)) = (mode, whole, &extra.checksum) {
            checksum_fields!(o).set(Some((c.algorithm, c.value.clone())));
            o.checksum_type = Some(ChecksumType::from_static(if c.composite {
                ChecksumType::COMPOSITE
            } else {
                ChecksumType::FULL_OBJECT
            }));
        }
        o.tag_count = (!extra.tags.is_empty()).then_some(extra.tags.len() as i32);
        let (content_type, disposition, cache_control, encoding, language, expires) = overrides;
        if let Some(v) = content_type {
            o.content_type = Some(v);
        }
        if let Some(v) = disposition {
            o.content_disposition = Some(v);
        }
        if let Some(v) = cache_control {
            o.cache_control = Some(v);
        }
        if let Some(v) = encoding {
            o.content_encoding = Some(v);
        }
        if let Some(v) = language {
            o.content_language = Some(v);
        }
        if let Some(v) = expires {
            o.expires = Some(v);
        }
        Ok(out)
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let id = (req.input.bucket.clone(), req.input.key.clone());
        let mode = req.input.checksum_mode.as_ref().is_some_and(|m| m.as_str() == ChecksumMode::ENABLED);
        let mut out = self.fs.head_object(req).await?;
        let extra = self.state.lock().objects.get(&id).cloned().unwrap_or_default();
        let o = &mut out.output;
        checksum_fields!(o).set(None);
        o.checksum_type = None;
        if let (true, Some(c)) = (mode, &extra.checksum) {
            checksum_fields!(o).set(Some((c.algorithm, c.value.clone())));
            o.checksum_type = Some(ChecksumType::from_static(if c.composite {
                ChecksumType::COMPOSITE
            } else {
                ChecksumType::FULL_OBJECT
            }));
        }
        Ok(out)
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let id = (req.input.bucket.clone(), req.input.key.clone());
        let _write = self.state.writes.lock().await;
        let out = self.fs.delete_object(req).await?;
        self.state.lock().objects.remove(&id);
        Ok(out)
    }

    async fn delete_objects(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let quiet = req.input.delete.quiet == Some(true);
        let _write = self.state.writes.lock().await;
        let mut out = self.fs.delete_objects(req).await?;
        let mut inner = self.state.lock();
        for d in out.output.deleted.iter().flatten() {
            if let Some(key) = &d.key {
                inner.objects.remove(&(bucket.clone(), key.clone()));
            }
        }
        if quiet {
            // S3 lists only the failures in quiet mode.
            out.output.deleted = None;
        }
        Ok(out)
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let inner = self.state.lock();
        let extra = inner.objects.get(&(req.input.bucket.clone(), req.input.key.clone())).ok_or_else(no_such_key)?;
        let tag_set = extra.tags.iter().map(|(k, v)| Tag { key: Some(k.clone()), value: Some(v.clone()) }).collect();
        Ok(S3Response::new(GetObjectTaggingOutput { tag_set, version_id: None }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let tags: Vec<(String, String)> = req
            .input
            .tagging
            .tag_set
            .iter()
            .map(|t| (t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default()))
            .collect();
        validate_tags(&tags)?;
        let mut inner = self.state.lock();
        let extra =
            inner.objects.get_mut(&(req.input.bucket.clone(), req.input.key.clone())).ok_or_else(no_such_key)?;
        extra.tags = tags;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let mut inner = self.state.lock();
        let extra =
            inner.objects.get_mut(&(req.input.bucket.clone(), req.input.key.clone())).ok_or_else(no_such_key)?;
        extra.tags.clear();
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let tags = parse_tagging(req.input.tagging.as_deref())?;
        let algorithm = match &req.input.checksum_algorithm {
            None => None,
            Some(a) => Some(
                Algorithm::parse(a.as_str())
                    .ok_or_else(|| s3_error!(InvalidRequest, "Checksum algorithm provided is unsupported."))?,
            ),
        };
        let full_object = req.input.checksum_type.as_ref().is_some_and(|t| t.as_str() == ChecksumType::FULL_OBJECT);
        if full_object || algorithm == Some(Algorithm::Crc64Nvme) {
            return Err(s3_error!(NotImplemented, "this local server keeps COMPOSITE multipart checksums only"));
        }
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        // A multipart upload is the bucket's, not its creator's: on S3 any
        // principal IAM allows may add parts, list, complete or abort it
        // (the local stack's create and resume functions sign with ids of
        // their own). s3s-fs ties an upload to the access key that started
        // it, so it sees none.
        let mut req = req;
        req.credentials = None;
        let mut out = self.fs.create_multipart_upload(req).await?;
        let upload_id =
            out.output.upload_id.clone().ok_or_else(|| s3_error!(InternalError, "s3s-fs gave no upload id"))?;
        if let Some(a) = algorithm {
            out.output.checksum_algorithm = Some(a.dto());
            out.output.checksum_type = Some(ChecksumType::from_static(ChecksumType::COMPOSITE));
        }
        self.state.lock().uploads.insert(
            upload_id,
            Upload { bucket, key, initiated: SystemTime::now(), tags, algorithm, parts: BTreeMap::new() },
        );
        Ok(out)
    }

    async fn upload_part(&self, mut req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let (bucket, key, upload_id, n) =
            (req.input.bucket.clone(), req.input.key.clone(), req.input.upload_id.clone(), req.input.part_number);
        if !(1..=10_000).contains(&n) {
            return Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000, inclusive"));
        }
        let upload_algorithm = upload_of(&mut self.state.lock(), &bucket, &key, &upload_id)?.algorithm;
        let body = read_body(req.input.body.take(), req.input.content_length).await?;
        let trailers = req.trailing_headers.take().and_then(|t| t.take());
        let given = checksum_fields!(req.input).given()?;
        let declared = declared_checksum(given, trailers, req.input.checksum_algorithm.as_ref())?;
        if let (Some(expected), Some((a, _))) = (upload_algorithm, &declared) {
            if expected != *a {
                return Err(s3_error!(
                    InvalidRequest,
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
                    expected.name().to_ascii_lowercase(),
                    a.name().to_ascii_lowercase()
                ));
            }
        }
        check_content_md5(req.input.content_md5.as_deref(), &body)?;
        check_checksum(declared.as_ref(), &body)?;

        let size = body.len() as u64;
        req.input.body = Some(blob(body));
        req.input.checksum_algorithm = None;
        checksum_fields!(req.input).set(declared.clone());
        req.credentials = None; // as for create_multipart_upload
        let mut out = self.fs.upload_part(req).await?;
        let e_tag = out
            .output
            .e_tag
            .as_ref()
            .map(|t| t.value().to_owned())
            .ok_or_else(|| s3_error!(InternalError, "s3s-fs gave no part ETag"))?;
        checksum_fields!(out.output).set(declared.clone());
        let mut inner = self.state.lock();
        // Aborted or completed while the part was read: S3 answers the same.
        let upload = upload_of(&mut inner, &bucket, &key, &upload_id)?;
        upload.parts.insert(
            n,
            StoredPart { e_tag, size, last_modified: SystemTime::now(), checksum: declared.map(|(_, v)| v) },
        );
        Ok(out)
    }

    async fn list_parts(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let input = &req.input;
        let mut inner = self.state.lock();
        let upload = upload_of(&mut inner, &input.bucket, &input.key, &input.upload_id)?;
        let max = input.max_parts.unwrap_or(1000).clamp(0, 1000) as usize;
        let marker = input.part_number_marker.unwrap_or(0);
        let mut parts: Vec<Part> = Vec::new();
        let mut rest = upload.parts.range(marker.saturating_add(1)..);
        for (&n, p) in rest.by_ref().take(max) {
            let mut part = Part {
                part_number: Some(n),
                size: Some(p.size as i64),
                e_tag: Some(ETag::Strong(p.e_tag.clone())),
                last_modified: Some(Timestamp::from(p.last_modified)),
                ..Default::default()
            };
            if let (Some(a), Some(v)) = (upload.algorithm, &p.checksum) {
                checksum_fields!(part).set(Some((a, v.clone())));
            }
            parts.push(part);
        }
        let truncated = rest.next().is_some();
        let output = ListPartsOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(input.upload_id.clone()),
            checksum_algorithm: upload.algorithm.map(Algorithm::dto),
            checksum_type: upload.algorithm.map(|_| ChecksumType::from_static(ChecksumType::COMPOSITE)),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: parts.last().and_then(|p| p.part_number).filter(|_| truncated),
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = &req.input;
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let inner = self.state.lock();
        let mut all: Vec<(&String, &Upload)> = inner
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == input.bucket && u.key.starts_with(&prefix))
            .filter(|(id, u)| {
                key_marker.is_empty()
                    || u.key > key_marker
                    || (u.key == key_marker && !id_marker.is_empty() && **id > id_marker)
            })
            .collect();
        all.sort_by(|(ia, a), (ib, b)| (&a.key, a.initiated, ia).cmp(&(&b.key, b.initiated, ib)));
        let truncated = all.len() > max;
        all.truncate(max);
        let uploads: Vec<MultipartUpload> = all
            .iter()
            .map(|(id, u)| MultipartUpload {
                key: Some(u.key.clone()),
                upload_id: Some((*id).clone()),
                initiated: Some(Timestamp::from(u.initiated)),
                checksum_algorithm: u.algorithm.map(Algorithm::dto),
                ..Default::default()
            })
            .collect();
        let output = ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: input.prefix.clone(),
            key_marker: input.key_marker.clone(),
            upload_id_marker: input.upload_id_marker.clone(),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: truncated.then(|| uploads.last().and_then(|u| u.key.clone())).flatten(),
            next_upload_id_marker: truncated.then(|| uploads.last().and_then(|u| u.upload_id.clone())).flatten(),
            uploads: Some(uploads),
            ..Default::default()
        };
        Ok(S3Response::new(output))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let (bucket, key, upload_id) = (req.input.bucket.clone(), req.input.key.clone(), req.input.upload_id.clone());
        upload_of(&mut self.state.lock(), &bucket, &key, &upload_id)?;
        let mut req = req;
        req.credentials = None; // as for create_multipart_upload
        let out = self.fs.abort_multipart_upload(req).await?;
        self.state.lock().uploads.remove(&upload_id);
        Ok(out)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
        let listed: Vec<CompletedPart> =
            input.multipart_upload.as_ref().and_then(|m| m.parts.clone()).unwrap_or_default();
        if listed.is_empty() {
            return Err(s3_error!(MalformedXML, "You must specify at least one part"));
        }
        let conditional = input.if_none_match.as_ref().is_some_and(ETagCondition::is_any);
        let _write = self.state.writes.lock().await;
        let (checksum, tags) = {
            let mut inner = self.state.lock();
            if conditional && inner.objects.contains_key(&(bucket.clone(), key.clone())) {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
            let upload = upload_of(&mut inner, &bucket, &key, &upload_id)?;
            let mut previous = 0;
            let mut digests = Vec::new();
            for (i, mut part) in listed.iter().cloned().enumerate() {
                let n = part.part_number.ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?;
                if n <= previous {
                    return Err(s3_error!(InvalidPartOrder, "The list of parts was not in ascending order. The parts list must be specified in order by part number."));
                }
                previous = n;
                let invalid_part = || {
                    s3_error!(InvalidPart, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")
                };
                let stored = upload.parts.get(&n).ok_or_else(invalid_part)?;
                if part.e_tag.as_ref().map(ETag::value) != Some(stored.e_tag.as_str()) {
                    return Err(invalid_part());
                }
                if i + 1 < listed.len() && stored.size < MIN_PART {
                    return Err(s3_error!(
                        EntityTooSmall,
                        "Your proposed upload is smaller than the minimum allowed size"
                    ));
                }
                if let Some(a) = upload.algorithm {
                    let named = checksum_fields!(part).given()?;
                    match named {
                        Some((b, v)) if b == a => {
                            if stored.checksum.as_deref() != Some(v.as_str()) {
                                return Err(invalid_part());
                            }
                            digests.extend(unb64(&v).ok_or_else(invalid_part)?);
                        }
                        _ => {
                            return Err(s3_error!(
                                InvalidRequest,
                                "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {n} in the request.",
                                a.name().to_ascii_lowercase()
                            ))
                        }
                    }
                }
            }
            let checksum = upload.algorithm.map(|a| StoredChecksum {
                algorithm: a,
                value: format!("{}-{}", b64(&a.digest(&digests)), listed.len()),
                composite: true,
            });
            (checksum, upload.tags.clone())
        };

        let mut req = req;
        req.credentials = None; // as for create_multipart_upload
        let mut out = self.fs.complete_multipart_upload(req).await?;
        {
            let mut inner = self.state.lock();
            inner.uploads.remove(&upload_id);
            inner.objects.insert((bucket, key), ObjectExtra { tags, checksum: checksum.clone() });
        }
        if let Some(c) = checksum {
            let set = move |o: &mut CompleteMultipartUploadOutput| {
                checksum_fields!(o).set(Some((c.algorithm, c.value.clone())));
                o.checksum_type = Some(ChecksumType::from_static(ChecksumType::COMPOSITE));
            };
            match out.output.future.take() {
                Some(future) => {
                    out.output.future = Some(Box::pin(async move {
                        let mut o = future.await?;
                        set(&mut o);
                        Ok(o)
                    }));
                }
                None => set(&mut out.output),
            }
        }
        Ok(out)
    }

    async fn put_bucket_cors(&self, req: S3Request<PutBucketCorsInput>) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.bucket_exists(&req).await?;
        let rules = req.input.cors_configuration.cors_rules.clone();
        if rules.is_empty() || rules.len() > 100 {
            return Err(s3_error!(MalformedXML, "a CORS configuration holds 1 to 100 rules"));
        }
        for r in &rules {
            if r.allowed_origins.iter().chain(r.allowed_headers.iter().flatten()).any(|p| p.matches('*').count() > 1) {
                return Err(s3_error!(
                    InvalidRequest,
                    "an AllowedOrigin or AllowedHeader may hold at most one wildcard"
                ));
            }
            if r.allowed_methods.iter().any(|m| !["GET", "PUT", "POST", "DELETE", "HEAD"].contains(&m.as_str())) {
                return Err(s3_error!(InvalidRequest, "Found unsupported HTTP method in CORS config."));
            }
        }
        self.state.lock().cors.insert(req.input.bucket.clone(), rules);
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(&self, req: S3Request<GetBucketCorsInput>) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.bucket_exists(&req).await?;
        let rules = self.state.lock().cors.get(&req.input.bucket).cloned();
        match rules {
            Some(rules) => Ok(S3Response::new(GetBucketCorsOutput { cors_rules: Some(rules) })),
            None => Err(s3_error!(NoSuchCORSConfiguration, "The CORS configuration does not exist")),
        }
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.bucket_exists(&req).await?;
        self.state.lock().cors.remove(&req.input.bucket);
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    /// Kept so the local stack can provision its bucket here; no rule is
    /// ever applied (nor does moto apply any).
    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.bucket_exists(&req).await?;
        let rules = req.input.lifecycle_configuration.clone().map(|c| c.rules).unwrap_or_default();
        self.state.lock().lifecycle.insert(req.input.bucket.clone(), rules);
        Ok(S3Response::new(PutBucketLifecycleConfigurationOutput::default()))
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.bucket_exists(&req).await?;
        match self.state.lock().lifecycle.get(&req.input.bucket).cloned() {
            Some(rules) => {
                Ok(S3Response::new(GetBucketLifecycleConfigurationOutput { rules: Some(rules), ..Default::default() }))
            }
            None => Err(s3_error!(NoSuchLifecycleConfiguration, "The lifecycle configuration does not exist")),
        }
    }
}

/// Inputs that name a bucket.
trait InBucket {
    fn bucket(&self) -> &str;
}

macro_rules! in_bucket {
    ($($t:ty),*) => {$(impl InBucket for $t { fn bucket(&self) -> &str { &self.bucket } })*};
}
in_bucket!(
    PutBucketCorsInput,
    GetBucketCorsInput,
    DeleteBucketCorsInput,
    PutBucketLifecycleConfigurationInput,
    GetBucketLifecycleConfigurationInput
);

impl Verifying {
    async fn bucket_exists<T: InBucket>(&self, req: &S3Request<T>) -> S3Result<()> {
        let head = HeadBucketInput { bucket: req.input.bucket().to_owned(), ..Default::default() };
        self.fs.head_bucket(with_input(req, head)).await.map(|_| ())
    }
}

// ---------------------------------------------------------------------------
// The HTTP front: what S3 checks before an operation runs that s3s does not.

struct Front {
    service: S3Service,
    state: Arc<State>,
}

type Response = http::Response<s3s::Body>;

fn error_response(status: StatusCode, code: &str, message: &str, extra: &[(&str, &str)]) -> Response {
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>",
        escape(message)
    );
    for (k, v) in extra {
        xml.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    xml.push_str("</Error>");
    let mut resp = http::Response::new(s3s::Body::from(xml));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    resp
}

/// The bucket of a path-style request, if its path names one.
fn bucket_of(uri: &http::Uri) -> Option<String> {
    let first = uri.path().trim_start_matches('/').split('/').next().filter(|b| !b.is_empty())?;
    Some(urlencoding_decode(first))
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The query parameter `name` of `uri`, decoded.
fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `pattern` (at most one `*`, matching any run of characters) against `s`.
fn wildcard_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((prefix, suffix)) => {
            s.len() >= prefix.len() + suffix.len() && s.starts_with(prefix) && s.ends_with(suffix)
        }
    }
}

impl Front {
    async fn handle(self: Arc<Self>, req: http::Request<hyper::body::Incoming>) -> Result<Response, s3s::HttpError> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let resp = self.answer(req).await;
        let status = resp.as_ref().map_or(500, |r| r.status().as_u16());
        let mut log = self.state.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.len() == LOG_LIMIT {
            log.pop_front();
        }
        log.push_back(Logged { method, path, query, status });
        resp
    }

    async fn answer(&self, req: http::Request<hyper::body::Incoming>) -> Result<Response, s3s::HttpError> {
        if req.method() == Method::OPTIONS {
            return Ok(self.preflight(&req));
        }
        if let Some(refused) = unsigned_amz_headers(&req) {
            return Ok(refused);
        }
        let origin = req.headers().get(http::header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
        let method = req.method().clone();
        let bucket = bucket_of(req.uri());
        let mut resp = self.service.call(req.map(s3s::Body::from)).await?;
        if let (Some(origin), Some(bucket)) = (origin, bucket) {
            let rule = self.cors_rule(&bucket, &origin, method.as_str(), &[]);
            if let Some(rule) = rule {
                cors_headers(resp.headers_mut(), &rule, &origin);
            }
        }
        Ok(resp)
    }

    /// The first CORS rule of `bucket` allowing `origin`, `method` and every
    /// header of `headers` (lowercase), as S3 picks it.
    fn cors_rule(&self, bucket: &str, origin: &str, method: &str, headers: &[String]) -> Option<CORSRule> {
        let inner = self.state.lock();
        inner.cors.get(bucket)?.iter().find(|r| cors_allows(r, origin, method, headers)).cloned()
    }

    /// A browser's preflight `OPTIONS`, evaluated as S3 does.
    fn preflight(&self, req: &http::Request<hyper::body::Incoming>) -> Response {
        let h = req.headers();
        let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (Some(origin), Some(method)) = (header("origin"), header("access-control-request-method")) else {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Insufficient information. Origin request header needed.",
                &[],
            );
        };
        let requested: Vec<String> = header("access-control-request-headers")
            .map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let Some(bucket) = bucket_of(req.uri()) else {
            return error_response(StatusCode::FORBIDDEN, "AccessForbidden", "CORSResponse: Bucket not found", &[]);
        };
        if !self.state.lock().cors.contains_key(&bucket) {
            return error_response(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: CORS is not enabled for this bucket.",
                &[("Method", &method), ("ResourceType", "OBJECT")],
            );
        }
        let Some(rule) = self.cors_rule(&bucket, &origin, &method, &requested) else {
            return error_response(
                StatusCode::FORBIDDEN,
                "AccessForbidden",
                "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                &[("Method", &method), ("ResourceType", "OBJECT")],
            );
        };
        let mut resp = http::Response::new(s3s::Body::empty());
        let headers = resp.headers_mut();
        cors_headers(headers, &rule, &origin);
        if !requested.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
                headers.insert("access-control-allow-headers", v);
            }
        }
        if let Some(age) = rule.max_age_seconds {
            headers.insert("access-control-max-age", HeaderValue::from(age));
        }
        resp
    }
}

fn cors_allows(rule: &CORSRule, origin: &str, method: &str, headers: &[String]) -> bool {
    rule.allowed_origins.iter().any(|o| wildcard_match(o, origin))
        && rule.allowed_methods.iter().any(|m| m == method)
        && headers.iter().all(|h| {
            rule.allowed_headers.iter().flatten().any(|allowed| wildcard_match(&allowed.to_ascii_lowercase(), h))
        })
}

/// The headers S3 adds to an answer its CORS `rule` allows for `origin`.
fn cors_headers(headers: &mut HeaderMap, rule: &CORSRule, origin: &str) {
    let any_origin = rule.allowed_origins.iter().any(|o| o == "*");
    let allow_origin = if any_origin { "*" } else { origin };
    if let Ok(v) = HeaderValue::from_str(allow_origin) {
        headers.insert("access-control-allow-origin", v);
    }
    if !any_origin {
        headers.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
    }
    if let Ok(v) = HeaderValue::from_str(&rule.allowed_methods.join(", ")) {
        headers.insert("access-control-allow-methods", v);
    }
    if let Some(expose) = rule.expose_headers.as_ref().filter(|e| !e.is_empty()) {
        if let Ok(v) = HeaderValue::from_str(&expose.join(", ")) {
            headers.insert("access-control-expose-headers", v);
        }
    }
    headers.insert(
        http::header::VARY,
        HeaderValue::from_static("Origin, Access-Control-Request-Headers, Access-Control-Request-Method"),
    );
}

/// S3 refuses a presigned request carrying an `x-amz-*` header its URL does
/// not sign (`403 AccessDenied`, naming them in `HeadersNotSigned`); s3s
/// only checks the headers that are signed.
fn unsigned_amz_headers<B>(req: &http::Request<B>) -> Option<Response> {
    query_param(req.uri(), "X-Amz-Signature")?;
    let signed = query_param(req.uri(), "X-Amz-SignedHeaders").unwrap_or_default();
    let signed: Vec<&str> = signed.split(';').collect();
    let mut unsigned: Vec<&str> =
        req.headers().keys().map(|k| k.as_str()).filter(|k| k.starts_with("x-amz-") && !signed.contains(k)).collect();
    if unsigned.is_empty() {
        return None;
    }
    unsigned.sort_unstable();
    unsigned.dedup();
    Some(error_response(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "There were headers present in the request which were not signed",
        &[("HeadersNotSigned", &unsigned.join(", "))],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_and_checked_as_s3_reads_them() {
        assert_eq!(
            parse_tagging(Some("upload-state=pending&a%20b=c%2Fd")).unwrap(),
            vec![("upload-state".into(), "pending".into()), ("a b".into(), "c/d".into())]
        );
        assert_eq!(parse_tagging(None).unwrap(), vec![]);
        for bad in ["a=1&a=2", "=x", "k=%3Cscript%3E", &format!("{}=v", "k".repeat(129))] {
            assert_eq!(parse_tagging(Some(bad)).unwrap_err().code(), &S3ErrorCode::InvalidTag, "{bad}");
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tagging(Some(&eleven.join("&"))).unwrap_err().code().as_str(), "BadRequest");
    }

    #[test]
    fn a_declared_checksum_is_one_well_formed_value_matching_the_named_algorithm() {
        let sha = b64(&Algorithm::Sha256.digest(b"abc"));
        let crc = b64(&Algorithm::Crc32c.digest(b"abc"));
        let named = ChecksumAlgorithm::from_static(ChecksumAlgorithm::SHA256);
        assert_eq!(
            declared_checksum(Some((Algorithm::Sha256, sha.clone())), None, Some(&named)).unwrap(),
            Some((Algorithm::Sha256, sha.clone()))
        );
        let err = |r: S3Result<Option<(Algorithm, String)>>| r.unwrap_err().code().clone();
        assert_eq!(err(declared_checksum(None, None, Some(&named))), S3ErrorCode::InvalidRequest);
        assert_eq!(
            err(declared_checksum(Some((Algorithm::Crc32c, crc.clone())), None, Some(&named))),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(err(declared_checksum(Some((Algorithm::Sha256, crc)), None, None)), S3ErrorCode::InvalidRequest);
        let mut trailers = HeaderMap::new();
        trailers.insert("x-amz-checksum-sha256", HeaderValue::from_str(&sha).unwrap());
        assert_eq!(declared_checksum(None, Some(trailers), None).unwrap(), Some((Algorithm::Sha256, sha.clone())));
        assert!(check_checksum(Some(&(Algorithm::Sha256, sha.clone())), b"abc").is_ok());
        assert_eq!(
            check_checksum(Some(&(Algorithm::Sha256, sha)), b"abd").unwrap_err().code(),
            &S3ErrorCode::BadDigest
        );
        // S3's documented CRC32C of "123456789", big-endian.
        assert_eq!(b64(&Algorithm::Crc32c.digest(b"123456789")), "4waSgw==");
    }

    #[test]
    fn content_md5_is_base64_of_sixteen_bytes_matching_the_body() {
        let md5 = b64(&Md5::checksum(b"hello"));
        assert!(check_content_md5(Some(&md5), b"hello").is_ok());
        assert_eq!(check_content_md5(Some(&md5), b"hellO").unwrap_err().code(), &S3ErrorCode::BadDigest);
        assert_eq!(check_content_md5(Some("AAAA"), b"hello").unwrap_err().code(), &S3ErrorCode::InvalidDigest);
    }

    #[test]
    fn cors_rules_match_origins_methods_and_headers_with_one_wildcard() {
        let rule = CORSRule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["PUT".into()],
            allowed_headers: Some(vec!["content-*".into(), "x-amz-checksum-sha256".into()]),
            ..Default::default()
        };
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(cors_allows(&rule, "https://app.example.com", "PUT", &h(&["content-type", "x-amz-checksum-sha256"])));
        assert!(!cors_allows(&rule, "https://app.example.org", "PUT", &[]));
        assert!(!cors_allows(&rule, "https://app.example.com", "GET", &[]));
        assert!(!cors_allows(&rule, "https://app.example.com", "PUT", &h(&["if-none-match"])));
        assert!(wildcard_match("*", "anything"));
        assert!(!wildcard_match("a*a", "a"));
    }
}
