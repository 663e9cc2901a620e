//! The stage's web ACL as the local gateway applies it: AWS WAF rate-based
//! rules that count requests per value of one header (the API key) over a
//! trailing window and block a value once its count goes over the limit.
//!
//! Like WAF, a request is counted under every rule whose header it carries,
//! blocked requests count too (a client that keeps sending stays blocked),
//! and a request without the header is not counted by that rule.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rate-based rule: at most `limit` requests per `window` for each
/// value of `header`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateRule {
    pub name: String,
    /// Lower case, as HTTP header names compare.
    pub header: String,
    pub limit: u64,
    pub window: Duration,
}

/// Counts per (rule, header value), in one-second buckets.
pub struct RateLimiter {
    rules: Vec<RateRule>,
    started: Instant,
    counts: Mutex<HashMap<(usize, String), Window>>,
}

#[derive(Default)]
struct Window {
    /// (second since start, requests in it), oldest first.
    buckets: VecDeque<(u64, u64)>,
    total: u64,
}

impl Window {
    /// Counts one request at `second` and returns the count over the
    /// trailing `window` seconds, this one included.
    fn count(&mut self, second: u64, window: u64) -> u64 {
        while let Some(&(s, n)) = self.buckets.front() {
            if s + window > second {
                break;
            }
            self.total -= n;
            self.buckets.pop_front();
        }
        match self.buckets.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => self.buckets.push_back((second, 1)),
        }
        self.total += 1;
        self.total
    }
}

impl RateLimiter {
    pub fn new(rules: Vec<RateRule>) -> Self {
        Self { rules, started: Instant::now(), counts: Mutex::new(HashMap::new()) }
    }

    /// Counts a request under every rule whose header it carries; the name
    /// of the first rule it is over the limit of, if any.
    pub fn check<'a>(&self, header: impl Fn(&str) -> Option<&'a str>) -> Option<&str> {
        self.check_at(self.started.elapsed().as_secs(), header)
    }

    fn check_at<'a>(&self, second: u64, header: impl Fn(&str) -> Option<&'a str>) -> Option<&str> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut blocked = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let Some(value) = header(&rule.header) else { continue };
            let n = counts.entry((i, value.to_owned())).or_default().count(second, rule.window.as_secs().max(1));
            if n > rule.limit && blocked.is_none() {
                blocked = Some(rule.name.as_str());
            }
        }
        blocked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: u64) -> RateLimiter {
        RateLimiter::new(vec![
            RateRule { name: "key".into(), header: "x-api-key".into(), limit, window: Duration::from_secs(60) },
            RateRule { name: "bearer".into(), header: "authorization".into(), limit, window: Duration::from_secs(60) },
        ])
    }

    #[test]
    fn blocks_a_value_past_its_limit_within_the_window() {
        let l = limiter(3);
        let a = |h: &str| (h == "x-api-key").then_some("a");
        let b = |h: &str| (h == "x-api-key").then_some("b");
        for second in 0..3 {
            assert_eq!(l.check_at(second, a), None);
        }
        assert_eq!(l.check_at(10, a), Some("key"), "fourth request within 60 s");
        assert_eq!(l.check_at(10, b), None, "another key keeps its own count");
        // Blocked requests count: at 61 s the window holds seconds 2..=61,
        // that is the third and fourth requests, plus this one.
        assert_eq!(l.check_at(61, a), None);
        assert_eq!(l.check_at(61, a), Some("key"));
        // Once every counted request is older than the window, it passes.
        assert_eq!(l.check_at(200, a), None);
    }

    #[test]
    fn counts_under_each_header_a_request_carries() {
        let l = limiter(1);
        let none = |_: &str| None;
        for _ in 0..5 {
            assert_eq!(l.check_at(0, none), None, "a request without a key header is not counted");
        }
        let bearer = |h: &str| (h == "authorization").then_some("Bearer k");
        assert_eq!(l.check_at(0, bearer), None);
        assert_eq!(l.check_at(0, bearer), Some("bearer"));
        let both = |h: &str| match h {
            "x-api-key" => Some("k2"),
            "authorization" => Some("Bearer k2"),
            _ => None,
        };
        assert_eq!(l.check_at(0, both), None);
        assert_eq!(l.check_at(0, both), Some("key"));
    }
}
