//! Owner usage items: `OWNER#<owner>` / `USAGE` → `bytes_used`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{s, Reader};
use super::layout::{PK, SK};
use super::Store;
use crate::domain::OwnerId;
use crate::error::Error;

pub(super) fn key(owner: &OwnerId) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.into(), s(super::layout::owner_pk(owner))), (SK.into(), s("USAGE"))])
}

/// An owner's usage item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The sum of the sizes of the owner's completed uploads.
    pub used: u64,
    /// The sum of the declared sizes of the owner's pending sessions.
    pub reserved: u64,
    /// How many pending sessions the owner has.
    pub pending: u64,
}

impl Usage {
    /// What counts against the quota: used and reserved bytes.
    pub fn held(&self) -> u64 {
        self.used.saturating_add(self.reserved)
    }
}

impl Store {
    /// The owner's usage (all zero if none yet).
    pub async fn usage(&self, owner: &OwnerId) -> Result<Usage, Error> {
        match self.get(key(owner), "read usage").await? {
            None => Ok(Usage::default()),
            Some(item) => {
                let r = Reader::new(&item, "read usage");
                Ok(Usage {
                    used: r.opt_num("bytes_used")?.unwrap_or(0),
                    reserved: r.opt_num("bytes_reserved")?.unwrap_or(0),
                    pending: r.opt_num("pending_count")?.unwrap_or(0),
                })
            }
        }
    }

    /// The sum of the sizes of the owner's completed uploads (0 if none).
    pub async fn bytes_used(&self, owner: &OwnerId) -> Result<u64, Error> {
        Ok(self.usage(owner).await?.used)
    }
}
