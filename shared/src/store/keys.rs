//! API key items: `APIKEY#<sha256>` → owner.

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{s, Reader};
use super::layout::{PK, SK};
use super::Store;
use crate::domain::{ApiKey, KeyDigest, OwnerId, Timestamp};
use crate::error::Error;

pub(super) fn key(digest: &KeyDigest) -> [(String, AttributeValue); 2] {
    [(PK.into(), s(super::layout::api_key_pk(digest.as_str()))), (SK.into(), s("APIKEY"))]
}

impl Store {
    /// The owner an API key belongs to, or `None` for an unknown or revoked key.
    pub async fn resolve_api_key(&self, api_key: &ApiKey) -> Result<Option<OwnerId>, Error> {
        match self.get(key(&api_key.digest()).into_iter().collect(), "resolve api key").await? {
            None => Ok(None),
            Some(item) => Reader::new(&item, "resolve api key").parsed("owner", OwnerId::parse).map(Some),
        }
    }

    /// Stores a new key's digest for `owner`. The plain key is not stored.
    pub async fn put_api_key(&self, api_key: &ApiKey, owner: &OwnerId) -> Result<(), Error> {
        let mut item: super::item::Item = key(&api_key.digest()).into_iter().collect();
        item.insert("type".into(), s("apikey"));
        item.insert("owner".into(), s(owner.as_str()));
        item.insert("created_at".into(), s(Timestamp::now().to_rfc3339()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(Error::aws("put api key"))?;
        Ok(())
    }

    /// Revokes a key: removes its digest, so the next request with it is a 401.
    /// Returns whether the key existed.
    pub async fn revoke_api_key(&self, api_key: &ApiKey) -> Result<bool, Error> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&api_key.digest()).into_iter().collect()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(Error::aws("revoke api key"))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

impl Store {
    /// The secret keying list cursors' HMAC: 32 random bytes kept in the
    /// table itself, created by whichever function first needs it (a
    /// conditional put, so concurrent first calls agree on one secret).
    pub async fn cursor_secret(&self) -> Result<Vec<u8>, Error> {
        let key: super::item::Key = [(PK.into(), s("CONFIG")), (SK.into(), s("CURSOR_SECRET"))].into_iter().collect();
        for _ in 0..2 {
            if let Some(item) = self.get(key.clone(), "read cursor secret").await? {
                let hex = Reader::new(&item, "read cursor secret").str("secret")?;
                return crate::domain::unhex(hex)
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| Error::invariant("read cursor secret", "stored secret is malformed"));
            }
            let mut item = key.clone();
            item.insert("type".into(), s("config"));
            item.insert("secret".into(), s(crate::domain::hex(&crate::domain::random_bytes::<32>())));
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match put {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(Error::aws("create cursor secret")(e)),
            }
        }
        Err(Error::invariant("read cursor secret", "secret vanished after creation"))
    }
}
