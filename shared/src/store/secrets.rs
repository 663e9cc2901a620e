//! The table's own secrets (`CONFIG`/`<name>`: 32 random bytes keying an
//! HMAC), and the per-key counter that puts browser tokens under their
//! minting key's rate limit.

use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;
use tokio::sync::OnceCell;

use super::item::{n, s, Key, Reader};
use super::layout::{PK, SK};
use super::{retry_conflicts, Store};
use crate::domain::{hex, random_bytes, unhex, KeyDigest, Timestamp};
use crate::error::Error;

/// A secret the table keeps, each keying one kind of MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    /// List cursors ([`crate::cursor`]).
    Cursor,
    /// Browser tokens ([`crate::domain::BrowserToken`]).
    Token,
}

impl Secret {
    fn sort_key(self) -> &'static str {
        match self {
            Secret::Cursor => "CURSOR_SECRET",
            Secret::Token => "TOKEN_SECRET",
        }
    }
}

/// Each secret as read once by this instance. Never printed.
#[derive(Default)]
pub(super) struct SecretCache {
    cursor: OnceCell<Vec<u8>>,
    token: OnceCell<Vec<u8>>,
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCache(<redacted>)")
    }
}

impl SecretCache {
    fn cell(&self, secret: Secret) -> &OnceCell<Vec<u8>> {
        match secret {
            Secret::Cursor => &self.cursor,
            Secret::Token => &self.token,
        }
    }
}

/// The window of the per-key counter, as the web ACL's rate rules count.
pub const RATE_WINDOW_SECONDS: i64 = 60;

fn secret_key(secret: Secret) -> Key {
    [(PK.into(), s("CONFIG")), (SK.into(), s(secret.sort_key()))].into_iter().collect()
}

impl Store {
    /// `secret`, read (or, the first time anyone needs it, created) once by
    /// this instance and kept. Creation is a conditional put, so concurrent
    /// first calls agree on one secret.
    pub async fn secret(&self, secret: Secret) -> Result<&[u8], Error> {
        self.secrets.cell(secret).get_or_try_init(|| self.read_or_create(secret)).await.map(Vec::as_slice)
    }

    async fn read_secret(&self, secret: Secret) -> Result<Option<Vec<u8>>, Error> {
        const WHAT: &str = "read secret";
        let Some(item) = self.get(secret_key(secret), WHAT).await? else {
            return Ok(None);
        };
        let hex = Reader::new(&item, WHAT).str("secret")?;
        unhex(hex)
            .filter(|b| b.len() == 32)
            .map(Some)
            .ok_or_else(|| Error::invariant(WHAT, "stored secret is malformed"))
    }

    async fn read_or_create(&self, secret: Secret) -> Result<Vec<u8>, Error> {
        for _ in 0..2 {
            if let Some(found) = self.read_secret(secret).await? {
                return Ok(found);
            }
            let mut item = secret_key(secret);
            item.insert("type".into(), s("config"));
            item.insert("secret".into(), s(hex(&random_bytes::<32>())));
            let put = retry_conflicts(|| {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
            })
            .await;
            match put {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(Error::aws("create secret")(e)),
            }
        }
        Err(Error::invariant("read secret", "secret vanished after creation"))
    }

    /// Counts one request of a browser token against the key that minted
    /// it: all of a key's tokens share one allowance of `key_rate_limit`
    /// requests a [`RATE_WINDOW_SECONDS`] window. Over it, `RateLimited`
    /// until the window ends. One `UpdateItem` on the key's counter for
    /// the window (`RATE#<digest>`/`<window start>`), which DynamoDB TTL
    /// removes after the window. No limit configured: no call.
    pub async fn count_token_request(&self, key: &KeyDigest, now: Timestamp) -> Result<(), Error> {
        let Some(limit) = self.key_rate_limit else {
            return Ok(());
        };
        let window = now.unix_seconds().div_euclid(RATE_WINDOW_SECONDS) * RATE_WINDOW_SECONDS;
        let ends = window + RATE_WINDOW_SECONDS;
        let counted = retry_conflicts(|| {
            self.client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(format!("RATE#{}", key.as_str())))
                .key(SK, s(format!("WINDOW#{window}")))
                .update_expression("ADD requests :one SET #ttl = :ttl, #type = :type")
                .condition_expression("attribute_not_exists(requests) OR requests < :limit")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":one", n(1u64))
                .expression_attribute_values(":limit", n(limit))
                .expression_attribute_values(":ttl", n(ends + RATE_WINDOW_SECONDS))
                .expression_attribute_values(":type", AttributeValue::S("rate".into()))
                .send()
        })
        .await;
        match counted {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {
                let wait = ((ends * 1000 - now.unix_millis()).max(1) as u64).div_ceil(1000);
                Err(Error::RateLimited(u32::try_from(wait).unwrap_or(u32::MAX)))
            }
            Err(e) => Err(Error::aws("count token request")(e)),
        }
    }
}
