//! Session items and the transactions that end their life: completion and
//! deletion.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::cleanup::CleanupTask;
use super::item::{n, s, Item, Reader};
use super::layout::*;
use super::{usage, Store};
use crate::domain::{
    ChecksumAlgorithm, Checksums, KeyDigest, Listed, Multipart, ObjectKey, OwnerId, Session, Status, Timestamp,
    TokenId, UploadId,
};
use crate::error::Error;
use crate::events::{self, EventType};

/// How long after `expires_at` DynamoDB TTL may drop a pending record. The
/// sweeper runs far more often than this, so it always deletes first.
pub const TTL_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// Attempts at a transaction that lost a race (record changed since read,
/// or DynamoDB reported a conflicting transaction) before giving up.
pub(super) const ATTEMPTS: u32 = 6;

fn key(id: &UploadId) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.into(), s(session_pk(id))), (SK.into(), s("SESSION"))])
}

fn to_item(session: &Session) -> Item {
    let mut item = key(&session.id);
    let mut put = |k: &str, v: AttributeValue| {
        item.insert(k.to_owned(), v);
    };
    put("type", s("session"));
    put("upload_id", s(session.id.as_str()));
    put("owner", s(session.owner.as_str()));
    put("status", s(session.status.as_str()));
    put("filename", s(&session.filename));
    put("content_type", s(&session.content_type));
    put("size", n(session.size));
    put("object_key", s(session.object_key.as_str()));
    put("created_at", s(session.created_at.to_rfc3339()));
    put("expires_at", s(session.expires_at.to_rfc3339()));
    put("version", n(session.version));
    put(GSI1PK, s(owner_pk(&session.owner)));
    put(GSI1SK, s(time_sort_key(session.created_at, &session.id)));
    if let Some(mp) = &session.multipart {
        put("mp_upload_id", s(&mp.s3_upload_id));
        put("part_size", n(mp.part_size));
        put("part_count", n(mp.part_count));
    }
    if let Some(c) = &session.checksums {
        put("checksum_algorithm", s(c.algorithm().as_str()));
        put("checksums", AttributeValue::B(Blob::new(c.stored())));
    }
    match session.status {
        Status::Pending => {
            put(GSI2PK, s(due_partition(DUE_PENDING, due_shard(&session.id))));
            put(GSI2SK, s(time_sort_key(session.expires_at, &session.id)));
            put("ttl", n(session.expires_at.unix_seconds() + TTL_GRACE_SECONDS));
        }
        Status::Completed => {
            if let Some(at) = session.completed_at {
                put("completed_at", s(at.to_rfc3339()));
            }
        }
    }
    if let Some(at) = session.completing_since {
        put("completing_at", s(at.to_rfc3339()));
    }
    if let Some(token) = &session.token_id {
        put("token_id", s(token.as_str()));
    }
    item
}

pub(super) fn from_item(item: &Item) -> Result<Session, Error> {
    let r = Reader::new(item, "read session");
    let multipart = match r.opt_str("mp_upload_id")? {
        None => None,
        Some(mp) => Some(Multipart {
            s3_upload_id: mp.to_owned(),
            part_size: r.num("part_size")?,
            part_count: r.num("part_count")?,
        }),
    };
    let checksums = match r.opt_parsed("checksum_algorithm", ChecksumAlgorithm::parse)? {
        None => None,
        Some(algorithm) => Some(r.blob("checksums").and_then(|b| {
            Checksums::from_stored(algorithm, b.to_vec()).ok_or_else(|| r.broken("checksums", "is malformed"))
        })?),
    };
    Ok(Session {
        id: r.parsed("upload_id", UploadId::parse)?,
        owner: r.parsed("owner", OwnerId::parse)?,
        status: r.parsed("status", Status::parse)?,
        filename: r.str("filename")?.to_owned(),
        content_type: r.str("content_type")?.to_owned(),
        size: r.num("size")?,
        object_key: r.parsed("object_key", ObjectKey::from_stored)?,
        multipart,
        checksums,
        created_at: r.parsed("created_at", Timestamp::parse)?,
        expires_at: r.parsed("expires_at", Timestamp::parse)?,
        completed_at: r.opt_parsed("completed_at", Timestamp::parse)?,
        completing_since: r.opt_parsed("completing_at", Timestamp::parse)?,
        token_id: r.opt_parsed("token_id", TokenId::parse)?,
        version: r.num("version")?,
    })
}

