//! What the functions that open, inspect and confirm sessions work with.

use crate::config::{ConfigError, UploadPolicy};
use crate::domain::{Session, Timestamp};
use crate::error::Error;
use crate::objects::Objects;
use crate::store::Store;
use crate::aws;

/// Sessions and their bytes: the store, the bucket and the upload policy.
#[derive(Debug, Clone)]
pub struct Uploads {
    pub store: Store,
    pub objects: Objects,
    pub bucket: String,
    pub policy: UploadPolicy,
}

impl Uploads {
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(aws::Env::load().await?.uploads())
    }
}

impl Uploads {
    /// `session`, if it can still receive bytes or be confirmed: completed
    /// is `AlreadyCompleted`, past `expires_at` is `Expired`.
    pub fn open(session: Session) -> Result<Session, Error> {
        session.accepts_bytes(Timestamp::now())?;
        Ok(session)
    }
}
