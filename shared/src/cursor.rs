//! List cursors: opaque to clients, bound to their owner, tamper-evident.
//!
//! A cursor is `base64url(position) "." base64url(HMAC-SHA256(secret, owner
//! "\n" position))`, where the position is the `by_owner` sort key of the
//! last session returned (`<created_at>#<upload_id>`). A cursor minted for
//! another owner, or altered in any way, fails verification.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{OwnerId, Timestamp, UploadId};

/// The longest cursor accepted, in bytes.
pub const MAX_CURSOR_LEN: usize = 512;

fn mac(secret: &[u8], owner: &OwnerId, position: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(owner.as_str().as_bytes());
    mac.update(b"\n");
    mac.update(position.as_bytes());
    mac
}

pub fn encode(secret: &[u8], owner: &OwnerId, position: &str) -> String {
    let tag = mac(secret, owner, position).finalize().into_bytes();
    format!("{}.{}", URL_SAFE_NO_PAD.encode(position), URL_SAFE_NO_PAD.encode(tag))
}

/// The position a cursor carries, if it is one this service minted for
/// `owner` and it names a well-formed position.
pub fn decode(secret: &[u8], owner: &OwnerId, cursor: &str) -> Option<String> {
    if cursor.len() > MAX_CURSOR_LEN {
        return None;
    }
    let (position, tag) = cursor.split_once('.')?;
    let position = String::from_utf8(URL_SAFE_NO_PAD.decode(position).ok()?).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    mac(secret, owner, &position).verify_slice(&tag).ok()?;
    let (at, id) = position.split_once('#')?;
    (Timestamp::parse(at).is_some() && UploadId::parse(id).is_some()).then_some(position)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tampering() {
        let secret = [7u8; 32];
        let alice = OwnerId::parse("alice").unwrap();
        let bob = OwnerId::parse("bob").unwrap();
        let position = format!("2026-11-22T02:15:49.123Z#{}", UploadId::generate());
        let cursor = encode(&secret, &alice, &position);
        assert_eq!(decode(&secret, &alice, &cursor), Some(position.clone()));
        assert_eq!(decode(&secret, &bob, &cursor), None, "another owner's cursor");
        assert_eq!(decode(&[8u8; 32], &alice, &cursor), None, "another secret");
        let (p, t) = cursor.split_once('.').unwrap();
        let forged =
            format!("{}.{t}", URL_SAFE_NO_PAD.encode(format!("2030-01-01T00:00:00.000Z#{}", UploadId::generate())));
        assert_eq!(decode(&secret, &alice, &forged), None, "forged position");
        assert_eq!(decode(&secret, &alice, p), None);
        assert_eq!(decode(&secret, &alice, ""), None);
        assert_eq!(decode(&secret, &alice, "..."), None);
        assert_eq!(decode(&secret, &alice, &"a".repeat(600)), None);
        // A well-signed but malformed position is still refused.
        assert_eq!(decode(&secret, &alice, &encode(&secret, &alice, "nonsense")), None);
    }
}
