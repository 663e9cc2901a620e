//! Checksums as S3 computes them: SHA-256 or CRC32C (big-endian), base64,
//! per `PUT`; for a multipart upload the *composite* value, the digest of
//! the concatenated part digests followed by `-<part count>`.

use std::io::Read;

use ::api::ChecksumAlgorithm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The algorithms the API takes (`checksum_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Crc32c,
}

impl Algorithm {
    /// The API's (and S3's) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA256",
            Algorithm::Crc32c => "CRC32C",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ChecksumAlgorithm::parse(s).map(Self::from)
    }

    /// The API's name for it.
    pub fn api(self) -> ChecksumAlgorithm {
        match self {
            Algorithm::Sha256 => ChecksumAlgorithm::Sha256,
            Algorithm::Crc32c => ChecksumAlgorithm::Crc32c,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Crc32c => Hasher::Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi)),
        }
    }

    /// The raw digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(bytes);
        h.finish()
    }
}

impl From<ChecksumAlgorithm> for Algorithm {
    fn from(a: ChecksumAlgorithm) -> Self {
        match a {
            ChecksumAlgorithm::Sha256 => Algorithm::Sha256,
            ChecksumAlgorithm::Crc32c => Algorithm::Crc32c,
        }
    }
}

/// A running digest of either algorithm.
pub enum Hasher {
    Sha256(Sha256),
    Crc32c(crc_fast::Digest),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Crc32c(h) => h.update(bytes),
        }
    }

    /// The raw digest: 32 bytes of SHA-256, or the CRC32C as 4 bytes
    /// big-endian (S3's encoding).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Crc32c(h) => (h.finalize() as u32).to_be_bytes().to_vec(),
        }
    }
}

/// Standard base64 with padding, as S3's `x-amz-checksum-*` headers carry
/// a digest.
pub fn encode(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

/// S3's composite checksum of a multipart upload with these part digests:
/// `base64(H(d1 || d2 || …))-<count>`.
pub fn composite(algorithm: Algorithm, part_digests: &[Vec<u8>]) -> String {
    let mut h = algorithm.hasher();
    for d in part_digests {
        h.update(d);
    }
    format!("{}-{}", encode(&h.finish()), part_digests.len())
}

/// The digest of each `part_size` slice of what `reader` yields (the last
/// one shorter), reading it once; `progress` is told how many bytes each
/// read brought. Returns the digests and the number of bytes read.
pub fn part_digests(
    mut reader: impl Read,
    algorithm: Algorithm,
    part_size: u64,
    mut progress: impl FnMut(u64),
) -> std::io::Result<(Vec<Vec<u8>>, u64)> {
    let mut digests = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut in_part = 0u64;
    let mut hasher = algorithm.hasher();
    loop {
        let want = buf.len().min((part_size - in_part) as usize);
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        in_part += n as u64;
        progress(n as u64);
        if in_part == part_size {
            digests.push(std::mem::replace(&mut hasher, algorithm.hasher()).finish());
            in_part = 0;
        }
    }
    if in_part > 0 || digests.is_empty() {
        digests.push(hasher.finish());
    }
    Ok((digests, total))
}

/// Checks a stream of bytes against the checksum an upload declared, as
/// they arrive: the whole object's digest (`FULL_OBJECT`), or each
/// `part_size` slice's digest combined into the composite (`COMPOSITE`).
pub struct Verifier {
    algorithm: Algorithm,
    /// `Some(part size)` for a composite checksum.
    part_size: Option<u64>,
    hasher: Hasher,
    in_part: u64,
    parts: Vec<Vec<u8>>,
}

impl Verifier {
    pub fn full_object(algorithm: Algorithm) -> Self {
        Self { algorithm, part_size: None, hasher: algorithm.hasher(), in_part: 0, parts: Vec::new() }
    }

    pub fn composite(algorithm: Algorithm, part_size: u64) -> Self {
        Self { part_size: Some(part_size.max(1)), ..Self::full_object(algorithm) }
    }

    pub fn update(&mut self, mut bytes: &[u8]) {
        let Some(part_size) = self.part_size else {
            self.hasher.update(bytes);
            return;
        };
        while !bytes.is_empty() {
            let take = bytes.len().min((part_size - self.in_part) as usize);
            self.hasher.update(&bytes[..take]);
            self.in_part += take as u64;
            bytes = &bytes[take..];
            if self.in_part == part_size {
                self.parts.push(std::mem::replace(&mut self.hasher, self.algorithm.hasher()).finish());
                self.in_part = 0;
            }
        }
    }

    /// The checksum of everything seen, in the form the API's view gives
    /// it (`value`).
    pub fn finish(mut self) -> String {
        match self.part_size {
            None => encode(&self.hasher.finish()),
            Some(_) => {
                if self.in_part > 0 || self.parts.is_empty() {
                    self.parts.push(self.hasher.finish());
                }
                composite(self.algorithm, &self.parts)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_s3s() {
        assert_eq!(encode(&Algorithm::Crc32c.digest(b"123456789")), "4waSgw==");
        assert_eq!(encode(&Algorithm::Sha256.digest(b"")), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }

    #[test]
    fn part_digests_cut_at_part_boundaries() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut seen = 0;
        let (digests, total) = part_digests(&data[..], Algorithm::Sha256, 4096, |n| seen += n).unwrap();
        assert_eq!((total, seen), (10_000, 10_000));
        let expected: Vec<Vec<u8>> = data.chunks(4096).map(|c| Algorithm::Sha256.digest(c)).collect();
        assert_eq!(digests, expected);
        // An exact multiple has no empty tail part.
        let (digests, _) = part_digests(&data[..8192], Algorithm::Crc32c, 4096, |_| ()).unwrap();
        assert_eq!(digests.len(), 2);
    }

    #[test]
    fn the_verifier_agrees_whatever_the_chunking() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let parts: Vec<Vec<u8>> = data.chunks(3000).map(|c| Algorithm::Crc32c.digest(c)).collect();
        let want = composite(Algorithm::Crc32c, &parts);
        assert!(want.ends_with("-4"));
        for chunk in [1, 7, 2999, 3000, 3001, 10_000] {
            let mut v = Verifier::composite(Algorithm::Crc32c, 3000);
            data.chunks(chunk).for_each(|c| v.update(c));
            assert_eq!(v.finish(), want, "chunks of {chunk}");
        }
        let mut v = Verifier::full_object(Algorithm::Sha256);
        data.chunks(333).for_each(|c| v.update(c));
        assert_eq!(v.finish(), encode(&Algorithm::Sha256.digest(&data)));
    }
}
