//! What clients send. The functions parse these bodies field by field in
//! `shared` (each failure names its field in a stable message); these are
//! the bodies' shapes, which the client writes and the tests check.

use serde::{Deserialize, Serialize};

use crate::views::{ChecksumAlgorithm, TokenScope};

/// `POST /uploads`: `filename`, `content_type`, `size`; optionally the
/// client's `part_size`, and `checksum_algorithm` with `checksums` (one
/// standard-base64 digest per `PUT` of the plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUpload {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<Vec<String>>,
}

/// `POST /tokens`: every member optional (`{}` and an empty body ask for
/// the defaults: 900 s, scope `own`, no limits).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<TokenScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// A media type, or `type/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}
