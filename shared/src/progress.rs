//! What S3 holds of a pending session's bytes.

use crate::domain::Session;
use crate::error::Error;
use crate::objects::{Objects, StoredPart};
use crate::views;

/// A look at a session's bytes in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// The object itself (a single `PUT`, or a multipart upload already
    /// completed): its size, or `None` when there is no object.
    Object(Option<u64>),
    /// The multipart upload is open and holds these parts.
    Parts(Vec<StoredPart>),
}

pub async fn inspect(objects: &Objects, bucket: &str, s: &Session) -> Result<Held, Error> {
    if let Some(mp) = &s.multipart {
        if let Some(parts) = objects.list_parts(bucket, &s.object_key, &mp.s3_upload_id).await? {
            return Ok(Held::Parts(parts));
        }
    }
    Ok(Held::Object(objects.object_size(bucket, &s.object_key).await?))
}

impl Held {
    /// Part numbers S3 holds with exactly the expected size.
    pub fn received(&self, s: &Session) -> Vec<u32> {
        views::parts(s).map(|(n, _)| n).filter(|n| !self.missing(s).contains(n)).collect()
    }

    /// Part numbers still to be sent (absent, or of the wrong size).
    pub fn missing(&self, s: &Session) -> Vec<u32> {
        match self {
            Held::Object(Some(size)) if *size == s.size => Vec::new(),
            Held::Object(_) => views::parts(s).map(|(n, _)| n).collect(),
            Held::Parts(held) => views::parts(s)
                .filter(|(n, len)| !held.iter().any(|p| p.part_number == *n && p.size == *len))
                .map(|(n, _)| n)
                .collect(),
        }
    }
}
