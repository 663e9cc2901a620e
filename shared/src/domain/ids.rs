use std::fmt;

use super::{hex, random_bytes};

/// An upload id: `upl_` followed by 32 lowercase hex digits (128 random bits).
///
/// On input the same 128 bits written as a hyphenated UUID
/// (`8-4-4-4-12` hex digits, either case) are accepted and normalised.
/// Anything else is rejected before any store lookup.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh id from the operating system's random number generator.
    pub fn generate() -> Self {
        Self(format!("{}{}", api::UPLOAD_ID_PREFIX, hex(&random_bytes::<16>())))
    }

    /// The id `input` names, in either of the API's forms
    /// ([`api::canonical_upload_id`]).
    pub fn parse(input: &str) -> Option<Self> {
        api::canonical_upload_id(input).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

/// The owner of API keys and uploads: 1 to 64 characters of `[A-Za-z0-9._-]`,
/// starting with a letter or digit. It appears in object keys, so its alphabet
/// is kept safe for S3 keys and DynamoDB key prefixes alike.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OwnerId(String);

impl OwnerId {
    pub fn parse(input: &str) -> Option<Self> {
        api::is_owner_id(input).then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({})", self.0)
    }
}

/// The S3 key of an upload's bytes. Derived from owner and id only, never
/// from the client's filename: `uploads/<owner>/<upload_id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn for_upload(owner: &OwnerId, id: &UploadId) -> Self {
        Self(format!("uploads/{}/{}", owner.as_str(), id.as_str()))
    }

    /// Rebuilds a key read back from the store. Only keys of the derived
    /// shape are accepted, so a tampered record cannot point cleanup at an
    /// arbitrary object.
    pub fn from_stored(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '/');
        let (prefix, owner, id) = (parts.next()?, parts.next()?, parts.next()?);
        let (owner, id) = (OwnerId::parse(owner)?, UploadId::parse(id)?);
        (prefix == "uploads" && Self::for_upload(&owner, &id).0 == s).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_canonical_and_distinct() {
        let a = UploadId::generate();
        let b = UploadId::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
        assert_eq!(UploadId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn uuid_form_is_the_same_id() {
        let id = UploadId::parse("0123ABCD-4567-89ab-cdef-0123456789AB").unwrap();
        assert_eq!(id.as_str(), "upl_0123abcd456789abcdef0123456789ab");
        assert_eq!(UploadId::parse("upl_0123abcd456789abcdef0123456789ab"), Some(id));
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "upl_",
            "upl_0123abcd456789abcdef0123456789a",
            "upl_0123abcd456789abcdef0123456789abc",
            "upl_0123ABCD456789abcdef0123456789ab",
            "upl_0123abcd456789abcdef0123456789ag",
            "UPL_0123abcd456789abcdef0123456789ab",
            "0123abcd456789abcdef0123456789ab",
            "0123abcd-4567-89ab-cdef-0123456789a",
            "0123abcd-4567-89ab-cdef0-123456789ab",
            "{0123abcd-4567-89ab-cdef-0123456789ab}",
            "0123abcd-4567-89ab-cdef-0123456789aé",
            "../../etc/passwd",
            "upl_0123abcd456789abcdef0123456789ab/",
        ] {
            assert!(UploadId::parse(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn owners() {
        assert!(OwnerId::parse("team-a").is_some());
        assert!(OwnerId::parse("a.b_c-9").is_some());
        for bad in ["", "-a", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(OwnerId::parse(bad).is_none(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn object_keys_come_from_owner_and_id_only() {
        let owner = OwnerId::parse("team-a").unwrap();
        let id = UploadId::parse("upl_0123abcd456789abcdef0123456789ab").unwrap();
        let key = ObjectKey::for_upload(&owner, &id);
        assert_eq!(key.as_str(), "uploads/team-a/upl_0123abcd456789abcdef0123456789ab");
        assert_eq!(ObjectKey::from_stored(key.as_str()), Some(key));
        assert!(ObjectKey::from_stored("uploads/team-a/../x").is_none());
        assert!(ObjectKey::from_stored("other/team-a/upl_0123abcd456789abcdef0123456789ab").is_none());
    }
}
