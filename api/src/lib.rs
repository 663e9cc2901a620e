//! The upload sessions API's contract, as Rust types: what goes over the
//! wire and nothing else. The functions (through `shared`) write these
//! views, the command-line client reads them, the tests check them against
//! `openapi.yaml` both ways (`tests/tests/suite/schema_agreement.rs`).
//!
//! serde only: no AWS SDK, no runtime. Rules that need more than the
//! string forms (quotas, plans, checksums' digests, token signatures) stay
//! in `shared`.
//!
//! Every answer also carries `request_id`, added by the HTTP edge to
//! whatever view it sends ([`WithRequestId`] is that shape).

mod ids;
mod requests;
mod views;

pub use ids::{
    canonical_upload_id, is_owner_id, is_token_id, is_upload_id, OWNER_ID_MAX_LEN, TOKEN_ID_PREFIX, TOKEN_PREFIX,
    UPLOAD_ID_PREFIX,
};
pub use requests::{CreateUpload, MintToken};
pub use views::{
    Checksum, ChecksumAlgorithm, ChecksumType, Completion, Deleted, Download, ErrorBody, GetMethod, Page, PresignedPut,
    PutMethod, Session, Status, Token, TokenScope, Transfer, TransferType, WithRequestId,
};
