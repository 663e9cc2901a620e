//! The DynamoDB session model: one table, four item types, and every
//! conditional write the service makes.
//!
//! # Item layout
//!
//! Keys are the string attributes `pk` (partition) and `sk` (sort).
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | upload session | `UPLOAD#<upload_id>` | `SESSION` | `owner`, `status` (`pending`/`completed`), `filename`, `content_type`, `size`, `object_key`, `mp_upload_id`, `part_size`, `part_count` (multipart only), `checksum_algorithm` and `checksums` (binary: the declared digests concatenated; only when declared), `created_at`, `expires_at`, `completed_at`, `version`, `ttl` (pending only) |
//! | API key | `APIKEY#<sha256 hex of the key>` | `APIKEY` | `owner`, `created_at` (the plain key is never stored) |
//! | owner usage | `OWNER#<owner>` | `USAGE` | `bytes_used`: the sum of the sizes of the owner's completed uploads; `bytes_reserved`: of its pending sessions' declared sizes; `bytes_held`: the two together, what the quota limits; `pending_count`: its pending sessions |
//! | cleanup task | `CLEANUP#<upload_id>` | `CLEANUP` | `owner`, `bucket`, `object_key`, `mp_upload_id` (optional), `created_at`, `final_pass_at`, `attempts`, `deletion_token` (the `ClientRequestToken` of the deletion that wrote it) |
//! | cursor secret | `CONFIG` | `CURSOR_SECRET` | `secret`: 32 random bytes (hex) keying list cursors' HMAC, created on first use |
//! | token secret | `CONFIG` | `TOKEN_SECRET` | `secret`: the same, keying browser tokens' HMAC, created by the first mint |
//! | token counter | `RATE#<sha256 hex of a key>` | `WINDOW#<unix seconds>` | `requests`: requests of the key's browser tokens in that 60 s window; `ttl` one window after it ends |
//!
//! Two sparse global secondary indexes:
//!
//! - `by_owner` (`gsi1pk` = `OWNER#<owner>`, `gsi1sk` = `<created_at>#<upload_id>`):
//!   an owner's sessions, newest first, projecting only what a list shows
//!   (`upload_id`, `status`, `filename`, `content_type`, `size`,
//!   `created_at`, `expires_at`, `completed_at`). Only session items carry it.
//! - `by_due` (`gsi2pk`, `gsi2sk` = `<due time>#<upload_id>`): work that
//!   falls due, in [`layout::DUE_SHARDS`] shards by upload id.
//!   `gsi2pk` = `DUE#PENDING#<shard>` on pending sessions (due at
//!   `expires_at`, or shortly after a confirm marked them completing; for
//!   the sweeper), `DUE#CLEANUP#<shard>` on cleanup tasks (due at their
//!   `final_pass_at`, later once re-driven; for re-driving). Completing a session removes its `gsi2pk`. It projects
//!   only what the sweeper reads: `upload_id`, `owner`, `expires_at`,
//!   `completing_at`, `attempts`.
//!
//! `ttl` (epoch seconds) is the table's TTL attribute. Token counters and
//! pending sessions carry it: sessions set a grace period past `expires_at`, so the sweeper, which
//! deletes through the same transaction as a client delete, always comes
//! first; cleanup tasks and completed sessions never expire by TTL.
//!
//! # Writes
//!
//! - Session deletion is one `TransactWriteItems`: delete the session on
//!   condition `owner = :caller AND version = :read_version`; release its
//!   size on the owner's usage (from `bytes_used` for a completed session,
//!   from `bytes_reserved` and `pending_count` for a pending one, and from
//!   `bytes_held` either way; condition: what is released is there); put the
//!   cleanup task (condition: it does not exist). See [`Store::delete_session`].
//!
//! A transaction whose answer is lost (no answer, a failure answered
//! after the SDK's retries, or a resent request that finds its own first
//! attempt applied) finds out whether it committed before answering: a
//! creation reads its session back (the id is its own), a deletion reads
//! the task it writes (which records the transaction's token), a completion
//! reads the session (completed is the answer, whoever completed it).
//! - Creation is one `TransactWriteItems`: put the session (condition: it
//!   does not exist); on the owner's usage `ADD bytes_reserved size,
//!   bytes_held size, pending_count 1` on condition that `bytes_held` stays
//!   within the quota and `pending_count` below the cap. See
//!   [`Store::create_session`].
//! - Completion is one `TransactWriteItems`: update the session on condition
//!   `owner`, `status = pending` and `version`; move its size from
//!   `bytes_reserved` to `bytes_used` (`bytes_held` unchanged, so the quota
//!   checked at creation holds). See [`Store::complete_session`].

