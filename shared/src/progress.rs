//! What S3 holds of a pending session's bytes.

use std::collections::HashMap;

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
        self.split(s).0
    }

    /// Part numbers still to be sent (absent, or of the wrong size).
    pub fn missing(&self, s: &Session) -> Vec<u32> {
        self.split(s).1
    }

    /// The session's part numbers, split into received and missing, in one
    /// pass (an upload can have 10,000 parts).
    fn split(&self, s: &Session) -> (Vec<u32>, Vec<u32>) {
        let held: HashMap<u32, u64> = match self {
            Held::Object(Some(size)) if *size == s.size => {
                return (views::parts(s).map(|(n, _)| n).collect(), Vec::new())
            }
            Held::Object(_) => HashMap::new(),
            Held::Parts(parts) => parts.iter().map(|p| (p.part_number, p.size)).collect(),
        };
        views::parts(s).map(|(n, len)| (n, held.get(&n) == Some(&len))).fold(
            (Vec::new(), Vec::new()),
            |(mut received, mut missing), (n, ok)| {
                if ok {
                    received.push(n)
                } else {
                    missing.push(n)
                }
                (received, missing)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Multipart, ObjectKey, OwnerId, Status, Timestamp, UploadId};

    fn session(size: u64, part_size: u64, part_count: u32) -> Session {
        let owner = OwnerId::parse("o").unwrap();
        let id = UploadId::generate();
        Session {
            object_key: ObjectKey::for_upload(&owner, &id),
            id,
            owner,
            status: Status::Pending,
            filename: "f".into(),
            content_type: "a/b".into(),
            size,
            multipart: Some(Multipart { s3_upload_id: "u".into(), part_size, part_count }),
            checksums: None,
            created_at: Timestamp::now(),
            expires_at: Timestamp::now(),
            completed_at: None,
            completing_since: None,
            token_id: None,
            version: 0,
        }
    }

    fn part(n: u32, size: u64) -> StoredPart {
        StoredPart { part_number: n, size, e_tag: String::new(), checksum: None }
    }

    #[test]
    fn parts_split_into_received_and_missing() {
        // 10,000 parts of 10 bytes, the last 5; every third held, one with the wrong size.
        let s = session(99_995, 10, 10_000);
        let mut held: Vec<StoredPart> = (1..=10_000).filter(|n| n % 3 == 0).map(|n| part(n, 10)).collect();
        held.push(part(10_000, 5));
        held[0].size = 9;
        let held = Held::Parts(held);
        let received = held.received(&s);
        let missing = held.missing(&s);
        assert_eq!(received.len() + missing.len(), 10_000);
        assert!(!received.contains(&3), "wrong size counts as missing");
        assert!(received.contains(&6) && received.contains(&10_000));
        assert!(missing.contains(&1) && missing.contains(&3));
        assert_eq!(received.len(), 3333 - 1 + 1);
    }

    #[test]
    fn whole_objects() {
        let s = session(25, 10, 3);
        assert_eq!(Held::Object(Some(25)).missing(&s), Vec::<u32>::new());
        assert_eq!(Held::Object(Some(25)).received(&s), vec![1, 2, 3]);
        assert_eq!(Held::Object(Some(24)).missing(&s), vec![1, 2, 3]);
        assert_eq!(Held::Object(None).received(&s), Vec::<u32>::new());
    }
}
