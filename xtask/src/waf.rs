//! The stage's web ACL as the local gateway applies it, read from the
//! template's `AWS::WAFv2::WebACL` (after the stack has resolved its
//! parameters and `Fn::If` entries, see [`crate::stack::Stack::web_acl`]).
//!
//! Two kinds of rule, both blocking, as the template uses them:
//!
//! - a size constraint on the request body (`SizeConstraintStatement` on
//!   `Body`): WAF sees at most the first [`DEFAULT_BODY_INSPECTION_LIMIT`]
//!   bytes of an API Gateway request's body (16 KB unless the ACL's
//!   `AssociationConfig` raises it), and a longer body is decided by the
//!   field's `OversizeHandling`;
//! - rate-based rules that count requests per value of one header (the API
//!   key) over a trailing window and block a value once its count goes over
//!   the limit. Blocked requests count too (a client that keeps sending stays
//!   blocked), and a request without the header is not counted by that rule.
//!
//! Rules run in priority order and Block is terminating, as in WAF: the
//! first rule that blocks a request decides its answer, and no later rule
//! sees (or counts) it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::Value;

/// How much of a request body API Gateway forwards to WAF by default
/// (16 KB, 16,384 bytes).
pub const DEFAULT_BODY_INSPECTION_LIMIT: u64 = 16 * 1024;

/// One rule of the ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub priority: u64,
    pub statement: Statement,
    /// The Block action's `CustomResponse`; without one API Gateway answers
    /// with its `WAF_FILTERED` gateway response.
    pub response: Option<CustomResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// At most `limit` requests per `window` for each value of `header`
    /// (lower case, as HTTP header names compare).
    Rate { header: String, limit: u64, window: Duration },
    /// The body's size in bytes `operator` `size` (`GT 16384`: a body over
    /// 16,384 bytes), with `oversize` deciding bodies WAF cannot see whole.
    BodySize { operator: Operator, size: u64, oversize: Oversize },
}

/// A `SizeConstraintStatement`'s `ComparisonOperator`: the request
/// component's size on the left, the statement's `Size` on the right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Le,
    Lt,
    Ge,
    Gt,
}

impl Operator {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "EQ" => Self::Eq,
            "NE" => Self::Ne,
            "LE" => Self::Le,
            "LT" => Self::Lt,
            "GE" => Self::Ge,
            "GT" => Self::Gt,
            _ => return None,
        })
    }

    fn holds(self, component: u64, size: u64) -> bool {
        match self {
            Self::Eq => component == size,
            Self::Ne => component != size,
            Self::Le => component <= size,
            Self::Lt => component < size,
            Self::Ge => component >= size,
            Self::Gt => component > size,
        }
    }
}

/// `Body.OversizeHandling`: what a body longer than WAF inspects does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Inspect the part WAF sees (WAF's default).
    Continue,
    Match,
    NoMatch,
}

/// A Block action's custom response, with its body from the ACL's
/// `CustomResponseBodies`. WAF's answer is static: it cannot carry API
/// Gateway's request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// (media type, content).
    pub body: Option<(String, String)>,
}

fn text(v: &Value) -> Option<String> {
    crate::template::scalar(v)
}

fn number(v: &Value, what: &str) -> Result<u64> {
    text(v).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("{what} is not a whole number: {v:?}"))
}

impl Rule {
    /// One entry of a resolved ACL's `Rules`; `bodies` is its
    /// `CustomResponseBodies`.
    fn parse(rule: &Value, bodies: &Value) -> Result<Self> {
        let name = rule["Name"].as_str().ok_or_else(|| anyhow!("a rule has no Name"))?.to_owned();
        let priority = number(&rule["Priority"], &format!("rule {name}: Priority"))?;
        let Some(block) = rule["Action"].get("Block") else {
            bail!("rule {name}: the local gateway applies only blocking rules");
        };
        let response = match block.get("CustomResponse") {
            Some(r) => Some(CustomResponse::parse(r, bodies).with_context(|| format!("rule {name}"))?),
            None => None,
        };
        let statement = &rule["Statement"];
        let statement = if let Some(rate) = statement.get("RateBasedStatement") {
            let keys = rate["CustomKeys"].as_sequence().map(Vec::as_slice).unwrap_or_default();
            let [key] = keys else { bail!("rule {name}: expected one custom key") };
            let header = key["Header"]["Name"]
                .as_str()
                .ok_or_else(|| anyhow!("rule {name}: the local gateway aggregates on a header only"))?
                .to_ascii_lowercase();
            let limit = number(&rate["Limit"], &format!("rule {name}: Limit"))?;
            let window = match rate.get("EvaluationWindowSec") {
                Some(w) => number(w, &format!("rule {name}: EvaluationWindowSec"))?,
                None => 300,
            };
            Statement::Rate { header, limit, window: Duration::from_secs(window) }
        } else if let Some(size) = statement.get("SizeConstraintStatement") {
            let Some(body) = size["FieldToMatch"].get("Body") else {
                bail!("rule {name}: the local gateway applies size constraints on the body only");
            };
            let transformations = size["TextTransformations"].as_sequence().map(Vec::as_slice).unwrap_or_default();
            if transformations.iter().any(|t| t["Type"].as_str() != Some("NONE")) {
                bail!("rule {name}: the local gateway applies no text transformation");
            }
            let operator = size["ComparisonOperator"]
                .as_str()
                .and_then(Operator::parse)
                .ok_or_else(|| anyhow!("rule {name}: ComparisonOperator is not one of EQ NE LE LT GE GT"))?;
            let oversize = match body.get("OversizeHandling").and_then(Value::as_str) {
                None | Some("CONTINUE") => Oversize::Continue,
                Some("MATCH") => Oversize::Match,
                Some("NO_MATCH") => Oversize::NoMatch,
                Some(other) => bail!("rule {name}: OversizeHandling {other}"),
            };
            Statement::BodySize { operator, size: number(&size["Size"], &format!("rule {name}: Size"))?, oversize }
        } else {
            bail!("rule {name}: the local gateway applies rate-based and body size rules only");
        };
        Ok(Rule { name, priority, statement, response })
    }
}

