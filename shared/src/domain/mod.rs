//! Domain types, parsed at the edge: a value of one of these types is valid by
//! construction, so nothing past the parsing line re-checks it.

mod api_key;
mod checksum;
mod ids;
mod session;
mod time;
mod token;
mod upload;

pub use api_key::{ApiKey, KeyDigest};
pub use checksum::{ChecksumAlgorithm, ChecksumType, Checksums, Digests};
pub use ids::{ObjectKey, OwnerId, UploadId};
pub use session::{Holding, Listed, Multipart, Session, COMPLETION_ABANDONED_AFTER_SECONDS};
pub use time::Timestamp;
pub use token::{
    content_type_admits, valid_token_content_type, BrowserToken, TokenGrant, TokenId, TokenRefusal, TokenScope,
    MAX_TOKEN_LEN, TOKEN_DEFAULT_TTL_SECONDS, TOKEN_MAX_TTL_SECONDS, TOKEN_MIN_TTL_SECONDS,
};
pub use upload::{part_len, valid_content_type, valid_filename, NewUpload, Plan, MAX_CHECKSUMS};

/// The lifecycle state of an upload session: the API's enum.
pub use api::Status;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing is not a recoverable condition for an id generator.
    getrandom::fill(&mut buf).expect("operating system random number generator unavailable");
    buf
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
