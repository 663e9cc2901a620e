//! Exponential backoff with full jitter, for the API's calls and each
//! part's `PUT`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often and how long to retry one operation.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first delay's ceiling; each retry doubles it.
    pub base: Duration,
    /// The largest delay.
    pub cap: Duration,
}

impl Backoff {
    /// For the API's calls: quick, since they are small.
    pub fn api(retries: u32) -> Self {
        Self { retries, base: Duration::from_millis(200), cap: Duration::from_secs(10) }
    }

    /// For parts: a failed part may mean a congested link, so wait longer.
    pub fn parts(retries: u32) -> Self {
        Self { retries, base: Duration::from_millis(500), cap: Duration::from_secs(30) }
    }

    /// The delay before retry number `retry` (1-based): a random time up to
    /// `base * 2^(retry-1)` (capped), and at least what the server asked
    /// for with `Retry-After` (itself capped at a minute).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << (retry.saturating_sub(1)).min(16)).min(self.cap);
        let jittered = ceiling.mul_f64(random_unit());
        match retry_after {
            Some(at_least) => jittered.max(at_least.min(Duration::from_secs(60))),
            None => jittered,
        }
    }
}

/// A random 64-bit number, from the standard library's per-process random
/// hash keys (jitter and temporary names need no stronger randomness).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// 16 random hexadecimal digits (temporary file names).
pub fn random_hex() -> String {
    format!("{:016x}", random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let b = Backoff { retries: 10, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        for retry in 1..=10 {
            let d = b.delay(retry, None);
            let ceiling = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(1));
            assert!(d <= ceiling, "retry {retry}: {d:?}");
        }
        assert!(b.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert_eq!(b.delay(1, Some(Duration::from_secs(600))), Duration::from_secs(60));
    }
}
