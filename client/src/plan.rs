//! How `put` cuts a file: one `PUT` when it fits in one part, else S3
//! multipart parts of one size, chosen by the client and sent as the
//! create request's `part_size`.

use crate::checksum::Algorithm;
use crate::error::Error;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// S3's smallest part (except the last).
pub const MIN_PART: u64 = 5 * MIB;
/// S3's largest part, and largest single `PUT`.
pub const MAX_PART: u64 = 5 * GIB;
/// The smallest part the client picks by itself: fewer requests than
/// S3's 5 MiB minimum, small enough to retry cheaply.
pub const DEFAULT_MIN_PART: u64 = 8 * MIB;

/// The most parts an upload may have with checksums: the API takes at most
/// 300 checksums in a create (one per part), so that the request stays under
/// its body limit (16 KB by default) whatever the algorithm; with parts of
/// up to 5 GiB, that is 1,500 GiB. Without checksums, S3's limit of 10,000
/// parts.
pub fn max_parts(algorithm: Option<Algorithm>) -> u64 {
    match algorithm {
        Some(_) => 300,
        None => 10_000,
    }
}

/// The plan: parts of `part_size` (the last one shorter), `part_count` of
/// them; one part means a single `PUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub part_size: u64,
    pub part_count: u64,
}

impl Plan {
    /// The plan for `size` bytes with checksums of `algorithm`: the part
    /// size asked for (`explicit`), or the smallest whole number of MiB,
    /// at least [`DEFAULT_MIN_PART`], that keeps the part count within
    /// [`max_parts`].
    pub fn choose(size: u64, algorithm: Option<Algorithm>, explicit: Option<u64>) -> Result<Plan, Error> {
        let limit = max_parts(algorithm);
        let what = algorithm.map_or("without checksums".to_owned(), |a| format!("with {} checksums", a.as_str()));
        let part_size = match explicit {
            Some(p) => {
                if !(MIN_PART..=MAX_PART).contains(&p) {
                    return Err(Error::Local(format!(
                        "--part-size must be between 5 MiB and 5 GiB ({MIN_PART}..{MAX_PART} bytes), not {p}"
                    )));
                }
                let count = size.div_ceil(p);
                if count > limit {
                    return Err(Error::Local(format!(
                        "--part-size {p} cuts {size} bytes into {count} parts; at most {limit} {what}: choose a larger part size"
                    )));
                }
                p
            }
            None => {
                let needed = size.div_ceil(limit).div_ceil(MIB) * MIB;
                let p = needed.max(DEFAULT_MIN_PART);
                if p > MAX_PART {
                    let hint = if algorithm.is_some() { " (--checksum none allows 10,000 parts)" } else { "" };
                    return Err(Error::Local(format!(
                        "{size} bytes is too large to upload {what}: at most {limit} parts of 5 GiB{hint}"
                    )));
                }
                p
            }
        };
        Ok(Plan { part_size, part_count: size.div_ceil(part_size).max(1) })
    }
}

/// The size of part `n` (1-based) of `size` bytes cut in `part_size`.
pub fn part_len(size: u64, part_size: u64, n: u64) -> u64 {
    let start = (n - 1).saturating_mul(part_size);
    size.saturating_sub(start).min(part_size)
}

/// A byte count from the command line: a number of bytes, or with a unit
/// `K`/`KiB`, `M`/`MiB`, `G`/`GiB` (binary multiples, any case).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: u64 = number.parse().map_err(|_| format!("'{s}' is not a size (bytes, or e.g. 8MiB)"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        _ => return Err(format!("'{s}': unknown unit (use bytes, KiB, MiB or GiB)")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("'{s}' is too large"))
}

/// `bytes` for people: `512 B`, `5.0 MiB`, `1.3 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < KIB {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / KIB as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Part numbers as ranges: `1-3, 5, 7-9`.
pub fn ranges(numbers: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_files_are_one_put() {
        let p = Plan::choose(1000, Some(Algorithm::Sha256), None).unwrap();
        assert_eq!(p, Plan { part_size: 8 * MIB, part_count: 1 });
        let p = Plan::choose(8 * MIB, Some(Algorithm::Sha256), None).unwrap();
        assert_eq!(p.part_count, 1);
        assert_eq!(Plan::choose(8 * MIB + 1, None, None).unwrap().part_count, 2);
    }

    #[test]
    fn part_counts_stay_within_the_body_limit() {
        let size = 100 * GIB;
        let sha = Plan::choose(size, Some(Algorithm::Sha256), None).unwrap();
        assert!(sha.part_count <= 300 && sha.part_size.is_multiple_of(MIB), "{sha:?}");
        let crc = Plan::choose(size, Some(Algorithm::Crc32c), None).unwrap();
        assert!(crc.part_count <= 300 && crc.part_size >= DEFAULT_MIN_PART, "{crc:?}");
        let none = Plan::choose(size, None, None).unwrap();
        assert_eq!(none.part_size, 11 * MIB);
        assert!(none.part_count <= 10_000);
        // 1,500 GiB: 300 parts of 5 GiB, the most with checksums; 5 TiB only
        // without.
        assert!(Plan::choose(1500 * GIB, Some(Algorithm::Sha256), None).is_ok());
        assert!(Plan::choose(1500 * GIB + 1, Some(Algorithm::Crc32c), None).is_err());
        assert!(Plan::choose(5120 * GIB, Some(Algorithm::Crc32c), None).is_err());
        assert!(Plan::choose(5120 * GIB, None, None).is_ok());
    }

    #[test]
    fn an_explicit_part_size_is_checked() {
        let p = Plan::choose(3 * MIN_PART + 10, Some(Algorithm::Sha256), Some(MIN_PART)).unwrap();
        assert_eq!(p, Plan { part_size: MIN_PART, part_count: 4 });
        assert!(Plan::choose(100, None, Some(MIN_PART - 1)).is_err());
        assert!(Plan::choose(100, None, Some(MAX_PART + 1)).is_err());
        assert!(Plan::choose(301 * MIN_PART, Some(Algorithm::Sha256), Some(MIN_PART)).is_err());
        assert!(Plan::choose(301 * MIN_PART, Some(Algorithm::Crc32c), Some(MIN_PART)).is_err());
        assert!(Plan::choose(300 * MIN_PART, Some(Algorithm::Crc32c), Some(MIN_PART)).is_ok());
        assert!(Plan::choose(301 * MIN_PART, None, Some(MIN_PART)).is_ok());
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("5242880"), Ok(5 * MIB));
        assert_eq!(parse_size("5MiB"), Ok(5 * MIB));
        assert_eq!(parse_size("8m"), Ok(8 * MIB));
        assert_eq!(parse_size("1 GiB"), Ok(GIB));
        assert!(parse_size("5 MB").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(human(10), "10 B");
        assert_eq!(human(5 * MIB), "5.0 MiB");
        assert_eq!(part_len(11, 5, 3), 1);
        assert_eq!(part_len(10, 5, 2), 5);
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1-3, 5, 7-8");
        assert_eq!(ranges(&[]), "");
    }
}
