//! The stage's web ACL as the local gateway applies it, read from the
//! template's `AWS::WAFv2::WebACL` (after the stack has resolved its
//! parameters and `Fn::If` entries, see [`crate::stack::Stack::web_acl`]).
//!
//! The rules the template uses, all blocking:
//!
//! - match statements: a size constraint on the body (WAF sees at most the
//!   first [`DEFAULT_BODY_INSPECTION_LIMIT`] bytes of an API Gateway
//!   request's body, 16 KB unless the ACL's `AssociationConfig` raises it,
//!   and a longer body is decided by the field's `OversizeHandling`) or on
//!   one header; a regex match on one header; `Not`, `And` and `Or` of
//!   those. A statement on a header the request does not carry does not
//!   match;
//! - rate-based rules that count requests per value of one header, after
//!   its text transformations, or per source IP, over a trailing window,
//!   optionally only the requests a scope-down statement matches, and block
//!   a value once its count goes over the limit. Blocked requests count too
//!   (a client that keeps sending stays blocked), and a request without the
//!   header is not counted by that rule.
//!
//! Text transformations are applied as WAF defines them, lowest priority
//! first: `LOWERCASE`, `COMPRESS_WHITE_SPACE` (and `NONE`). Anything else
//! in the ACL is refused rather than applied approximately.
//!
//! Rules run in priority order and Block is terminating, as in WAF: the
//! first rule that blocks a request decides its answer, and no later rule
//! sees (or counts) it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::Value;

/// How much of a request body API Gateway forwards to WAF by default
/// (16 KB, 16,384 bytes).
pub const DEFAULT_BODY_INSPECTION_LIMIT: u64 = 16 * 1024;

/// One rule of the ACL.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub priority: u64,
    pub statement: Statement,
    /// The Block action's `CustomResponse`; without one API Gateway answers
    /// with its `WAF_FILTERED` gateway response.
    pub response: Option<CustomResponse>,
}

#[derive(Debug, Clone)]
pub enum Statement {
    /// Blocks every request the statement matches.
    Match(Match),
    /// Counts the requests `scope_down` matches (all, without one) per value
    /// of `key` over a trailing `window`, and blocks a value's requests once
    /// its count goes over `limit`. A request without the key's component
    /// (a header it does not carry) is not counted.
    Rate { key: AggregateKey, limit: u64, window: Duration, scope_down: Option<Match> },
}

/// What a rate-based rule counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateKey {
    /// The value of one header (name in lower case, as HTTP header names
    /// compare), after its text transformations.
    Header { name: String, transforms: Vec<Transform> },
    /// The request's source IP address (`AggregateKeyType: IP`).
    Ip,
}

/// A match statement, as the template's rules use them.
#[derive(Debug, Clone)]
pub enum Match {
    /// A component's size in bytes `operator` `size` (`GT 16384`).
    Size {
        field: Field,
        operator: Operator,
        size: u64,
    },
    /// A header's value, transformed, matches `regex` (`RegexMatchStatement`).
    Regex {
        header: String,
        transforms: Vec<Transform>,
        regex: regex_lite::Regex,
    },
    /// The request's method is exactly `method` (`ByteMatchStatement` on
    /// `Method` with `PositionalConstraint: EXACTLY`).
    Method(String),
    Not(Box<Match>),
    And(Vec<Match>),
    Or(Vec<Match>),
}

/// The request component a size constraint inspects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The body, with `oversize` deciding bodies WAF cannot see whole.
    Body { oversize: Oversize },
    /// One header's value, after its text transformations. A request
    /// without the header does not match.
    Header { name: String, transforms: Vec<Transform> },
}

/// The text transformations the local ACL applies, as WAF defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    None,
    /// A-Z to a-z.
    Lowercase,
    /// `\f \t \n \r \v` and the non-breaking space (160) become a space,
    /// then every run of spaces becomes one space.
    CompressWhiteSpace,
}

