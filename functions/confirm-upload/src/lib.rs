//! `POST /uploads/{upload_id}/confirm`: checks that the bytes really are in
//! S3, then marks the session completed and counts its size, in one
//! transaction that also enforces the quota.
//!
//! Single `PUT`: the object must exist with exactly the declared size.
//! Multipart: every part must be there with its expected size; the upload is
//! completed from the parts S3 lists (a retry after S3 completed it finds the
//! object instead). A confirm racing a delete either commits first (and the
//! delete then releases the size) or finds the record gone (404): usage is
//! never counted for a deleted upload.

use std::collections::HashSet;

use lambda_http::{Body, Request, Response};
use shared::domain::Session;
use shared::error::chain;
use shared::http::{self, Operation, Reply};
use shared::progress::{self, Held};
use shared::store::CompleteError;
use shared::uploads::Uploads;
use shared::{views, Error};
use tracing::warn;

pub const OPERATION: Operation = Operation { name: "confirm-upload", failure: "Failed to confirm upload" };

pub async fn handle(deps: &Uploads, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let (owner, id) = http::caller_and_path_id(&deps.store, &req).await?;
        let session = deps.open_session(&owner, &id).await?;
        // Refuse early what the transaction would refuse, before S3 work.
        if deps.store.bytes_used(&owner).await?.saturating_add(session.size) > deps.policy.quota_bytes {
            return Err(Error::QuotaExceeded);
        }
        verify_bytes(deps, &session).await?;
        // Untag before the commit: a completed upload's object must never
        // carry the tag the lifecycle rule expires. If the commit fails, the
        // tag goes back.
        deps.objects.mark_completed(&deps.bucket, &session.object_key).await?;
        let completed = match deps.store.complete_session(&owner, &id, deps.policy.quota_bytes).await {
            Ok(completed) => completed,
            Err(e) => {
                if let Err(tag) = deps.objects.mark_pending(&deps.bucket, &session.object_key).await {
                    warn!(error = %chain(&tag), "could not re-tag the object of an unconfirmed session");
                }
                return Err(match e {
                    CompleteError::NotFound => Error::NotFound,
                    CompleteError::AlreadyCompleted => Error::AlreadyCompleted,
                    CompleteError::QuotaExceeded => Error::QuotaExceeded,
                    CompleteError::Store(e) => e,
                });
            }
        };
        Ok(Reply::ok(views::session(&completed)))
    })
    .await
}

/// Makes sure S3 holds the session's bytes as one object of the declared
/// size, completing its multipart upload if need be.
async fn verify_bytes(deps: &Uploads, s: &Session) -> Result<(), Error> {
    let held = progress::inspect(&deps.objects, &deps.bucket, s).await?;
    if let Held::Parts(parts) = &held {
        let expected: Vec<(u32, u64)> = views::parts(s).collect();
        let missing = held.missing(s);
        let held_numbers: HashSet<u32> = parts.iter().map(|p| p.part_number).collect();
        let misfit = |n: &u32| held_numbers.contains(n);
        if missing.iter().any(misfit) || parts.iter().any(|p| p.part_number as usize > expected.len()) {
            return Err(Error::SizeMismatch);
        }
        if !missing.is_empty() {
            return Err(Error::BytesMissing);
        }
        let mp = s.multipart.as_ref().ok_or_else(|| Error::invariant("confirm", "parts without a multipart upload"))?;
        // `false`: S3 no longer knows the upload (completed by a concurrent
        // confirm, say); the object check below decides.
        deps.objects.complete_multipart(&deps.bucket, &s.object_key, &mp.s3_upload_id, parts).await?;
    }
    match deps.objects.object_size(&deps.bucket, &s.object_key).await? {
        None => Err(Error::BytesMissing),
        Some(size) if size != s.size => Err(Error::SizeMismatch),
        Some(_) => Ok(()),
    }
}