mod cleanup;
mod item;
mod keys;
mod outbox;
mod secrets;
mod sessions;
mod usage;

pub use cleanup::CleanupTask;
pub use cleanup::DueTask;
pub use item::Item;
pub use layout::{due_shard, DUE_SHARDS};
pub use outbox::{DueEvent, Outboxed, OUTBOX_REDRIVE_AFTER_SECONDS};
pub use secrets::{Secret, RATE_WINDOW_SECONDS};
pub use sessions::{CompleteError, DeleteScope, DueSession, SessionPage};
pub use usage::Usage;

/// An item of a due page that could not be read: logged and skipped, so one
/// bad item never blocks the others.
#[derive(Debug)]
pub struct Unreadable {
    /// The item's `pk`, to find it.
    pub pk: String,
    pub error: crate::Error,
}

/// Each item of a page read on its own.
pub type DueItems<T> = Vec<Result<T, Unreadable>>;

fn each<T>(items: &[item::Item], read: impl Fn(&item::Item) -> Result<T, crate::Error>) -> DueItems<T> {
    items
        .iter()
        .map(|i| {
            read(i).map_err(|error| Unreadable {
                pk: i.get(layout::PK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default(),
                error,
            })
        })
        .collect()
}

use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::Client;

/// The table and the client that reaches it, the secrets this instance
/// has read from it, and the rate limit browser tokens are counted
/// against. Cheap to clone (clones share the secrets).
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
    secrets: std::sync::Arc<secrets::SecretCache>,
    key_rate_limit: Option<u64>,
    /// The bucket upload events name; `None`: no events are written.
    events_bucket: Option<String>,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), secrets: Default::default(), key_rate_limit: None, events_bucket: None }
    }

    /// Counts browser tokens' requests per minting key, `limit` a
    /// [`RATE_WINDOW_SECONDS`] window (see [`Store::count_token_request`]).
    pub fn with_key_rate_limit(mut self, limit: Option<u64>) -> Self {
        self.key_rate_limit = limit;
        self
    }

    /// Writes an upload event (see [`crate::events`]) in each completion,
    /// deletion and expiry transaction, naming `bucket` as the bytes'.
    pub fn with_events(mut self, bucket: impl Into<String>) -> Self {
        self.events_bucket = Some(bucket.into());
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A strongly consistent read of one item.
    async fn get(&self, key: item::Key, what: &'static str) -> Result<Option<item::Item>, crate::Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(crate::Error::aws(what))?;
        Ok(out.item)
    }

    /// Strongly consistent reads of several items at once (`BatchGetItem`,
    /// 100 keys a call), in no particular order; a missing item is simply
    /// absent and a key asked twice is read once. Keys DynamoDB leaves
    /// unprocessed (it throttled them) are asked again with backoff; still
    /// unprocessed after that, the read is `Busy`.
    async fn get_many(&self, keys: Vec<item::Key>, what: &'static str) -> Result<Vec<item::Item>, crate::Error> {
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<item::Key> = keys
            .into_iter()
            .filter(|k| {
                let text = |a: &str| k.get(a).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                seen.insert((text(layout::PK), text(layout::SK)))
            })
            .collect();
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let items = until_processed(chunk.to_vec(), |pending| async move {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(crate::Error::internal(what))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(crate::Error::aws(what))?;
                let items = out.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default();
                let unprocessed =
                    out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
                Ok((items, unprocessed))
            })
            .await?;
            found.extend(items);
        }
        Ok(found)
    }

    /// One page of shard `shard` of the `by_due` index: items of `kind` due
    /// before `before`, oldest first.
    async fn due_page(
        &self,
        kind: &str,
        shard: u32,
        before: crate::domain::Timestamp,
        limit: i32,
        start: Option<item::Item>,
        what: &'static str,
    ) -> Result<(Vec<item::Item>, Option<item::Item>), crate::Error> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(layout::BY_DUE)
            .key_condition_expression("gsi2pk = :kind AND gsi2sk < :before")
            .expression_attribute_values(":kind", item::s(layout::due_partition(kind, shard)))
            .expression_attribute_values(":before", item::s(before.to_rfc3339()))
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(crate::Error::aws(what))?;
        Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
    }
}