/// A pending session due for the sweeper, as the `by_due` index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueSession {
    pub id: UploadId,
    pub owner: OwnerId,
    pub expires_at: Timestamp,
    pub completing_since: Option<Timestamp>,
}

/// A session as the `by_owner` index projects it.
fn listed_from_item(item: &Item) -> Result<Listed, Error> {
    let r = Reader::new(item, "list sessions");
    Ok(Listed {
        id: r.parsed("upload_id", UploadId::parse)?,
        status: r.parsed("status", Status::parse)?,
        filename: r.str("filename")?.to_owned(),
        content_type: r.str("content_type")?.to_owned(),
        size: r.num("size")?,
        created_at: r.parsed("created_at", Timestamp::parse)?,
        expires_at: r.parsed("expires_at", Timestamp::parse)?,
        completed_at: r.opt_parsed("completed_at", Timestamp::parse)?,
    })
}

/// Which sessions a deletion may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteScope {
    /// Any of the owner's sessions (a client's delete).
    Any,
    /// Only a session still pending and past `expires_at` at this instant,
    /// and not being completed (the sweeper's); anything else is left alone
    /// and reported as `None`.
    ExpiredPending(Timestamp),
}

/// One page of an owner's sessions, newest first.
#[derive(Debug, Clone)]
pub struct SessionPage {
    pub sessions: Vec<Listed>,
    /// The `by_owner` sort key of the last session, when more may follow.
    pub last: Option<String>,
}

/// Why a completion was refused.
#[derive(Debug)]
pub enum CompleteError {
    /// No such session, or not the caller's.
    NotFound,
    /// The session is already completed (by a concurrent or earlier
    /// confirm): here it is.
    AlreadyCompleted(Box<Session>),
    Store(Error),
}

impl From<Error> for CompleteError {
    fn from(e: Error) -> Self {
        CompleteError::Store(e)
    }
}

impl Store {
    /// The owner of the key with `digest` and the session `id`, read together in one
    /// strongly consistent `BatchGetItem`: the owner is `None` for an unknown
    /// or revoked key, and the session is returned only when that owner owns
    /// it (another owner's session is `None`, exactly like a missing one).
    pub async fn caller_and_session(
        &self,
        digest: &KeyDigest,
        id: &UploadId,
    ) -> Result<(Option<OwnerId>, Option<Session>), Error> {
        const WHAT: &str = "read api key and session";
        let key_item = super::keys::key(digest);
        let key_pk = api_key_pk(digest.as_str());
        let items = self.get_many(vec![key_item.into_iter().collect(), key(id)], WHAT).await?;
        let pk = |item: &Item| item.get(PK).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let Some(owner) = items.iter().find(|i| pk(i) == key_pk) else {
            return Ok((None, None));
        };
        let owner = Reader::new(owner, WHAT).parsed("owner", OwnerId::parse)?;
        let session = match items.iter().find(|i| pk(i) == session_pk(id)) {
            Some(item) => Some(from_item(item)?).filter(|s: &Session| s.owner == owner),
            None => None,
        };
        Ok((Some(owner), session))
    }

    /// Reads a session for `owner`. Another owner's session is `None`,
    /// exactly like a missing one.
    pub async fn get_session(&self, owner: &OwnerId, id: &UploadId) -> Result<Option<Session>, Error> {
        let item = self.get(key(id), "read session").await?;
        match item {
            None => Ok(None),
            Some(item) => {
                let session = from_item(&item)?;
                Ok((&session.owner == owner).then_some(session))
            }
        }
    }

