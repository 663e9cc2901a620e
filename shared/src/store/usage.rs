//! Owner usage items: `OWNER#<owner>` / `USAGE` → `bytes_used`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{s, Reader};
use super::layout::{PK, SK};
use super::Store;
use crate::domain::OwnerId;
use crate::error::Error;

pub(super) fn key(owner: &OwnerId) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.into(), s(format!("OWNER#{}", owner.as_str()))), (SK.into(), s("USAGE"))])
}

impl Store {
    /// The sum of the sizes of the owner's completed uploads (0 if none).
    pub async fn bytes_used(&self, owner: &OwnerId) -> Result<u64, Error> {
        match self.get(key(owner), "read usage").await? {
            None => Ok(0),
            Some(item) => Ok(Reader::new(&item, "read usage").opt_num("bytes_used")?.unwrap_or(0)),
        }
    }
}
