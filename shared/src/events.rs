//! Upload events for the app's backend: `upload.completed`, `upload.deleted`
//! and `upload.expired`, published to the stack's EventBridge bus.
//!
//! None lost, none invented: each event is an outbox item written in the
//! same DynamoDB transaction as the change it reports (the confirm's
//! completion, the delete, the sweeper's expiry; see
//! [`crate::store::Store::complete_read_session`] and
//! [`crate::store::Store::delete_read_session`]). A cancelled transaction
//! writes none. The publisher (DynamoDB Streams → `functions/publisher`)
//! sends it with `PutEvents`, then deletes the item; the sweeper re-drives
//! items the stream did not clear. So an event is published at least once,
//! always with the same `event_id`.
//!
//! # Schema (detail `schema_version` 1)
//!
//! `Source` is `EVENT_SOURCE` (the stack's), `DetailType` the event's type,
//! `Time` when the change committed. The detail:
//!
//! | field | |
//! |---|---|
//! | `schema_version` | `1`; a change that breaks consumers bumps it |
//! | `event_id` | `evt_` + 32 hex: the same on every delivery of this event |
//! | `type` | `upload.completed`, `upload.deleted` or `upload.expired` |
//! | `sequence` | the event's place in its upload's life: 1 completed, 2 deleted or expired |
//! | `occurred_at` | when the change committed (RFC 3339, ms) |
//! | `upload_id`, `owner` | |
//! | `bucket`, `key` | where the bytes are (or were: a deleted upload's are being removed) |
//! | `size`, `content_type`, `filename` | as the session holds them |
//! | `checksum` | `{algorithm, type, value}` when declared, else `null` |
//! | `status` | the session's status when the change happened: `completed` for a completion, `pending` or `completed` for a deletion, `pending` for an expiry |
//!
//! No API key, token or URL is ever in an event.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::domain::{hex, Session, Timestamp, UploadId};
use crate::error::Error;
use crate::store::{Outboxed, Store};

pub const SCHEMA_VERSION: u32 = 1;

/// What happened to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Completed,
    Deleted,
    Expired,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Completed => "upload.completed",
            EventType::Deleted => "upload.deleted",
            EventType::Expired => "upload.expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "upload.completed" => Some(EventType::Completed),
            "upload.deleted" => Some(EventType::Deleted),
            "upload.expired" => Some(EventType::Expired),
            _ => None,
        }
    }

    /// Its place in an upload's life: a completion comes first.
    pub fn sequence(self) -> u32 {
        match self {
            EventType::Completed => 1,
            EventType::Deleted | EventType::Expired => 2,
        }
    }
}

/// The id of `kind` for upload `id`: derived, not drawn, so every writer of
/// the same change (a retried transaction, a confirm racing the sweeper)
/// names the same event, and each upload has at most one of each kind.
pub fn event_id(id: &UploadId, kind: EventType) -> String {
    let digest = Sha256::digest(format!("upload-event/1\n{}\n{}", id.as_str(), kind.as_str()).as_bytes());
    format!("evt_{}", hex(&digest[..16]))
}

/// The event reporting `kind` of `session` (as it was when the change
/// committed) at `at`, its bytes in `bucket`.
pub fn event(session: &Session, kind: EventType, bucket: &str, at: Timestamp) -> Outboxed {
    let checksum = session.checksums.as_ref().map(|c| {
        let t = session.checksum_type();
        json!({"algorithm": c.algorithm().as_str(), "type": t.as_str(), "value": c.object_value(t)})
    });
    let id = event_id(&session.id, kind);
    let detail = json!({
        "schema_version": SCHEMA_VERSION,
        "event_id": id,
        "type": kind.as_str(),
        "sequence": kind.sequence(),
        "occurred_at": at.to_rfc3339(),
        "upload_id": session.id.as_str(),
        "owner": session.owner.as_str(),
        "bucket": bucket,
        "key": session.object_key.as_str(),
        "size": session.size,
        "content_type": session.content_type,
        "filename": session.filename,
        "checksum": checksum,
        "status": session.status.as_str(),
    });
    Outboxed { event_id: id, kind, upload_id: session.id.clone(), occurred_at: at, detail: detail.to_string() }
}

/// Attempts at the entries `PutEvents` refused (throttled, internal) before
/// an event is left to a later run.
const PUT_ATTEMPTS: u32 = 4;
/// `PutEvents` takes at most 10 entries a call.
const PUT_BATCH: usize = 10;

/// Sends outbox events to the bus and clears what it sent.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub client: aws_sdk_eventbridge::Client,
    pub bus: String,
    pub source: String,
    pub store: Store,
}

