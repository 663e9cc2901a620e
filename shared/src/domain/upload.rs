use serde_json::Value;

use super::{ChecksumAlgorithm, Checksums};
use crate::config::{s3_limits, UploadPolicy, MIB};
use crate::error::Error;

/// The longest filename accepted, in Unicode scalar values.
pub const MAX_FILENAME_CHARS: usize = 255;
/// The longest content type accepted, in bytes.
pub const MAX_CONTENT_TYPE_BYTES: usize = 255;
/// The most checksums a create may declare, whatever the algorithm: 300
/// SHA-256 values are about 14 KB of JSON, so a create that declares them
/// fits the default request body limit (`MaxRequestBodyBytes`, 16 KB). A
/// client with a larger file chooses larger parts.
pub const MAX_CHECKSUMS: usize = 300;

/// A create request, parsed: `{"filename", "content_type", "size"}`, and
/// optionally `part_size` (the client fixes the plan), `checksum_algorithm`
/// with `checksums` (one per `PUT` of the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub filename: String,
    pub content_type: String,
    pub size: u64,
    /// How the bytes travel: the client's `part_size`, else the policy's.
    pub plan: Plan,
    pub checksums: Option<Checksums>,
}

impl NewUpload {
    /// Parses and validates a create request body. Each failure names the
    /// field in a stable message.
    pub fn parse(body: &[u8], policy: &UploadPolicy) -> Result<Self, Error> {
        let value: Value = serde_json::from_slice(body).map_err(|_| Error::InvalidBody)?;
        let obj = value.as_object().ok_or(Error::InvalidBody)?;
        let filename = obj.get("filename").and_then(Value::as_str).ok_or(Error::Invalid("Invalid filename"))?;
        let content_type =
            obj.get("content_type").and_then(Value::as_str).ok_or(Error::Invalid("Invalid content_type"))?;
        let size = obj.get("size").and_then(Value::as_u64).filter(|s| *s > 0).ok_or(Error::Invalid("Invalid size"))?;
        if !valid_filename(filename) {
            return Err(Error::Invalid("Invalid filename"));
        }
        if !valid_content_type(content_type) {
            return Err(Error::Invalid("Invalid content_type"));
        }
        if size > policy.max_upload_bytes {
            return Err(Error::Invalid("Size exceeds the maximum upload size"));
        }
        let plan = match obj.get("part_size") {
            None => Plan::for_size(size, policy),
            Some(v) => {
                v.as_u64().and_then(|p| Plan::with_part_size(size, p)).ok_or(Error::Invalid("Invalid part_size"))?
            }
        };
        let checksums = match (obj.get("checksum_algorithm"), obj.get("checksums")) {
            (None, None) => None,
            (Some(algorithm), values) => {
                let algorithm = algorithm
                    .as_str()
                    .and_then(ChecksumAlgorithm::parse)
                    .ok_or(Error::Invalid("Invalid checksum_algorithm"))?;
                let values = values
                    .and_then(Value::as_array)
                    .filter(|v| v.len() <= MAX_CHECKSUMS)
                    .ok_or(Error::Invalid("Invalid checksums"))?;
                let strings = values.iter().map(Value::as_str).collect::<Option<Vec<_>>>();
                let checksums = strings
                    .and_then(|v| Checksums::from_base64(algorithm, v))
                    .filter(|c| c.count() == plan.put_count())
                    .ok_or(Error::Invalid("Invalid checksums"))?;
                Some(checksums)
            }
            (None, Some(_)) => return Err(Error::Invalid("Invalid checksum_algorithm")),
        };
        Ok(Self { filename: filename.to_owned(), content_type: content_type.to_owned(), size, plan, checksums })
    }
}