impl Transform {
    fn parse(v: &Value) -> Result<Vec<Self>> {
        let mut list: Vec<(u64, Self)> = Vec::new();
        for t in v.as_sequence().into_iter().flatten() {
            let priority = number(&t["Priority"], "TextTransformations.Priority")?;
            let kind = match t["Type"].as_str() {
                Some("NONE") => Self::None,
                Some("LOWERCASE") => Self::Lowercase,
                Some("COMPRESS_WHITE_SPACE") => Self::CompressWhiteSpace,
                other => bail!("the local gateway applies no text transformation {other:?}"),
            };
            list.push((priority, kind));
        }
        // WAF applies them from the lowest priority up.
        list.sort_by_key(|(p, _)| *p);
        Ok(list.into_iter().map(|(_, t)| t).filter(|t| *t != Self::None).collect())
    }

    /// `value` after `transforms`, in order.
    pub fn apply_all(transforms: &[Self], value: &str) -> String {
        let mut out = value.to_owned();
        for t in transforms {
            out = match t {
                Self::None => out,
                Self::Lowercase => out.to_ascii_lowercase(),
                Self::CompressWhiteSpace => {
                    let mut s = String::with_capacity(out.len());
                    for c in out.chars() {
                        let c = if matches!(c, '\u{c}' | '\t' | '\n' | '\r' | '\u{b}' | '\u{a0}') { ' ' } else { c };
                        if !(c == ' ' && s.ends_with(' ')) {
                            s.push(c);
                        }
                    }
                    s
                }
            };
        }
        out
    }
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

/// The header a `FieldToMatch` names (`SingleHeader: {Name}`), in lower case.
fn single_header(field: &Value) -> Option<String> {
    field.get("SingleHeader").and_then(|h| h["Name"].as_str()).map(str::to_ascii_lowercase)
}

impl Match {
    fn parse(statement: &Value) -> Result<Self> {
        if let Some(size) = statement.get("SizeConstraintStatement") {
            let field = &size["FieldToMatch"];
            let transforms = Transform::parse(&size["TextTransformations"])?;
            let field = if let Some(body) = field.get("Body") {
                if !transforms.is_empty() {
                    bail!("the local gateway applies no text transformation to a body");
                }
                let oversize = match body.get("OversizeHandling").and_then(Value::as_str) {
                    None | Some("CONTINUE") => Oversize::Continue,
                    Some("MATCH") => Oversize::Match,
                    Some("NO_MATCH") => Oversize::NoMatch,
                    Some(other) => bail!("OversizeHandling {other}"),
                };
                Field::Body { oversize }
            } else if let Some(name) = single_header(field) {
                Field::Header { name, transforms }
            } else {
                bail!("the local gateway applies size constraints on the body or a single header only");
            };
            let operator = size["ComparisonOperator"]
                .as_str()
                .and_then(Operator::parse)
                .ok_or_else(|| anyhow!("ComparisonOperator is not one of EQ NE LE LT GE GT"))?;
            Ok(Match::Size { field, operator, size: number(&size["Size"], "Size")? })
        } else if let Some(re) = statement.get("RegexMatchStatement") {
            let header = single_header(&re["FieldToMatch"])
                .ok_or_else(|| anyhow!("the local gateway applies regex matches on a single header only"))?;
            let source = text(&re["RegexString"]).ok_or_else(|| anyhow!("RegexMatchStatement without RegexString"))?;
            let regex = regex_lite::Regex::new(&source).with_context(|| format!("RegexString {source:?}"))?;
            Ok(Match::Regex { header, transforms: Transform::parse(&re["TextTransformations"])?, regex })
        } else if let Some(bytes) = statement.get("ByteMatchStatement") {
            if bytes["FieldToMatch"].get("Method").is_none()
                || bytes["PositionalConstraint"].as_str() != Some("EXACTLY")
            {
                bail!("the local gateway applies byte matches of EXACTLY the method only");
            }
            if !Transform::parse(&bytes["TextTransformations"])?.is_empty() {
                bail!("the local gateway applies no text transformation to the method");
            }
            let method =
                text(&bytes["SearchString"]).ok_or_else(|| anyhow!("ByteMatchStatement without SearchString"))?;
            Ok(Match::Method(method))
        } else if let Some(not) = statement.get("NotStatement") {
            Ok(Match::Not(Box::new(Match::parse(&not["Statement"])?)))
        } else if let Some(and) = statement.get("AndStatement") {
            Ok(Match::And(Self::parse_all(&and["Statements"])?))
        } else if let Some(or) = statement.get("OrStatement") {
            Ok(Match::Or(Self::parse_all(&or["Statements"])?))
        } else {
            bail!("the local gateway applies size, regex, not, and and or match statements only")
        }
    }

