//! Cleanup task items: the durable record that an upload's bytes still have
//! to be removed. Written in the same transaction that deletes the session,
//! removed by the cleanup function once the bytes are gone.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{s, Item, Reader};
use super::layout::*;
use super::Store;
use crate::domain::{ObjectKey, OwnerId, Session, Timestamp, UploadId};
use crate::error::Error;

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
}

fn key(id: &UploadId) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.into(), s(format!("CLEANUP#{}", id.as_str()))), (SK.into(), s("CLEANUP"))])
}

impl CleanupTask {
    pub fn for_session(session: &Session, bucket: &str, now: Timestamp) -> Self {
        Self {
            upload_id: session.id.clone(),
            owner: session.owner.clone(),
            bucket: bucket.to_owned(),
            object_key: session.object_key.clone(),
            multipart_upload_id: session.multipart.as_ref().map(|m| m.s3_upload_id.clone()),
            created_at: now,
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
        item.insert(GSI2PK.into(), s(DUE_CLEANUP));
        item.insert(GSI2SK.into(), s(format!("{}#{}", self.created_at.to_rfc3339(), self.upload_id.as_str())));
        if let Some(mp) = &self.multipart_upload_id {
            item.insert("mp_upload_id".into(), s(mp));
        }
        item
    }

    fn from_item(item: &Item) -> Result<Self, Error> {
        let r = Reader::new(item, "read cleanup task");
        Ok(Self {
            upload_id: r.parsed("upload_id", UploadId::parse)?,
            owner: r.parsed("owner", OwnerId::parse)?,
            bucket: r.str("bucket")?.to_owned(),
            object_key: r.parsed("object_key", ObjectKey::from_stored)?,
            multipart_upload_id: r.opt_str("mp_upload_id")?.map(str::to_owned),
            created_at: r.parsed("created_at", Timestamp::parse)?,
        })
    }
}

impl Store {
    pub async fn get_cleanup_task(&self, id: &UploadId) -> Result<Option<CleanupTask>, Error> {
        self.get(key(id), "read cleanup task").await?.as_ref().map(CleanupTask::from_item).transpose()
    }

    /// Writes a task outside a deletion: for re-driving and for tests that
    /// need a task in a given state.
    pub async fn put_cleanup_task(&self, task: &CleanupTask) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(task.to_item()))
            .send()
            .await
            .map_err(Error::internal("write cleanup task"))?;
        Ok(())
    }

    /// Removes a finished task. Removing one already gone is not an error,
    /// so a redelivered message succeeds.
    pub async fn delete_cleanup_task(&self, id: &UploadId) -> Result<(), Error> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .send()
            .await
            .map_err(Error::internal("delete cleanup task"))?;
        Ok(())
    }
}
