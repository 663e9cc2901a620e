//! `POST /tokens`: an owner's key mints a browser token, the short-lived
//! grant an app's backend hands to a page so that the key never reaches a
//! browser (see [`shared::domain::BrowserToken`]).
//!
//! Body (JSON, all optional): `ttl_seconds` (60 to 3,600, default 900),
//! `scope` (`own`, the default: only the uploads made with the token;
//! `owner`: all of the owner's, and their list), `max_size`, `content_type`
//! (a media type or `type/*`) and `upload_id` (that one upload only, which
//! must be the owner's). Answers 201 with the token and its claims. A token
//! cannot mint (403). One AWS call: the key's read (with the session's,
//! for `upload_id`); the token secret is read once per instance.

use lambda_http::{Body, Request, Response};
use shared::auth::{self, Credential};
use shared::config::ConfigError;
use shared::domain::{Timestamp, TokenGrant};
use shared::http::{self, Operation, Reply};
use shared::store::{Secret, Store};
use shared::{aws, Error};
use tracing::Span;

pub const OPERATION: Operation = Operation { name: "mint-token", failure: "Failed to mint token" };

/// What minting needs: the table (keys, sessions, the token secret).
#[derive(Debug, Clone)]
pub struct Deps {
    pub store: Store,
}

impl Deps {
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { store: aws::Env::load().await?.store() })
    }
}

pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let credential = http::credentials(&req)?;
        http::json_content_type(&req)?;
        let grant = TokenGrant::parse(http::body(&req))?;
        // With `upload_id`, the session is read in the key's call.
        let (caller, session) = match &grant.upload_id {
            None => (auth::authenticate(&deps.store, &credential).await?, None),
            Some(id) => {
                let (caller, session) = auth::authenticate_for(&deps.store, &credential, id).await?;
                (caller, Some(session))
            }
        };
        caller.may_mint()?;
        if let Some(session) = session {
            session.ok_or(Error::NotFound)?;
        }
        let Credential::Key(key) = &credential else { return Err(Error::Forbidden(auth::NO_MINTING)) };
        let secret = deps.store.secret(Secret::Token).await?;
        let token = grant.mint(key.digest(), Timestamp::now());
        Span::current().record("token_id", token.id.as_str());
        Ok(Reply::created(api::Token {
            token: token.encode(secret),
            token_id: token.id.as_str().to_owned(),
            expires_at: token.expires_at.to_rfc3339(),
            scope: token.scope,
            max_size: token.max_size,
            content_type: token.content_type.clone(),
            upload_id: token.upload_id.as_ref().map(|id| id.as_str().to_owned()),
        }))
    })
    .await
}
