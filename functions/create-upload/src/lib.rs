//! `POST /uploads`: opens an upload session.
//!
//! Body `{"filename", "content_type", "size"}`, as JSON: a `Content-Type`
//! other than `application/json` is a 415 (none at all is read as JSON).
//! Optionally `part_size` (the client's plan) and `checksum_algorithm` with
//! `checksums`, one per `PUT`, signed into each presigned URL so that S3
//! refuses other bytes (see `shared::domain::Checksums`).
//! Below the multipart threshold the answer carries one presigned `PUT`
//! (content type and length signed);
//! at or above it, an S3 multipart upload is started and the answer carries a
//! presigned `PUT` per part (at most 1,000; the resume route gives the rest).
//! The session is written on condition that it does not exist yet, in one
//! transaction with its reservation against the owner's quota: two AWS calls
//! for a single `PUT` (the key's read, the transaction), four for multipart
//! (plus the usage read that refuses before any S3 work, and
//! `CreateMultipartUpload`).

use lambda_http::{Body, Request, Response};
use shared::domain::{Multipart, NewUpload, ObjectKey, Plan, Session, Status, Timestamp, UploadId};
use shared::error::chain;
use shared::http::{self, Operation, Reply};
use shared::uploads::Uploads;
use shared::{auth, views, Error};
use tracing::{warn, Span};

pub const OPERATION: Operation = Operation { name: "create-upload", failure: "Failed to create upload" };

pub async fn handle(deps: &Uploads, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let credential = http::credentials(&req)?;
        http::json_content_type(&req)?;
        let new = NewUpload::parse(http::body(&req), &deps.policy)?;
        let caller = auth::authenticate(&deps.store, &credential).await?;
        caller.may_create(&new)?;
        let owner = caller.owner.clone();

        let id = UploadId::generate();
        Span::current().record("upload_id", id.as_str());
        let object_key = ObjectKey::for_upload(&owner, &id);
        let multipart = match new.plan {
            Plan::Single => None,
            Plan::Multipart { part_size, part_count } => {
                // A pending session reserves its declared size against the
                // quota; the creation transaction enforces it for good. Before
                // starting an S3 multipart upload (a billed call, and one to
                // abort if the transaction refuses), refuse early what that
                // transaction would refuse. A single PUT starts nothing in S3,
                // so it goes straight to the transaction.
                let usage = deps.store.usage(&owner).await?;
                if usage.held().saturating_add(new.size) > deps.policy.quota_bytes {
                    return Err(Error::QuotaExceeded);
                }
                if usage.pending >= deps.policy.max_pending_uploads {
                    return Err(Error::TooManyPending);
                }
                Some(Multipart {
                    s3_upload_id: deps
                        .objects
                        .create_multipart(
                            &deps.bucket,
                            &object_key,
                            &new.content_type,
                            new.checksums.as_ref().map(|c| c.algorithm()),
                        )
                        .await?,
                    part_size,
                    part_count,
                })
            }
        };
        let now = Timestamp::now();
        let session = Session {
            id,
            owner,
            status: Status::Pending,
            filename: new.filename,
            content_type: new.content_type,
            size: new.size,
            object_key,
            multipart,
            checksums: new.checksums,
            created_at: now,
            expires_at: now.plus_seconds(deps.policy.session_expiry_seconds),
            completed_at: None,
            completing_since: None,
            token_id: caller.token_id(),
            version: 0,
        };
        if let Err(e) =
            deps.store.create_session(&session, deps.policy.quota_bytes, deps.policy.max_pending_uploads).await
        {
            // No record points at the multipart upload: abort it now (the
            // bucket's lifecycle rule is the backstop if this fails too).
            if let Some(mp) = &session.multipart {
                if let Err(abort) =
                    deps.objects.abort_multipart(&deps.bucket, &session.object_key, &mp.s3_upload_id).await
                {
                    warn!(error = %chain(&abort), "could not abort the multipart upload of a session never written");
                }
            }
            return Err(e);
        }

        let all: Vec<u32> = views::parts(&session).map(|(n, _)| n).collect();
        let mut body = views::session(&session);
        body.upload = Some(views::instructions(&deps.objects, &deps.bucket, &session, &all, &deps.policy).await?);
        Ok(Reply::created(body))
    })
    .await
}