    /// Writes a new pending session and reserves its declared size against
    /// the owner's quota, in one transaction: refused with `QuotaExceeded`
    /// when the owner's used and reserved bytes would pass `quota`, with
    /// `TooManyPending` when the owner already has `max_pending` pending
    /// sessions. Fails if a session with the same id exists.
    pub async fn create_session(&self, session: &Session, quota: u64, max_pending: u64) -> Result<(), Error> {
        // What the new session reserves: its declared size, one pending session.
        let holding = session.holding();
        let Some(max_before) = quota.checked_sub(holding.held()) else {
            return Err(Error::QuotaExceeded);
        };
        let mut throttled = false;
        for attempt in 0..ATTEMPTS {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_item(session)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(Error::internal("build creation"))?;
            let reserve = Update::builder()
                .table_name(&self.table)
                .set_key(Some(usage::key(&session.owner)))
                .update_expression("ADD bytes_reserved :size, bytes_held :size, pending_count :one SET #type = :usage")
                .condition_expression(
                    "(attribute_not_exists(bytes_held) OR bytes_held <= :max_before) \
                     AND (attribute_not_exists(pending_count) OR pending_count < :max_pending)",
                )
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":size", n(holding.reserved))
                .expression_attribute_values(":one", n(holding.pending))
                .expression_attribute_values(":usage", s("usage"))
                .expression_attribute_values(":max_before", n(max_before))
                .expression_attribute_values(":max_pending", n(max_pending))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(Error::internal("build creation"))?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().update(reserve).build())
                .send()
                .await;
            let Err(err) = result else { return Ok(()) };
            let cancelled = match Cancelled::from(err, "create session") {
                Ok(cancelled) => cancelled.check("create session")?,
                // No answer, or a failure answered after the SDK's retries:
                // the transaction may have committed all the same. The
                // session it writes says.
                Err(e) => return if matches!(self.wrote_session(session).await, Ok(true)) { Ok(()) } else { Err(e) },
            };
            throttled = cancelled.throttled();
            let Cancelled { reasons } = cancelled;
            if failed(&reasons, 0) {
                // The id is ours alone (128 random bits): a session with it
                // was written by this very creation, whose answer was lost
                // and whose request was sent again (the SDK's retry).
                if self.wrote_session(session).await? {
                    return Ok(());
                }
                return Err(Error::invariant("create session", "a session with this id exists"));
            }
            if failed(&reasons, 1) {
                let old = reasons.get(1).and_then(|r| r.item()).cloned().unwrap_or_default();
                let held: u64 = Reader::new(&old, "create session").opt_num("bytes_held")?.unwrap_or(0);
                return Err(if held > max_before { Error::QuotaExceeded } else { Error::TooManyPending });
            }
            // A conflicting transaction on the owner's usage: try again.
            backoff(attempt).await;
        }
        Err(exhausted(throttled))
    }

    /// Whether the store holds `session` as its creation wrote it (same
    /// owner, same creation time): how a creation whose answer was lost
    /// learns that it committed.
    async fn wrote_session(&self, session: &Session) -> Result<bool, Error> {
        let Some(item) = self.get(key(&session.id), "read session").await? else {
            return Ok(false);
        };
        let written = to_item(session);
        Ok(["owner", "created_at"].iter().all(|k| item.get(*k).is_some_and(|v| written.get(*k) == Some(v))))
    }

    /// Marks `owner`'s pending session completed and moves its size from the
    /// owner's reserved bytes to `bytes_used`, in one transaction. The
    /// quota was enforced when the size was reserved, at creation.
    pub async fn complete_session(&self, owner: &OwnerId, id: &UploadId) -> Result<Session, CompleteError> {
        self.complete_session_from(owner, id, None).await
    }

    /// As [`Store::complete_session`], starting from `read`, the session as
    /// the caller just read it (strongly consistent), which saves reading it
    /// again; a retry reads it afresh.
    pub async fn complete_read_session(&self, read: Session) -> Result<Session, CompleteError> {
        self.complete_session_from(&read.owner.clone(), &read.id.clone(), Some(read)).await
    }

    async fn complete_session_from(
        &self,
        owner: &OwnerId,
        id: &UploadId,
        mut read: Option<Session>,
    ) -> Result<Session, CompleteError> {
        let mut throttled = false;
        for attempt in 0..ATTEMPTS {
            let known = match read.take() {
                Some(s) => Some(s),
                None => self.get_session(owner, id).await?,
            };
            let Some(session) = known else {
                return Err(CompleteError::NotFound);
            };
            let now = Timestamp::now();
            let Some(completed) = session.complete(now) else {
                return Err(CompleteError::AlreadyCompleted(Box::new(session)));
            };
            let mark = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(id)))
                .update_expression(
                    "SET #status = :completed, completed_at = :now, #version = #version + :one REMOVE gsi2pk, gsi2sk, #ttl, completing_at",
                )
                .condition_expression("#owner = :owner AND #status = :pending AND #version = :version")
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#version", "version")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":completed", s(Status::Completed.as_str()))
                .expression_attribute_values(":pending", s(Status::Pending.as_str()))
                .expression_attribute_values(":now", s(now.to_rfc3339()))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":owner", s(owner.as_str()))
                .expression_attribute_values(":version", n(session.version))
                .build()
                .map_err(Error::internal("build completion"))?;
            let count = Update::builder()
                .table_name(&self.table)
                .set_key(Some(usage::key(owner)))
                .update_expression("ADD bytes_used :size, bytes_reserved :minus, pending_count :minus_one")
                .condition_expression("bytes_reserved >= :size")
                .expression_attribute_values(":size", n(session.size))
                .expression_attribute_values(":minus", AttributeValue::N(format!("-{}", session.size)))
                .expression_attribute_values(":minus_one", n(-1))
                .build()
                .map_err(Error::internal("build completion"))?;
            let mut tx = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(mark).build())
                .transact_items(TransactWriteItem::builder().update(count).build());
            if let Some(bucket) = &self.events_bucket {
                tx = tx.transact_items(events::event(&completed, EventType::Completed, bucket, now).put(&self.table)?);
            }
            let result = tx.send().await;
            match result {
                Ok(_) => return Ok(completed),
                Err(err) => {
                    let cancelled = match Cancelled::from(err, "complete session") {
                        Ok(cancelled) => cancelled.check("complete session")?,
                        // No answer, or a failure answered after the SDK's
                        // retries: the transaction may have committed. A
                        // session found completed is the answer, whoever
                        // completed it.
                        Err(e) => {
                            return match self.get_session(owner, id).await {
                                Ok(Some(s)) if s.status == Status::Completed => {
                                    Err(CompleteError::AlreadyCompleted(Box::new(s)))
                                }
                                _ => Err(e.into()),
                            }
                        }
                    };
                    match cancelled {
                        Cancelled { reasons } if failed(&reasons, 1) && !failed(&reasons, 0) => {
                            return Err(Error::invariant(
                                "complete session",
                                format!("bytes_reserved of {owner} is below the size of {id}"),
                            )
                            .into())
                        }
                        // The session changed, a concurrent transaction touched
                        // it, or DynamoDB throttled: read it again and decide afresh.
                        cancelled => {
                            throttled = cancelled.throttled();
                            backoff(attempt).await
                        }
                    }
                }
            }
        }
        Err(exhausted(throttled).into())
    }

    /// Records that a confirm is completing `session`'s multipart upload
    /// (see [`Session::completing_since`]) and makes the session due for the
    /// sweeper at `sweep_at`, so that it is finished even if no client
    /// retries. Conditioned on the session being pending and unchanged since
    /// read; `None` when it changed (the caller reads it again).
    pub async fn mark_completing(&self, session: &Session, sweep_at: Timestamp) -> Result<Option<Session>, Error> {
        let now = Timestamp::now();
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&session.id)))
            .update_expression("SET completing_at = :now, gsi2sk = :due, #version = #version + :one")
            .condition_expression("#owner = :owner AND #status = :pending AND #version = :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", s(now.to_rfc3339()))
            .expression_attribute_values(":due", s(time_sort_key(sweep_at, &session.id)))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":owner", s(session.owner.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":version", n(session.version));
        match super::retry_conflicts(|| request.clone().send()).await {
            // The condition held: the session was pending.
            Ok(_) => Ok(session.mark_completing(now)),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(None),
            Err(e) => Err(Error::aws("mark session completing")(e)),
        }
    }

    /// Deletes `owner`'s session `id`: the one write that ends an upload.
    ///
    /// In one transaction, conditioned on the caller owning the record and
    /// on the record being unchanged since it was read: the session is
    /// removed, a completed session's size is released from the owner's
    /// `bytes_used`, and a durable cleanup task naming its bytes in `bucket`
    /// is written. Returns that task, or `None` when there is no such
    /// session for this owner (missing, another owner's, or already deleted).
    ///
    /// The task's final pass comes `final_pass_delay_seconds` after the
    /// deletion, once every presigned URL handed out has expired.
    pub async fn delete_session(
        &self,
        owner: &OwnerId,
        id: &UploadId,
        bucket: &str,
        final_pass_delay_seconds: i64,
        scope: DeleteScope,
    ) -> Result<Option<CleanupTask>, Error> {
        self.delete_session_from(owner, id, None, bucket, final_pass_delay_seconds, scope).await
    }

    /// As [`Store::delete_session`], starting from `read`, the session as
    /// the caller just read it (strongly consistent), which saves reading it
    /// again; the transaction's `version` condition still guards it, and a
    /// retry reads it afresh.
    pub async fn delete_read_session(
        &self,
        read: Session,
        bucket: &str,
        final_pass_delay_seconds: i64,
        scope: DeleteScope,
    ) -> Result<Option<CleanupTask>, Error> {
        let (owner, id) = (read.owner.clone(), read.id.clone());
        self.delete_session_from(&owner, &id, Some(read), bucket, final_pass_delay_seconds, scope).await
    }

    async fn delete_session_from(
        &self,
        owner: &OwnerId,
        id: &UploadId,
        mut read: Option<Session>,
        bucket: &str,
        final_pass_delay_seconds: i64,
        scope: DeleteScope,
    ) -> Result<Option<CleanupTask>, Error> {
        let mut throttled = false;
        for attempt in 0..ATTEMPTS {
            let known = match read.take() {
                Some(s) => Some(s),
                None => self.get_session(owner, id).await?,
            };
            let Some(session) = known else {
                return Ok(None);
            };
            if let DeleteScope::ExpiredPending(now) = scope {
                if !session.expirable(now) {
                    return Ok(None);
                }
            }
            let now = Timestamp::now();
            // The final pass also waits out a PUT of this session's largest
            // part begun just before its URL expired (S3 checks a URL's
            // expiry when a request starts, not when it ends).
            // (No URL lifetime to wait out, as in tests: nothing in flight.)
            let in_flight = match final_pass_delay_seconds {
                0 => 0,
                _ => crate::deletion::in_flight_allowance_seconds(&session),
            };
            let final_pass_at = now.plus_seconds(final_pass_delay_seconds + in_flight);
            let task = CleanupTask::for_session(&session, bucket, now, final_pass_at);
            // Names this attempt: DynamoDB answers a resent request with the
            // same token as the first (for 10 minutes), and the task records
            // it, so an attempt whose answer was lost can tell its own commit.
            let token = crate::domain::hex(&crate::domain::random_bytes::<16>());
            let remove = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(id)))
                .condition_expression("#owner = :owner AND #version = :version")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":owner", s(owner.as_str()))
                .expression_attribute_values(":version", n(session.version))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(Error::internal("build deletion"))?;
            let mut tx = self
                .client
                .transact_write_items()
                .client_request_token(&token)
                .transact_items(TransactWriteItem::builder().delete(remove).build());
            // Release what the session holds: its bytes, or its reservation.
            let holding = session.holding();
            let release = match session.status {
                Status::Completed => Update::builder()
                    .update_expression("ADD bytes_used :minus, bytes_held :minus")
                    .condition_expression("bytes_used >= :size"),
                Status::Pending => Update::builder()
                    .update_expression("ADD bytes_reserved :minus, bytes_held :minus, pending_count :minus_one")
                    .condition_expression("bytes_reserved >= :size")
                    .expression_attribute_values(":minus_one", AttributeValue::N(format!("-{}", holding.pending))),
            }
            .table_name(&self.table)
            .set_key(Some(usage::key(owner)))
            .expression_attribute_values(":minus", AttributeValue::N(format!("-{}", holding.held())))
            .expression_attribute_values(":size", n(holding.held()))
            .build()
            .map_err(Error::internal("build deletion"))?;
            tx = tx.transact_items(TransactWriteItem::builder().update(release).build());
            let record = Put::builder()
                .table_name(&self.table)
                .set_item(Some(task.to_item_by(&token)))
                .condition_expression("attribute_not_exists(pk)")
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build()
                .map_err(Error::internal("build deletion"))?;
            tx = tx.transact_items(TransactWriteItem::builder().put(record).build());
            if let Some(bucket) = &self.events_bucket {
                let kind = match scope {
                    DeleteScope::Any => EventType::Deleted,
                    DeleteScope::ExpiredPending(_) => EventType::Expired,
                };
                tx = tx.transact_items(events::event(&session, kind, bucket, now).put(&self.table)?);
            }

            match tx.send().await {
                Ok(_) => return Ok(Some(task)),
                Err(err) => {
                    let cancelled = match Cancelled::from(err, "delete session") {
                        Ok(cancelled) => cancelled.check("delete session")?,
                        // No answer, or a failure answered after the SDK's
                        // retries: the transaction may have committed. Its
                        // task says.
                        Err(e) => {
                            return match self.task_written_by(id, &token).await {
                                Ok(true) => Ok(Some(task)),
                                _ => Err(e),
                            }
                        }
                    };
                    throttled = cancelled.throttled();
                    let Cancelled { reasons } = cancelled;
                    let session_check = reasons.first();
                    let gone =
                        session_check.is_some_and(|r| r.code() == Some("ConditionalCheckFailed") && r.item().is_none());
                    if gone {
                        // Deleted between our read and write: by someone
                        // else, or by this very attempt, whose answer was
                        // lost and whose request was sent again (the SDK's
                        // retry, which DynamoDB would answer as the first;
                        // an emulator may apply it again). The task it
                        // found in place says which.
                        let found = reasons.get(2).and_then(|r| r.item());
                        return Ok(super::cleanup::written_by(found, &token).then_some(task));
                    }
                    if failed(&reasons, 1) && !failed(&reasons, 0) {
                        return Err(Error::invariant(
                            "delete session",
                            format!("the usage of {owner} is below what {id} holds"),
                        ));
                    }
                    // Changed since read (a confirm, say) or a conflicting
                    // transaction: read again and decide afresh.
                    backoff(attempt).await;
                }
            }
        }
        Err(exhausted(throttled))
    }
}

