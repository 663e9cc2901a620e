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
        self.resolve_key_digest(&api_key.digest()).await
    }

    /// The owner of the key with this digest, or `None` for an unknown or
    /// revoked key.
    pub async fn resolve_key_digest(&self, digest: &KeyDigest) -> Result<Option<OwnerId>, Error> {
        match self.get(key(digest).into_iter().collect(), "resolve api key").await? {
            None => Ok(None),
            Some(item) => Reader::new(&item, "resolve api key").parsed("owner", OwnerId::parse).map(Some),
        }
    }

    /// Stores a new key's digest for `owner`. The plain key is not stored.
    /// `false` when that key is already minted (for any owner): nothing
    /// is written.
    pub async fn put_api_key(&self, api_key: &ApiKey, owner: &OwnerId) -> Result<bool, Error> {
        let mut item: super::item::Item = key(&api_key.digest()).into_iter().collect();
        item.insert("type".into(), s("apikey"));
        item.insert("owner".into(), s(owner.as_str()));
        item.insert("created_at".into(), s(Timestamp::now().to_rfc3339()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(Error::aws("put api key")(e)),
        }
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
