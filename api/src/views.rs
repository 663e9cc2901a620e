//! What the API answers: the views of sessions, transfers, tokens, pages,
//! and the error body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Implements `as_str`, `parse` and `ALL` for a fieldless enum from its
/// variants' wire names (the same names serde uses).
macro_rules! wire_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the contract lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The API's name for it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The value the API's name stands for; `None` for any other string.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The lifecycle state of an upload session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Opened; bytes may be on their way to S3. Counts nothing against the quota.
    #[serde(rename = "pending")]
    Pending,
    /// Confirmed; its size is counted in the owner's `bytes_used`.
    #[serde(rename = "completed")]
    Completed,
}
wire_enum!(Status { Pending => "pending", Completed => "completed" });

/// The checksum algorithms a client may declare: the strongest S3 offers
/// (SHA-256) and the fastest (CRC32C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "CRC32C")]
    Crc32c,
}
wire_enum!(ChecksumAlgorithm { Sha256 => "SHA256", Crc32c => "CRC32C" });

impl ChecksumAlgorithm {
    /// Bytes in one raw digest.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Crc32c => 4,
        }
    }
}

/// What an upload's checksum looks like once S3 holds its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumType {
    /// The digest of the whole object (a single `PUT`).
    #[serde(rename = "FULL_OBJECT")]
    FullObject,
    /// The digest of the part digests, suffixed `-<part count>` (multipart).
    #[serde(rename = "COMPOSITE")]
    Composite,
}
wire_enum!(ChecksumType { FullObject => "FULL_OBJECT", Composite => "COMPOSITE" });

/// How a session's bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferType {
    /// One presigned `PUT`.
    #[serde(rename = "single")]
    Single,
    /// An S3 multipart upload.
    #[serde(rename = "multipart")]
    Multipart,
}
wire_enum!(TransferType { Single => "single", Multipart => "multipart" });

/// Which of the owner's uploads a browser token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenScope {
    /// Only the uploads created with this token (the default).
    #[serde(rename = "own")]
    Own,
    /// All of the owner's uploads, and their list.
    #[serde(rename = "owner")]
    Owner,
}
wire_enum!(TokenScope { Own => "own", Owner => "owner" });

/// A confirm answered 202: S3 is still completing the multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Completion {
    #[serde(rename = "in_progress")]
    InProgress,
}
wire_enum!(Completion { InProgress => "in_progress" });

/// The method of a presigned upload URL: always `PUT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PutMethod {
    #[default]
    #[serde(rename = "PUT")]
    Put,
}
wire_enum!(PutMethod { Put => "PUT" });

/// The method of a presigned download URL: always `GET`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GetMethod {
    #[default]
    #[serde(rename = "GET")]
    Get,
}
wire_enum!(GetMethod { Get => "GET" });

/// A session as clients see it. A list shows each session with only the
/// fields every session has (no `checksum`, `upload`, `download` or
/// `completion`); create, get, confirm and resume add what they know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub upload_id: String,
    pub status: Status,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    /// RFC 3339, milliseconds, UTC (`2026-01-02T03:04:05.678Z`), as every
    /// instant the API writes.
    pub created_at: String,
    /// When a pending session is abandoned; null once completed.
    pub expires_at: Option<String>,
    pub completed_at: Option<String>,
    /// Present when the upload was declared with checksums.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<Checksum>,
    /// Create and resume: how to send the bytes; get of a pending upload:
    /// which parts S3 holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<Transfer>,
    /// Get of a completed upload: where to read its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<Download>,
    /// A confirm's 202: S3 is still completing the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<Completion>,
}

impl Session {
    pub fn is_completed(&self) -> bool {
        self.status == Status::Completed
    }
}

/// The checksum S3 holds for the object, as declared at create:
/// `FULL_OBJECT` (single `PUT`) or `COMPOSITE` (multipart: the digest of
/// the part digests, `-<count>`; parts of `part_size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    #[serde(rename = "type")]
    pub kind: ChecksumType,
    pub value: String,
    pub part_size: u64,
}

