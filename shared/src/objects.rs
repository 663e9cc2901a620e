//! The S3 adapter: presigning the `PUT`s that bring an upload's bytes and
//! the `GET` that reads them back, completing multipart uploads, removing
//! bytes.

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_s3::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{
    ChecksumAlgorithm as S3Algorithm, ChecksumMode, ChecksumType as S3ChecksumType, CompletedMultipartUpload,
    CompletedPart, Delete, ObjectIdentifier,
};
use aws_sdk_s3::Client;

use crate::domain::{ChecksumAlgorithm, Checksums, ObjectKey, Timestamp};
use crate::error::Error;

/// The tag every object carries until its session is confirmed. The bucket's
/// lifecycle rule expires objects still tagged so after 8 days, so bytes of
/// a session that never completed cannot outlive it, whatever happens to its
/// record.
pub const PENDING_TAG_KEY: &str = "upload-state";
pub const PENDING_TAG_VALUE: &str = "pending";

fn pending_tagging() -> String {
    format!("{PENDING_TAG_KEY}={PENDING_TAG_VALUE}")
}

/// `DeleteObjects` takes at most this many keys a call.
pub const DELETE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct Objects {
    client: Client,
    /// Where presigned URLs get their credentials (the client's own
    /// provider, which its configuration does not give back), and the
    /// ones they were last signed with. Without a provider, URLs are
    /// signed by the client as it is, for their whole lifetime.
    provider: Option<SharedCredentialsProvider>,
    /// The credentials last signed with, and the one provider wrapping
    /// them that every URL signed with them shares (each provider is a
    /// partition of the client's identity cache, which keeps few).
    signing: std::sync::Arc<tokio::sync::Mutex<Option<(Credentials, SharedCredentialsProvider)>>>,
}

/// Kept between the credentials' expiry and the last instant a URL signed
/// with them is said to work.
pub const CREDENTIALS_MARGIN_SECONDS: u64 = 30;

/// When a batch of presigned URLs works, and the credentials they are
/// signed with: from `start` (a whole second, as `X-Amz-Date` has no
/// fraction) for `ttl` seconds, which is never past the credentials'
/// expiry, so the expiry the API reports is the one S3 applies.
///
/// A URL signed with temporary credentials stops working when they expire,
/// whatever its `X-Amz-Expires`; the SDK's identity cache refreshes them
/// only shortly before their expiry, so without this a URL said to last 15
/// minutes could die within seconds.
#[derive(Debug, Clone)]
pub struct UrlWindow {
    start: u64,
    ttl: u64,
    credentials: Option<SharedCredentialsProvider>,
}

impl UrlWindow {
    /// A window from now for `ttl_seconds`, signed with whatever
    /// credentials the client has (for tools and tests; the functions use
    /// [`Objects::url_window`]).
    pub fn starting_now(ttl_seconds: i64) -> Self {
        let start = Timestamp::now().unix_seconds().max(0) as u64;
        UrlWindow { start, ttl: ttl_seconds.max(1) as u64, credentials: None }
    }

    /// The instant every URL of the window stops working.
    pub fn expires_at(&self) -> Timestamp {
        Timestamp::from_unix_millis(((self.start + self.ttl) * 1000) as i64)
    }

    /// Seconds the window's URLs work for.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl
    }

    fn presigning(&self) -> Result<PresigningConfig, Error> {
        PresigningConfig::builder()
            .start_time(UNIX_EPOCH + Duration::from_secs(self.start))
            .expires_in(Duration::from_secs(self.ttl))
            .build()
            .map_err(Error::internal("presign"))
    }

    /// The client's configuration with exactly these credentials.
    fn signer(&self) -> aws_sdk_s3::config::Builder {
        let mut b = aws_sdk_s3::config::Builder::default();
        if let Some(c) = &self.credentials {
            b.set_credentials_provider(Some(c.clone()));
        }
        b
    }
}

/// A presigned `PUT` a client sends one part (or the whole object) to: the
/// API's view.
pub use api::PresignedPut;

