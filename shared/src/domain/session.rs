use super::{ChecksumType, Checksums, ObjectKey, OwnerId, Status, Timestamp, TokenId, UploadId};
use crate::error::Error;

/// A completion (see [`Session::completing_since`]) still unfinished this
/// long after it started is abandoned: once its session has expired, the
/// sweeper expires it like any other.
pub const COMPLETION_ABANDONED_AFTER_SECONDS: i64 = 3600;

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
    /// The checksums the client declared at create, one per `PUT`: signed
    /// into the presigned URLs and checked by confirm.
    pub checksums: Option<Checksums>,
    pub created_at: Timestamp,
    /// When a pending session is abandoned and may be swept.
    pub expires_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// Set when a confirm started completing the multipart upload and has
    /// not committed yet (S3 may take minutes over 10,000 parts): retries
    /// and the sweeper finish it rather than report bytes missing.
    pub completing_since: Option<Timestamp>,
    /// The browser token that created it, if one did: what a token of
    /// scope `own` may reach.
    pub token_id: Option<TokenId>,
    /// Bumped by every write, so a transaction can insist that the record
    /// has not changed since it was read.
    pub version: u64,
}

/// What one session counts in its owner's usage item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// Bytes of a completed upload (`bytes_used`).
    pub used: u64,
    /// Declared bytes a pending session reserves (`bytes_reserved`).
    pub reserved: u64,
    /// 1 for a pending session (`pending_count`).
    pub pending: u64,
}

impl Holding {
    /// What counts against the quota (`bytes_held`).
    pub fn held(&self) -> u64 {
        self.used.saturating_add(self.reserved)
    }
}

/// The session's life, as the store's conditional writes carry it out:
///
/// ```text
///   create ──> pending ──mark_completing──> pending, completing ──complete──> completed
///                 │  └──────────────complete──────────────────────────────────┘   │
///                 └── delete, or expire once past expires_at (not while completing) ┴── delete
/// ```
///
/// Each accepted transition bumps `version` (the store conditions every
/// write on the version read); a refused one changes nothing. `completed`
/// is final: nothing leads out of it but deletion.
impl Session {
    /// What the session counts in its owner's usage: a pending session
    /// reserves its declared size and counts as pending; a completed one
    /// uses its size. Completing moves the bytes from reserved to used, so
    /// it never changes what counts against the quota.
    pub fn holding(&self) -> Holding {
        match self.status {
            Status::Pending => Holding { used: 0, reserved: self.size, pending: 1 },
            Status::Completed => Holding { used: self.size, reserved: 0, pending: 0 },
        }
    }

    /// What the object's checksum is once S3 holds all of it: the whole
    /// object's for a single `PUT`, composite for a multipart upload.
    pub fn checksum_type(&self) -> ChecksumType {
        if self.multipart.is_some() {
            ChecksumType::Composite
        } else {
            ChecksumType::FullObject
        }
    }

    /// The session once a confirm has started completing its multipart
    /// upload at `now`; `None` unless it is pending.
    pub fn mark_completing(&self, now: Timestamp) -> Option<Session> {
        (self.status == Status::Pending).then(|| Session {
            completing_since: Some(now),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// The session completed at `now`; `None` unless it is pending.
    pub fn complete(&self, now: Timestamp) -> Option<Session> {
        (self.status == Status::Pending).then(|| Session {
            status: Status::Completed,
            completed_at: Some(now),
            completing_since: None,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Whether the sweeper may expire the session at `now`: pending, past
    /// `expires_at`, and not being completed (unless that completion was
    /// abandoned).
    pub fn expirable(&self, now: Timestamp) -> bool {
        let completing =
            self.completing_since.is_some_and(|since| since.plus_seconds(COMPLETION_ABANDONED_AFTER_SECONDS) > now);
        self.status == Status::Pending && self.expires_at <= now && !completing
    }

    /// Whether the session can still receive bytes (and fresh URLs) at
    /// `now`: completed is `AlreadyCompleted`, past `expires_at` is `Expired`.
    pub fn accepts_bytes(&self, now: Timestamp) -> Result<(), Error> {
        match self.status {
            Status::Completed => Err(Error::AlreadyCompleted),
            Status::Pending if self.expires_at <= now => Err(Error::Expired),
            Status::Pending => Ok(()),
        }
    }
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
