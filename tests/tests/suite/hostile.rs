//! Hostile input, every route: a table of malformed and hostile requests
//! sent over HTTP to the local API Gateway in front of every function's
//! binary. Each one gets a 4xx with the exact error the contract names
//! (never a 5xx, never a panic), and the whole table leaves the table, the
//! bucket and both queues exactly as they were: snapshots before and after
//! are compared item by item, object by object (size, ETag, tags),
//! multipart upload by multipart upload, and queue counts.
//!
//! The caller's own uploads are in the stack while the table runs, as traps:
//! a completed upload, a pending one whose bytes are already in S3 (a
//! confirm that got through would complete it) and a pending multipart one.
//!
//! Where API Gateway answers itself, the local gateway answers as it does
//! (`local/src/gateway.rs`): a body over 10 MiB is API Gateway's 413
//! `REQUEST_TOO_LARGE` (its text, not JSON; that response cannot be
//! customised). Any other body over `MaxRequestBodyBytes` (16 KB) is the
//! web ACL's 413 `{"error":"Request body too large"}` (`local/src/waf.rs`),
//! before any function runs. Without that rule (`MaxRequestBodyBytes=0`),
//! an event over Lambda's 6 MB invocation limit is API Gateway's 500, since
//! Lambda refuses the invocation and no function runs: the second test
//! shows that path, the reason for the rule.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use local::waf::{Field, Match, Operator, Oversize, Statement};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::{ApiKey, OwnerId, UploadId};
use tests::{LocalApi, TestStack};

const MIB: usize = 1024 * 1024;
/// API Gateway's limit on a REST API request's body.
const API_GATEWAY_MAX_BODY: usize = 10 * MIB;

const UNAUTHORIZED: &str = "Unauthorized";
const MISSING_ID: &str = "Missing Upload-Id header";
const INVALID_ID: &str = "Invalid upload id";
const NOT_FOUND: &str = "Upload not found";
const INVALID_JSON: &str = "Invalid JSON body";
const INVALID_FILENAME: &str = "Invalid filename";
const INVALID_CONTENT_TYPE: &str = "Invalid content_type";
const INVALID_SIZE: &str = "Invalid size";
const SIZE_TOO_BIG: &str = "Size exceeds the maximum upload size";
const NOT_JSON: &str = "Content-Type must be application/json";
const QUOTA_EXCEEDED: &str = "Quota exceeded";
const INVALID_LIMIT: &str = "Invalid limit";
const INVALID_CURSOR: &str = "Invalid cursor";
/// API Gateway's own 413 (`REQUEST_TOO_LARGE`), plain text.
const TOO_LARGE: &str = "HTTP content length exceeded 10485760 bytes.";
/// API Gateway's message when Lambda refuses to invoke (the event is over
/// its 6 MB request payload limit), in the template's `DEFAULT_5XX`.
const INVOKE_REFUSED: &str = "Internal server error";
/// The web ACL's answer to a body over `MaxRequestBodyBytes` (its custom
/// response: static, so without a request id).
const BODY_TOO_LARGE: &str = r#"{"error":"Request body too large"}"#;

/// Strings that look like an attack on something downstream.
const INJECTIONS: &[&str] = &[
    "' OR '1'='1' --",
    "\"; DROP TABLE uploads; --",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1:1389/a}",
    "${7*7}",
    "<script>alert(1)</script>",
    "#{pk} = :pk OR attribute_exists(pk)",
    "a\u{0}b",
];

/// The routes of `openapi.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Create,
    List,
    DeleteByHeader,
    Get,
    Delete,
    Confirm,
    Resume,
}

use Route::*;

impl Route {
    const ALL: [Route; 7] = [Create, List, DeleteByHeader, Get, Delete, Confirm, Resume];
    const BY_PATH_ID: [Route; 4] = [Get, Delete, Confirm, Resume];

    fn method(self) -> Method {
        match self {
            Create | Confirm | Resume => Method::POST,
            List | Get => Method::GET,
            DeleteByHeader | Delete => Method::DELETE,
        }
    }

