//! Outbox items: an upload event written in the transaction of the change
//! it reports, kept until the publisher has sent it (see [`crate::events`]).

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::item::{s, Item, Key, Reader};
use super::layout::{due_partition, due_shard, time_sort_key, DUE_EVENT, GSI2PK, GSI2SK, PK, SK};
use super::Store;
use crate::domain::{Timestamp, UploadId};
use crate::error::Error;
use crate::events::EventType;

/// An event in the outbox: what the publisher sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outboxed {
    pub event_id: String,
    pub kind: EventType,
    pub upload_id: UploadId,
    /// When the change it reports committed.
    pub occurred_at: Timestamp,
    /// The event's detail, as JSON text.
    pub detail: String,
}

/// How long the stream has to publish an event before the sweeper re-drives
/// it: the `by_due` time of an outbox item.
pub const OUTBOX_REDRIVE_AFTER_SECONDS: i64 = 120;

fn key(event_id: &str) -> Key {
    [(PK.into(), s(format!("EVENT#{event_id}"))), (SK.into(), s("EVENT"))].into_iter().collect()
}

impl Outboxed {
    fn to_item(&self) -> Item {
        let mut item = key(&self.event_id);
        item.insert("type".into(), s("event"));
        item.insert("event_id".into(), s(&self.event_id));
        item.insert("detail_type".into(), s(self.kind.as_str()));
        item.insert("detail".into(), s(&self.detail));
        item.insert("upload_id".into(), s(self.upload_id.as_str()));
        item.insert("created_at".into(), s(self.occurred_at.to_rfc3339()));
        let due = self.occurred_at.plus_seconds(OUTBOX_REDRIVE_AFTER_SECONDS);
        item.insert(GSI2PK.into(), s(due_partition(DUE_EVENT, due_shard(&self.upload_id))));
        item.insert(GSI2SK.into(), s(time_sort_key(due, &self.upload_id)));
        item
    }

    fn from_item(item: &Item) -> Result<Self, Error> {
        let r = Reader::new(item, "read outbox event");
        Ok(Self {
            event_id: r.str("event_id")?.to_owned(),
            kind: r.parsed("detail_type", EventType::parse)?,
            upload_id: r.parsed("upload_id", UploadId::parse)?,
            occurred_at: r.parsed("created_at", Timestamp::parse)?,
            detail: r.str("detail")?.to_owned(),
        })
    }

    /// The transaction item writing it. Unconditional: an event id names
    /// one change of one upload, which its transaction's own conditions
    /// let happen once.
    pub(super) fn put(&self, table: &str) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(self.to_item()))
            .build()
            .map_err(Error::internal("build outbox event"))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// An outbox item the `by_due` index lists as due for a re-drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEvent {
    pub event_id: String,
    pub upload_id: UploadId,
    pub due: Timestamp,
}

impl Store {
    /// The outbox events with these ids that are still there (not yet
    /// published), read together.
    pub async fn outbox_events(&self, ids: &[String]) -> Result<Vec<Outboxed>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let items = self.get_many(ids.iter().map(|id| key(id)).collect(), "read outbox events").await?;
        items.iter().map(Outboxed::from_item).collect()
    }

    /// Removes a published event from the outbox.
    pub async fn clear_outbox_event(&self, event_id: &str) -> Result<(), Error> {
        super::retry_conflicts(|| {
            self.client.delete_item().table_name(&self.table).set_key(Some(key(event_id))).send()
        })
        .await
        .map_err(Error::aws("clear outbox event"))?;
        Ok(())
    }

    /// One page of shard `shard`'s outbox events due for a re-drive before
    /// `before`, oldest first.
    pub async fn due_outbox_events(
        &self,
        shard: u32,
        before: Timestamp,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(super::DueItems<DueEvent>, Option<Item>), Error> {
        let (items, next) = self.due_page(DUE_EVENT, shard, before, limit, start, "list due outbox events").await?;
        let events = super::each(&items, |item| {
            let r = Reader::new(item, "list due outbox events");
            let due = r.str(GSI2SK)?.split('#').next().and_then(Timestamp::parse);
            Ok(DueEvent {
                event_id: r.str(PK)?.trim_start_matches("EVENT#").to_owned(),
                upload_id: r.parsed("upload_id", UploadId::parse)?,
                due: due.ok_or_else(|| r.broken(GSI2SK, "is malformed"))?,
            })
        });
        Ok((events, next))
    }
}