/// The API's view of a presigned `PUT` of part `part_number` (1 for a
/// single `PUT`) of `size` bytes.
fn put_view(part_number: u32, size: u64, req: PresignedRequest) -> PresignedPut {
    // Only the signed headers are the client's to send (the SDK may add
    // others, such as a trace id, that mean nothing to the client).
    let signed: Vec<String> = req
        .uri()
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-SignedHeaders="))
        .map(|v| v.replace("%3B", ";").replace("%3b", ";").split(';').map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    let headers = req
        .headers()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .filter(|(k, _)| k != "host" && signed.contains(k))
        .collect();
    PresignedPut {
        part_number: u64::from(part_number),
        method: api::PutMethod::Put,
        url: req.uri().to_owned(),
        headers,
        size,
    }
}

/// A presigned `GET` of a completed upload's object, and the instant it
/// stops working (exactly the URL's `X-Amz-Date` plus `X-Amz-Expires`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedGet {
    pub url: String,
    pub expires_at: Timestamp,
}

/// `Content-Disposition: attachment` naming `filename` the way RFC 6266
/// (with RFC 8187, formerly 5987) says to: an ASCII `filename` for agents
/// that know nothing else, then the exact name as UTF-8 in `filename*`,
/// which agents that know it prefer.
///
/// The fallback keeps printable ASCII and turns every other character
/// into `_`: `"` and `\` (which would end or escape the quoted string),
/// control characters (a header cannot carry them), non-ASCII, and `%`
/// (some agents decode `%xx` in `filename`; RFC 6266, appendix D). In
/// `filename*` every byte that is not an RFC 8187 `attr-char` is
/// percent-encoded, so the header is plain ASCII whatever the name.
pub fn attachment_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| if (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\' | '%') { c } else { '_' })
        .collect();
    let mut encoded = String::with_capacity(filename.len() * 3);
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// The checksum one `PUT` must carry: its algorithm and the base64 value
/// S3 checks the bytes against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub value: String,
}

impl PutChecksum {
    /// The checksum `PUT` `n` (1-based) of an upload declared with
    /// `checksums` must carry; `None` when none were declared.
    pub fn of(checksums: Option<&Checksums>, n: u32) -> Option<Self> {
        let c = checksums?;
        Some(Self { algorithm: c.algorithm(), value: c.part(n)? })
    }
}

fn s3_algorithm(a: ChecksumAlgorithm) -> S3Algorithm {
    match a {
        ChecksumAlgorithm::Sha256 => S3Algorithm::Sha256,
        ChecksumAlgorithm::Crc32c => S3Algorithm::Crc32C,
    }
}

/// What carries a checksum value to S3 (a presigned `PutObject` or
/// `UploadPart`, a completed part), each in the field of its algorithm.
trait CarriesChecksum: Sized {
    fn sha256(self, value: &str) -> Self;
    fn crc32c(self, value: &str) -> Self;

    /// `c`'s value, in the field its algorithm names.
    fn carrying(self, c: &PutChecksum) -> Self {
        match c.algorithm {
            ChecksumAlgorithm::Sha256 => self.sha256(&c.value),
            ChecksumAlgorithm::Crc32c => self.crc32c(&c.value),
        }
    }
}

macro_rules! carries_checksum {
    ($($builder:ty),*) => {$(
        impl CarriesChecksum for $builder {
            fn sha256(self, value: &str) -> Self {
                self.checksum_sha256(value)
            }
            fn crc32c(self, value: &str) -> Self {
                self.checksum_crc32_c(value)
            }
        }
    )*};
}

carries_checksum!(
    aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder,
    aws_sdk_s3::types::builders::CompletedPartBuilder
);

/// What `HeadObject` says of an object: its size, and the checksum of
/// `algorithm` S3 holds for it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    pub checksum: Option<String>,
}

/// A part S3 holds for a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub part_number: u32,
    pub size: u64,
    pub e_tag: String,
    /// The part's checksum, when the upload declared an algorithm and S3
    /// reports it.
    pub checksum: Option<String>,
}

/// What S3 answered a `CompleteMultipartUpload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Completed from the parts named: the object exists now.
    Completed,
    /// S3 no longer knows the upload (completed or aborted meanwhile), or
    /// the object already exists (412: completed by a concurrent call).
    Gone,
    /// 409 `ConditionalRequestConflict`: a conflicting operation on the
    /// key is in flight (a concurrent completion of the same upload, by
    /// another confirm or the sweeper). S3 asks the caller to retry; the
    /// session stays completing, so a later confirm or the sweeper does.
    Conflict,
}

/// A key `DeleteObjects` could not remove, with S3's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    pub key: String,
    pub code: String,
}

