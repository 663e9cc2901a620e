use super::{ObjectKey, OwnerId, Status, Timestamp, UploadId};

/// An upload session as the service knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: UploadId,
    pub owner: OwnerId,
    pub status: Status,
    /// The client's name for the file: metadata only, never part of a key.
    pub filename: String,
    pub content_type: String,
    /// Declared size in bytes; the confirmed size once completed.
    pub size: u64,
    pub object_key: ObjectKey,
    /// Present when the bytes travel as an S3 multipart upload.
    pub multipart: Option<Multipart>,
    pub created_at: Timestamp,
    /// When a pending session is abandoned and may be swept.
    pub expires_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// Set when a confirm started completing the multipart upload and has
    /// not committed yet (S3 may take minutes over 10,000 parts): retries
    /// and the sweeper finish it rather than report bytes missing.
    pub completing_since: Option<Timestamp>,
    /// Bumped by every write, so a transaction can insist that the record
    /// has not changed since it was read.
    pub version: u64,
}

/// An S3 multipart upload backing a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multipart {
    /// S3's `UploadId` of the multipart upload.
    pub s3_upload_id: String,
    pub part_size: u64,
    pub part_count: u32,
}

/// What a list shows of a session: exactly what clients see of it, as the
/// `by_owner` index projects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: UploadId,
    pub status: Status,
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

impl From<&Session> for Listed {
    fn from(s: &Session) -> Self {
        Listed {
            id: s.id.clone(),
            status: s.status,
            filename: s.filename.clone(),
            content_type: s.content_type.clone(),
            size: s.size,
            created_at: s.created_at,
            expires_at: s.expires_at,
            completed_at: s.completed_at,
        }
    }
}
