//! `POST /uploads/{upload_id}/confirm`: checks that the bytes really are in
//! S3, then marks the session completed and counts its size, in one
//! transaction that also enforces the quota (see [`shared::completion`]).
//!
//! 200 with the completed session, also when it was already completed (a
//! retry after a lost response, or a concurrent confirm). 202 with
//! `Retry-After` while S3 is still completing a large multipart upload; the
//! client confirms again (or the sweeper finishes it).

use std::time::Duration;

use lambda_http::{Body, Request, Response};
use shared::completion::{self, Confirmed};
use shared::http::{self, Operation, Reply};
use shared::uploads::Uploads;
use shared::views;

pub const OPERATION: Operation = Operation { name: "confirm-upload", failure: "Failed to confirm upload" };

/// Seconds a client is asked to wait before confirming again while S3
/// completes a multipart upload.
pub const RETRY_AFTER_SECONDS: u32 = 5;

pub async fn handle(deps: &Uploads, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let (_, session) = http::caller_and_path_session(&deps.store, &req).await?;
        // The whole confirm, S3's work and the commit, fits before API
        // Gateway's timeout and the Lambda's deadline; S3's completion of
        // a multipart upload is waited for at most CONFIRM_WAIT_SECONDS.
        let answer_by = http::answer_by(&req);
        let wait = Duration::from_secs(deps.policy.confirm_wait_seconds);
        Ok(match completion::confirm_read(deps, session, answer_by, wait).await? {
            Confirmed::Completed(session) => Reply::ok(views::session(&session)),
            Confirmed::InProgress(session) => {
                let mut body = views::session(&session);
                body.completion = Some(api::Completion::InProgress);
                Reply::accepted(body, RETRY_AFTER_SECONDS)
            }
        })
    })
    .await
}
