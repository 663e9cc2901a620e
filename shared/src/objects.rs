//! The S3 adapter: removing an upload's bytes.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_s3::Client;

use crate::domain::ObjectKey;
use crate::error::Error;

/// `DeleteObjects` takes at most this many keys a call.
pub const DELETE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct Objects {
    client: Client,
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

    pub fn client(&self) -> &Client {
        &self.client
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
                .map_err(Error::internal("delete objects"))?;
            failures.extend(out.errors().iter().filter(|e| e.code() != Some("NoSuchKey")).map(|e| KeyFailure {
                key: e.key().unwrap_or_default().to_owned(),
                code: e.code().unwrap_or("Unknown").to_owned(),
            }));
        }
        Ok(failures)
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
                .map_err(Error::internal("list multipart uploads"))?;
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
            Err(e) => Err(Error::internal("abort multipart upload")(e)),
        }
    }
}
