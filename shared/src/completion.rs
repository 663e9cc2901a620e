//! Confirming an upload: checking that S3 holds its bytes, completing its
//! multipart upload, and committing it as completed. Shared by the confirm
//! function and the sweeper (which finishes completions no client came back
//! for).
//!
//! Written for many confirms of one upload at once, retries after lost
//! responses, and failures at every step:
//!
//! - **Idempotent.** A completed session is the answer, not an error: any
//!   number of confirms, concurrent or retried, end with the same completed
//!   session, counted once in usage (the commit is conditioned on the
//!   session still being pending at the version read).
//! - **The object of a completed upload never carries the expiring tag.**
//!   The tag is removed once the bytes are final and before the commit, and
//!   nothing ever puts it back: presigned `PUT`s carry `If-None-Match: *`,
//!   so once the object exists no URL can overwrite (and re-tag) it, and a
//!   completed multipart upload takes no more parts. A confirm that untagged
//!   and then failed to commit leaves a pending session whose object is
//!   untagged; its record still exists, so the sweeper expires it through
//!   the delete path, which removes the object (the tag is only the backstop
//!   for bytes no record points to).
//! - **Large multipart uploads.** S3 can take minutes to complete 10,000
//!   parts, longer than API Gateway waits for an answer (29 s). Before
//!   calling `CompleteMultipartUpload` the session is marked completing;
//!   if S3 has not answered within the wait budget, the answer is
//!   `InProgress` (202 with `Retry-After`). A retry, or the sweeper shortly
//!   after, calls `CompleteMultipartUpload` again (S3 answers it for the
//!   same parts) or finds the object, and commits. While a session is
//!   completing, a confirm never answers "bytes missing".

use std::time::Duration;

use tokio::time::{timeout_at, Instant};

use crate::domain::{ChecksumType, OwnerId, Session, Status, Timestamp, UploadId};
use crate::error::Error;
use crate::objects::{Completion, PutChecksum};
use crate::progress::{self, Held};
use crate::store::CompleteError;
use crate::uploads::Uploads;
use crate::views;

/// How long after a confirm marked a session completing the sweeper
/// finishes it, if no retry has.
pub const SWEEP_COMPLETING_AFTER_SECONDS: i64 = 60;

/// A completion still unfinished this long after it started is abandoned:
/// once its session has expired, the sweeper expires it like any other.
pub const ABANDONED_AFTER_SECONDS: i64 = crate::domain::COMPLETION_ABANDONED_AFTER_SECONDS;

/// Time kept, before a confirm must answer, for what follows S3's work:
/// untagging the object and the commit (two calls; with the SDK's retries
/// of a throttled call, a few seconds at worst). S3's calls (`ListParts`,
/// `CompleteMultipartUpload`, `HeadObject`) must be done by then.
pub const COMMIT_RESERVE: Duration = Duration::from_secs(3);

/// What a confirm achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// The session is completed (now, or by an earlier or concurrent confirm).
    Completed(Session),
    /// S3 is still completing the multipart upload; confirm again later.
    InProgress(Session),
}

/// How often a confirm starts over after its session changed under it (a
/// concurrent confirm or delete) before it answers 429.
const RESTARTS: u32 = 3;

/// Confirms `owner`'s upload `id`, answering by `answer_by` and waiting at
/// most `wait` for S3 to complete a multipart upload.
pub async fn confirm(
    deps: &Uploads,
    owner: &OwnerId,
    id: &UploadId,
    answer_by: Instant,
    wait: Duration,
) -> Result<Confirmed, Error> {
    let session = deps.store.get_session(owner, id).await?.ok_or(Error::NotFound)?;
    confirm_read(deps, session, answer_by, wait).await
}

/// A confirm out of time before its commit: a completing session is still
/// in progress (202; a retry or the sweeper finishes it); otherwise nothing
/// was changed, and the client may simply confirm again (503 with
/// `Retry-After`).
fn out_of_time(session: Session) -> Result<Confirmed, Error> {
    match session.completing_since {
        Some(_) => Ok(Confirmed::InProgress(session)),
        None => Err(Error::Busy),
    }
}

