//! Checksums a client declares for its bytes at create, so that S3 itself
//! refuses any other bytes.
//!
//! One digest per `PUT` of the upload's plan: the whole object's for a
//! single `PUT`, each part's for a multipart upload. Each is signed into
//! its presigned URL as S3's `x-amz-checksum-<algorithm>` header, which S3
//! checks against the bytes it receives (400 `BadDigest` otherwise). The
//! value a completed object carries is then known from the start: the
//! digest itself for a single `PUT`, S3's *composite* checksum for a
//! multipart upload (the digest of the concatenated part digests, then
//! `-<part count>`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

pub use api::{ChecksumAlgorithm, ChecksumType};

/// The digests behind a [`ChecksumAlgorithm`] (the API's enum names the
/// algorithm; computing it needs more than serde).
pub trait Digests {
    /// The raw digest of `bytes` (CRC32C big-endian, as S3 encodes it).
    fn digest(self, bytes: &[u8]) -> Vec<u8>;
}

impl Digests for ChecksumAlgorithm {
    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(bytes).to_vec(),
            Self::Crc32c => {
                (crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32).to_be_bytes().to_vec()
            }
        }
    }
}

/// The checksums declared for an upload: one raw digest per `PUT` of its
/// plan, in part order. Valid by construction: every digest has the
/// algorithm's length, and there is at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    algorithm: ChecksumAlgorithm,
    /// The digests, concatenated (as stored).
    digests: Vec<u8>,
}

impl Checksums {
    /// From the API's form: standard base64 (padded) of each raw digest,
    /// exactly as S3's `x-amz-checksum-*` headers carry them. `None` unless
    /// every value decodes to a digest of the algorithm's length.
    pub fn from_base64<'a>(algorithm: ChecksumAlgorithm, values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut digests = Vec::new();
        for v in values {
            let raw = STANDARD.decode(v).ok()?;
            if raw.len() != algorithm.digest_len() || STANDARD.encode(&raw) != v {
                return None;
            }
            digests.extend_from_slice(&raw);
        }
        (!digests.is_empty()).then_some(Self { algorithm, digests })
    }

    /// From the stored form (the digests concatenated).
    pub fn from_stored(algorithm: ChecksumAlgorithm, digests: Vec<u8>) -> Option<Self> {
        (!digests.is_empty() && digests.len().is_multiple_of(algorithm.digest_len()))
            .then_some(Self { algorithm, digests })
    }

    /// The digests of `parts` (test and client helper).
    pub fn of_parts<'a>(algorithm: ChecksumAlgorithm, parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let digests = parts.into_iter().flat_map(|p| algorithm.digest(p)).collect();
        Self { algorithm, digests }
    }

    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// The digests concatenated, as stored.
    pub fn stored(&self) -> &[u8] {
        &self.digests
    }

    /// How many digests: the plan's number of `PUT`s.
    pub fn count(&self) -> u32 {
        (self.digests.len() / self.algorithm.digest_len()) as u32
    }

    /// The base64 checksum of `PUT` `n` (1-based), as its header carries
    /// it; `None` past the last.
    pub fn part(&self, n: u32) -> Option<String> {
        let len = self.algorithm.digest_len();
        let start = (n as usize).checked_sub(1)? * len;
        self.digests.get(start..start + len).map(|d| STANDARD.encode(d))
    }

    /// The checksum S3 reports for the object once it holds all of it: the
    /// digest itself for a single `PUT` ([`ChecksumType::FullObject`]), the
    /// composite `<base64 of the digest of the digests>-<count>` for a
    /// multipart upload.
    pub fn object_value(&self, kind: ChecksumType) -> String {
        match kind {
            ChecksumType::FullObject => STANDARD.encode(&self.digests),
            ChecksumType::Composite => {
                format!("{}-{}", STANDARD.encode(self.algorithm.digest(&self.digests)), self.count())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_s3s() {
        // S3's documented encodings: base64 of the raw SHA-256, and of the
        // big-endian CRC32C ("123456789" -> 0xE3069283).
        assert_eq!(STANDARD.encode(ChecksumAlgorithm::Crc32c.digest(b"123456789")), "4waSgw==");
        assert_eq!(
            STANDARD.encode(ChecksumAlgorithm::Sha256.digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn base64_values_must_be_exact_digests() {
        let sha = STANDARD.encode([7u8; 32]);
        let c = Checksums::from_base64(ChecksumAlgorithm::Sha256, [sha.as_str(), sha.as_str()]).unwrap();
        assert_eq!(c.count(), 2);
        assert_eq!(c.part(2).as_deref(), Some(sha.as_str()));
        assert_eq!(c.part(3), None);
        assert_eq!(c.part(0), None);
        for bad in ["", "AAAA", "not base64!", &STANDARD.encode([7u8; 31]), &sha.replace('=', ""), &format!("{sha}\n")]
        {
            assert_eq!(Checksums::from_base64(ChecksumAlgorithm::Sha256, [bad]), None, "{bad:?}");
        }
        assert_eq!(Checksums::from_base64(ChecksumAlgorithm::Crc32c, [sha.as_str()]), None);
        assert_eq!(Checksums::from_base64(ChecksumAlgorithm::Sha256, std::iter::empty()), None);
    }

    #[test]
    fn the_composite_is_the_digest_of_the_digests() {
        let parts: [&[u8]; 2] = [b"first part", b"second"];
        let c = Checksums::of_parts(ChecksumAlgorithm::Sha256, parts);
        let mut joined = Sha256::digest(b"first part").to_vec();
        joined.extend(Sha256::digest(b"second"));
        assert_eq!(c.object_value(ChecksumType::Composite), format!("{}-2", STANDARD.encode(Sha256::digest(&joined))));
        let single = Checksums::of_parts(ChecksumAlgorithm::Crc32c, [b"123456789".as_slice()]);
        assert_eq!(single.object_value(ChecksumType::FullObject), "4waSgw==");
        assert_eq!(Checksums::from_stored(ChecksumAlgorithm::Sha256, c.stored().to_vec()), Some(c));
        assert_eq!(Checksums::from_stored(ChecksumAlgorithm::Sha256, vec![1; 33]), None);
    }
}