impl Store {
    /// One page of `owner`'s sessions, newest first, starting after the
    /// session whose `by_owner` sort key is `after`.
    pub async fn list_sessions(&self, owner: &OwnerId, limit: i32, after: Option<&str>) -> Result<SessionPage, Error> {
        let owner_key = owner_pk(owner);
        let start = match after {
            None => None,
            Some(sort) => {
                let id = sort
                    .rsplit_once('#')
                    .and_then(|(_, id)| UploadId::parse(id))
                    .ok_or_else(|| Error::invariant("list sessions", "cursor position is malformed"))?;
                let mut start = key(&id);
                start.insert(GSI1PK.into(), s(&owner_key));
                start.insert(GSI1SK.into(), s(sort));
                Some(start)
            }
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_OWNER)
            .key_condition_expression("gsi1pk = :owner")
            .expression_attribute_values(":owner", s(&owner_key))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(Error::aws("list sessions"))?;
        let sessions = out.items().iter().map(listed_from_item).collect::<Result<Vec<_>, _>>()?;
        let last = match out.last_evaluated_key() {
            Some(k) => Some(Reader::new(k, "list sessions").str(GSI1SK)?.to_owned()),
            None => None,
        };
        Ok(SessionPage { sessions, last })
    }

    /// One page of shard `shard`'s pending sessions due before `now` (past
    /// `expires_at`, or marked completing a while ago), oldest first, for
    /// the sweeper.
    pub async fn due_pending_sessions(
        &self,
        shard: u32,
        now: Timestamp,
        limit: i32,
        start: Option<Item>,
    ) -> Result<(super::DueItems<DueSession>, Option<Item>), Error> {
        let (items, next) = self.due_page(DUE_PENDING, shard, now, limit, start, "list due sessions").await?;
        let read = |item: &Item| {
            let r = Reader::new(item, "list due sessions");
            Ok(DueSession {
                id: r.parsed("upload_id", UploadId::parse)?,
                owner: r.parsed("owner", OwnerId::parse)?,
                expires_at: r.parsed("expires_at", Timestamp::parse)?,
                completing_since: r.opt_parsed("completing_at", Timestamp::parse)?,
            })
        };
        Ok((super::each(&items, read), next))
    }
}