    fn parse_all(v: &Value) -> Result<Vec<Self>> {
        v.as_sequence().into_iter().flatten().map(Self::parse).collect()
    }

    fn matches(&self, req: &Seen<'_>, inspection_limit: u64) -> bool {
        match self {
            Match::Size { field: Field::Body { oversize }, operator, size } => {
                if req.body_len > inspection_limit {
                    match oversize {
                        Oversize::Match => true,
                        Oversize::NoMatch => false,
                        Oversize::Continue => operator.holds(inspection_limit, *size),
                    }
                } else {
                    operator.holds(req.body_len, *size)
                }
            }
            Match::Size { field: Field::Header { name, transforms }, operator, size } => (req.header)(name)
                .is_some_and(|v| operator.holds(Transform::apply_all(transforms, v).len() as u64, *size)),
            Match::Regex { header, transforms, regex } => {
                (req.header)(header).is_some_and(|v| regex.is_match(&Transform::apply_all(transforms, v)))
            }
            Match::Method(m) => req.method == m,
            Match::Not(m) => !m.matches(req, inspection_limit),
            Match::And(all) => all.iter().all(|m| m.matches(req, inspection_limit)),
            Match::Or(any) => any.iter().any(|m| m.matches(req, inspection_limit)),
        }
    }
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
            let key = match rate["AggregateKeyType"].as_str() {
                Some("IP") => AggregateKey::Ip,
                Some("CUSTOM_KEYS") => {
                    let keys = rate["CustomKeys"].as_sequence().map(Vec::as_slice).unwrap_or_default();
                    let [key] = keys else { bail!("rule {name}: expected one custom key") };
                    let header = key["Header"]["Name"]
                        .as_str()
                        .ok_or_else(|| anyhow!("rule {name}: the local gateway aggregates on a header only"))?
                        .to_ascii_lowercase();
                    let transforms = Transform::parse(&key["Header"]["TextTransformations"])
                        .with_context(|| format!("rule {name}"))?;
                    AggregateKey::Header { name: header, transforms }
                }
                other => bail!("rule {name}: AggregateKeyType {other:?}"),
            };
            let limit = number(&rate["Limit"], &format!("rule {name}: Limit"))?;
            if limit < MIN_RATE_LIMIT {
                bail!("rule {name}: Limit {limit} is under WAF's minimum, {MIN_RATE_LIMIT}");
            }
            let window = match rate.get("EvaluationWindowSec") {
                Some(w) => number(w, &format!("rule {name}: EvaluationWindowSec"))?,
                None => 300,
            };
            let scope_down = match rate.get("ScopeDownStatement") {
                Some(s) => Some(Match::parse(s).with_context(|| format!("rule {name}: ScopeDownStatement"))?),
                None => None,
            };
            Statement::Rate { key, limit, window: Duration::from_secs(window), scope_down }
        } else {
            Statement::Match(Match::parse(statement).with_context(|| format!("rule {name}"))?)
        };
        Ok(Rule { name, priority, statement, response })
    }
}

/// The smallest `Limit` WAF accepts for a rate-based rule.
pub const MIN_RATE_LIMIT: u64 = 10;

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