impl CustomResponse {
    fn parse(r: &Value, bodies: &Value) -> Result<Self> {
        let status = number(&r["ResponseCode"], "CustomResponse.ResponseCode")?;
        let status = u16::try_from(status).ok().filter(|s| (200..600).contains(s));
        let status = status.ok_or_else(|| anyhow!("CustomResponse.ResponseCode out of range"))?;
        let mut headers = Vec::new();
        for h in r["ResponseHeaders"].as_sequence().into_iter().flatten() {
            let (Some(name), Some(value)) = (text(&h["Name"]), text(&h["Value"])) else {
                bail!("a ResponseHeaders entry without Name and Value");
            };
            if name.eq_ignore_ascii_case("content-type") {
                bail!("WAF refuses a content-type response header: the body's ContentType sets it");
            }
            headers.push((name, value));
        }
        let body = match r.get("CustomResponseBodyKey") {
            None => None,
            Some(key) => {
                let key = text(key).ok_or_else(|| anyhow!("CustomResponseBodyKey is not a string"))?;
                let body = bodies.get(key.as_str()).ok_or_else(|| anyhow!("no CustomResponseBodies entry {key}"))?;
                let media = match body["ContentType"].as_str() {
                    Some("APPLICATION_JSON") => "application/json",
                    Some("TEXT_PLAIN") => "text/plain",
                    Some("TEXT_HTML") => "text/html",
                    other => bail!("CustomResponseBodies {key}: ContentType {other:?}"),
                };
                let content =
                    text(&body["Content"]).ok_or_else(|| anyhow!("CustomResponseBodies {key}: no Content"))?;
                Some((media.to_owned(), content))
            }
        };
        Ok(CustomResponse { status, headers, body })
    }
}