/// A transaction DynamoDB cancelled, with its per-item reasons. Any other
/// failure is an internal error.
struct Cancelled {
    reasons: Vec<CancellationReason>,
}

impl Cancelled {
    fn from(err: SdkError<TransactWriteItemsError>, what: &'static str) -> Result<Self, Error> {
        if let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error() {
            return Ok(Cancelled { reasons: e.cancellation_reasons.clone().unwrap_or_default() });
        }
        Err(Error::aws(what)(err))
    }
}

impl Cancelled {
    /// A reason that retrying cannot fix (a malformed request) is an
    /// internal error; conditions, conflicts and throttling are handled by
    /// the transaction loops.
    fn check(self, what: &'static str) -> Result<Self, Error> {
        match self.reasons.iter().filter_map(|r| r.code()).find(|c| !HANDLED_REASONS.contains(c)) {
            Some(code) => Err(Error::invariant(what, format!("transaction cancelled: {code}"))),
            None => Ok(self),
        }
    }

    /// Whether DynamoDB throttled the transaction (rather than a conflict).
    fn throttled(&self) -> bool {
        self.reasons.iter().any(|r| matches!(r.code(), Some("ThrottlingError") | Some("ProvisionedThroughputExceeded")))
    }
}

/// Cancellation reason codes the transaction loops handle themselves.
const HANDLED_REASONS: &[&str] =
    &["None", "ConditionalCheckFailed", "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"];

