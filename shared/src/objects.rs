//! The S3 adapter: presigning the `PUT`s that bring an upload's bytes and
//! the `GET` that reads them back, completing multipart uploads, removing
//! bytes.

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_sdk_s3::Client;
use serde::Serialize;

use crate::domain::{ObjectKey, Timestamp};
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
}

/// A presigned `PUT` a client sends one part (or the whole object) to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresignedPut {
    pub part_number: u32,
    pub method: &'static str,
    pub url: String,
    /// Headers the client must send as they are (they are signed).
    pub headers: std::collections::BTreeMap<String, String>,
    /// Exactly how many bytes this `PUT` carries.
    pub size: u64,
}

impl PresignedPut {
    fn from_request(part_number: u32, size: u64, req: PresignedRequest) -> Self {
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
        Self { part_number, method: "PUT", url: req.uri().to_owned(), headers, size }
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

/// A part S3 holds for a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub part_number: u32,
    pub size: u64,
    pub e_tag: String,
}

/// A key `DeleteObjects` could not remove, with S3's error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFailure {
    pub key: String,
    pub code: String,
}

impl Objects {
    pub fn new(client: Client) -> Self {
        Self { client }
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

    fn presigning(ttl_seconds: i64) -> Result<PresigningConfig, Error> {
        PresigningConfig::expires_in(Duration::from_secs(ttl_seconds.max(1) as u64)).map_err(Error::internal("presign"))
    }

    /// A presigned single `PUT` of exactly `size` bytes of `content_type`
    /// (both signed, so the client cannot store something else), conditional
    /// on there being no object yet (`If-None-Match: *`, signed too): once
    /// the bytes are written, no URL of the session can overwrite them, nor
    /// put back the pending tag of a confirmed upload.
    pub async fn presign_put(
        &self,
        bucket: &str,
        key: &ObjectKey,
        content_type: &str,
        size: u64,
        ttl_seconds: i64,
    ) -> Result<PresignedPut, Error> {
        let req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(size as i64)
            .tagging(pending_tagging())
            .if_none_match("*")
            .presigned(Self::presigning(ttl_seconds)?)
            .await
            .map_err(Error::aws("presign put"))?;
        Ok(PresignedPut::from_request(1, size, req))
    }

    /// A presigned `GET` of the object at `key`, working for `ttl_seconds`,
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
        ttl_seconds: i64,
    ) -> Result<PresignedGet, Error> {
        // Signed as of a whole second (X-Amz-Date has no fraction), so the
        // stated expiry is exactly the URL's, never later.
        let start = Timestamp::now().unix_seconds().max(0) as u64;
        let ttl = ttl_seconds.max(1) as u64;
        let config = PresigningConfig::builder()
            .start_time(UNIX_EPOCH + Duration::from_secs(start))
            .expires_in(Duration::from_secs(ttl))
            .build()
            .map_err(Error::internal("presign"))?;
        let req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key.as_str())
            .response_content_type(content_type)
            .response_content_disposition(attachment_disposition(filename))
            .presigned(config)
            .await
            .map_err(Error::aws("presign get"))?;
        let expires_at = Timestamp::from_unix_millis(((start + ttl) * 1000) as i64);
        Ok(PresignedGet { url: req.uri().to_owned(), expires_at })
    }

    /// Starts a multipart upload of `content_type`; returns S3's upload id.
    pub async fn create_multipart(&self, bucket: &str, key: &ObjectKey, content_type: &str) -> Result<String, Error> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key.as_str())
            .content_type(content_type)
            .tagging(pending_tagging())
            .send()
            .await
            .map_err(Error::aws("create multipart upload"))?;
        out.upload_id.ok_or_else(|| Error::invariant("create multipart upload", "S3 returned no upload id"))
    }

    /// A presigned `UploadPart` for part `n` of `size` bytes.
    pub async fn presign_part(
        &self,
        bucket: &str,
        key: &ObjectKey,
        s3_upload_id: &str,
        n: u32,
        size: u64,
        ttl_seconds: i64,
    ) -> Result<PresignedPut, Error> {
        let req = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key.as_str())
            .upload_id(s3_upload_id)
            .part_number(n as i32)
            .content_length(size as i64)
            .presigned(Self::presigning(ttl_seconds)?)
            .await
            .map_err(Error::aws("presign part"))?;
        Ok(PresignedPut::from_request(n, size, req))
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
                    parts.push(StoredPart { part_number: n as u32, size: size as u64, e_tag: tag.to_owned() });
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
    /// never put back a pending-tagged object over a confirmed one. `false`
    /// when S3 no longer knows the upload (completed or aborted meanwhile)
    /// or the object already exists (completed by a concurrent call).
    pub async fn complete_multipart(
        &self,
        bucket: &str,
        key: &ObjectKey,
        s3_upload_id: &str,
        parts: &[StoredPart],
    ) -> Result<bool, Error> {
        let parts = parts
            .iter()
            .map(|p| CompletedPart::builder().part_number(p.part_number as i32).e_tag(&p.e_tag).build())
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
            Ok(_) => Ok(true),
            Err(e) if matches!(e.code(), Some("NoSuchUpload") | Some("PreconditionFailed")) => Ok(false),
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
        match self.client.head_object().bucket(bucket).key(key.as_str()).send().await {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(Error::aws("head object")(e)),
        }
    }

    /// Aborts the multipart upload `upload_id` of `key`, then every other
    /// unfinished multipart upload S3 still lists for exactly that key: parts
    /// still in flight when the first abort ran can leave one behind, and S3
    /// asks callers to abort again. `NoSuchUpload` counts as done.
    pub async fn abort_multipart(&self, bucket: &str, key: &ObjectKey, upload_id: &str) -> Result<(), Error> {
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
                    if k == key.as_str() {
                        self.abort_one(bucket, key, id).await?;
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

    async fn abort_one(&self, bucket: &str, key: &ObjectKey, upload_id: &str) -> Result<(), Error> {
        match self.client.abort_multipart_upload().bucket(bucket).key(key.as_str()).upload_id(upload_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(()),
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
    async fn a_presigned_get_is_signed_locally_with_its_disposition_type_and_expiry() {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-central-1"))
            .credentials_provider(Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"))
            // Nothing listens there: presigning must not need it.
            .endpoint_url("http://127.0.0.1:9")
            .force_path_style(true)
            .build();
        let objects = Objects::new(Client::from_conf(config));
        let owner = OwnerId::parse("team-a").unwrap();
        let key = ObjectKey::for_upload(&owner, &UploadId::generate());
        let before = Timestamp::now();
        let get =
            objects.presign_get("bucket", &key, "Grüße \"1\".txt", "text/plain; charset=utf-8", 900).await.unwrap();
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
}