impl Objects {
    pub fn new(client: Client) -> Self {
        Self { client, provider: None, signing: Default::default() }
    }

    /// Presigned URLs signed with credentials from `provider` (the one the
    /// client was built with), never said to outlive them.
    pub fn signing_with(mut self, provider: Option<SharedCredentialsProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// The window of URLs signed now for `ttl_seconds`: with the last
    /// credentials used if they outlive it (plus a margin), else with
    /// credentials asked of the provider again (a provider whose
    /// credentials are about to expire hands out new ones); if even those
    /// expire sooner, the window ends [`CREDENTIALS_MARGIN_SECONDS`] before
    /// they do.
    pub async fn url_window(&self, ttl_seconds: i64) -> Result<UrlWindow, Error> {
        let start = Timestamp::now().unix_seconds().max(0) as u64;
        let ttl = ttl_seconds.max(1) as u64;
        let outlives = |c: &Credentials| {
            c.expiry().is_none_or(|e| e >= UNIX_EPOCH + Duration::from_secs(start + ttl + CREDENTIALS_MARGIN_SECONDS))
        };
        let Some(provider) = &self.provider else {
            return Ok(UrlWindow::starting_now(ttl_seconds));
        };
        let mut cached = self.signing.lock().await;
        let (credentials, shared) = match cached.as_ref() {
            Some((c, shared)) if outlives(c) => (c.clone(), shared.clone()),
            _ => {
                let fresh =
                    provider.provide_credentials().await.map_err(Error::internal("resolve signing credentials"))?;
                let shared = SharedCredentialsProvider::new(fresh.clone());
                *cached = Some((fresh.clone(), shared.clone()));
                (fresh, shared)
            }
        };
        drop(cached);
        let ttl = match credentials.expiry().and_then(|e| e.duration_since(UNIX_EPOCH).ok()) {
            Some(expiry) => ttl.min(expiry.as_secs().saturating_sub(start + CREDENTIALS_MARGIN_SECONDS)).max(1),
            None => ttl,
        };
        Ok(UrlWindow { start, ttl, credentials: Some(shared) })
    }

    /// Deletes `keys` from `bucket` with batched `DeleteObjects` calls.
    /// A key that is already gone counts as deleted. Returns the keys S3
    /// refused; a call that fails as a whole is an error for all its keys.
    pub async fn delete_keys(&self, bucket: &str, keys: &[&ObjectKey]) -> Result<Vec<KeyFailure>, Error> {
        let mut failures = Vec::new();
        for chunk in keys.chunks(DELETE_BATCH) {
            let objects = chunk
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k.as_str()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::internal("build delete objects"))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(Error::internal("build delete objects"))?;
            let out = self
                .client
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(Error::aws("delete objects"))?;
            failures.extend(out.errors().iter().filter(|e| e.code() != Some("NoSuchKey")).map(|e| KeyFailure {
                key: e.key().unwrap_or_default().to_owned(),
                code: e.code().unwrap_or("Unknown").to_owned(),
            }));
        }
        Ok(failures)
    }

    /// A presigned single `PUT` of exactly `size` bytes of `content_type`
    /// (both signed, so the client cannot store something else), conditional
    /// on there being no object yet (`If-None-Match: *`, signed too): once
    /// the bytes are written, no URL of the session can overwrite them, nor
    /// put back the pending tag of a confirmed upload. With a `checksum`,
    /// its `x-amz-checksum-*` header (and the SDK's
    /// `x-amz-sdk-checksum-algorithm`, which names it) are signed too, and
    /// S3 refuses bytes with another digest.
    pub async fn presign_put(
        &self,
        bucket: &str,
        key: &ObjectKey,
        content_type: &str,
        size: u64,
        checksum: Option<&PutChecksum>,
        window: &UrlWindow,
    ) -> Result<PresignedPut, Error> {
        let mut put = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(size as i64)
            .tagging(pending_tagging())
            .if_none_match("*");
        if let Some(c) = checksum {
            put = put.checksum_algorithm(s3_algorithm(c.algorithm)).carrying(c);
        }
        let req = put
            .customize()
            .config_override(window.signer())
            .presigned(window.presigning()?)
            .await
            .map_err(Error::aws("presign put"))?;
        Ok(put_view(1, size, req))
    }