    /// The path with `segment` (written as it goes on the wire) as the id.
    fn path(self, segment: &str) -> String {
        match self {
            Create | List | DeleteByHeader => "/uploads".to_owned(),
            Get | Delete => format!("/uploads/{segment}"),
            Confirm => format!("/uploads/{segment}/confirm"),
            Resume => format!("/uploads/{segment}/resume"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Create => "POST /uploads",
            List => "GET /uploads",
            DeleteByHeader => "DELETE /uploads",
            Get => "GET /uploads/{id}",
            Delete => "DELETE /uploads/{id}",
            Confirm => "POST /uploads/{id}/confirm",
            Resume => "POST /uploads/{id}/resume",
        }
    }
}

#[derive(Debug, Clone)]
enum Expect {
    /// A function's error: status and the exact `error`.
    Error(u16, &'static str),
    /// API Gateway's own answer: status and the exact body.
    Gateway(u16, &'static str),
    /// API Gateway's own answer in the API's error shape (the template's
    /// `DEFAULT_4XX`/`DEFAULT_5XX`): status, the exact `error` and a
    /// request id.
    GatewayError(u16, &'static str),
    /// The web ACL's custom response: status and the exact JSON body.
    Waf(u16, &'static str),
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    route: Route,
    /// Path and query as they go on the wire (percent-encoded as wanted).
    target: String,
    /// In order; a name may repeat.
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, route: Route, target: impl Into<String>, expect: Expect) -> Self {
        Case { name: name.into(), route, target: target.into(), headers: Vec::new(), body: None, expect }
    }

    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986), so the
/// wire carries exactly what the case means.
fn pct(s: &str) -> String {
    pct_bytes(s.as_bytes())
}

fn pct_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The caller and what it owns.
struct Ctx {
    owner: OwnerId,
    key: ApiKey,
    /// Well-formed, never minted.
    unknown_key: ApiKey,
    /// Well-formed, never created.
    absent_id: UploadId,
    /// The caller's pending upload whose bytes are in S3.
    pending_id: UploadId,
}

impl Ctx {
    /// The request for `route` that reaches its function with everything
    /// valid but one thing, and so answers a 4xx that changes nothing: a
    /// create of size 0, a list with limit 0, an id that does not exist.
    fn base(&self, route: Route) -> Case {
        let absent = self.absent_id.as_str();
        let case = match route {
            Create => Case::new("", route, route.path(""), Expect::Error(400, INVALID_SIZE))
                .header("content-type", "application/json")
                .body(r#"{"filename": "a.txt", "content_type": "text/plain", "size": 0}"#),
            List => Case::new("", route, "/uploads?limit=0", Expect::Error(400, INVALID_LIMIT)),
            DeleteByHeader => {
                Case::new("", route, route.path(""), Expect::Error(404, NOT_FOUND)).header("x-upload-id", absent)
            }
            _ => Case::new("", route, route.path(absent), Expect::Error(404, NOT_FOUND)),
        };
        case.header("x-api-key", self.key.expose())
    }

    /// The request for `route` that succeeds with the caller's key: a create
    /// that fits, a plain list, an id that does not exist. Only sent with a
    /// key that must be refused: one that got through would create or list.
    fn valid(&self, route: Route) -> Case {
        match route {
            Create => self.base(Create).body(r#"{"filename": "a.txt", "content_type": "text/plain", "size": 5}"#),
            List => Case { target: "/uploads".into(), ..self.base(List) },
            _ => self.base(route),
        }
    }

    /// What `route`'s base request answers.
    fn base_answer(&self, route: Route) -> Expect {
        self.base(route).expect
    }
}

/// Ids of every wrong shape, as the function receives them (the path
/// carries them percent-encoded; `x-upload-id` as they are). They are
/// variations of a fixed id that does not exist (every hex letter in it),
/// so one wrongly accepted is a 404 (and a failed case), not an action on
/// the caller's uploads.
fn bad_ids() -> Vec<(String, String)> {
    let hex = "0123456789abcdef0123456789abcdef";
    let real = format!("upl_{hex}");
    let real_hex = hex;
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &real_hex[..8],
        &real_hex[8..12],
        &real_hex[12..16],
        &real_hex[16..20],
        &real_hex[20..]
    );
    let ids: Vec<(&str, String)> = vec![
        ("only the prefix", "upl_".into()),
        ("31 hex digits", format!("upl_{}", &hex[..31])),
        ("33 hex digits", format!("upl_{hex}0")),
        ("4096 hex digits", format!("upl_{}", "a".repeat(4096))),
        ("uppercase hex after upl_", format!("upl_{}", real_hex.to_uppercase())),
        ("uppercase prefix", format!("UPL_{real_hex}")),
        ("no prefix", real_hex.to_owned()),
        ("non-hex digits", format!("upl_{}", "g".repeat(32))),
        ("other prefix", format!("usk_{real_hex}")),
        ("uuid with a non-hex digit", format!("{}g", &uuid[..35])),
        ("uuid 8-4-4-4-11", uuid[..35].to_owned()),
        ("uuid 8-4-4-4-13", format!("{uuid}0")),
        ("uuid with misplaced hyphens", format!("{}-{}", &real_hex[..9], &real_hex[9..])),
        ("uuid in braces", format!("{{{uuid}}}")),
        ("urn:uuid", format!("urn:uuid:{uuid}")),
        ("uuid with a trailing space", format!("{uuid} ")),
        ("id with a leading space", format!(" {real}")),
        ("id with a trailing NUL", format!("{real}\u{0}")),
        ("id with a newline", format!("{real}\n")),
        ("id with a trailing slash", format!("{real}/")),
        ("id and a path", format!("{real}/../../x")),
        ("../", "../".into()),
        ("../ to the list", "../uploads".into()),
        ("a path traversal", "../../../../etc/passwd".into()),
        ("double-encoded ../", "%2e%2e%2f".into()),
        ("fullwidth digits", format!("upl_{}", "\u{FF10}".repeat(32))),
        (
            "cyrillic a, e, c for the hex letters",
            format!("upl_{}", real_hex.replace('a', "\u{430}").replace('e', "\u{435}").replace('c', "\u{441}")),
        ),
        ("fullwidth low line", format!("upl\u{FF3F}{real_hex}")),
        ("unicode hyphens in a uuid", uuid.replace('-', "\u{2010}")),
        ("zero-width space", format!("{real}\u{200B}")),
        ("combining mark", format!("{real}\u{301}")),
        ("a single space", " ".into()),
    ];
    let injections = INJECTIONS.iter().map(|s| (format!("injection {s:?}"), (*s).to_owned()));
    ids.into_iter().map(|(n, s)| (n.to_owned(), s)).chain(injections).collect()
}

fn cases(ctx: &Ctx) -> Vec<Case> {
    let mut out = Vec::new();
    let key = ctx.key.expose();
    let unknown = ctx.unknown_key.expose();

    // --- Credentials, on every route: 401 before anything else.
    for route in Route::ALL {
        let base = || ctx.valid(route);
        let r = route.name();
        let e401 = Expect::Error(401, UNAUTHORIZED);
        let mut push = |name: &str, case: Case| out.push(case.named(format!("{r}: {name}")));
        push("no key", base().without("x-api-key").expect(e401.clone()));
        for (name, value) in [
            ("empty x-api-key", "".to_owned()),
            ("blank x-api-key", "   ".to_owned()),
            ("8 KB x-api-key", "a".repeat(8192)),
            ("8 KB x-api-key with the prefix", format!("usk_{}", "0".repeat(8188))),
            ("uppercase key", key.to_uppercase()),
            ("uppercase hex digits", format!("usk_{}", key[4..].to_uppercase())),
            ("63 hex digits", key[..key.len() - 1].to_owned()),
            ("65 hex digits", format!("{key}0")),
            ("key and junk", format!("{key} junk")),
            ("key, comma, key", format!("{key},{key}")),
            ("unknown key", unknown.to_owned()),
            ("key percent-encoded", format!("usk%5F{}", &key[4..])),
        ] {
            push(name, base().without("x-api-key").header("x-api-key", value).expect(e401.clone()));
        }
        for s in INJECTIONS.iter().filter(|s| !s.contains('\0')) {
            push(&format!("x-api-key {s:?}"), base().without("x-api-key").header("x-api-key", s).expect(e401.clone()));
        }
        push(
            "non-ASCII x-api-key",
            base()
                .without("x-api-key")
                .header("x-api-key", format!("usk_{}", "\u{FF10}".repeat(64)))
                .expect(e401.clone()),
        );
        push(
            "Latin-1 bytes in x-api-key",
            base().without("x-api-key").header("x-api-key", b"usk_\xe9\xe9\xe9").expect(e401.clone()),
        );
        for (name, value) in [
            ("Bearer with nothing", "Bearer".to_owned()),
            ("Bearer and a space", "Bearer ".to_owned()),
            ("Bearer junk", "Bearer junk".to_owned()),
            ("Bearer with an unknown key", format!("Bearer {unknown}")),
            ("Basic credentials", "Basic dXNlcjpwYXNz".to_owned()),
            ("the key without a scheme", key.to_owned()),
            ("another scheme", format!("Token {key}")),
            ("Bearer with an 8 KB token", format!("Bearer {}", "a".repeat(8192))),
        ] {
            push(name, base().without("x-api-key").header("authorization", value).expect(e401.clone()));
        }
        for s in INJECTIONS.iter().filter(|s| !s.contains('\0')) {
            push(
                &format!("Bearer {s:?}"),
                base().without("x-api-key").header("authorization", format!("Bearer {s}")).expect(e401.clone()),
            );
        }
        // A malformed x-api-key is not rescued by a valid Authorization.
        push(
            "bad x-api-key, good Bearer",
            base()
                .without("x-api-key")
                .header("x-api-key", "junk")
                .header("authorization", format!("Bearer {key}"))
                .expect(e401.clone()),
        );
        // A repeated header reaches the function as API Gateway's `headers`
        // map has it: its last value.
        push(
            "x-api-key twice, the last one junk",
            base().without("x-api-key").header("x-api-key", key).header("x-api-key", "junk").expect(e401.clone()),
        );
        push(
            "x-api-key twice, the last one unknown",
            base().without("x-api-key").header("x-api-key", key).header("x-api-key", unknown).expect(e401.clone()),
        );
        push(
            "x-api-key twice, the last one the key",
            ctx.base(route).without("x-api-key").header("x-api-key", "junk").header("x-api-key", key),
        );
    }

    // --- Headers a route does not use, and content types.
    for route in Route::ALL {
        let base = || ctx.base(route);
        let r = route.name();
        let answer = ctx.base_answer(route);
        let e415 = if route == Create { Expect::Error(415, NOT_JSON) } else { answer.clone() };
        let mut push = |name: &str, case: Case| out.push(case.named(format!("{r}: {name}")));
        push("an 8 KB header of its own", base().header("x-junk", "j".repeat(8192)));
        let mut many = base();
        for i in 0..50 {
            many = many.header(&format!("x-junk-{i}"), "j");
        }
        push("50 extra headers", many);
        push("a request id of the client's own", base().header("x-request-id", "<script>alert(1)</script>"));
        push("a method override", base().header("x-http-method-override", "DELETE"));
        if route != DeleteByHeader {
            push("x-upload-id on a route that takes none", base().header("x-upload-id", "../../etc/passwd"));
        }
        // Headers the runtime reads to rebuild the request's URI.
        for proto in ["a b", "https, http", "javascript:", "\u{FF48}ttps"] {
            push(&format!("x-forwarded-proto {proto:?}"), base().header("x-forwarded-proto", proto));
        }
        for host in ["a b", "[::1", "127.0.0.1:99999", "x/y?z#w", "\u{FF41}.example", ""] {
            push(&format!("host {host:?}"), base().header("host", host));
        }
        for ct in [
            "text/plain",
            "application/xml",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/json-patch+json",
            "json",
            "",
            "application/json, text/plain",
            "{{7*7}}",
        ] {
            push(
                &format!("content-type {ct:?}"),
                base().without("content-type").header("content-type", ct).expect(e415.clone()),
            );
        }
        push(
            "8 KB content-type",
            base()
                .without("content-type")
                .header("content-type", format!("application/{}", "x".repeat(8192)))
                .expect(e415.clone()),
        );
        push(
            "content-type twice, the last not JSON",
            base()
                .without("content-type")
                .header("content-type", "application/json")
                .header("content-type", "text/plain")
                .expect(e415.clone()),
        );
        push(
            "content-type twice, the last JSON",
            base()
                .without("content-type")
                .header("content-type", "text/plain")
                .header("content-type", "application/json"),
        );
        push(
            "content-type in capitals with a charset",
            base().without("content-type").header("content-type", "APPLICATION/JSON; Charset=UTF-8"),
        );
        push(
            "body over API Gateway's 10 MiB",
            base().body(vec![b'x'; API_GATEWAY_MAX_BODY + 1]).expect(Expect::Gateway(413, TOO_LARGE)),
        );
        // What it gets without the web ACL's body rule; with it, the 413 of
        // `behind_the_web_acl`.
        push(
            "body over Lambda's 6 MB invocation payload",
            base().body(vec![b'x'; 7 * MIB]).expect(Expect::GatewayError(500, INVOKE_REFUSED)),
        );
        if route != Create {
            push("a JSON body on a route that takes none", base().body(r#"{"upload_id": "x", "status": "completed"}"#));
            push("binary junk as a body", base().body(vec![0xff, 0xfe, 0x00, 0x01, 0x80]));
        } else {
            push(
                "a gzip body",
                base()
                    .header("content-encoding", "gzip")
                    .body(vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe])
                    .expect(Expect::Error(400, INVALID_JSON)),
            );
        }
    }

    // --- Ids of every wrong shape: 400 before any lookup.
    for (name, id) in bad_ids() {
        for route in Route::BY_PATH_ID {
            let base = ctx.base(route);
            out.push(
                Case { target: route.path(&pct(&id)), ..base }
                    .named(format!("{}: path id, {name}", route.name()))
                    .expect(Expect::Error(400, INVALID_ID)),
            );
        }
        // A header value cannot carry NUL or a newline, and HTTP strips the
        // white space around it (so " <id>" is the id itself there).
        if !id.contains(['\0', '\n']) && (id.trim() == id || id.trim().is_empty()) {
            let expect = if id.trim().is_empty() { MISSING_ID } else { INVALID_ID };
            out.push(
                ctx.base(DeleteByHeader)
                    .without("x-upload-id")
                    .header("x-upload-id", &id)
                    .named(format!("DELETE /uploads: x-upload-id, {name}"))
                    .expect(Expect::Error(400, expect)),
            );
        }
    }
    for route in Route::BY_PATH_ID {
        let r = route.name();
        let base = ctx.base(route);
        let absent = ctx.absent_id.as_str();
        // Percent-encoding in the path is decoded once, as API Gateway does.
        let encoded = format!("%75pl_{}", &absent[4..]);
        out.push(
            Case { target: route.path(&encoded), ..base.clone() }.named(format!("{r}: percent-encoded well-formed id")),
        );
        out.push(
            Case { target: route.path("%252e%252e%252f"), ..base.clone() }
                .named(format!("{r}: double-encoded ../"))
                .expect(Expect::Error(400, INVALID_ID)),
        );
        out.push(
            Case { target: route.path("%ff%fe"), ..base.clone() }
                .named(format!("{r}: invalid UTF-8"))
                .expect(Expect::Error(400, INVALID_ID)),
        );
        out.push(
            Case { target: format!("{}?limit=abc&cursor=%00", route.path("junk")), ..base.clone() }
                .named(format!("{r}: bad id and a query"))
                .expect(Expect::Error(400, INVALID_ID)),
        );
        // A well-formed key that is unknown still learns only the id format;
        // a malformed key learns nothing.
        out.push(
            Case { target: route.path("junk"), ..base.clone() }
                .without("x-api-key")
                .header("x-api-key", unknown)
                .named(format!("{r}: unknown key, bad id"))
                .expect(Expect::Error(400, INVALID_ID)),
        );
        out.push(
            Case { target: route.path("junk"), ..base.clone() }
                .without("x-api-key")
                .header("x-api-key", "junk")
                .named(format!("{r}: bad key, bad id"))
                .expect(Expect::Error(401, UNAUTHORIZED)),
        );
        out.push(
            Case { target: route.path("%2e%2e%2f"), ..base.clone() }
                .named(format!("{r}: %2e%2e%2f"))
                .expect(Expect::Error(400, INVALID_ID)),
        );
        // Any 128 bits written as a UUID are an id, whatever its version or
        // variant: one that does not exist is a 404, like any other.
        for uuid in [
            "00000000-0000-0000-0000-000000000000",
            "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
            "c232ab00-9414-11ec-b3c8-9f6bdeced846",
            "1EC9414C-232A-6B00-B3C8-9F6BDECED846",
            "017f22e2-79b0-7cc3-98c4-dc0c0c07398f",
        ] {
            out.push(Case { target: route.path(uuid), ..base.clone() }.named(format!("{r}: unknown uuid {uuid}")));
        }
    }
    let del = || ctx.base(DeleteByHeader).without("x-upload-id");
    let absent = ctx.absent_id.as_str();
    for (name, case, expect) in [
        ("no x-upload-id", del(), Expect::Error(400, MISSING_ID)),
        ("empty x-upload-id", del().header("x-upload-id", ""), Expect::Error(400, MISSING_ID)),
        ("tab x-upload-id", del().header("x-upload-id", "\t"), Expect::Error(400, MISSING_ID)),
        ("8 KB x-upload-id", del().header("x-upload-id", "a".repeat(8192)), Expect::Error(400, INVALID_ID)),
        ("Latin-1 bytes in x-upload-id", del().header("x-upload-id", b"upl_\xe9"), Expect::Error(400, INVALID_ID)),
        (
            "x-upload-id twice, the last junk",
            del().header("x-upload-id", absent).header("x-upload-id", "junk"),
            Expect::Error(400, INVALID_ID),
        ),
        (
            "x-upload-id twice, the last well-formed",
            del().header("x-upload-id", "junk").header("x-upload-id", absent),
            Expect::Error(404, NOT_FOUND),
        ),
        (
            "x-upload-id, comma, x-upload-id",
            del().header("x-upload-id", format!("{absent},{absent}")),
            Expect::Error(400, INVALID_ID),
        ),
        (
            "unknown key, bad x-upload-id",
            del().without("x-api-key").header("x-api-key", unknown).header("x-upload-id", "junk"),
            Expect::Error(400, INVALID_ID),
        ),
        (
            "bad key, bad x-upload-id",
            del().without("x-api-key").header("x-api-key", "junk").header("x-upload-id", "junk"),
            Expect::Error(401, UNAUTHORIZED),
        ),
        (
            "bad key, no x-upload-id",
            del().without("x-api-key").header("x-api-key", "junk"),
            Expect::Error(401, UNAUTHORIZED),
        ),
    ] {
        out.push(case.named(format!("DELETE /uploads: {name}")).expect(expect));
    }

    // --- Create bodies.
    let create = |name: &str, body: &[u8], expect: &'static str| {
        let status = if expect == QUOTA_EXCEEDED { 403 } else { 400 };
        ctx.base(Create)
            .body(body.to_vec())
            .named(format!("POST /uploads: {name}"))
            .expect(Expect::Error(status, expect))
    };
    let ok_filename = json!("a.txt");
    let ok_ct = json!("text/plain");
    let with = |filename: Value, content_type: Value, size: Value| {
        let mut body = serde_json::Map::new();
        for (k, v) in [("filename", filename), ("content_type", content_type), ("size", size)] {
            if !v.is_null() {
                body.insert(k.into(), v);
            }
        }
        Value::Object(body).to_string()
    };
    let raw_size = |size: &str| format!(r#"{{"filename": "a.txt", "content_type": "text/plain", "size": {size}}}"#);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_member = format!(
        r#"{{"filename": {}1{}, "content_type": "a/b", "size": 1}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let mut bodies: Vec<(String, Vec<u8>, &'static str)> = vec![
        ("empty body".into(), b"".to_vec(), INVALID_JSON),
        ("white space".into(), b"  \n ".to_vec(), INVALID_JSON),
        ("not JSON".into(), b"nope".to_vec(), INVALID_JSON),
        ("unterminated object".into(), br#"{"filename": "a.txt""#.to_vec(), INVALID_JSON),
        ("trailing garbage".into(), format!("{}x", raw_size("5")).into_bytes(), INVALID_JSON),
        ("two objects".into(), format!("{0}{0}", raw_size("5")).into_bytes(), INVALID_JSON),
        ("byte order mark".into(), format!("\u{feff}{}", raw_size("5")).into_bytes(), INVALID_JSON),
        (
            "invalid UTF-8".into(),
            b"{\"filename\": \"\xff\", \"content_type\": \"a/b\", \"size\": 5}".to_vec(),
            INVALID_JSON,
        ),
        (
            "lone surrogate".into(),
            br#"{"filename": "\ud800", "content_type": "a/b", "size": 5}"#.to_vec(),
            INVALID_JSON,
        ),
        ("single quotes".into(), b"{'filename': 'a', 'content_type': 'a/b', 'size': 5}".to_vec(), INVALID_JSON),
        ("comments".into(), format!("/* hi */ {}", raw_size("5")).into_bytes(), INVALID_JSON),
        ("null".into(), b"null".to_vec(), INVALID_JSON),
        ("an array".into(), b"[]".to_vec(), INVALID_JSON),
        ("a string".into(), br#""{\"size\": 5}""#.to_vec(), INVALID_JSON),
        ("a number".into(), b"5".to_vec(), INVALID_JSON),
        ("true".into(), b"true".to_vec(), INVALID_JSON),
        ("100,000 nested arrays".into(), deep.into_bytes(), INVALID_JSON),
        ("10,000 nested objects in a member".into(), deep_member.into_bytes(), INVALID_JSON),
        ("form encoding".into(), b"filename=a.txt&content_type=text/plain&size=5".to_vec(), INVALID_JSON),
        ("an empty object".into(), b"{}".to_vec(), INVALID_FILENAME),
        ("NaN".into(), raw_size("NaN").into_bytes(), INVALID_JSON),
        ("Infinity".into(), raw_size("Infinity").into_bytes(), INVALID_JSON),
        ("hex number".into(), raw_size("0x10").into_bytes(), INVALID_JSON),
        ("leading plus".into(), raw_size("+5").into_bytes(), INVALID_JSON),
        ("leading zero".into(), raw_size("05").into_bytes(), INVALID_JSON),
        ("1e400".into(), raw_size("1e400").into_bytes(), INVALID_JSON),
    ];
    let fields: Vec<(&str, String, &'static str)> = vec![
        ("filename missing", with(Value::Null, ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("content_type missing", with(ok_filename.clone(), Value::Null, json!(5)), INVALID_CONTENT_TYPE),
        ("size missing", with(ok_filename.clone(), ok_ct.clone(), Value::Null), INVALID_SIZE),
        ("filename null", r#"{"filename": null, "content_type": "a/b", "size": 5}"#.into(), INVALID_FILENAME),
        ("filename a number", with(json!(123), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename an array", with(json!(["a.txt"]), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename an object", with(json!({"name": "a.txt"}), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename true", with(json!(true), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("content_type a number", with(ok_filename.clone(), json!(5), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type an array", with(ok_filename.clone(), json!(["text/plain"]), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type null", r#"{"filename": "a", "content_type": null, "size": 5}"#.into(), INVALID_CONTENT_TYPE),
        ("size a string", with(ok_filename.clone(), ok_ct.clone(), json!("5")), INVALID_SIZE),
        ("size an exponent string", with(ok_filename.clone(), ok_ct.clone(), json!("1e3")), INVALID_SIZE),
        ("size true", with(ok_filename.clone(), ok_ct.clone(), json!(true)), INVALID_SIZE),
        ("size null", r#"{"filename": "a", "content_type": "a/b", "size": null}"#.into(), INVALID_SIZE),
        ("size an array", with(ok_filename.clone(), ok_ct.clone(), json!([5])), INVALID_SIZE),
        ("size an object", with(ok_filename.clone(), ok_ct.clone(), json!({"bytes": 5})), INVALID_SIZE),
        ("size 0", raw_size("0"), INVALID_SIZE),
        ("size -0", raw_size("-0"), INVALID_SIZE),
        ("size 0.0", raw_size("0.0"), INVALID_SIZE),
        ("size -1", raw_size("-1"), INVALID_SIZE),
        ("size i64::MIN", raw_size("-9223372036854775808"), INVALID_SIZE),
        ("size 1.5", raw_size("1.5"), INVALID_SIZE),
        ("size 5.0", raw_size("5.0"), INVALID_SIZE),
        ("size 1e3", raw_size("1e3"), INVALID_SIZE),
        ("size 1E3", raw_size("1E3"), INVALID_SIZE),
        ("size 1e-3", raw_size("1e-3"), INVALID_SIZE),
        ("size 2^64", raw_size("18446744073709551616"), INVALID_SIZE),
        ("size 10^30", raw_size("1000000000000000000000000000000"), INVALID_SIZE),
        ("size 2^63", raw_size("9223372036854775808"), SIZE_TOO_BIG),
        ("size 2^64 - 1", raw_size("18446744073709551615"), SIZE_TOO_BIG),
        ("size 6 TiB", raw_size("6597069766656"), SIZE_TOO_BIG),
        ("size over the quota, one PUT", raw_size(&(60 * MIB).to_string()), QUOTA_EXCEEDED),
        ("size over the quota, multipart", raw_size(&(100 * MIB).to_string()), QUOTA_EXCEEDED),
        ("filename empty", with(json!(""), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename blank", with(json!("   "), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename 256 characters", with(json!("x".repeat(256)), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename 10 KB", with(json!("x".repeat(10 * 1024)), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename 10 KB of emoji", with(json!("\u{1F600}".repeat(2600)), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with NUL", with(json!("a\u{0}.txt"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with a newline", with(json!("a\n.txt"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with CR LF", with(json!("a\r\nx-amz-meta: 1"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with a tab", with(json!("a\t.txt"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with ESC", with(json!("a\u{1b}[31m.txt"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with DEL", with(json!("a\u{7f}.txt"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("filename with a C1 control", with(json!("a\u{85}.txt"), ok_ct.clone(), json!(5)), INVALID_FILENAME),
        ("content_type empty", with(ok_filename.clone(), json!(""), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type without a subtype", with(ok_filename.clone(), json!("text/"), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type a word", with(ok_filename.clone(), json!("pdf"), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type 10 KB", with(ok_filename.clone(), json!(format!("a/{}", "b".repeat(10 * 1024))), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type with CR LF", with(ok_filename.clone(), json!("text/plain\r\nx-amz-acl: public-read"), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type non-ASCII", with(ok_filename.clone(), json!("t\u{e9}xt/plain"), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type with NUL", with(ok_filename.clone(), json!("text/plain\u{0}"), json!(5)), INVALID_CONTENT_TYPE),
        ("content_type parameter without a value", with(ok_filename.clone(), json!("text/plain; charset"), json!(5)), INVALID_CONTENT_TYPE),
        (
            "extra members naming another owner, an id and a state",
            json!({"filename": "a", "content_type": "a/b", "size": 0, "owner": "someone-else", "upload_id": ctx.pending_id.as_str(), "status": "completed", "object_key": "uploads/x/y"}).to_string(),
            INVALID_SIZE,
        ),
        (
            "a 5 MB extra member",
            json!({"filename": "a", "content_type": "a/b", "size": 0, "pad": "p".repeat(5 * MIB)}).to_string(),
            INVALID_SIZE,
        ),
        ("members in capitals", r#"{"Filename": "a", "Content_Type": "a/b", "Size": 5}"#.into(), INVALID_FILENAME),
    ];
    for (name, body, expect) in fields {
        bodies.push((name.to_owned(), body.into_bytes(), expect));
    }
    for s in INJECTIONS {
        // Injection-looking strings in every member. A filename is metadata
        // and may be anything printable (see the test below), so an
        // otherwise valid body carries size 0 to stay a 400.
        let (size, filename_error) = if s.contains('\0') { (5, INVALID_FILENAME) } else { (0, INVALID_SIZE) };
        bodies.push((
            format!("filename {s:?}"),
            with(json!(s), ok_ct.clone(), json!(size)).into_bytes(),
            filename_error,
        ));
        bodies.push((
            format!("content_type {s:?}"),
            with(ok_filename.clone(), json!(s), json!(5)).into_bytes(),
            INVALID_CONTENT_TYPE,
        ));
        bodies.push((
            format!("size {s:?}"),
            with(ok_filename.clone(), ok_ct.clone(), json!(s)).into_bytes(),
            INVALID_SIZE,
        ));
        bodies.push((format!("member name {s:?}"), json!({ *s: 5 }).to_string().into_bytes(), INVALID_FILENAME));
    }
    for (name, body, expect) in bodies {
        out.push(create(&name, &body, expect));
    }

    // --- List query strings.
    let list = |query: &str| ctx.base(List).named(format!("GET /uploads: ?{query}"));
    let mut queries: Vec<(String, &'static str)> = vec![];
    for limit in [
        "",
        "0",
        "-1",
        "101",
        "1000000",
        "1.5",
        "1e3",
        "1E2",
        "0x10",
        "9223372036854775808",
        "18446744073709551616",
        "abc",
        "%00",
        "1%00",
        "%2B",
        "+5",
        "%EF%BC%95",
        "5%20",
        "%205",
        "null",
        "[5]",
    ] {
        queries.push((format!("limit={limit}"), INVALID_LIMIT));
    }
    queries.push(("limit=5&limit=5".into(), INVALID_LIMIT));
    queries.push(("limit=5&limit=6".into(), INVALID_LIMIT));
    queries.push(("limit=abc&cursor=junk".into(), INVALID_LIMIT));
    for s in INJECTIONS {
        queries.push((format!("limit={}", pct(s)), INVALID_LIMIT));
        queries.push((format!("cursor={}", pct(s)), INVALID_CURSOR));
    }
    // Cursors of the right shape signed with another secret, and pieces of one.
    let forged = shared::cursor::encode(&[7u8; 32], &ctx.owner, &format!("2030-01-01T00:00:00.000Z#{}", ctx.absent_id));
    let (forged_position, forged_tag) = forged.split_once('.').unwrap();
    let forged_nonsense = shared::cursor::encode(&[7u8; 32], &ctx.owner, "nonsense");
    for cursor in [
        "".to_owned(),
        ".".into(),
        "a.b".into(),
        "....".into(),
        "%ff%fe".into(),
        "a".repeat(10 * 1024),
        forged.clone(),
        format!("{forged_position}."),
        forged_position.to_owned(),
        format!(".{forged_tag}"),
        forged_nonsense,
        pct(&forged.replace('A', "\u{391}")),
    ] {
        queries.push((format!("cursor={cursor}"), INVALID_CURSOR));
    }
    queries.push(("cursor=a&cursor=b".into(), INVALID_CURSOR));
    for (query, expect) in queries {
        out.push(Case { target: format!("/uploads?{query}"), ..list(&query) }.expect(Expect::Error(400, expect)));
    }
    out
}

/// Sends `case`; returns what went wrong, if anything.
async fn run(http: &reqwest::Client, base: &str, case: &Case) -> Result<u16, String> {
    let url = reqwest::Url::parse(&format!("{base}{}", case.target)).map_err(|e| format!("bad URL: {e}"))?;
    let sent = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    if sent != case.target {
        return Err(format!("the client would send {sent:?}, not {:?}", case.target));
    }
    let mut req = http.request(case.route.method(), url);
    for (name, value) in &case.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header name: {e}"))?;
        let value = HeaderValue::from_bytes(value).map_err(|e| format!("header value: {e}"))?;
        req = req.header(name, value);
    }
    if let Some(body) = &case.body {
        req = req.body(body.clone());
    }
    let resp = req.send().await.map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    let text = String::from_utf8_lossy(&body);
    match &case.expect {
        Expect::Gateway(want, want_body) => {
            if (status, text.as_ref()) != (*want, *want_body) {
                return Err(format!("got {status} {text}, want {want} {want_body}"));
            }
        }
        Expect::GatewayError(want, message) => {
            let json: Value = serde_json::from_slice(&body)
                .map_err(|_| format!("got {status} with a body that is not JSON: {text}"))?;
            let ok = status == *want
                && json["error"] == *message
                && json["request_id"].as_str().is_some_and(|id| !id.is_empty())
                && json.as_object().is_some_and(|o| o.len() == 2);
            if !ok {
                return Err(format!("got {status} {text}, want {want} {{\"error\": {message:?}, \"request_id\"}}"));
            }
        }
        Expect::Waf(want, want_body) => {
            if (status, text.as_ref()) != (*want, *want_body) {
                return Err(format!("got {status} {text}, want {want} {want_body}"));
            }
            if headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/json") {
                return Err(format!("content-type {:?}", headers.get("content-type")));
            }
        }
        Expect::Error(want, message) => {
            let json: Value = serde_json::from_slice(&body)
                .map_err(|_| format!("got {status} with a body that is not JSON: {text}"))?;
            let rid = headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if case.headers.iter().any(|(n, v)| n == "x-request-id" && v == rid.as_bytes()) {
                return Err(format!("the client's x-request-id {rid:?} came back as the request id"));
            }
            let expected = json!({ "error": message, "request_id": rid });
            if status != *want || json != expected || rid.is_empty() {
                return Err(format!(
                    "got {status} {text} (x-request-id {rid:?}), want {want} {{\"error\": {message:?}}}"
                ));
            }
            if headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/json") {
                return Err(format!("content-type {:?}", headers.get("content-type")));
            }
        }
    }
    Ok(status)
}

/// What the stack's web ACL makes of the table: a body over its size rule's
/// limit (and within API Gateway's 10 MiB, which comes first) is the ACL's
/// 413 whatever else is wrong with the request.
fn behind_the_web_acl(table: &mut [Case], body_limit: Option<u64>) {
    let Some(limit) = body_limit else { return };
    for case in table {
        let len = case.body.as_ref().map_or(0, Vec::len);
        if len as u64 > limit && len <= API_GATEWAY_MAX_BODY {
            case.expect = Expect::Waf(413, BODY_TOO_LARGE);
        }
    }
}

/// The body size limit of the stack's web ACL, if it has one.
fn body_limit(t: &TestStack) -> Option<u64> {
    let acl = t.stack.web_acl().expect("the stack's web ACL");
    acl.rules().iter().find_map(|r| match &r.statement {
        Statement::Match(Match::Size {
            field: Field::Body { oversize: Oversize::Match },
            operator: Operator::Gt,
            size,
        }) => Some(*size),
        _ => None,
    })
}

/// `MaxRequestBodyBytes` as the template sets it by default.
fn default_body_limit() -> u64 {
    let template = local::template::Template::load(&local::stack::project_root().join("template.yaml")).unwrap();
    template.parameter_default("MaxRequestBodyBytes").unwrap().parse().unwrap()
}

/// Sends the table's cases that `keep` selects to a stack with `overrides`
/// (and the quota the table's cases assume), checks every answer and that
/// nothing in the stack changed; the number of answers by status.
async fn run_table(overrides: &[(&str, &str)], keep: impl Fn(&Case) -> bool) -> BTreeMap<u16, usize> {
    let quota = (64 * MIB).to_string();
    // Hundreds of requests with junk credentials from one address: the
    // per-address limit (binaries.rs tests it) would answer most of them
    // 429 before the functions could show how they treat them.
    let parameters: Vec<(&str, &str)> = [("QuotaBytes", quota.as_str()), ("AnonymousRateLimit", "2000000000")]
        .into_iter()
        .chain(overrides.iter().copied())
        .collect();
    let t = TestStack::with_parameters(&parameters).await;
    let (owner, key) = t.owner("hostile").await;
    let completed = t.completed_upload(&owner, &tests::bytes(1024, 1)).await;
    let pending = t.pending_single_with_id(&owner, UploadId::generate(), &tests::bytes(2048, 2)).await;
    let multipart = t.pending_multipart(&owner, 1).await;
    let api = LocalApi::start(&t).await;
    let http = reqwest::Client::new();

    // The list's cursor secret is created the first time a cursor is made or
    // read; that one write belongs to the service's first use, not to any
    // hostile request, so a first page of one makes it now.
    let first =
        http.get(format!("{}/uploads?limit=1", api.base)).header("x-api-key", key.expose()).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let listed: Value = first.json().await.unwrap();
    assert!(listed["next_cursor"].is_string(), "{listed}");

    let ctx = Ctx {
        owner: owner.clone(),
        key: key.clone(),
        unknown_key: ApiKey::generate(),
        absent_id: UploadId::generate(),
        pending_id: pending.id.clone(),
    };
    let mut table = cases(&ctx);
    table.retain(|c| keep(c));
    behind_the_web_acl(&mut table, body_limit(&t));
    let usage_before = t.store.usage(&owner).await.unwrap();
    let before = t.snapshot().await;
    assert_eq!(before.objects.len(), 2, "{before:?}");
    assert_eq!(before.multipart_uploads.len(), 1, "{before:?}");

    let started = Instant::now();
    let results: Vec<(usize, Result<u16, String>)> = stream::iter(table.iter().enumerate())
        .map(|(i, case)| {
            let (http, base) = (&http, &api.base);
            async move { (i, run(http, base, case).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut failures: Vec<String> = Vec::new();
    let mut by_status = BTreeMap::<u16, usize>::new();
    for (i, result) in &results {
        let case = &table[*i];
        match result {
            Ok(status) => *by_status.entry(*status).or_default() += 1,
            Err(why) => failures.push(format!("{}: {why}", case.name)),
        }
    }
    failures.sort();
    eprintln!("{} hostile cases on {} routes in {elapsed:?}: {by_status:?}", table.len(), Route::ALL.len());
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), table.len(), failures.join("\n"));

    let after = t.snapshot().await;
    let diff = before.diff(&after);
    assert!(diff.is_empty(), "the hostile requests changed the stack:\n{diff}");
    assert_eq!(before, after);
    assert_eq!(t.store.usage(&owner).await.unwrap(), usage_before, "the owner's usage changed");
    for upload in [&completed, &pending] {
        assert!(t.object_exists(&upload.object_key).await);
    }
    assert_eq!(
        t.store.get_session(&owner, &multipart.id).await.unwrap().unwrap().status,
        shared::domain::Status::Pending
    );
    by_status
}

#[tokio::test]
async fn hostile_requests_get_stable_4xx_and_change_nothing() {
    let by_status = run_table(&[], |_| true).await;
    // No 5xx at all: the bodies Lambda would refuse (API Gateway's 500) are
    // the web ACL's 413, one per route at least.
    assert_eq!(by_status.range(500..).map(|(_, n)| n).sum::<usize>(), 0, "{by_status:?}");
    assert!(by_status.get(&413).is_some_and(|n| *n >= 2 * Route::ALL.len()), "{by_status:?}");
}

/// Without the body rule (`MaxRequestBodyBytes=0`) the bodies it catches
/// reach API Gateway's own handling: the functions answer those up to
/// Lambda's 6 MB payload (their 4xx, as in the table), and a larger event
/// is the 500 API Gateway gives when Lambda refuses it, on every route:
/// the reason the rule exists.
#[tokio::test]
async fn without_the_body_rule_a_body_lambda_refuses_is_a_500() {
    let limit = default_body_limit() as usize;
    let by_status = run_table(&[("MaxRequestBodyBytes", "0")], |c| {
        c.body.as_ref().is_some_and(|b| b.len() > limit && b.len() <= API_GATEWAY_MAX_BODY)
    })
    .await;
    assert_eq!(by_status.range(500..).map(|(_, n)| n).sum::<usize>(), Route::ALL.len(), "{by_status:?}");
    assert_eq!(by_status.get(&413), None, "{by_status:?}");
}

/// A filename is metadata only: anything printable, injection-looking or
/// not, is stored and returned exactly as sent, and never reaches the
/// object key.
#[tokio::test]
async fn injection_looking_names_are_plain_metadata() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("metadata").await;
    let api = LocalApi::start(&t).await;
    let http = reqwest::Client::new();
    let names: Vec<String> = INJECTIONS
        .iter()
        .filter(|s| !s.contains('\0'))
        .map(|s| (*s).to_owned())
        .chain(["../../etc/passwd".into(), "%00.txt".into(), "\u{202e}fdp.exe".into(), "x".repeat(255)])
        .collect();
    for name in &names {
        let content_type = r#"text/plain; name="<script>alert(1)</script>""#;
        let r = http
            .post(format!("{}/uploads", api.base))
            .header("x-api-key", key.expose())
            .json(&json!({ "filename": name, "content_type": content_type, "size": 3 }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{name:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["filename"], json!(name));
        let id = UploadId::parse(body["upload_id"].as_str().unwrap()).unwrap();
        let session = t.store.get_session(&owner, &id).await.unwrap().unwrap();
        assert_eq!(session.filename, *name);
        assert_eq!(session.content_type, content_type);
        assert_eq!(session.object_key.as_str(), format!("uploads/{}/{id}", OwnerId::parse("metadata").unwrap()));
        let got: Value = http
            .get(format!("{}/uploads/{id}", api.base))
            .header("x-api-key", key.expose())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["filename"], json!(name));
        assert_eq!(got["content_type"], json!(content_type));
        let r =
            http.delete(format!("{}/uploads/{id}", api.base)).header("x-api-key", key.expose()).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(t.store.usage(&owner).await.unwrap(), Default::default());
}