/// What a transaction that kept losing answers: 503 if DynamoDB throttled
/// it the last time, 429 if it kept conflicting with the owner's other writes.
fn exhausted(throttled: bool) -> Error {
    if throttled {
        Error::Busy
    } else {
        Error::TooManyRequests
    }
}

fn failed(reasons: &[CancellationReason], index: usize) -> bool {
    reasons.get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
}

pub(super) async fn backoff(attempt: u32) {
    // 10, 20, 40 … ms with jitter from the clock's low bits.
    let base = 10u64 << attempt.min(6);
    let jitter = (Timestamp::now().unix_millis() as u64) % base.max(1);
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A session in any state the transitions reach: pending (multipart or
    /// not), marked completing, completed.
    fn session() -> impl Strategy<Value = Session> {
        (
            (any::<[u8; 16]>(), "[A-Za-z0-9][A-Za-z0-9._-]{0,63}", any::<String>(), any::<String>(), 1u64..=5 << 40),
            prop::option::of(("[A-Za-z0-9._-]{1,60}", 1u64..=5 << 30, 1u32..=10_000)),
            (0i64..=4_000_000_000_000, 60i64..=604_800, 0u8..3, any::<u64>()),
            prop::option::of((any::<bool>(), prop::collection::vec(any::<u8>(), 1..40))),
        )
            .prop_map(|((id, owner, filename, content_type, size), mp, (at, expiry, state, version), sums)| {
                let id = UploadId::parse(&format!("upl_{}", crate::domain::hex(&id))).unwrap();
                let owner = OwnerId::parse(&owner).unwrap();
                let created_at = Timestamp::from_unix_millis(at);
                let pending = Session {
                    object_key: ObjectKey::for_upload(&owner, &id),
                    id,
                    owner,
                    status: Status::Pending,
                    filename,
                    content_type,
                    size,
                    multipart: mp.map(|(s3_upload_id, part_size, part_count)| Multipart {
                        s3_upload_id,
                        part_size,
                        part_count,
                    }),
                    checksums: sums.map(|(sha, seed)| {
                        let algorithm = if sha { ChecksumAlgorithm::Sha256 } else { ChecksumAlgorithm::Crc32c };
                        Checksums::of_parts(algorithm, seed.chunks(7))
                    }),
                    created_at,
                    expires_at: created_at.plus_seconds(expiry),
                    completed_at: None,
                    completing_since: None,
                    token_id: (version & 1 == 1).then(TokenId::generate),
                    version: version >> 1,
                };
                let later = created_at.plus_seconds(30);
                match state {
                    0 => pending,
                    1 => pending.mark_completing(later).unwrap(),
                    _ => pending.mark_completing(later).unwrap().complete(later.plus_seconds(5)).unwrap(),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The item layout round-trips every reachable session, and only a
        /// pending one is due for the sweeper or may be dropped by TTL.
        #[test]
        fn items_round_trip_and_only_pending_sessions_are_due(s in session()) {
            let item = to_item(&s);
            prop_assert_eq!(from_item(&item).unwrap(), s.clone());
            let pending = s.status == Status::Pending;
            prop_assert_eq!(item.contains_key(GSI2PK), pending);
            prop_assert_eq!(item.contains_key(GSI2SK), pending);
            prop_assert_eq!(item.contains_key("ttl"), pending);
            prop_assert!(item.contains_key(GSI1PK) && item.contains_key(GSI1SK), "listed in every state");
            prop_assert_eq!(listed_from_item(&item).unwrap(), Listed::from(&s));
        }
    }
}