/// 1 to 255 characters, not all white space, no control characters; any
/// other Unicode is welcome. The filename is metadata only.
pub fn valid_filename(name: &str) -> bool {
    let chars = name.chars().count();
    (1..=MAX_FILENAME_CHARS).contains(&chars) && !name.trim().is_empty() && !name.chars().any(char::is_control)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An RFC 9110 media type: `type/subtype` with optional `; name=value`
/// parameters (value a token or a quoted string).
pub fn valid_content_type(ct: &str) -> bool {
    if ct.len() > MAX_CONTENT_TYPE_BYTES || !ct.is_ascii() || ct.bytes().any(|b| b.is_ascii_control()) {
        return false;
    }
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or_default();
    let Some((ty, sub)) = essence.split_once('/') else { return false };
    if !is_token(ty) || !is_token(sub) {
        return false;
    }
    parts.all(|p| {
        let Some((name, value)) = p.trim_matches(' ').split_once('=') else { return false };
        let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
        is_token(name) && (is_token(value) || quoted)
    })
}

/// How an upload's bytes travel to S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One presigned `PUT`.
    Single,
    /// An S3 multipart upload: `part_count` parts of `part_size` bytes, the
    /// last one possibly shorter.
    Multipart { part_size: u64, part_count: u32 },
}

impl Plan {
    /// Below the threshold, one `PUT`. Otherwise parts of the preferred size,
    /// raised (to whole MiB) when the upload would need more than 10,000
    /// parts, and kept within S3's 5 MiB..5 GiB.
    pub fn for_size(size: u64, policy: &UploadPolicy) -> Self {
        if size < policy.multipart_threshold_bytes {
            return Plan::Single;
        }
        let needed = size.div_ceil(s3_limits::MAX_PARTS);
        let part_size =
            policy.part_size_bytes.max(needed.div_ceil(MIB) * MIB).clamp(s3_limits::MIN_PART, s3_limits::MAX_PART);
        Plan::Multipart { part_size, part_count: size.div_ceil(part_size) as u32 }
    }

    /// The plan a client chose with `part_size` (S3's 5 MiB..5 GiB): one
    /// `PUT` when the upload fits in one part, else parts of exactly that
    /// size. `None` when the size is out of range or the upload would need
    /// more than 10,000 parts.
    pub fn with_part_size(size: u64, part_size: u64) -> Option<Self> {
        if !(s3_limits::MIN_PART..=s3_limits::MAX_PART).contains(&part_size) {
            return None;
        }
        if size <= part_size {
            return Some(Plan::Single);
        }
        let part_count = size.div_ceil(part_size);
        (part_count <= s3_limits::MAX_PARTS).then_some(Plan::Multipart { part_size, part_count: part_count as u32 })
    }

    /// How many `PUT`s carry the bytes.
    pub fn put_count(&self) -> u32 {
        match self {
            Plan::Single => 1,
            Plan::Multipart { part_count, .. } => *part_count,
        }
    }
}

