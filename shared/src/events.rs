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
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::domain::{hex, Session, Timestamp, UploadId};
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

/// What a [`Publisher::publish`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Published and cleared (or to be cleared again: see `not_cleared`).
    pub published: Vec<String>,
    /// Not published for a passing reason (throttled, the bus or the table
    /// unavailable, or held behind its upload's completion): try again.
    pub retry: Vec<String>,
    /// Refused by the bus for good (an entry it will never take): left in
    /// the outbox for the sweeper, whose `StuckEvents` alarm surfaces it.
    pub refused: Vec<String>,
    /// Published, but their outbox items could not be deleted: they are
    /// published again later, with the same event id.
    pub not_cleared: usize,
}

/// How the bus answered one entry.
enum Put {
    Accepted,
    Transient,
    Refused(String),
}

/// Whether a `PutEvents` entry's error code is one that passes.
fn transient(code: &str) -> bool {
    matches!(code, "ThrottlingException" | "InternalFailure" | "InternalException" | "ServiceUnavailable")
        || code.contains("Throttl")
}

/// Sends outbox events to the bus and clears what it sent.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub client: aws_sdk_eventbridge::Client,
    pub bus: String,
    pub source: String,
    pub store: Store,
}

impl Publisher {
    /// Publishes those of `events` still in the outbox, and deletes the
    /// outbox item of each one the bus accepted.
    ///
    /// The outbox is read first (one consistent `BatchGetItem`): an event
    /// already published and cleared (a stream batch retried from an
    /// earlier failure, the sweeper racing the stream) is not sent again.
    /// Per upload, a completion is published before its deletion or
    /// expiry: completions go first, in calls of their own (with any
    /// completion of this batch's uploads still in the outbox, even if
    /// another record carries it), and a deletion waits while its
    /// upload's completion could not be published.
    ///
    /// `events` name them (event id, upload id): what is sent is what the
    /// outbox holds, so the caller need not have read it.
    pub async fn publish(&self, events: &[(String, UploadId)]) -> Outcome {
        let mut ids: Vec<String> = events.iter().map(|(id, _)| id.clone()).collect();
        for (_, upload) in events {
            let earlier = event_id(upload, EventType::Completed);
            if !ids.contains(&earlier) {
                ids.push(earlier);
            }
        }
        let present = match self.store.outbox_events(&ids).await {
            Ok(present) => present,
            Err(e) => {
                warn!(error = %crate::error::chain(&e), "could not read the outbox");
                return Outcome { retry: events.iter().map(|(id, _)| id.clone()).collect(), ..Outcome::default() };
            }
        };
        let (firsts, ends): (Vec<Outboxed>, Vec<Outboxed>) =
            present.into_iter().partition(|e| e.kind == EventType::Completed);
        let mut outcome = Outcome::default();
        let mut sent = self.put_all(&firsts, &mut outcome).await;
        let unpublished: Vec<&UploadId> = firsts
            .iter()
            .filter(|e| outcome.retry.contains(&e.event_id) || outcome.refused.contains(&e.event_id))
            .map(|e| &e.upload_id)
            .collect();
        let (held, ready): (Vec<Outboxed>, Vec<Outboxed>) =
            ends.into_iter().partition(|e| unpublished.contains(&&e.upload_id));
        outcome.retry.extend(held.into_iter().map(|e| e.event_id));
        sent.extend(self.put_all(&ready, &mut outcome).await);
        for id in &sent {
            // Published: a failure to clear it only means it is sent again
            // later (the same event id; consumers drop duplicates).
            if let Err(e) = self.store.clear_outbox_event(id).await {
                warn!(event_id = %id, error = %crate::error::chain(&e), "published event not cleared");
                outcome.not_cleared += 1;
            }
        }
        outcome.published = sent;
        outcome
    }

    /// Sends `events` 10 a call; the ids the bus accepted. Refusals are
    /// recorded in `outcome`.
    async fn put_all(&self, events: &[Outboxed], outcome: &mut Outcome) -> Vec<String> {
        let mut sent = Vec::new();
        for chunk in events.chunks(PUT_BATCH) {
            for (event, answer) in self.put(chunk).await {
                match answer {
                    Put::Accepted => sent.push(event.event_id.clone()),
                    Put::Transient => outcome.retry.push(event.event_id.clone()),
                    Put::Refused(code) => {
                        tracing::error!(event_id = %event.event_id, code = %code, "the bus refused an event");
                        outcome.refused.push(event.event_id.clone());
                    }
                }
            }
        }
        sent
    }

    /// One `PutEvents` of at most 10 entries; entries refused for a
    /// passing reason (throttled, internal) are sent again with backoff.
    async fn put<'a>(&self, events: &'a [Outboxed]) -> Vec<(&'a Outboxed, Put)> {
        let mut outcome: Vec<(&'a Outboxed, Put)> = events.iter().map(|e| (e, Put::Transient)).collect();
        let mut pending: Vec<usize> = (0..events.len()).collect();
        for attempt in 0..PUT_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let entries: Vec<PutEventsRequestEntry> = pending.iter().map(|&i| self.entry(&events[i])).collect();
            match self.client.put_events().set_entries(Some(entries)).send().await {
                Ok(out) => {
                    // One result per entry, in the order sent.
                    let results = out.entries.unwrap_or_default();
                    let mut again = Vec::new();
                    for (n, &i) in pending.iter().enumerate() {
                        match results.get(n) {
                            Some(r) if r.error_code.is_none() && r.event_id.is_some() => outcome[i].1 = Put::Accepted,
                            Some(r) if !r.error_code.as_deref().is_some_and(transient) => {
                                outcome[i].1 = Put::Refused(r.error_code.clone().unwrap_or_default());
                            }
                            _ => again.push(i),
                        }
                    }
                    pending = again;
                }
                Err(e) => warn!(error = %crate::error::chain(&e), attempt, "PutEvents failed"),
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
            .time(aws_smithy_types::DateTime::from(at))
            .build()
    }
}

/// The outbox event (its id, its upload's) a stream record's new image
/// inserts (the attributes as strings), if the image is one.
pub fn from_image(get: impl Fn(&str) -> Option<String>) -> Option<(String, UploadId)> {
    if get("type").as_deref() != Some("event") {
        return None;
    }
    Some((get("event_id")?, UploadId::parse(&get("upload_id")?)?))
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
