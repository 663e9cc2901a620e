//! `DELETE /uploads/{upload_id}` and `DELETE /uploads` with `x-upload-id`.
//!
//! Cheap checks first, with no I/O: a missing or malformed key is a 401, a
//! missing or malformed id a 400. Then one read resolves the key to its
//! owner and fetches the session (a consistent `BatchGetItem`), the
//! owner-conditioned delete transaction runs (see
//! [`shared::store::Store::delete_session`]), and the cleanup message
//! follows the commit: three AWS calls.

use lambda_http::{Body, Request, Response};
use shared::config::ConfigError;
use shared::deletion::Deleter;
use shared::http::{self, Operation, Reply};
use shared::store::DeleteScope;
use shared::{auth, aws, Error};

pub const OPERATION: Operation = Operation { name: "delete-upload", failure: "Failed to delete upload record" };

/// What deleting needs: the delete path (session store, cleanup queue, the
/// bucket its tasks name).
#[derive(Debug, Clone)]
pub struct Deps {
    pub deleter: Deleter,
}

impl Deps {
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { deleter: aws::Env::load().await?.deleter() })
    }
}

pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let credential = http::credentials(&req)?;
        let id = match http::path_upload_id(&req) {
            Some(id) => id?,
            None => http::header_upload_id(&req)?,
        };
        let (caller, session) = auth::authenticate_for(&deps.deleter.store, &credential, &id).await?;
        let session = session.ok_or(Error::NotFound)?;
        caller.may_reach(&session)?;
        deps.deleter.delete_read(session, DeleteScope::Any).await?.ok_or(Error::NotFound)?;
        Ok(Reply::ok(api::Deleted { message: format!("Upload {id} deleted successfully") }))
    })
    .await
}