impl Publisher {
    /// Publishes `events` and deletes the outbox item of each one the bus
    /// accepted; returns the ids of those it could not publish (to try
    /// again later: the stream's retry, or the sweeper's re-drive).
    ///
    /// Per upload, a completion is published before its deletion or
    /// expiry: a deletion whose upload's completion is still in the outbox
    /// (not yet published) sends that completion first, in the same call.
    pub async fn publish(&self, events: Vec<Outboxed>) -> Vec<String> {
        let mut batch: Vec<Outboxed> = Vec::with_capacity(events.len());
        let ends: Vec<&Outboxed> = events.iter().filter(|e| e.kind != EventType::Completed).collect();
        if !ends.is_empty() {
            let pending: Vec<String> = ends
                .iter()
                .map(|e| event_id(&e.upload_id, EventType::Completed))
                .filter(|id| !events.iter().any(|e| &e.event_id == id))
                .collect();
            match self.store.outbox_events(&pending).await {
                Ok(earlier) => batch.extend(earlier),
                Err(e) => {
                    // Without knowing, publishing the ends could put them
                    // first: leave them for the retry.
                    warn!(error = %crate::error::chain(&e), "could not read the outbox for earlier events");
                    let (firsts, rest): (Vec<Outboxed>, Vec<Outboxed>) =
                        events.into_iter().partition(|e| e.kind == EventType::Completed);
                    let mut failed = Box::pin(self.publish_ordered(firsts)).await;
                    failed.extend(rest.into_iter().map(|e| e.event_id));
                    return failed;
                }
            }
        }
        // Completions first, then the rest, each in the order given.
        let (firsts, rest): (Vec<Outboxed>, Vec<Outboxed>) =
            events.into_iter().partition(|e| e.kind == EventType::Completed);
        batch.extend(firsts);
        batch.extend(rest);
        self.publish_ordered(batch).await
    }

    /// Sends `events` in order, 10 a call; an event whose upload had an
    /// earlier event fail in this run is held back with it.
    async fn publish_ordered(&self, events: Vec<Outboxed>) -> Vec<String> {
        let mut failed: Vec<String> = Vec::new();
        let mut failed_uploads: Vec<UploadId> = Vec::new();
        let mut sent: Vec<&Outboxed> = Vec::new();
        for chunk in events.chunks(PUT_BATCH) {
            let (held, ready): (Vec<&Outboxed>, Vec<&Outboxed>) =
                chunk.iter().partition(|e| failed_uploads.contains(&e.upload_id));
            failed.extend(held.iter().map(|e| e.event_id.clone()));
            for (event, ok) in self.put(&ready).await {
                if ok {
                    sent.push(event);
                } else {
                    failed.push(event.event_id.clone());
                    failed_uploads.push(event.upload_id.clone());
                }
            }
        }
        for event in sent {
            // Published: a failure to clear it only means it is sent again
            // later (the same event id; consumers drop duplicates).
            if let Err(e) = self.store.clear_outbox_event(&event.event_id).await {
                warn!(event_id = %event.event_id, error = %crate::error::chain(&e), "published event not cleared");
            }
        }
        failed
    }

    /// One `PutEvents` of at most 10 entries, the refused entries retried
    /// with backoff; each event with whether the bus accepted it.
    async fn put<'a>(&self, events: &[&'a Outboxed]) -> Vec<(&'a Outboxed, bool)> {
        let mut outcome: Vec<(&'a Outboxed, bool)> = events.iter().map(|e| (*e, false)).collect();
        let mut pending: Vec<usize> = (0..events.len()).collect();
        for attempt in 0..PUT_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let entries: Vec<PutEventsRequestEntry> = pending.iter().map(|&i| self.entry(events[i])).collect();
            let answer = self.client.put_events().set_entries(Some(entries)).send().await;
            match answer {
                Ok(out) => {
                    let results = out.entries.unwrap_or_default();
                    pending = pending
                        .into_iter()
                        .zip(results.iter().map(Some).chain(std::iter::repeat(None)))
                        .filter_map(|(i, r)| match r {
                            Some(r) if r.event_id.is_some() && r.error_code.is_none() => {
                                outcome[i].1 = true;
                                None
                            }
                            _ => Some(i),
                        })
                        .collect();
                }
                Err(e) => {
                    warn!(error = %crate::error::chain(&e), attempt, "PutEvents failed");
                }
            }
        }
        outcome
    }

    fn entry(&self, e: &Outboxed) -> PutEventsRequestEntry {
        let at = std::time::UNIX_EPOCH + Duration::from_millis(e.occurred_at.unix_millis().max(0) as u64);
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&self.source)
            .detail_type(e.kind.as_str())
            .detail(&e.detail)
            .resources(e.upload_id.as_str())
            .time(aws_smithy_types::DateTime::from(at))
            .build()
    }
}

/// An outbox event as a stream record's new image carries it (the
/// attributes as strings), if the image is one.
pub fn from_image(get: impl Fn(&str) -> Option<String>) -> Option<Outboxed> {
    if get("type").as_deref() != Some("event") {
        return None;
    }
    Some(Outboxed {
        event_id: get("event_id")?,
        kind: EventType::parse(&get("detail_type")?)?,
        upload_id: UploadId::parse(&get("upload_id")?)?,
        occurred_at: Timestamp::parse(&get("created_at")?)?,
        detail: get("detail")?,
    })
}

/// The detail of `event` as JSON.
pub fn detail(event: &Outboxed) -> Result<Value, Error> {
    serde_json::from_str(&event.detail).map_err(Error::internal("parse event detail"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_per_upload_and_type() {
        let a = UploadId::generate();
        let b = UploadId::generate();
        assert_eq!(event_id(&a, EventType::Completed), event_id(&a, EventType::Completed));
        assert_ne!(event_id(&a, EventType::Completed), event_id(&a, EventType::Deleted));
        assert_ne!(event_id(&a, EventType::Completed), event_id(&b, EventType::Completed));
        let id = event_id(&a, EventType::Expired);
        assert!(id.starts_with("evt_") && id.len() == 36, "{id}");
    }
}