/// The web ACL: its rules in priority order and the rate rules' counts,
/// per (rule, header value), in one-second buckets.
pub struct WebAcl {
    rules: Vec<Rule>,
    body_inspection_limit: u64,
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

impl WebAcl {
    /// An ACL of these rules, inspecting bodies up to API Gateway's default.
    pub fn new(mut rules: Vec<Rule>) -> Self {
        rules.sort_by_key(|r| r.priority);
        Self {
            rules,
            body_inspection_limit: DEFAULT_BODY_INSPECTION_LIMIT,
            started: Instant::now(),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// No web ACL on the stage: every request passes.
    pub fn none() -> Self {
        Self::new(Vec::new())
    }

    /// The ACL of a resolved `AWS::WAFv2::WebACL`'s `Properties` (no
    /// intrinsic functions left; numbers may be text, as `!Ref` gives them).
    pub fn parse(properties: &Value) -> Result<Self> {
        if properties["DefaultAction"].get("Allow").is_none() {
            bail!("the local gateway applies web ACLs whose default action is Allow only");
        }
        let bodies = &properties["CustomResponseBodies"];
        let rules = properties["Rules"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|r| Rule::parse(r, bodies))
            .collect::<Result<Vec<_>>>()?;
        let mut acl = Self::new(rules);
        let limit = &properties["AssociationConfig"]["RequestBody"]["API_GATEWAY"]["DefaultSizeInspectionLimit"];
        if let Some(limit) = limit.as_str() {
            acl.body_inspection_limit = match limit {
                "KB_16" => 16 * 1024,
                "KB_32" => 32 * 1024,
                "KB_48" => 48 * 1024,
                "KB_64" => 64 * 1024,
                other => bail!("DefaultSizeInspectionLimit {other}"),
            };
        }
        Ok(acl)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Runs a request through the rules, counting it under the rate rules
    /// it reaches; the rule that blocks it, if any.
    pub fn check<'a>(&self, header: impl Fn(&str) -> Option<&'a str>, body_len: u64) -> Option<&Rule> {
        self.check_at(self.started.elapsed().as_secs(), header, body_len)
    }

    fn check_at<'a>(&self, second: u64, header: impl Fn(&str) -> Option<&'a str>, body_len: u64) -> Option<&Rule> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (i, rule) in self.rules.iter().enumerate() {
            let blocks = match &rule.statement {
                Statement::BodySize { operator, size, oversize } => {
                    if body_len > self.body_inspection_limit {
                        match oversize {
                            Oversize::Match => true,
                            Oversize::NoMatch => false,
                            Oversize::Continue => operator.holds(self.body_inspection_limit, *size),
                        }
                    } else {
                        operator.holds(body_len, *size)
                    }
                }
                Statement::Rate { header: name, limit, window } => match header(name) {
                    None => false,
                    Some(value) => {
                        let n = counts.entry((i, value.to_owned())).or_default().count(second, window.as_secs().max(1));
                        n > *limit
                    }
                },
            };
            if blocks {
                return Some(rule);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(name: &str, priority: u64, header: &str, limit: u64) -> Rule {
        Rule {
            name: name.into(),
            priority,
            statement: Statement::Rate { header: header.into(), limit, window: Duration::from_secs(60) },
            response: None,
        }
    }

    fn limiter(limit: u64) -> WebAcl {
        WebAcl::new(vec![rate("key", 0, "x-api-key", limit), rate("bearer", 1, "authorization", limit)])
    }

    fn name(rule: Option<&Rule>) -> Option<&str> {
        rule.map(|r| r.name.as_str())
    }

    #[test]
    fn blocks_a_value_past_its_limit_within_the_window() {
        let l = limiter(3);
        let a = |h: &str| (h == "x-api-key").then_some("a");
        let b = |h: &str| (h == "x-api-key").then_some("b");
        for second in 0..3 {
            assert_eq!(name(l.check_at(second, a, 0)), None);
        }
        assert_eq!(name(l.check_at(10, a, 0)), Some("key"), "fourth request within 60 s");
        assert_eq!(name(l.check_at(10, b, 0)), None, "another key keeps its own count");
        // Blocked requests count: at 61 s the window holds seconds 2..=61,
        // that is the third and fourth requests, plus this one.
        assert_eq!(name(l.check_at(61, a, 0)), None);
        assert_eq!(name(l.check_at(61, a, 0)), Some("key"));
        // Once every counted request is older than the window, it passes.
        assert_eq!(name(l.check_at(200, a, 0)), None);
    }

    #[test]
    fn counts_under_each_header_a_request_carries() {
        let l = limiter(1);
        let none = |_: &str| None;
        for _ in 0..5 {
            assert_eq!(name(l.check_at(0, none, 0)), None, "a request without a key header is not counted");
        }
        let bearer = |h: &str| (h == "authorization").then_some("Bearer k");
        assert_eq!(name(l.check_at(0, bearer, 0)), None);
        assert_eq!(name(l.check_at(0, bearer, 0)), Some("bearer"));
        let both = |h: &str| match h {
            "x-api-key" => Some("k2"),
            "authorization" => Some("Bearer k2"),
            _ => None,
        };
        assert_eq!(name(l.check_at(0, both, 0)), None);
        assert_eq!(name(l.check_at(0, both, 0)), Some("key"));
    }

    /// A resolved ACL as the template declares it: the body rule first,
    /// then the rate rules, every number as `!Ref` resolves it (text).
    const ACL: &str = r#"
DefaultAction: { Allow: {} }
CustomResponseBodies:
  request-body-too-large:
    ContentType: APPLICATION_JSON
    Content: '{"error":"Request body too large"}'
Rules:
  - Name: max-request-body
    Priority: 0
    Action:
      Block:
        CustomResponse:
          ResponseCode: 413
          CustomResponseBodyKey: request-body-too-large
    Statement:
      SizeConstraintStatement:
        FieldToMatch: { Body: { OversizeHandling: MATCH } }
        ComparisonOperator: GT
        Size: "100"
        TextTransformations: [{ Priority: 0, Type: NONE }]
  - Name: per-x-api-key
    Priority: 1
    Action: { Block: {} }
    Statement:
      RateBasedStatement:
        Limit: "2"
        EvaluationWindowSec: 60
        AggregateKeyType: CUSTOM_KEYS
        CustomKeys: [{ Header: { Name: x-api-key, TextTransformations: [{ Priority: 0, Type: NONE }] } }]
"#;

    #[test]
    fn parses_the_body_size_rule_and_its_custom_response() {
        let acl = WebAcl::parse(&serde_yaml::from_str(ACL).unwrap()).unwrap();
        let [body, key] = acl.rules() else { panic!("{:?}", acl.rules()) };
        assert_eq!(body.name, "max-request-body");
        assert_eq!(
            body.statement,
            Statement::BodySize { operator: Operator::Gt, size: 100, oversize: Oversize::Match }
        );
        assert_eq!(
            body.response,
            Some(CustomResponse {
                status: 413,
                headers: vec![],
                body: Some(("application/json".into(), r#"{"error":"Request body too large"}"#.into())),
            })
        );
        assert_eq!(
            key.statement,
            Statement::Rate { header: "x-api-key".into(), limit: 2, window: Duration::from_secs(60) }
        );
        assert_eq!(key.response, None, "no custom response: API Gateway's WAF_FILTERED answers");
    }

    #[test]
    fn a_body_over_the_size_is_blocked_before_any_rate_rule_counts_it() {
        let acl = WebAcl::parse(&serde_yaml::from_str(ACL).unwrap()).unwrap();
        let k = |h: &str| (h == "x-api-key").then_some("k");
        assert_eq!(name(acl.check_at(0, k, 0)), None, "no body");
        assert_eq!(name(acl.check_at(0, k, 100)), None, "exactly the size");
        // Over the size: blocked by the body rule, which ends the evaluation,
        // so the key's rate rule never counts these.
        for _ in 0..5 {
            assert_eq!(name(acl.check_at(0, k, 101)), Some("max-request-body"));
            assert_eq!(name(acl.check_at(0, |_| None, 7 << 20)), Some("max-request-body"), "no key needed");
        }
        assert_eq!(name(acl.check_at(0, k, 10)), Some("per-x-api-key"), "third counted request of k");
    }

    #[test]
    fn bodies_past_the_inspection_limit_follow_oversize_handling() {
        let limit = DEFAULT_BODY_INSPECTION_LIMIT;
        let acl = |size: u64, oversize: Oversize| {
            WebAcl::new(vec![Rule {
                name: "body".into(),
                priority: 0,
                statement: Statement::BodySize { operator: Operator::Gt, size, oversize },
                response: None,
            }])
        };
        let decide = |acl: &WebAcl, len: u64| acl.check_at(0, |_| None, len).is_some();
        // MATCH: a size up to the inspection limit is exact.
        let exact = acl(limit, Oversize::Match);
        assert!(!decide(&exact, limit));
        assert!(decide(&exact, limit + 1));
        // A size above the limit cannot be honoured: WAF sees `limit` bytes,
        // and MATCH blocks every longer body.
        let above = acl(limit + 1000, Oversize::Match);
        assert!(decide(&above, limit + 1), "under the size, yet blocked");
        // CONTINUE judges the inspected part only: never over the limit.
        let cont = acl(limit + 1000, Oversize::Continue);
        assert!(!decide(&cont, 10 << 20), "a 10 MiB body passes");
        assert!(!decide(&acl(limit, Oversize::NoMatch), 10 << 20));
        // AssociationConfig raises the limit.
        let mut raised: Value = serde_yaml::from_str(ACL).unwrap();
        raised["AssociationConfig"] =
            serde_yaml::from_str("RequestBody: { API_GATEWAY: { DefaultSizeInspectionLimit: KB_64 } }").unwrap();
        assert_eq!(WebAcl::parse(&raised).unwrap().body_inspection_limit, 64 * 1024);
    }

    #[test]
    fn refuses_what_it_would_not_apply_faithfully() {
        let base: Value = serde_yaml::from_str(ACL).unwrap();
        let edit = |path: &[&str], value: &str| {
            let mut acl = base.clone();
            let mut v = &mut acl["Rules"][0];
            for p in path {
                v = &mut v[*p];
            }
            *v = serde_yaml::from_str(value).unwrap();
            WebAcl::parse(&acl).map(|_| ())
        };
        assert!(edit(&["Action"], "{ Count: {} }").is_err());
        assert!(edit(&["Statement", "SizeConstraintStatement", "FieldToMatch"], "{ UriPath: {} }").is_err());
        assert!(edit(
            &["Statement", "SizeConstraintStatement", "TextTransformations"],
            "[{ Priority: 0, Type: LOWERCASE }]"
        )
        .is_err());
        assert!(edit(&["Action", "Block", "CustomResponse", "CustomResponseBodyKey"], "missing").is_err());
        assert!(edit(
            &["Action", "Block", "CustomResponse", "ResponseHeaders"],
            "[{ Name: Content-Type, Value: text/plain }]"
        )
        .is_err());
    }
}
