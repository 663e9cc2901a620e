use std::fmt;

use sha2::{Digest, Sha256};

use super::{hex, random_bytes};

/// A plain API key as a client presents it: `usk_` and 64 lowercase hex
/// digits (256 random bits). It exists only in the client's hands and, once,
/// in the output of the command that mints it; the store keeps its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    const PREFIX: &'static str = "usk_";

    pub fn generate() -> Self {
        Self(format!("{}{}", Self::PREFIX, hex(&random_bytes::<32>())))
    }

    /// Accepts only keys of the minted shape, so junk never reaches the store.
    pub fn parse(input: &str) -> Option<Self> {
        let digits = input.strip_prefix(Self::PREFIX)?;
        let ok = digits.len() == 64 && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(input.to_owned()))
    }

    pub fn digest(&self) -> KeyDigest {
        KeyDigest(hex(&Sha256::digest(self.0.as_bytes())))
    }

    /// The plain key, for printing it the one time it is minted.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Never prints the key itself, so a stray `{:?}` cannot leak it to a log.
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The SHA-256 digest of an API key, in lowercase hex: what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigest(String);

impl KeyDigest {
    /// A digest in its stored form: 64 lowercase hex digits.
    pub fn parse(input: &str) -> Option<Self> {
        let ok = input.len() == 64 && input.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_hash() {
        let key = ApiKey::generate();
        assert_eq!(ApiKey::parse(key.expose()), Some(key.clone()));
        assert_eq!(key.digest().as_str().len(), 64);
        assert_ne!(key.digest().as_str(), key.expose());
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn known_digest() {
        let key = ApiKey::parse(&format!("usk_{}", "0".repeat(64))).unwrap();
        // sha256("usk_000…0"), computed independently with `sha256sum`.
        assert_eq!(key.digest().as_str(), "247a6bedf8ac66927c080df2e656e683ca3202a30ebc5fa5bfd20c7f6bd1a6e2");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        for bad in ["", "usk_", "usk_abc", &format!("usk_{}", "G".repeat(64)), &format!("USK_{}", "0".repeat(64))] {
            assert!(ApiKey::parse(bad).is_none(), "{bad:?} was accepted");
        }
    }
}
