//! Cleanup task items: the durable record that an upload's bytes still have
//! to be removed. Written in the same transaction that deletes the session,
//! removed by the cleanup function once the bytes are gone.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};

use super::item::{s, Item, Reader};
use super::layout::*;
use super::Store;
use crate::domain::{ObjectKey, OwnerId, Session, Timestamp, UploadId};
use crate::error::Error;

/// A cleanup task due for re-driving, as the `by_due` index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueTask {
    pub upload_id: UploadId,
    pub attempts: u32,
    /// Its `gsi2sk` as read: a claim is conditioned on it.
    pub due: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupTask {
    pub upload_id: UploadId,
    pub owner: OwnerId,
    /// The bucket the bytes were written to, fixed when the task is written.
    pub bucket: String,
    pub object_key: ObjectKey,
    /// S3's id of an unfinished multipart upload to abort, if any.
    pub multipart_upload_id: Option<String>,
    pub created_at: Timestamp,
    /// When the last presigned URL handed out for the upload has expired,
    /// plus a margin, plus the time the session's largest `PUT` begun just
    /// before then may take ([`crate::deletion::in_flight_allowance_seconds`]).
    /// Until then a late `PUT` could still land bytes, so cleanup makes one
    /// more pass at this time before removing the task.
    pub final_pass_at: Timestamp,
    /// How many times the sweeper has re-driven the task (its message was
    /// lost, or cleanup kept failing). Each re-drive waits longer; past a
    /// bound the sweeper reports the task as stuck (metric and alarm) and
    /// keeps trying.
    pub attempts: u32,
}

/// The attribute of a task that names the deletion that wrote it: the
/// `ClientRequestToken` of its transaction, random per attempt. A deletion
/// whose answer was lost finds out from it whether it committed.
pub(super) const DELETION_TOKEN: &str = "deletion_token";

/// Whether `item` (a task's) was written by the deletion `token`.
pub(super) fn written_by(item: Option<&Item>, token: &str) -> bool {
    item.and_then(|i| i.get(DELETION_TOKEN)).and_then(|v| v.as_s().ok()).is_some_and(|t| t == token)
}

fn key(id: &UploadId) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.into(), s(cleanup_pk(id))), (SK.into(), s("CLEANUP"))])
}

impl CleanupTask {
    pub fn for_session(session: &Session, bucket: &str, now: Timestamp, final_pass_at: Timestamp) -> Self {
        Self {
            final_pass_at,
            upload_id: session.id.clone(),
            owner: session.owner.clone(),
            bucket: bucket.to_owned(),
            object_key: session.object_key.clone(),
            multipart_upload_id: session.multipart.as_ref().map(|m| m.s3_upload_id.clone()),
            created_at: now,
            attempts: 0,
        }
    }

    pub(super) fn to_item(&self) -> Item {
        let mut item = key(&self.upload_id);
        item.insert("type".into(), s("cleanup"));
        item.insert("upload_id".into(), s(self.upload_id.as_str()));
        item.insert("owner".into(), s(self.owner.as_str()));
        item.insert("bucket".into(), s(&self.bucket));
        item.insert("object_key".into(), s(self.object_key.as_str()));
        item.insert("created_at".into(), s(self.created_at.to_rfc3339()));
        item.insert("final_pass_at".into(), s(self.final_pass_at.to_rfc3339()));
        item.insert("attempts".into(), super::item::n(self.attempts));
        item.insert(GSI2PK.into(), s(due_partition(DUE_CLEANUP, due_shard(&self.upload_id))));
        // Due for the sweeper at its final pass: the cleanup message makes
        // the first pass; if it is lost, the final pass does the whole job.
        item.insert(GSI2SK.into(), s(time_sort_key(self.final_pass_at, &self.upload_id)));
        if let Some(mp) = &self.multipart_upload_id {
            item.insert("mp_upload_id".into(), s(mp));
        }
        item
    }

    /// The task's item as the deletion `token` writes it.
    pub(super) fn to_item_by(&self, token: &str) -> Item {
        let mut item = self.to_item();
        item.insert(DELETION_TOKEN.into(), s(token));
        item
    }

    pub(super) fn from_item(item: &Item) -> Result<Self, Error> {
        let r = Reader::new(item, "read cleanup task");
        Ok(Self {
            upload_id: r.parsed("upload_id", UploadId::parse)?,
            owner: r.parsed("owner", OwnerId::parse)?,
            bucket: r.str("bucket")?.to_owned(),
            object_key: r.parsed("object_key", ObjectKey::from_stored)?,
            multipart_upload_id: r.opt_str("mp_upload_id")?.map(str::to_owned),
            created_at: r.parsed("created_at", Timestamp::parse)?,
            final_pass_at: r.parsed("final_pass_at", Timestamp::parse)?,
            attempts: r.opt_num("attempts")?.unwrap_or(0),
        })
    }
}

