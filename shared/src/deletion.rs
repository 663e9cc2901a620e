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