/// Sends `pending` with one batch call after another until DynamoDB has
/// processed all of it: what a call leaves unprocessed (DynamoDB throttled
/// it) is sent again after a backoff; still unprocessed after
/// [`sessions::ATTEMPTS`] calls, `Busy`. `send` answers with what the call
/// returned and what it left unprocessed; the returns are gathered.
async fn until_processed<T, O, F, Fut>(mut pending: Vec<T>, mut send: F) -> Result<Vec<O>, crate::Error>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<O>, Vec<T>), crate::Error>>,
{
    let mut returned = Vec::new();
    let mut attempt = 0;
    while !pending.is_empty() {
        if attempt == sessions::ATTEMPTS {
            return Err(crate::Error::Busy);
        }
        if attempt > 0 {
            sessions::backoff(attempt - 1).await;
        }
        // Boxed: the call's future stays out of the callers' future types,
        // which otherwise nest past rustc's query depth limit in cleanup.
        let (out, unprocessed) = Box::pin(send(pending)).await?;
        returned.extend(out);
        pending = unprocessed;
        attempt += 1;
    }
    Ok(returned)
}

/// How many times a single-item write is sent while DynamoDB answers
/// `TransactionConflictException`.
pub const SINGLE_WRITE_ATTEMPTS: u32 = 6;

/// Sends a single-item write (`PutItem`, `UpdateItem`, `DeleteItem`) again
/// while DynamoDB answers `TransactionConflictException`: the item is in a
/// transaction of another request at that moment (a create, confirm or
/// delete of the same owner or session), which DynamoDB documents as a
/// possible answer to a single-item write and the SDK does not retry. With
/// jittered backoff (10 ms doubling), at most [`SINGLE_WRITE_ATTEMPTS`]
/// times; the last answer is returned as it is (and becomes `Error::aws`'s
/// 429 with `Retry-After`). Every write sent through here is conditional or
/// idempotent, so sending it again is safe.
pub(crate) async fn retry_conflicts<T, E, F, Fut>(mut send: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(e) if e.code() == Some("TransactionConflictException") && attempt + 1 < SINGLE_WRITE_ATTEMPTS => {
                sessions::backoff(attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

pub mod layout {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const GSI1PK: &str = "gsi1pk";
    pub const GSI1SK: &str = "gsi1sk";
    pub const GSI2PK: &str = "gsi2pk";
    pub const GSI2SK: &str = "gsi2sk";
    pub const BY_OWNER: &str = "by_owner";
    pub const BY_DUE: &str = "by_due";
    pub const DUE_PENDING: &str = "DUE#PENDING";
    pub const DUE_CLEANUP: &str = "DUE#CLEANUP";
    pub const DUE_EVENT: &str = "DUE#EVENT";

    /// Shards of each kind of due work in the `by_due` index. Writes spread
    /// over them by upload id, so no index partition takes every owner's
    /// writes: at DynamoDB's 1,000 writes per second per partition, 32
    /// shards take 32,000 due-index writes per second per kind.
    pub const DUE_SHARDS: u32 = 32;

    /// The shard of upload `id`: from its first random byte.
    pub fn due_shard(id: &crate::domain::UploadId) -> u32 {
        let hex = &id.as_str()[4..6];
        u32::from_str_radix(hex, 16).unwrap_or(0) % DUE_SHARDS
    }

    /// The partition key of upload `id`'s session item.
    pub fn session_pk(id: &crate::domain::UploadId) -> String {
        format!("UPLOAD#{}", id.as_str())
    }

    /// The partition key of the owner's usage item, and of the owner's
    /// sessions in the `by_owner` index.
    pub fn owner_pk(owner: &crate::domain::OwnerId) -> String {
        format!("OWNER#{}", owner.as_str())
    }

    /// The partition key of upload `id`'s cleanup task.
    pub fn cleanup_pk(id: &crate::domain::UploadId) -> String {
        format!("CLEANUP#{}", id.as_str())
    }

    /// The partition key of an API key's item, from the key's digest.
    pub fn api_key_pk(digest_hex: &str) -> String {
        format!("APIKEY#{digest_hex}")
    }

    /// A sort key ordering upload `id`'s item by time `at` (`<time>#<id>`): the `by_due`
    /// due time, the `by_owner` creation time.
    pub fn time_sort_key(at: crate::domain::Timestamp, id: &crate::domain::UploadId) -> String {
        format!("{}#{}", at.to_rfc3339(), id.as_str())
    }

    /// The `by_due` partition key of `kind` in shard `shard`.
    pub fn due_partition(kind: &str, shard: u32) -> String {
        format!("{kind}#{shard:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::layout::*;
    use crate::domain::UploadId;

    #[test]
    fn due_work_spreads_over_every_shard() {
        let mut counts = [0u32; DUE_SHARDS as usize];
        for _ in 0..32_000 {
            counts[due_shard(&UploadId::generate()) as usize] += 1;
        }
        // 1,000 expected per shard; random ids stay well within ±25 %.
        assert!(counts.iter().all(|&c| (750..=1250).contains(&c)), "{counts:?}");
        assert_eq!(due_partition(DUE_PENDING, 7), "DUE#PENDING#07");
    }
}
