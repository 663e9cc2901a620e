//! The delete path shared by the delete function and the sweeper.

use tracing::warn;

use crate::domain::{OwnerId, UploadId};
use crate::error::{chain, Error};
use crate::queue::CleanupQueue;
use crate::store::{CleanupTask, Store};

/// Removes `owner`'s upload `id`: commits the record's removal (with the
/// usage release and the durable cleanup task), then asks the cleanup
/// function to remove the bytes. A failed enqueue is logged, not returned:
/// the record is gone and the task is durable, so the sweeper re-drives it.
pub async fn delete_upload(
    store: &Store,
    queue: &CleanupQueue,
    bucket: &str,
    owner: &OwnerId,
    id: &UploadId,
) -> Result<CleanupTask, Error> {
    let task = store.delete_session(owner, id, bucket).await?.ok_or(Error::NotFound)?;
    if let Err(e) = queue.enqueue(id).await {
        warn!(error = %chain(&e), upload_id = %id, "cleanup enqueue failed; the durable task stays for the sweeper");
    }
    Ok(task)
}
