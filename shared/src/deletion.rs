//! The delete path shared by the delete function and the sweeper.

use tracing::warn;

use crate::config::Config;
use crate::domain::{OwnerId, Session, UploadId};
use crate::error::{chain, Error};
use crate::queue::CleanupQueue;
use crate::store::{CleanupTask, DeleteScope, Store};

/// Past the last presigned URL's expiry, how long cleanup still waits before
/// its final pass (covers a confirm or part upload in flight at that moment).
pub const FINAL_PASS_MARGIN_SECONDS: i64 = 60;

/// The slowest transfer a final pass waits for: a client sending a `PUT`
/// at 512 KiB/s (4 Mbit/s). S3 checks a presigned URL's expiry when a
/// request starts, so a part begun just before its URL expired can land
/// long after: the final pass of a deletion waits, beyond the URLs'
/// lifetime and [`FINAL_PASS_MARGIN_SECONDS`], as long as the session's
/// largest `PUT` takes at this rate. Bytes of a slower transfer still
/// landing after it are left to the bucket's lifecycle rules (the pending
/// tag's expiry, the abort of incomplete multipart uploads).
pub const SLOWEST_TRANSFER_BYTES_PER_SECOND: u64 = 512 * 1024;

/// How long the largest `PUT` of `session` (a part, or the whole object)
/// may take at [`SLOWEST_TRANSFER_BYTES_PER_SECOND`], in whole seconds.
pub fn in_flight_allowance_seconds(session: &Session) -> i64 {
    let largest = session.multipart.as_ref().map_or(session.size, |m| m.part_size.min(session.size));
    largest.div_ceil(SLOWEST_TRANSFER_BYTES_PER_SECOND) as i64
}

/// Everything a deletion touches.
#[derive(Debug, Clone)]
pub struct Deleter {
    pub store: Store,
    pub queue: CleanupQueue,
    /// The bucket the cleanup task names.
    pub bucket: String,
    /// How long after a deletion cleanup makes its final pass.
    pub final_pass_delay_seconds: i64,
}

impl Deleter {
    pub fn new(store: Store, queue: CleanupQueue, config: &Config) -> Self {
        Self {
            store,
            queue,
            bucket: config.bucket_name.clone(),
            final_pass_delay_seconds: config.uploads.url_ttl_seconds + FINAL_PASS_MARGIN_SECONDS,
        }
    }

    /// Removes `owner`'s upload `id` if `scope` allows: commits the record's
    /// removal (with the usage release and the durable cleanup task), then
    /// asks the cleanup function to remove the bytes. A failed enqueue is
    /// logged, not returned: the record is gone and the task is durable, so
    /// the sweeper re-drives it. `None` when there was nothing to delete.
    pub async fn delete(
        &self,
        owner: &OwnerId,
        id: &UploadId,
        scope: DeleteScope,
    ) -> Result<Option<CleanupTask>, Error> {
        let deleted = self.store.delete_session(owner, id, &self.bucket, self.final_pass_delay_seconds, scope).await?;
        self.after_commit(deleted).await
    }

    /// As [`Deleter::delete`], starting from `read`, the session as the
    /// caller just read it (see [`Store::delete_read_session`]).
    pub async fn delete_read(&self, read: Session, scope: DeleteScope) -> Result<Option<CleanupTask>, Error> {
        let deleted = self.store.delete_read_session(read, &self.bucket, self.final_pass_delay_seconds, scope).await?;
        self.after_commit(deleted).await
    }

    /// Once the deletion committed: asks the cleanup function to remove the
    /// bytes now.
    async fn after_commit(&self, deleted: Option<CleanupTask>) -> Result<Option<CleanupTask>, Error> {
        let Some(task) = deleted else {
            return Ok(None);
        };
        let id = &task.upload_id;
        if let Err(e) = self.queue.enqueue(id).await {
            warn!(error = %chain(&e), upload_id = %id, "cleanup enqueue failed; the durable task stays for the sweeper");
        }
        Ok(Some(task))
    }
}