/// What the ACL sees of a request: its headers (by lower-case name), its
/// body's length and its source address.
pub struct Seen<'a> {
    pub method: &'a str,
    pub header: &'a (dyn Fn(&str) -> Option<&'a str> + Sync),
    pub body_len: u64,
    pub ip: IpAddr,
}

/// The web ACL: its rules in priority order and the rate rules' counts,
/// per (rule, aggregation key), in one-second buckets.
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
    pub fn check(&self, req: &Seen<'_>) -> Option<&Rule> {
        self.check_at(self.started.elapsed().as_secs(), req)
    }

    fn check_at(&self, second: u64, req: &Seen<'_>) -> Option<&Rule> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for (i, rule) in self.rules.iter().enumerate() {
            let blocks = match &rule.statement {
                Statement::Match(m) => m.matches(req, self.body_inspection_limit),
                Statement::Rate { key, limit, window, scope_down } => {
                    if scope_down.as_ref().is_some_and(|s| !s.matches(req, self.body_inspection_limit)) {
                        continue;
                    }
                    let value = match key {
                        AggregateKey::Ip => Some(req.ip.to_string()),
                        AggregateKey::Header { name, transforms } => {
                            (req.header)(name).map(|v| Transform::apply_all(transforms, v))
                        }
                    };
                    match value {
                        None => false,
                        Some(value) => {
                            let n = counts.entry((i, value)).or_default().count(second, window.as_secs().max(1));
                            n > *limit
                        }
                    }
                }
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
    use std::net::Ipv4Addr;

    use super::*;

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn check<'a>(acl: &'a WebAcl, second: u64, headers: &[(&str, &str)], body_len: u64) -> Option<&'a str> {
        check_from(acl, second, headers, body_len, IP)
    }

    fn check_from<'a>(
        acl: &'a WebAcl,
        second: u64,
        headers: &[(&str, &str)],
        body_len: u64,
        ip: IpAddr,
    ) -> Option<&'a str> {
        let header = |name: &str| headers.iter().find(|(h, _)| *h == name).map(|(_, v)| *v);
        acl.check_at(second, &Seen { method: "GET", header: &header, body_len, ip }).map(|r| r.name.as_str())
    }

    fn rate(name: &str, priority: u64, header: &str, limit: u64) -> Rule {
        Rule {
            name: name.into(),
            priority,
            statement: Statement::Rate {
                key: AggregateKey::Header { name: header.into(), transforms: vec![] },
                limit,
                window: Duration::from_secs(60),
                scope_down: None,
            },
            response: None,
        }
    }

    fn limiter(limit: u64) -> WebAcl {
        WebAcl::new(vec![rate("key", 0, "x-api-key", limit), rate("bearer", 1, "authorization", limit)])
    }

    #[test]
    fn blocks_a_value_past_its_limit_within_the_window() {
        let l = limiter(3);
        let a = [("x-api-key", "a")];
        let b = [("x-api-key", "b")];
        for second in 0..3 {
            assert_eq!(check(&l, second, &a, 0), None);
        }
        assert_eq!(check(&l, 10, &a, 0), Some("key"), "fourth request within 60 s");
        assert_eq!(check(&l, 10, &b, 0), None, "another key keeps its own count");
        // Blocked requests count: at 61 s the window holds seconds 2..=61,
        // that is the third and fourth requests, plus this one.
        assert_eq!(check(&l, 61, &a, 0), None);
        assert_eq!(check(&l, 61, &a, 0), Some("key"));
        // Once every counted request is older than the window, it passes.
        assert_eq!(check(&l, 200, &a, 0), None);
    }

    #[test]
    fn counts_under_each_header_a_request_carries() {
        let l = limiter(1);
        for _ in 0..5 {
            assert_eq!(check(&l, 0, &[], 0), None, "a request without a key header is not counted");
        }
        let bearer = [("authorization", "Bearer k")];
        assert_eq!(check(&l, 0, &bearer, 0), None);
        assert_eq!(check(&l, 0, &bearer, 0), Some("bearer"));
        let both = [("x-api-key", "k2"), ("authorization", "Bearer k2")];
        assert_eq!(check(&l, 0, &both, 0), None);
        assert_eq!(check(&l, 0, &both, 0), Some("key"));
    }

    #[test]
    fn transformations_are_wafs() {
        use Transform::*;
        assert_eq!(Transform::apply_all(&[CompressWhiteSpace, Lowercase], "BeArEr \t\u{a0} K\r\nX"), "bearer k x");
        assert_eq!(Transform::apply_all(&[Lowercase], "A  B"), "a  b");
        assert_eq!(Transform::apply_all(&[CompressWhiteSpace], " a  "), " a ", "no trim: runs become one space");
    }

    /// The template's ACL, resolved: read from `template.yaml` itself, so
    /// these tests hold the rules that deploy.
    fn template_acl(key_limit: &str, anonymous_limit: &str) -> WebAcl {
        let mut stack = crate::stack::Stack::unprovisioned("t").unwrap();
        stack.parameters.insert("KeyRateLimit".into(), key_limit.into());
        stack.parameters.insert("AnonymousRateLimit".into(), anonymous_limit.into());
        stack.parameters.insert("MaxRequestBodyBytes".into(), "100".into());
        stack.web_acl().unwrap()
    }

    const KEY: &str = "usk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// However a caller spells one key, it gets one allowance per header
    /// name: scheme case and whitespace count as the same value.
    #[test]
    fn one_key_one_allowance_per_header_however_spelled() {
        let acl = template_acl("10", "10");
        let spellings = [
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
            format!("BEARER {KEY}"),
            format!("Bearer  {KEY}"),
            format!("Bearer\t{KEY}"),
            format!("bEaReR \t {KEY}"),
        ];
        let mut served = 0;
        for round in 0..4 {
            for s in &spellings {
                if check(&acl, round, &[("authorization", s)], 0).is_none() {
                    served += 1;
                }
            }
        }
        assert_eq!(served, 10, "every spelling of the Authorization header shares one allowance");
        let mut served = 0;
        for _ in 0..30 {
            if check(&acl, 5, &[("x-api-key", KEY)], 0).is_none() {
                served += 1;
            }
        }
        assert_eq!(served, 10, "x-api-key has its own allowance, and only one");
    }

    /// Spellings the functions refuse are counted apart from the key's
    /// (and answered 401 by the functions): they take nothing from it.
    #[test]
    fn a_spelling_the_functions_refuse_takes_nothing_from_the_key() {
        let acl = template_acl("10", "10");
        for bad in [format!("Basic {KEY}"), format!("Bearer {KEY} x"), format!("Bearer{KEY}")] {
            for _ in 0..20 {
                check(&acl, 0, &[("authorization", bad.as_str())], 0);
            }
        }
        let served = (0..10).filter(|_| check(&acl, 0, &[("authorization", &format!("Bearer {KEY}"))], 0).is_none());
        assert_eq!(served.count(), 10);
    }

    #[test]
    fn requests_without_a_key_are_limited_per_source_address() {
        let acl = template_acl("10", "10");
        let other = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let served = (0..25).filter(|_| check(&acl, 0, &[], 0).is_none()).count();
        assert_eq!(served, 10);
        assert_eq!(check(&acl, 0, &[("x-api-key", "")], 0), Some("per-ip-without-key"), "an empty key is no key");
        assert_eq!(check_from(&acl, 0, &[], 0, other), None, "another address has its own allowance");
        assert_eq!(check(&acl, 0, &[("x-api-key", KEY)], 0), None, "a keyed request is the key's");
        let bearer = format!("bEaReR  {KEY}");
        assert_eq!(check(&acl, 0, &[("authorization", bearer.as_str())], 0), None, "so is a Bearer one");
        // Junk credentials count against the address too: each would
        // otherwise be a key of its own.
        let junk = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        let served =
            (0..25).filter(|n| check_from(&acl, 0, &[("x-api-key", &format!("junk{n}"))], 0, junk).is_none()).count();
        assert_eq!(served, 10);
    }

    /// Preflights carry no credential: they are not counted against the
    /// address, whose allowance is for requests without a key.
    #[test]
    fn preflights_are_not_counted_against_the_address() {
        let acl = template_acl("10", "10");
        let header = |_: &str| None;
        for _ in 0..50 {
            let seen = Seen { method: "OPTIONS", header: &header, body_len: 0, ip: IP };
            assert_eq!(acl.check_at(0, &seen).map(|r| r.name.as_str()), None);
        }
        assert_eq!((0..12).filter(|_| check(&acl, 0, &[], 0).is_none()).count(), 10);
    }

    #[test]
    fn a_body_over_the_size_is_blocked_before_any_rate_rule_counts_it() {
        let acl = template_acl("10", "10");
        let k = [("x-api-key", KEY)];
        assert_eq!(check(&acl, 0, &k, 0), None, "no body");
        assert_eq!(check(&acl, 0, &k, 100), None, "exactly the size");
        for _ in 0..20 {
            assert_eq!(check(&acl, 0, &k, 101), Some("max-request-body"));
            assert_eq!(check(&acl, 0, &[], 7 << 20), Some("max-request-body"), "no key needed");
        }
        let served = (0..20).filter(|_| check(&acl, 0, &k, 10).is_none()).count();
        assert_eq!(served, 8, "two counted requests before, eight more");
        let body = acl.rules().iter().find(|r| r.name == "max-request-body").unwrap();
        assert_eq!(
            body.response,
            Some(CustomResponse {
                status: 413,
                headers: vec![("Access-Control-Allow-Origin".into(), "*".into())],
                body: Some(("application/json".into(), r#"{"error":"Request body too large"}"#.into())),
            }),
            "a page can read it: the CORS origin is among its headers"
        );
    }

    #[test]
    fn bodies_past_the_inspection_limit_follow_oversize_handling() {
        let limit = DEFAULT_BODY_INSPECTION_LIMIT;
        let acl = |size: u64, oversize: Oversize| {
            WebAcl::new(vec![Rule {
                name: "body".into(),
                priority: 0,
                statement: Statement::Match(Match::Size {
                    field: Field::Body { oversize },
                    operator: Operator::Gt,
                    size,
                }),
                response: None,
            }])
        };
        let decide = |acl: &WebAcl, len: u64| check(acl, 0, &[], len).is_some();
        let exact = acl(limit, Oversize::Match);
        assert!(!decide(&exact, limit));
        assert!(decide(&exact, limit + 1));
        let above = acl(limit + 1000, Oversize::Match);
        assert!(decide(&above, limit + 1), "under the size, yet blocked");
        let cont = acl(limit + 1000, Oversize::Continue);
        assert!(!decide(&cont, 10 << 20), "a 10 MiB body passes");
        assert!(!decide(&acl(limit, Oversize::NoMatch), 10 << 20));
    }

    #[test]
    fn refuses_what_it_would_not_apply_faithfully() {
        let base: Value = serde_yaml::from_str(
            r#"
DefaultAction: { Allow: {} }
Rules:
  - Name: r
    Priority: 0
    Action: { Block: {} }
    Statement:
      RateBasedStatement:
        Limit: "10"
        AggregateKeyType: CUSTOM_KEYS
        CustomKeys: [{ Header: { Name: x-api-key, TextTransformations: [{ Priority: 0, Type: NONE }] } }]
"#,
        )
        .unwrap();
        assert!(WebAcl::parse(&base).is_ok());
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
        assert!(edit(&["Statement", "RateBasedStatement", "Limit"], "\"9\"").is_err(), "WAF's minimum is 10");
        assert!(edit(
            &["Statement", "RateBasedStatement", "CustomKeys"],
            "[{ Header: { Name: x-api-key, TextTransformations: [{ Priority: 0, Type: URL_DECODE }] } }]"
        )
        .is_err());
        assert!(edit(&["Statement"], "{ ByteMatchStatement: {} }").is_err());
    }
}
