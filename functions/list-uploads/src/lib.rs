//! `GET /uploads?limit=&cursor=`: the caller's sessions, newest first.
//!
//! `limit` is 1 to 100 (default 50). `next_cursor` is present while more may
//! follow; it is opaque, bound to the caller and signed (see
//! [`shared::cursor`]), so a forged cursor or another owner's is a 400.

use lambda_http::{Body, Request, Response};
use shared::config::ConfigError;
use shared::http::{self, Operation, Reply};
use shared::store::{Secret, Store};
use shared::{auth, aws, cursor, views, Error};

pub const OPERATION: Operation = Operation { name: "list-uploads", failure: "Failed to list uploads" };
pub const DEFAULT_LIMIT: i32 = 50;
pub const MAX_LIMIT: i32 = 100;

#[derive(Debug)]
pub struct Deps {
    pub store: Store,
}

impl Deps {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(aws::Env::load().await?.store()))
    }
}

fn parse_limit(raw: Option<String>) -> Result<i32, Error> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v.parse().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or(Error::Invalid("Invalid limit")),
    }
}

pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    http::serve(req, OPERATION, |req| async move {
        let credential = http::credentials(&req)?;
        let limit = parse_limit(http::query_param(&req, "limit", "Invalid limit")?)?;
        let raw_cursor = http::query_param(&req, "cursor", "Invalid cursor")?;
        let caller = auth::authenticate(&deps.store, &credential).await?;
        caller.may_list()?;
        let owner = caller.owner;
        let after = match raw_cursor {
            None => None,
            Some(c) => Some(
                cursor::decode(deps.store.secret(Secret::Cursor).await?, &owner, &c)
                    .ok_or(Error::Invalid("Invalid cursor"))?,
            ),
        };
        let page = deps.store.list_sessions(&owner, limit, after.as_deref()).await?;
        let next = match page.last {
            Some(last) => Some(cursor::encode(deps.store.secret(Secret::Cursor).await?, &owner, &last)),
            None => None,
        };
        let uploads = page.sessions.iter().map(views::listed).collect();
        Ok(Reply::ok(api::Page { uploads, next_cursor: next }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), 50);
        assert_eq!(parse_limit(Some("1".into())).unwrap(), 1);
        assert_eq!(parse_limit(Some("100".into())).unwrap(), 100);
        for bad in ["0", "101", "-1", "abc", "", "1.5", "99999999999"] {
            assert_eq!(parse_limit(Some(bad.into())).unwrap_err().to_string(), "Invalid limit", "{bad}");
        }
    }
}