/// Confirms the upload `session`, as the caller just read it (strongly
/// consistent; every write below is conditioned on its version, so a stale
/// read costs a retry, never a wrong answer). A single `PUT` takes one
/// `HeadObject`, the untagging and the commit.
///
/// Everything is done by `answer_by`: S3's calls by [`COMMIT_RESERVE`]
/// before it, so that the untagging and the commit are never cut short by
/// the caller's deadline (API Gateway's 29 s, the Lambda's timeout, the
/// sweeper's run). A confirm that runs out of time before its commit
/// answers as [`out_of_time`] says. S3's completion of a multipart upload
/// is waited for at most `wait` (`CONFIRM_WAIT_SECONDS` for a client; the
/// rest of its run for the sweeper).
pub async fn confirm_read(
    deps: &Uploads,
    session: Session,
    answer_by: Instant,
    wait: Duration,
) -> Result<Confirmed, Error> {
    let mut read = session;
    for _ in 0..RESTARTS {
        match confirm_once(deps, read.clone(), answer_by, wait).await? {
            Some(confirmed) => return Ok(confirmed),
            // Changed since read: a concurrent confirm or delete. Start over
            // from what the store holds now.
            None => read = deps.store.get_session(&read.owner, &read.id).await?.ok_or(Error::NotFound)?,
        }
    }
    Err(Error::TooManyRequests)
}

