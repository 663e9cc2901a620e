//! `GET /uploads/{upload_id}`: one of the caller's sessions. For a pending
//! session, also which parts S3 already holds and which are missing, so a
//! client can resume; for a completed one, a short-lived presigned `GET` of
//! its bytes (signed locally, no call to S3).

use lambda_http::{Body, Request, Response};
use shared::domain::Status;
use shared::http::{self, Operation, Reply};
use shared::uploads::Uploads;
use shared::{progress, views};

pub const OPERATION: Operation = Operation { name: "get-upload", failure: "Failed to read upload" };

pub async fn handle(deps: &Uploads, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let (_, session) = http::caller_and_path_session(&deps.store, &req).await?;
        let mut body = views::session(&session);
        match session.status {
            Status::Pending => {
                let held = progress::inspect(&deps.objects, &deps.bucket, &session).await?;
                let mut upload = views::transfer(&session);
                upload.parts_received = Some(views::part_numbers(held.received(&session)));
                upload.parts_missing = Some(views::part_numbers(held.missing(&session)));
                body.upload = Some(upload);
            }
            Status::Completed => {
                body.download = Some(views::download(&deps.objects, &deps.bucket, &session, &deps.policy).await?);
            }
        }
        Ok(Reply::ok(body))
    })
    .await
}