    /// A presigned `GET` of the object at `key`, working for `window`,
    /// that S3 answers with `Content-Type: content_type` and
    /// `Content-Disposition: attachment` naming `filename`
    /// ([`attachment_disposition`]), both signed into the URL
    /// (`response-content-type`, `response-content-disposition`), so the
    /// bytes are saved under the upload's name rather than shown inline.
    /// Presigning is local: no call reaches S3.
    pub async fn presign_get(
        &self,
        bucket: &str,
        key: &ObjectKey,
        filename: &str,
        content_type: &str,
        window: &UrlWindow,
    ) -> Result<PresignedGet, Error> {
        let req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key.as_str())
            .response_content_type(content_type)
            .response_content_disposition(attachment_disposition(filename))
            .customize()
            .config_override(window.signer())
            .presigned(window.presigning()?)
            .await
            .map_err(Error::aws("presign get"))?;
        Ok(PresignedGet { url: req.uri().to_owned(), expires_at: window.expires_at() })
    }

    /// Starts a multipart upload of `content_type`; returns S3's upload id.
    /// With an `algorithm`, every part must carry its checksum and the
    /// object gets S3's composite checksum.
    pub async fn create_multipart(
        &self,
        bucket: &str,
        key: &ObjectKey,
        content_type: &str,
        algorithm: Option<ChecksumAlgorithm>,
    ) -> Result<String, Error> {
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key.as_str())
            .content_type(content_type)
            .tagging(pending_tagging());
        if let Some(a) = algorithm {
            create = create.checksum_algorithm(s3_algorithm(a)).checksum_type(S3ChecksumType::Composite);
        }
        let out = create.send().await.map_err(Error::aws("create multipart upload"))?;
        out.upload_id.ok_or_else(|| Error::invariant("create multipart upload", "S3 returned no upload id"))
    }

    /// A presigned `UploadPart` for part `n` of `size` bytes, with its
    /// `checksum` signed in as for [`Objects::presign_put`].
    #[allow(clippy::too_many_arguments)]
    pub async fn presign_part(
        &self,
        bucket: &str,
        key: &ObjectKey,
        s3_upload_id: &str,
        n: u32,
        size: u64,
        checksum: Option<&PutChecksum>,
        window: &UrlWindow,
    ) -> Result<PresignedPut, Error> {
        let mut part = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key.as_str())
            .upload_id(s3_upload_id)
            .part_number(n as i32)
            .content_length(size as i64);
        if let Some(c) = checksum {
            part = part.checksum_algorithm(s3_algorithm(c.algorithm)).carrying(c);
        }
        let req = part
            .customize()
            .config_override(window.signer())
            .presigned(window.presigning()?)
            .await
            .map_err(Error::aws("presign part"))?;
        Ok(put_view(n, size, req))
    }

    /// The parts S3 holds for a multipart upload, or `None` when the upload
    /// no longer exists (completed or aborted).
    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &ObjectKey,
        s3_upload_id: &str,
    ) -> Result<Option<Vec<StoredPart>>, Error> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = match self
                .client
                .list_parts()
                .bucket(bucket)
                .key(key.as_str())
                .upload_id(s3_upload_id)
                .set_part_number_marker(marker)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.code() == Some("NoSuchUpload") => return Ok(None),
                Err(e) => return Err(Error::aws("list parts")(e)),
            };
            for p in out.parts() {
                if let (Some(n), Some(size), Some(tag)) = (p.part_number(), p.size(), p.e_tag()) {
                    let checksum = p.checksum_sha256().or(p.checksum_crc32_c()).map(str::to_owned);
                    parts.push(StoredPart {
                        part_number: n as u32,
                        size: size as u64,
                        e_tag: tag.to_owned(),
                        checksum,
                    });
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            marker = out.next_part_number_marker().map(str::to_owned);
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(Some(parts))
    }

    /// Completes a multipart upload from `parts`, on condition that there is
    /// no object at `key` yet (`If-None-Match: *`), so a late second call can
    /// never put back a pending-tagged object over a confirmed one.
    ///
    /// An upload with a checksum algorithm must name each part's checksum
    /// (S3 checks them against the parts it holds): `checksums` gives the
    /// declared one for part `n`.
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &ObjectKey,
        s3_upload_id: &str,
        parts: &[StoredPart],
        checksums: impl Fn(u32) -> Option<PutChecksum>,
    ) -> Result<Completion, Error> {
        let parts = parts
            .iter()
            .map(|p| {
                let part = CompletedPart::builder().part_number(p.part_number as i32).e_tag(&p.e_tag);
                match checksums(p.part_number) {
                    None => part,
                    Some(c) => part.carrying(&c),
                }
                .build()
            })
            .collect();
        match self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key.as_str())
            .upload_id(s3_upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .if_none_match("*")
            .send()
            .await
        {
            Ok(_) => Ok(Completion::Completed),
            Err(e) if matches!(e.code(), Some("NoSuchUpload") | Some("PreconditionFailed")) => Ok(Completion::Gone),
            Err(e) if e.code() == Some("ConditionalRequestConflict") => Ok(Completion::Conflict),
            Err(e) => Err(Error::aws("complete multipart upload")(e)),
        }
    }

    /// Removes the pending tag: the object now belongs to a completed upload
    /// and the lifecycle rule must leave it alone.
    pub async fn mark_completed(&self, bucket: &str, key: &ObjectKey) -> Result<(), Error> {
        self.client
            .delete_object_tagging()
            .bucket(bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(Error::aws("untag object"))?;
        Ok(())
    }

    /// The size of the object at `key`, or `None` if there is none.
    pub async fn object_size(&self, bucket: &str, key: &ObjectKey) -> Result<Option<u64>, Error> {
        Ok(self.object(bucket, key, None).await?.map(|o| o.size))
    }

    /// The object at `key` (its size, and its checksum of `algorithm` when
    /// one is asked for and S3 holds one), or `None` if there is none.
    pub async fn object(
        &self,
        bucket: &str,
        key: &ObjectKey,
        algorithm: Option<ChecksumAlgorithm>,
    ) -> Result<Option<StoredObject>, Error> {
        let mut head = self.client.head_object().bucket(bucket).key(key.as_str());
        if algorithm.is_some() {
            head = head.checksum_mode(ChecksumMode::Enabled);
        }
        match head.send().await {
            Ok(out) => Ok(Some(StoredObject {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                checksum: match algorithm {
                    None => None,
                    Some(ChecksumAlgorithm::Sha256) => out.checksum_sha256().map(str::to_owned),
                    Some(ChecksumAlgorithm::Crc32c) => out.checksum_crc32_c().map(str::to_owned),
                },
            })),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(Error::aws(crate::error::HEAD_OBJECT)(e)),
        }
    }

    /// Aborts the multipart upload `upload_id` of `key`, then every other
    /// unfinished multipart upload S3 still lists for exactly that key: parts
    /// still in flight when the first abort ran can leave one behind, and S3
    /// asks callers to abort again. `NoSuchUpload` counts as done.
    pub async fn abort_multipart(&self, bucket: &str, key: &ObjectKey, upload_id: &str) -> Result<(), Error> {
        // Gone already (`NoSuchUpload`) is done for the upload named; the
        // listing below still finds any other, or this one if S3 said so
        // wrongly.
        self.abort_one(bucket, key, upload_id).await?;
        let mut key_marker = None;
        let mut upload_marker = None;
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(bucket)
                .prefix(key.as_str())
                .set_key_marker(key_marker)
                .set_upload_id_marker(upload_marker)
                .send()
                .await
                .map_err(Error::aws("list multipart uploads"))?;
            for upload in out.uploads() {
                if let (Some(k), Some(id)) = (upload.key(), upload.upload_id()) {
                    if k == key.as_str() && !self.abort_one(bucket, key, id).await? {
                        // Listed a moment ago, unknown now: aborted by a
                        // concurrent cleanup, or S3 contradicting itself.
                        // Not counted as done: the next pass lists again.
                        return Err(Error::invariant(
                            "abort multipart upload",
                            "a listed upload answered NoSuchUpload",
                        ));
                    }
                }
            }
            if out.is_truncated() != Some(true) {
                return Ok(());
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            upload_marker = out.next_upload_id_marker().map(str::to_owned);
        }
    }

    /// Aborts one multipart upload: `true` when S3 aborted it, `false` when
    /// it answered `NoSuchUpload` (gone already).
    async fn abort_one(&self, bucket: &str, key: &ObjectKey, upload_id: &str) -> Result<bool, Error> {
        match self.client.abort_multipart_upload().bucket(bucket).key(key.as_str()).upload_id(upload_id).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(false),
            Err(e) => Err(Error::aws("abort multipart upload")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{valid_filename, OwnerId, UploadId};

    /// The name `disposition`'s `filename*` carries, decoded.
    fn decoded_ext_value(disposition: &str) -> String {
        let encoded = disposition.split_once("filename*=UTF-8''").expect("filename*").1;
        let mut bytes = Vec::new();
        let mut rest = encoded.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'%' {
                bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap());
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).expect("UTF-8")
    }

    #[test]
    fn a_plain_name_is_both_parameters_as_it_is() {
        assert_eq!(
            attachment_disposition("report-2026_Q3.pdf"),
            "attachment; filename=\"report-2026_Q3.pdf\"; filename*=UTF-8''report-2026_Q3.pdf"
        );
    }

    #[test]
    fn quotes_backslashes_percent_and_non_ascii_stay_out_of_the_fallback() {
        assert_eq!(
            attachment_disposition("My \"best\" \\ 100% Grüße ☀.txt"),
            "attachment; filename=\"My _best_ _ 100_ Gr__e _.txt\"; \
             filename*=UTF-8''My%20%22best%22%20%5C%20100%25%20Gr%C3%BC%C3%9Fe%20%E2%98%80.txt"
        );
        // A name that tries to close the header's parameters.
        assert_eq!(
            attachment_disposition("a\"; filename=evil.exe"),
            "attachment; filename=\"a_; filename=evil.exe\"; filename*=UTF-8''a%22%3B%20filename%3Devil.exe"
        );
    }

    proptest! {
        #[test]
        fn every_name_makes_a_safe_header_that_gives_it_back(name in "\\PC{1,255}") {
            prop_assume!(valid_filename(&name));
            let d = attachment_disposition(&name);
            prop_assert!(d.bytes().all(|b| (0x20..0x7f).contains(&b)), "printable ASCII only: {d}");
            let fallback = d
                .strip_prefix("attachment; filename=\"")
                .and_then(|r| r.split_once("\"; filename*=UTF-8''"))
                .map(|(f, _)| f)
                .expect("the two parameters");
            prop_assert!(!fallback.contains(['"', '\\', '%']));
            prop_assert_eq!(fallback.chars().count(), name.chars().count());
            prop_assert_eq!(decoded_ext_value(&d), name);
        }
    }

    #[tokio::test]
    async fn declared_checksums_are_signed_headers_of_the_puts() {
        let objects = Objects::new(Client::from_conf(offline_config()));
        let owner = OwnerId::parse("team-a").unwrap();
        let key = ObjectKey::for_upload(&owner, &UploadId::generate());
        let sha = PutChecksum { algorithm: ChecksumAlgorithm::Sha256, value: "x".repeat(43) + "=" };
        let crc = PutChecksum { algorithm: ChecksumAlgorithm::Crc32c, value: "4waSgw==".into() };
        let window = objects.url_window(60).await.unwrap();
        let put = objects.presign_put("bucket", &key, "text/plain", 10, Some(&sha), &window).await.unwrap();
        assert_eq!(put.headers.get("x-amz-checksum-sha256"), Some(&sha.value));
        assert_eq!(put.headers.get("x-amz-sdk-checksum-algorithm").map(String::as_str), Some("SHA256"));
        let part = objects.presign_part("bucket", &key, "mp", 2, 10, Some(&crc), &window).await.unwrap();
        assert_eq!(part.headers.get("x-amz-checksum-crc32c"), Some(&crc.value));
        let signed = |url: &str| {
            let url = url::Url::parse(url).unwrap();
            url.query_pairs().find(|(k, _)| k == "X-Amz-SignedHeaders").map(|(_, v)| v.into_owned()).unwrap()
        };
        assert!(signed(&put.url).split(';').any(|h| h == "x-amz-checksum-sha256"), "{}", signed(&put.url));
        assert!(signed(&part.url).split(';').any(|h| h == "x-amz-checksum-crc32c"), "{}", signed(&part.url));
        // Every header the client is told to send is signed, and nothing
        // else: no checksum of the SDK's own over an empty body.
        for p in [&put, &part] {
            let signed = signed(&p.url);
            let mut listed: Vec<&str> = p.headers.keys().map(String::as_str).collect();
            listed.push("host");
            listed.sort_unstable();
            let mut signed: Vec<&str> = signed.split(';').collect();
            signed.sort_unstable();
            assert_eq!(listed, signed);
        }
        let plain = objects.presign_put("bucket", &key, "text/plain", 10, None, &window).await.unwrap();
        assert!(!plain.headers.keys().any(|h| h.contains("checksum")), "{:?}", plain.headers);
    }

    fn offline_config() -> aws_sdk_s3::Config {
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-central-1"))
            .credentials_provider(Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
            // Nothing listens there: presigning must not need it.
            .endpoint_url("http://127.0.0.1:9")
            .force_path_style(true)
            .build()
    }

    #[tokio::test]
    async fn a_presigned_get_is_signed_locally_with_its_disposition_type_and_expiry() {
        let objects = Objects::new(Client::from_conf(offline_config()));
        let owner = OwnerId::parse("team-a").unwrap();
        let key = ObjectKey::for_upload(&owner, &UploadId::generate());
        let before = Timestamp::now();
        let window = objects.url_window(900).await.unwrap();
        let get =
            objects.presign_get("bucket", &key, "Grüße \"1\".txt", "text/plain; charset=utf-8", &window).await.unwrap();
        let after = Timestamp::now();

        let url = url::Url::parse(&get.url).unwrap();
        assert_eq!(url.path(), format!("/bucket/{}", key.as_str()));
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response-content-disposition"], attachment_disposition("Grüße \"1\".txt"));
        assert_eq!(q["response-content-type"], "text/plain; charset=utf-8");
        assert_eq!(q["X-Amz-SignedHeaders"], "host", "nothing for the client to send");
        assert_eq!(q["X-Amz-Expires"], "900");
        let d = &q["X-Amz-Date"]; // 20261123T021549Z
        let rfc3339 = format!("{}-{}-{}T{}:{}:{}Z", &d[0..4], &d[4..6], &d[6..8], &d[9..11], &d[11..13], &d[13..15]);
        let signed_at = Timestamp::parse(&rfc3339).unwrap().unix_seconds();
        assert_eq!(get.expires_at.unix_millis(), (signed_at + 900) * 1000, "exactly the URL's expiry");
        assert!(before.unix_seconds() <= signed_at && signed_at <= after.unix_seconds());
    }

    /// A URL signed with credentials that expire in two minutes is said,
    /// and made, to expire before they do; once the provider has fresh
    /// credentials, the URLs get their whole lifetime, signed with those.
    #[tokio::test]
    async fn no_url_is_said_to_outlive_the_credentials_it_is_signed_with() {
        // One set of credentials expiring in two minutes, then one lasting
        // two hours; counting how often they are asked for.
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = asked.clone();
        let expiring = aws_credential_types::credential_fn::provide_credentials_fn(move || {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let life = if n == 0 { 120 } else { 7200 };
                let expiry = std::time::SystemTime::now() + Duration::from_secs(life);
                Ok(Credentials::new(format!("ASIA{n}"), "secret", Some("token".into()), Some(expiry), "test"))
            }
        });
        let objects = Objects::new(Client::from_conf(offline_config()))
            .signing_with(Some(SharedCredentialsProvider::new(expiring)));
        let owner = OwnerId::parse("team-a").unwrap();
        let key = ObjectKey::for_upload(&owner, &UploadId::generate());
        let query = |url: &str| -> std::collections::HashMap<String, String> {
            url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
        };

        let short = objects.url_window(900).await.unwrap();
        let now = Timestamp::now().unix_seconds();
        let said = short.expires_at().unix_seconds();
        assert!(said <= now + 120 - CREDENTIALS_MARGIN_SECONDS as i64, "said {said}, credentials end at {}", now + 120);
        let put = objects.presign_put("bucket", &key, "text/plain", 10, None, &short).await.unwrap();
        let q = query(&put.url);
        assert_eq!(q["X-Amz-Expires"], short.ttl_seconds().to_string(), "the URL's own expiry is the one said");
        assert!(q["X-Amz-Credential"].starts_with("ASIA0/"), "{}", q["X-Amz-Credential"]);

        let full = objects.url_window(900).await.unwrap();
        assert_eq!(full.ttl_seconds(), 900, "fresh credentials give the whole lifetime");
        let get = objects.presign_get("bucket", &key, "a.txt", "text/plain", &full).await.unwrap();
        assert!(query(&get.url)["X-Amz-Credential"].starts_with("ASIA1/"));
        assert_eq!(get.expires_at, full.expires_at());
        let again = objects.url_window(900).await.unwrap();
        assert_eq!(again.ttl_seconds(), 900);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 2, "lasting credentials are kept");
    }
}