/// How a session's bytes travel, and what the route answering knows of
/// them: create and resume add the presigned `PUT`s (`urls_expire_at`,
/// `parts`, `more_parts`); resume and get add `parts_received`; get adds
/// `parts_missing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    #[serde(rename = "type")]
    pub kind: TransferType,
    pub part_size: u64,
    pub part_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls_expire_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PresignedPut>>,
    /// More parts are missing than one answer carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_parts: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_received: Option<Vec<u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts_missing: Option<Vec<u64>>,
}

impl Transfer {
    /// How the bytes of `size` travel in parts of `part_size` (`None`: one
    /// `PUT`), with nothing else known yet.
    pub fn plan(size: u64, multipart: Option<(u64, u64)>) -> Self {
        let (kind, part_size, part_count) = match multipart {
            None => (TransferType::Single, size, 1),
            Some((part_size, part_count)) => (TransferType::Multipart, part_size, part_count),
        };
        Self {
            kind,
            part_size,
            part_count,
            urls_expire_at: None,
            parts: None,
            more_parts: None,
            parts_received: None,
            parts_missing: None,
        }
    }

    /// The presigned `PUT`s this answer carries (none when it carries no URLs).
    pub fn puts(&self) -> &[PresignedPut] {
        self.parts.as_deref().unwrap_or_default()
    }

    /// The parts S3 holds, as far as this answer says.
    pub fn received(&self) -> &[u64] {
        self.parts_received.as_deref().unwrap_or_default()
    }

    /// The parts still to be sent, as far as this answer says.
    pub fn missing(&self) -> &[u64] {
        self.parts_missing.as_deref().unwrap_or_default()
    }
}

/// One presigned `PUT`: send exactly `size` bytes with exactly `headers`
/// (they are signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresignedPut {
    pub part_number: u64,
    pub method: PutMethod,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub size: u64,
}

/// Where a completed upload's bytes can be read: a presigned `GET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    pub url: String,
    pub method: GetMethod,
    pub expires_at: String,
}

/// One page of a list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub uploads: Vec<Session>,
    /// Pass it as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// What a delete answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// `Upload <id> deleted successfully`.
    pub message: String,
}

/// A minted browser token and its claims (`POST /tokens`, 201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub token_id: String,
    pub expires_at: String,
    pub scope: TokenScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// Every error the API answers itself (API Gateway's own refusals carry
/// `message` instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, public message: never a 5xx's details.
    pub error: String,
    pub request_id: String,
}

/// An answer as it travels: the view and, beside its fields, the
/// `request_id` every answer carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithRequestId<T> {
    #[serde(flatten)]
    pub view: T,
    pub request_id: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn enums_serialize_as_their_names() {
        for s in Status::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
        for a in ChecksumAlgorithm::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_str()));
        }
        for t in ChecksumType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        }
        for t in TokenScope::ALL {
            assert_eq!(serde_json::from_value::<TokenScope>(json!(t.as_str())).unwrap(), *t);
        }
        assert_eq!(serde_json::to_value(Completion::InProgress).unwrap(), json!("in_progress"));
        assert!(serde_json::from_value::<Status>(json!("deleted")).is_err());
    }

    #[test]
    fn a_listed_session_has_nulls_and_no_extras() {
        let s = Session {
            upload_id: "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36".into(),
            status: Status::Completed,
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            size: 5,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            expires_at: None,
            completed_at: Some("2026-01-01T00:01:00.000Z".into()),
            checksum: None,
            upload: None,
            download: None,
            completion: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v,
            json!({
                "upload_id": "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36", "status": "completed", "filename": "a.txt",
                "content_type": "text/plain", "size": 5, "created_at": "2026-01-01T00:00:00.000Z",
                "expires_at": null, "completed_at": "2026-01-01T00:01:00.000Z",
            })
        );
        assert_eq!(serde_json::from_value::<Session>(v).unwrap(), s);
        let answered = serde_json::to_value(WithRequestId { view: Transfer::plan(5, None), request_id: "r".into() });
        assert_eq!(answered.unwrap(), json!({"type": "single", "part_size": 5, "part_count": 1, "request_id": "r"}));
    }
}