/// The size of part `n` (1-based) of an upload of `size` bytes cut into
/// `part_size` parts.
pub fn part_len(size: u64, part_size: u64, n: u32) -> u64 {
    let start = u64::from(n - 1) * part_size;
    size.saturating_sub(start).min(part_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GIB, TIB};

    fn policy() -> UploadPolicy {
        UploadPolicy::default()
    }

    #[test]
    fn filenames() {
        for ok in ["a", "report.pdf", "Прогноз погоды.txt", "日本語 ファイル.png", "emoji 🎉.gif", &"x".repeat(255)]
        {
            assert!(valid_filename(ok), "{ok:?}");
        }
        for bad in ["", "   ", "a\nb", "a\u{0}b", "tab\there", "del\u{7f}", "c1\u{85}", &"x".repeat(256)] {
            assert!(!valid_filename(bad), "{bad:?}");
        }
    }

    #[test]
    fn content_types() {
        for ok in
            ["application/pdf", "text/plain; charset=utf-8", "multipart/form-data;boundary=\"a b\"", "image/svg+xml"]
        {
            assert!(valid_content_type(ok), "{ok:?}");
        }
        for bad in ["", "pdf", "text/", "/plain", "text/plain; charset", "text/pl ain", "tëxt/plain", "a/b\r\nx: y"] {
            assert!(!valid_content_type(bad), "{bad:?}");
        }
    }

    /// What the API's request type writes, the parser takes as written.
    #[test]
    fn the_api_create_body_parses() {
        let sha = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        let body = api::CreateUpload {
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            size: 12 * MIB,
            part_size: Some(8 * MIB),
            checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
            checksums: Some(vec![sha.clone(), sha]),
        };
        let parsed = NewUpload::parse(&serde_json::to_vec(&body).unwrap(), &policy()).unwrap();
        assert_eq!(
            (parsed.filename.as_str(), parsed.content_type.as_str(), parsed.size),
            ("a.txt", "text/plain", 12 * MIB)
        );
        assert_eq!(parsed.plan, Plan::Multipart { part_size: 8 * MIB, part_count: 2 });
        assert_eq!(parsed.checksums.map(|c| (c.algorithm(), c.count())), Some((ChecksumAlgorithm::Sha256, 2)));
        let plain = api::CreateUpload { part_size: None, checksum_algorithm: None, checksums: None, size: 5, ..body };
        assert_eq!(NewUpload::parse(&serde_json::to_vec(&plain).unwrap(), &policy()).unwrap().plan, Plan::Single);
    }

    #[test]
    fn parsing_requests() {
        let p = policy();
        let ok = NewUpload::parse(br#"{"filename":"a.txt","content_type":"text/plain","size":5}"#, &p).unwrap();
        assert_eq!(ok.size, 5);
        let cases: [(&[u8], &str); 9] = [
            (b"", "Invalid JSON body"),
            (b"[1]", "Invalid JSON body"),
            (br#"{"content_type":"text/plain","size":5}"#, "Invalid filename"),
            (br#"{"filename":"a","content_type":"nope","size":5}"#, "Invalid content_type"),
            (br#"{"filename":"a","content_type":"text/plain","size":0}"#, "Invalid size"),
            (br#"{"filename":"a","content_type":"text/plain","size":-1}"#, "Invalid size"),
            (br#"{"filename":"a","content_type":"text/plain","size":1.5}"#, "Invalid size"),
            (br#"{"filename":"a","content_type":"text/plain","size":"5"}"#, "Invalid size"),
            (
                br#"{"filename":"a","content_type":"text/plain","size":6000000000000}"#,
                "Size exceeds the maximum upload size",
            ),
        ];
        for (body, msg) in cases {
            let err = NewUpload::parse(body, &p).unwrap_err();
            assert_eq!(err.to_string(), msg, "{}", String::from_utf8_lossy(body));
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn a_client_may_choose_the_plan_and_declare_its_checksums() {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let p = policy();
        let sha = STANDARD.encode([1u8; 32]);
        let crc = STANDARD.encode([2u8; 4]);
        let body = |extra: &str| format!(r#"{{"filename":"a","content_type":"text/plain","size":12582912{extra}}}"#);
        // 12 MiB in parts of 5 MiB: three parts, three checksums.
        let ok = NewUpload::parse(
            body(&format!(
                r#","part_size":5242880,"checksum_algorithm":"SHA256","checksums":["{sha}","{sha}","{sha}"]"#
            ))
            .as_bytes(),
            &p,
        )
        .unwrap();
        assert_eq!(ok.plan, Plan::Multipart { part_size: 5 * MIB, part_count: 3 });
        assert_eq!(ok.checksums.as_ref().map(|c| c.count()), Some(3));
        // One part big enough for all: a single PUT, one checksum.
        let single = NewUpload::parse(
            body(&format!(r#","part_size":16777216,"checksum_algorithm":"CRC32C","checksums":["{crc}"]"#)).as_bytes(),
            &p,
        )
        .unwrap();
        assert_eq!(single.plan, Plan::Single);
        // No part_size: the policy's plan (single below 64 MiB).
        let plain = NewUpload::parse(body("").as_bytes(), &p).unwrap();
        assert_eq!((plain.plan, plain.checksums), (Plan::Single, None));

        let cases = [
            (r#","part_size":5242879"#.to_owned(), "Invalid part_size"),
            (r#","part_size":5368709121"#.to_owned(), "Invalid part_size"),
            (r#","part_size":"5242880""#.to_owned(), "Invalid part_size"),
            (r#","part_size":-1"#.to_owned(), "Invalid part_size"),
            (r#","checksum_algorithm":"MD5","checksums":[]"#.to_owned(), "Invalid checksum_algorithm"),
            (r#","checksum_algorithm":"sha256","checksums":[]"#.to_owned(), "Invalid checksum_algorithm"),
            (format!(r#","checksums":["{sha}"]"#), "Invalid checksum_algorithm"),
            (r#","checksum_algorithm":"SHA256""#.to_owned(), "Invalid checksums"),
            (format!(r#","checksum_algorithm":"SHA256","checksums":["{crc}"]"#), "Invalid checksums"),
            (format!(r#","checksum_algorithm":"SHA256","checksums":["{sha}","{sha}"]"#), "Invalid checksums"),
            (format!(r#","checksum_algorithm":"SHA256","checksums":"{sha}""#), "Invalid checksums"),
            (r#","checksum_algorithm":"SHA256","checksums":[1]"#.to_owned(), "Invalid checksums"),
            (
                format!(r#","part_size":5242880,"checksum_algorithm":"SHA256","checksums":["{sha}","{sha}"]"#),
                "Invalid checksums",
            ),
        ];
        for (extra, msg) in cases {
            let err = NewUpload::parse(body(&extra).as_bytes(), &p).unwrap_err();
            assert_eq!(err.to_string(), msg, "{extra}");
        }
        // More checksums than any create may declare, one per part all the same.
        let crc_list = vec![format!("\"{crc}\""); 301].join(",");
        let many = body(&format!(r#","part_size":5242880,"checksum_algorithm":"CRC32C","checksums":[{crc_list}]"#))
            .replace("12582912", &(300 * 5 * MIB + 1).to_string());
        assert_eq!(NewUpload::parse(many.as_bytes(), &p).unwrap_err().to_string(), "Invalid checksums");
        let crc_list = vec![format!("\"{crc}\""); 300].join(",");
        let most = body(&format!(r#","part_size":5242880,"checksum_algorithm":"CRC32C","checksums":[{crc_list}]"#))
            .replace("12582912", &(300 * 5 * MIB).to_string());
        assert_eq!(NewUpload::parse(most.as_bytes(), &p).unwrap().checksums.map(|c| c.count()), Some(300));
        // More than 10,000 parts of the smallest size.
        let huge = r#"{"filename":"a","content_type":"text/plain","size":53687091201,"part_size":5242880}"#;
        assert_eq!(NewUpload::parse(huge.as_bytes(), &p).unwrap_err().to_string(), "Invalid part_size");
    }

    #[test]
    fn plans_respect_s3_limits() {
        let p = policy();
        assert_eq!(Plan::for_size(1, &p), Plan::Single);
        assert_eq!(Plan::for_size(64 * MIB - 1, &p), Plan::Single);
        assert_eq!(Plan::for_size(64 * MIB, &p), Plan::Multipart { part_size: 16 * MIB, part_count: 4 });
        assert_eq!(Plan::for_size(64 * MIB + 1, &p), Plan::Multipart { part_size: 16 * MIB, part_count: 5 });
        for size in [64 * MIB, 100 * GIB, 157 * GIB, TIB, 5 * TIB] {
            let Plan::Multipart { part_size, part_count } = Plan::for_size(size, &p) else { panic!() };
            assert!((s3_limits::MIN_PART..=s3_limits::MAX_PART).contains(&part_size), "{size}");
            assert!(u64::from(part_count) <= s3_limits::MAX_PARTS, "{size}: {part_count} parts");
            assert!(u64::from(part_count) * part_size >= size);
            assert!(u64::from(part_count - 1) * part_size < size);
            let total: u64 = (1..=part_count).map(|n| part_len(size, part_size, n)).sum();
            assert_eq!(total, size);
        }
    }
}