impl Store {
    /// Whether upload `id`'s task is the one the deletion `token` wrote
    /// (strongly consistent read).
    pub(super) async fn task_written_by(&self, id: &UploadId, token: &str) -> Result<bool, Error> {
        Ok(written_by(self.get(key(id), "read cleanup task").await?.as_ref(), token))
    }

    pub async fn get_cleanup_task(&self, id: &UploadId) -> Result<Option<CleanupTask>, Error> {
        self.get(key(id), "read cleanup task").await?.as_ref().map(CleanupTask::from_item).transpose()
    }

    /// The tasks of `ids` that exist, read together (consistent
    /// `BatchGetItem`), each on its own: a task that cannot be read is an
    /// error for its id only.
    pub async fn get_cleanup_tasks(
        &self,
        ids: &[UploadId],
    ) -> Result<HashMap<UploadId, Result<CleanupTask, Error>>, Error> {
        let items = self.get_many(ids.iter().map(key).collect(), "read cleanup tasks").await?;
        let mut tasks = HashMap::new();
        for item in &items {
            let Some(id) = item.get("upload_id").and_then(|v| v.as_s().ok()).and_then(|v| UploadId::parse(v)) else {
                continue;
            };
            tasks.insert(id, CleanupTask::from_item(item));
        }
        Ok(tasks)
    }

    /// Removes finished tasks, 25 to a `BatchWriteItem` call (removing one
    /// already gone is not an error). Deletes DynamoDB leaves unprocessed
    /// are sent again with backoff; still unprocessed after that, `Busy`.
    pub async fn delete_cleanup_tasks(&self, ids: &[UploadId]) -> Result<(), Error> {
        for chunk in ids.chunks(25) {
            let deletions: Vec<WriteRequest> = chunk
                .iter()
                .map(|id| {
                    let delete = DeleteRequest::builder().set_key(Some(key(id))).build();
                    delete.map(|d| WriteRequest::builder().delete_request(d).build())
                })
                .collect::<Result<_, _>>()
                .map_err(Error::internal("build task deletions"))?;
            super::until_processed(deletions, |pending| async move {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(Error::aws("delete cleanup tasks"))?;
                Ok((
                    Vec::<()>::new(),
                    out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default(),
                ))
            })
            .await?;
        }
        Ok(())
    }

    /// Writes a task outside a deletion: for re-driving and for tests that
    /// need a task in a given state.
    pub async fn put_cleanup_task(&self, task: &CleanupTask) -> Result<(), Error> {
        let request = self.client.put_item().table_name(&self.table).set_item(Some(task.to_item()));
        super::retry_conflicts(|| request.clone().send()).await.map_err(Error::aws("write cleanup task"))?;
        Ok(())
    }

    /// Removes a finished task. Removing one already gone is not an error,
    /// so a redelivered message succeeds.
    pub async fn delete_cleanup_task(&self, id: &UploadId) -> Result<(), Error> {
        let request = self.client.delete_item().table_name(&self.table).set_key(Some(key(id)));
        super::retry_conflicts(|| request.clone().send()).await.map_err(Error::aws("delete cleanup task"))?;
        Ok(())
    }
}

impl Store {
    /// Shard `shard`'s cleanup tasks due before `before`, oldest first, one page.
    pub async fn due_cleanup_tasks(
        &self,
        shard: u32,
        before: Timestamp,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(super::DueItems<DueTask>, Option<Item>), Error> {
        let (items, next) = self.due_page(DUE_CLEANUP, shard, before, limit, start, "list due cleanup tasks").await?;
        let tasks = super::each(&items, |item| {
            let r = Reader::new(item, "list due cleanup tasks");
            Ok(DueTask {
                upload_id: r.parsed("upload_id", UploadId::parse)?,
                attempts: r.opt_num("attempts")?.unwrap_or(0),
                due: r.str(GSI2SK)?.to_owned(),
            })
        });
        Ok((tasks, next))
    }

    /// Claims a stale task for re-driving: counts the attempt and moves its
    /// due time to `next` (later with every attempt), on condition that it
    /// is still `due` as read, so of two concurrent sweepers only one
    /// re-drives it. The attempt count after the claim, or `None` when
    /// another sweeper got there first (or the task is gone).
    pub async fn claim_cleanup_task(&self, task: &DueTask, next: Timestamp) -> Result<Option<u32>, Error> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&task.upload_id)))
            .update_expression("SET gsi2sk = :new ADD attempts :one")
            .condition_expression("gsi2sk = :old")
            .expression_attribute_values(":new", s(time_sort_key(next, &task.upload_id)))
            .expression_attribute_values(":old", s(&task.due))
            .expression_attribute_values(":one", super::item::n(1))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew);
        match super::retry_conflicts(|| request.clone().send()).await {
            Ok(out) => {
                let attrs = out.attributes.unwrap_or_default();
                Ok(Some(Reader::new(&attrs, "claim cleanup task").opt_num("attempts")?.unwrap_or(1)))
            }
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(Error::aws("claim cleanup task")(e)),
        }
    }
}