/// One pass of a confirm over the session as read; `None` when the session
/// changed since it was read.
async fn confirm_once(
    deps: &Uploads,
    mut session: Session,
    answer_by: Instant,
    wait: Duration,
) -> Result<Option<Confirmed>, Error> {
    if session.status == Status::Completed {
        return Ok(Some(Confirmed::Completed(session)));
    }
    if session.completing_since.is_none() && session.expires_at <= Timestamp::now() {
        return Err(Error::Expired);
    }
    let s3_by = answer_by.checked_sub(COMMIT_RESERVE).unwrap_or(answer_by);
    // The object's size, once something has told us.
    let mut object = None;
    if session.multipart.is_some() {
        let held = match timeout_at(s3_by, progress::inspect(&deps.objects, &deps.bucket, &session)).await {
            Ok(held) => held?,
            Err(_) => return out_of_time(session).map(Some),
        };
        match &held {
            Held::Object(size) => object = Some(*size),
            Held::Parts(parts) => {
                check_parts(&session, &held, parts)?;
                if session.completing_since.is_none() {
                    let sweep_at = Timestamp::now().plus_seconds(SWEEP_COMPLETING_AFTER_SECONDS);
                    session = match deps.store.mark_completing(&session, sweep_at).await? {
                        Some(marked) => marked,
                        // Changed since read: a concurrent confirm or delete.
                        None => return Ok(None),
                    };
                }
                let mp = session
                    .multipart
                    .as_ref()
                    .ok_or_else(|| Error::invariant("confirm", "parts without a multipart upload"))?;
                let declared = session.checksums.as_ref();
                let completing =
                    deps.objects.complete_multipart(&deps.bucket, &session.object_key, &mp.s3_upload_id, parts, |n| {
                        PutChecksum::of(declared, n)
                    });
                let complete_by = Instant::now().checked_add(wait).map_or(s3_by, |w| w.min(s3_by));
                match timeout_at(complete_by, completing).await {
                    // Completed from exactly the parts checked above: the
                    // object has the session's size.
                    Ok(Ok(Completion::Completed)) => object = Some(Some(session.size)),
                    // S3 no longer knows the upload (completed by a
                    // concurrent confirm, say): the object check decides.
                    Ok(Ok(Completion::Gone)) => {}
                    // Another completion of this upload is in flight (409):
                    // it, a retry or the sweeper finishes.
                    Ok(Ok(Completion::Conflict)) => return Ok(Some(Confirmed::InProgress(session))),
                    Ok(Err(e)) => return Err(e),
                    // Not answered in time. The request is dropped, and S3
                    // documents nothing of a completion whose caller went
                    // away: the session stays completing, and a retry or
                    // the sweeper (which gives it the rest of its run) calls
                    // CompleteMultipartUpload again, which S3 answers for
                    // the same parts, or finds the object.
                    Err(_) => return Ok(Some(Confirmed::InProgress(session))),
                }
            }
        }
    }
    let size = match object {
        Some(size) => size,
        None => {
            // A single PUT's object carries the checksum it was sent with:
            // read it in the same HeadObject.
            let algorithm = session.checksums.as_ref().filter(|_| session.multipart.is_none()).map(|c| c.algorithm());
            let stored =
                match timeout_at(s3_by, deps.objects.object(&deps.bucket, &session.object_key, algorithm)).await {
                    Ok(stored) => stored?,
                    Err(_) => return out_of_time(session).map(Some),
                };
            if let (Some(stored), Some(declared)) = (&stored, algorithm.and(session.checksums.as_ref())) {
                if stored.checksum.as_deref() != Some(declared.object_value(ChecksumType::FullObject).as_str()) {
                    return Err(Error::ChecksumMismatch);
                }
            }
            stored.map(|o| o.size)
        }
    };
    match size {
        // The multipart upload is gone and its object not there yet: S3 is
        // still completing it (a concurrent confirm's call).
        None if session.completing_since.is_some() => return Ok(Some(Confirmed::InProgress(session))),
        // Our read may predate a concurrent confirm's mark: ask the store again.
        None if session.multipart.is_some() => {
            return match deps.store.get_session(&session.owner, &session.id).await?.ok_or(Error::NotFound)? {
                s if s.status == Status::Completed => Ok(Some(Confirmed::Completed(s))),
                s if s.completing_since.is_some() => Ok(Some(Confirmed::InProgress(s))),
                _ => Err(Error::BytesMissing),
            };
        }
        None => return Err(Error::BytesMissing),
        Some(size) if size != session.size => return Err(Error::SizeMismatch),
        Some(_) => {}
    }
    // The untagging and the commit need their reserve: without it, answer
    // now rather than be cut off between the two.
    if Instant::now() >= s3_by {
        return out_of_time(session).map(Some);
    }
    // The bytes are final: untag before the commit, never re-tag.
    deps.objects.mark_completed(&deps.bucket, &session.object_key).await?;
    // The size was reserved against the quota at creation: completing it
    // cannot pass the quota.
    match deps.store.complete_read_session(session).await {
        Ok(completed) => Ok(Some(Confirmed::Completed(completed))),
        Err(CompleteError::AlreadyCompleted(done)) => Ok(Some(Confirmed::Completed(*done))),
        Err(CompleteError::NotFound) => Err(Error::NotFound),
        Err(CompleteError::Store(e)) => Err(e),
    }
}

/// Every part there with its expected size, no part beyond the last, and
/// each part's checksum, where S3 reports one, the declared one.
fn check_parts(s: &Session, held: &Held, parts: &[crate::objects::StoredPart]) -> Result<(), Error> {
    let declared = s.checksums.as_ref();
    for p in parts {
        if let (Some(stored), Some(declared)) = (&p.checksum, declared) {
            if declared.part(p.part_number).as_ref() != Some(stored) {
                return Err(Error::ChecksumMismatch);
            }
        }
    }
    let expected = views::parts(s).count();
    let missing = held.missing(s);
    let held_numbers: std::collections::HashSet<u32> = parts.iter().map(|p| p.part_number).collect();
    if missing.iter().any(|n| held_numbers.contains(n)) || parts.iter().any(|p| p.part_number as usize > expected) {
        return Err(Error::SizeMismatch);
    }
    if !missing.is_empty() {
        return Err(Error::BytesMissing);
    }
    Ok(())
}
