//! `POST /uploads/{upload_id}/resume`: fresh presigned URLs for the parts of
//! a pending session that S3 does not hold yet (presigned URLs expire long
//! before the session does).

use lambda_http::{Body, Request, Response};
use shared::http::{self, Operation, Reply};
use shared::uploads::Uploads;
use shared::{progress, views};

pub const OPERATION: Operation = Operation { name: "resume-upload", failure: "Failed to resume upload" };

pub async fn handle(deps: &Uploads, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let (_, session) = http::caller_and_path_session(&deps.store, &req).await?;
        let session = Uploads::open(session)?;
        let held = progress::inspect(&deps.objects, &deps.bucket, &session).await?;
        let missing = held.missing(&session);
        let mut upload = views::instructions(&deps.objects, &deps.bucket, &session, &missing, &deps.policy).await?;
        upload.parts_received = Some(views::part_numbers(held.received(&session)));
        let mut body = views::session(&session);
        body.upload = Some(upload);
        Ok(Reply::ok(body))
    })
    .await
}
