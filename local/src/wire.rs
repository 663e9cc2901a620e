//! A counting, timing, fault-injecting HTTP proxy on loopback, between the
//! functions and the emulator: point a function's `AWS_ENDPOINT_URL` at it
//! and every AWS call the function makes is recorded as it crosses the wire,
//! with the AWS operation, the access key id that signed it and the round
//! trip through to the emulator. `cargo xtask bench` counts and times calls
//! with it.
//!
//! The proxy forwards requests as they are (method, path, query, headers,
//! body) and answers with the emulator's answer as it is; it reads whole
//! bodies, which is fine for the small requests the functions send.
//!
//! **Faults.** Rules set while it runs ([`Proxy::inject`], lifted with
//! [`Proxy::lift`] or [`Proxy::lift_all`]) make it misbehave for the calls
//! they match, by operation (`dynamodb:TransactWriteItems`, `s3:*`, `*`) and
//! optionally by signer (the calling function's logical id), for the next N
//! matching calls or always:
//!
//! - [`Fault::Refuse`] answers an AWS-shaped error without forwarding (the
//!   call is never applied): a JSON body with `__type` for DynamoDB and
//!   SQS's JSON protocol, an XML `<Error>` for S3 and SQS's query protocol,
//!   no body for a `HEAD`;
//! - [`Fault::Delay`] waits, then forwards;
//! - [`Fault::DropResponse`] forwards the call, so the emulator applies it,
//!   then breaks the connection instead of answering: the caller sees a
//!   transport failure after the commit;
//! - [`Fault::Pass`] forwards it untouched (to let some calls through
//!   before a broader rule).
//!
//! The first rule (in the order they were set) that matches a call decides;
//! a rule for N calls is gone once it has been applied N times.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use axum::Router;

/// One AWS call as it crossed the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// `service:Operation`, e.g. `dynamodb:GetItem`, `s3:HeadObject`.
    pub operation: String,
    /// The access key id in the request's signature (the local stack sets
    /// it to the calling function's logical id).
    pub signer: String,
    /// Reached the proxy at (its head parsed; the proxy's own reading and
    /// forwarding count as the call's, not the caller's)…
    pub arrived: Instant,
    /// …and the emulator's whole answer read back at.
    pub answered: Instant,
    pub status: u16,
    /// The conditional headers the request carried (`if-match`,
    /// `if-none-match`, …, lowercase), for the error catalogue: S3 answers
    /// 412 and 409 only to calls with a precondition.
    pub conditions: Vec<String>,
}

/// What the proxy does to a call a [`Rule`] matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answers `status` with the AWS error `code`, without forwarding: the
    /// call is never applied.
    Refuse { status: u16, code: String },
    /// Waits this long, then forwards the call as usual.
    Delay(Duration),
    /// Forwards the call (the emulator applies it), then breaks the
    /// connection instead of answering: a transport failure after the commit.
    DropResponse,
    /// Forwards the call untouched: set before a broader rule, it lets the
    /// next N matching calls through (`Rule::new(op, Fault::Pass).next(1)`).
    Pass,
}

impl Fault {
    /// Refuses with `status` and the AWS error `code` (`ThrottlingException`,
    /// `InternalServerError`, `SlowDown`, `ServiceUnavailable`, …).
    pub fn refuse(status: u16, code: &str) -> Self {
        Fault::Refuse { status, code: code.to_owned() }
    }

    /// A short name for reports: `refuse 503 SlowDown`, `delay 2s`, `drop`.
    pub fn describe(&self) -> String {
        match self {
            Fault::Refuse { status, code } => format!("refuse {status} {code}"),
            Fault::Delay(d) => format!("delay {d:?}"),
            Fault::DropResponse => "drop response".to_owned(),
            Fault::Pass => "pass".to_owned(),
        }
    }
}

/// How many matching calls a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// The next N matching calls, then the rule is gone.
    Next(u32),
    /// Every matching call, until the rule is lifted.
    Always,
}

/// A fault for the calls of one operation (and optionally one signer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `service:Operation` as [`operation`] names it, `service:*` for every
    /// operation of a service, or `*` for every call.
    pub operation: String,
    /// Only calls signed by this access key id (a function's logical id).
    pub signer: Option<String>,
    pub fault: Fault,
    pub times: Times,
}

impl Rule {
    /// `fault` on every call of `operation`, whoever signs it, until lifted.
    pub fn new(operation: &str, fault: Fault) -> Self {
        Rule { operation: operation.to_owned(), signer: None, fault, times: Times::Always }
    }

    /// Only for calls signed by `signer`.
    pub fn by(mut self, signer: &str) -> Self {
        self.signer = Some(signer.to_owned());
        self
    }

    /// Only for the next `n` matching calls.
    pub fn next(mut self, n: u32) -> Self {
        self.times = Times::Next(n);
        self
    }

    pub fn matches(&self, operation: &str, signer: &str) -> bool {
        let op = match self.operation.as_str() {
            "*" => true,
            pattern => match pattern.strip_suffix(":*") {
                Some(service) => operation.split_once(':').is_some_and(|(s, _)| s == service),
                None => pattern == operation,
            },
        };
        op && self.signer.as_deref().is_none_or(|s| s == signer)
    }
}

/// Names a rule set with [`Proxy::inject`], to lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(u64);

/// A fault the proxy applied to one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub rule: RuleId,
    pub operation: String,
    pub signer: String,
    pub fault: Fault,
}

/// The rules in force and the faults applied so far.
#[derive(Debug, Default)]
pub struct Faults {
    next_id: u64,
    rules: Vec<(RuleId, Rule)>,
    applied: Vec<Applied>,
}

impl Faults {
    pub fn add(&mut self, rule: Rule) -> RuleId {
        self.next_id += 1;
        let id = RuleId(self.next_id);
        if rule.times != Times::Next(0) {
            self.rules.push((id, rule));
        }
        id
    }

    /// Lifts rule `id`; `false` if it was already gone (used up, say).
    pub fn remove(&mut self, id: RuleId) -> bool {
        let before = self.rules.len();
        self.rules.retain(|(r, _)| *r != id);
        self.rules.len() != before
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The fault for a call of `operation` signed by `signer`: the first
    /// rule that matches decides, and one of its uses is spent (a rule for
    /// N calls goes once used up). The fault is recorded as applied.
    pub fn take(&mut self, operation: &str, signer: &str) -> Option<Fault> {
        let index = self.rules.iter().position(|(_, r)| r.matches(operation, signer))?;
        let (id, rule) = &mut self.rules[index];
        let (id, fault) = (*id, rule.fault.clone());
        if let Times::Next(n) = &mut rule.times {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(index);
            }
        }
        self.applied.push(Applied {
            rule: id,
            operation: operation.to_owned(),
            signer: signer.to_owned(),
            fault: fault.clone(),
        });
        Some(fault)
    }

    pub fn applied(&self) -> &[Applied] {
        &self.applied
    }
}

/// The proxy: its endpoint, the calls it has seen (in the order they were
/// answered), and the faults it injects.
pub struct Proxy {
    pub endpoint: String,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Faults>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Upstream {
    base: String,
    client: reqwest::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Faults>>,
}

/// Largest request body forwarded.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the proxy's client")?;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            client,
            calls: calls.clone(),
            faults: faults.clone(),
        });
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Proxy { endpoint, calls, faults, server })
    }

    /// Calls recorded so far; a mark for [`Proxy::calls_since`].
    pub fn len(&self) -> usize {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls answered after `mark` (a [`Proxy::len`]) was taken.
    pub fn calls_since(&self, mark: usize) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).get(mark..).map(<[Call]>::to_vec).unwrap_or_default()
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `rule`, in force from the next call on, after the rules already set.
    pub fn inject(&self, rule: Rule) -> RuleId {
        self.faults().add(rule)
    }

    /// Lifts rule `id`; `false` if it was already gone (used up, say).
    pub fn lift(&self, id: RuleId) -> bool {
        self.faults().remove(id)
    }

    /// Lifts every rule.
    pub fn lift_all(&self) {
        self.faults().clear()
    }

    /// Every fault applied so far, in order.
    pub fn applied(&self) -> Vec<Applied> {
        self.faults().applied().to_vec()
    }

    /// How many faults rule `id` has applied.
    pub fn applied_by(&self, id: RuleId) -> usize {
        self.faults().applied().iter().filter(|a| a.rule == id).count()
    }
}

async fn forward(State(up): State<Arc<Upstream>>, req: Request<Body>) -> Response<Body> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return status_only(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or_default();
    let operation = operation(parts.method.as_str(), path, query, &parts.headers, &body);
    let signer = signer(&parts.headers, query);
    let conditions: Vec<String> =
        parts.headers.keys().map(|h| h.as_str().to_owned()).filter(|h| h.starts_with("if-")).collect();
    let fault = up.faults.lock().unwrap_or_else(|e| e.into_inner()).take(&operation, &signer);
    let record = |status: StatusCode| {
        let call = Call {
            operation: operation.clone(),
            signer: signer.clone(),
            arrived,
            answered: Instant::now(),
            status: status.as_u16(),
            conditions: conditions.clone(),
        };
        up.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
    };
    match &fault {
        Some(Fault::Refuse { status, code }) => {
            let response = refusal(*status, code, &operation, &parts.method, &parts.headers);
            record(response.status());
            return response;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::DropResponse | Fault::Pass) | None => {}
    }
    let url = format!("{}{}", up.base, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut out = up.client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        // `expect: 100-continue` is answered here, by the proxy's server.
        if !HOP_BY_HOP.contains(&name.as_str()) && name != "expect" {
            out = out.header(name, value);
        }
    }
    let answer = match out.body(body).send().await {
        Ok(r) => r,
        Err(_) => return status_only(StatusCode::BAD_GATEWAY),
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    record(status);
    if fault == Some(Fault::DropResponse) {
        return broken(status);
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        // A HEAD answer's content-length is the object's size: keep it.
        let keep = !HOP_BY_HOP.contains(&name.as_str()) || (name == "content-length" && parts.method == "HEAD");
        if keep {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

/// An answer that never arrives whole: the status line may go out, then
/// the body fails and the server breaks the connection, so the caller sees
/// a transport failure (a response error, retried by the SDK as transient).
fn broken(status: StatusCode) -> Response<Body> {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault: response dropped",
        ))
    });
    let mut r = Response::new(Body::from_stream(failing));
    *r.status_mut() = status;
    r
}

/// The wire protocol of a request, as far as its error answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `X-Amz-Target` and a JSON body: DynamoDB, SQS's JSON protocol,
    /// EventBridge; `namespace` is the service's in an error's `__type`.
    Json { sqs: bool, namespace: &'static str },
    /// `Action=…`, answered in XML: SQS's query protocol.
    Query,
    /// S3's REST-XML.
    RestXml,
}

fn protocol(operation: &str, headers: &HeaderMap) -> Protocol {
    if let Some(target) = header(headers, "x-amz-target") {
        let namespace = if target.starts_with("AmazonSQS") {
            "com.amazonaws.sqs"
        } else if target.starts_with("AWSEvents") {
            "com.amazonaws.events"
        } else {
            "com.amazonaws.dynamodb.v20120810"
        };
        return Protocol::Json { sqs: target.starts_with("AmazonSQS"), namespace };
    }
    if operation.starts_with("s3:") {
        Protocol::RestXml
    } else {
        Protocol::Query
    }
}

/// The error answer AWS would give for `code` with `status`, in the
/// request's protocol, as the SDK parses it: DynamoDB's and SQS's JSON
/// `{"__type": "…#Code", "message"}` (SQS also names the code in
/// `x-amzn-query-error`), S3's `<Error><Code>`, the query protocol's
/// `<ErrorResponse>`; a `HEAD` answer has no body.
fn refusal(
    status: u16,
    code: &str,
    operation: &str,
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = "injected fault";
    let request_id = "fault-0000-0000";
    let fault_side = if status.is_server_error() { "Receiver" } else { "Sender" };
    let mut response = Response::builder().status(status);
    let text = match protocol(operation, headers) {
        Protocol::Json { sqs, namespace } => {
            response = response
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-requestid", request_id)
                .header("x-amzn-errortype", code);
            if sqs {
                response = response.header("x-amzn-query-error", format!("{code};{fault_side}"));
            }
            serde_json::json!({ "__type": format!("{namespace}#{code}"), "message": message }).to_string()
        }
        Protocol::Query => {
            response = response.header("content-type", "text/xml").header("x-amzn-requestid", request_id);
            format!(
                "<ErrorResponse><Error><Type>{fault_side}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
                 <RequestId>{request_id}</RequestId></ErrorResponse>"
            )
        }
        Protocol::RestXml => {
            response = response.header("x-amz-request-id", request_id);
            if method == "HEAD" {
                String::new()
            } else {
                response = response.header("content-type", "application/xml");
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
                     <RequestId>{request_id}</RequestId></Error>"
                )
            }
        }
    };
    response.body(Body::from(text)).unwrap_or_else(|_| status_only(status))
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(HeaderName::from_bytes(name.as_bytes()).ok()?).and_then(|v| v.to_str().ok())
}

/// The value of `name` in a query string or form body (first occurrence).
fn form_value(text: &str, name: &str) -> Option<String> {
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The access key id that signed the request: `Credential=AKID/…` in the
/// `Authorization` header, or `X-Amz-Credential` of a presigned query.
pub fn signer(headers: &HeaderMap, query: &str) -> String {
    if let Some(auth) = header(headers, "authorization") {
        if let Some(rest) = auth.split("Credential=").nth(1) {
            return rest.split('/').next().unwrap_or_default().trim().to_owned();
        }
    }
    form_value(query, "X-Amz-Credential").and_then(|c| c.split('/').next().map(str::to_owned)).unwrap_or_default()
}

/// The service the request is signed for (`…/region/SERVICE/aws4_request`).
fn signed_service(headers: &HeaderMap) -> Option<String> {
    let auth = header(headers, "authorization")?;
    let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

/// `service:Operation` of one request: the `X-Amz-Target` of the JSON
/// protocols (DynamoDB, SQS), the `Action` of the query protocol (SQS), or
/// for S3 what method, path and query say.
pub fn operation(method: &str, path: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(target) = header(headers, "x-amz-target") {
        let (prefix, op) = target.split_once('.').unwrap_or(("", target));
        let service = if prefix.starts_with("DynamoDBStreams") {
            "dynamodbstreams"
        } else if prefix.starts_with("DynamoDB") {
            "dynamodb"
        } else if prefix.starts_with("AmazonSQS") {
            "sqs"
        } else if prefix == "AWSEvents" {
            "events"
        } else {
            prefix
        };
        return format!("{service}:{op}");
    }
    let form = header(headers, "content-type").is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let action = form_value(query, "Action").or_else(|| {
        if form {
            form_value(&String::from_utf8_lossy(body), "Action")
        } else {
            None
        }
    });
    if let Some(action) = action {
        let service = signed_service(headers).unwrap_or_else(|| "sqs".to_owned());
        return format!("{service}:{action}");
    }
    format!("s3:{}", s3_operation(method, path, query))
}

/// The S3 operation of a path-style request (`/bucket/key?query`), as
/// `local/moto_serial.py` names it for the IAM check.
pub fn s3_operation(method: &str, path: &str, query: &str) -> String {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let _bucket = parts.next().unwrap_or_default();
    let has_key = parts.next().is_some_and(|k| !k.is_empty());
    let q: Vec<&str> =
        query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split('=').next().unwrap_or(kv)).collect();
    let has = |name: &str| q.contains(&name);
    let op = match method {
        "HEAD" if has_key => "HeadObject",
        "HEAD" => "HeadBucket",
        _ if has("tagging") => match method {
            "GET" => "GetObjectTagging",
            "PUT" => "PutObjectTagging",
            "DELETE" => "DeleteObjectTagging",
            other => other,
        },
        "PUT" if has("uploadId") && has("partNumber") => "UploadPart",
        _ if has("uploadId") => match method {
            "GET" => "ListParts",
            "POST" => "CompleteMultipartUpload",
            "DELETE" => "AbortMultipartUpload",
            other => other,
        },
        "POST" if has("uploads") => "CreateMultipartUpload",
        _ if has("uploads") => "ListMultipartUploads",
        "POST" if has("delete") => "DeleteObjects",
        _ if !has_key => match method {
            "GET" if has("list-type") => "ListObjectsV2",
            "GET" => "ListObjects",
            "PUT" => "CreateBucket",
            "DELETE" => "DeleteBucket",
            other => other,
        },
        "GET" => "GetObject",
        "PUT" if has("x-id") && query.contains("x-id=CopyObject") => "CopyObject",
        "PUT" => "PutObject",
        "DELETE" => "DeleteObject",
        other => other,
    };
    op.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=ConfirmUpload/20250101/us-east-1/s3/aws4_request, \
                        SignedHeaders=host;x-amz-date, Signature=abc";

    #[test]
    fn json_protocol_operations_come_from_the_target() {
        let h = headers(&[("x-amz-target", "DynamoDB_20120810.TransactWriteItems")]);
        assert_eq!(operation("POST", "/", "", &h, b"{}"), "dynamodb:TransactWriteItems");
        let h = headers(&[("x-amz-target", "AmazonSQS.SendMessage")]);
        assert_eq!(operation("POST", "/", "", &h, b"{}"), "sqs:SendMessage");
        let h = headers(&[("x-amz-target", "AWSEvents.PutEvents")]);
        assert_eq!(operation("POST", "/", "", &h, b"{}"), "events:PutEvents");
        let h = headers(&[("x-amz-target", "DynamoDBStreams_20120810.GetRecords")]);
        assert_eq!(operation("POST", "/", "", &h, b"{}"), "dynamodbstreams:GetRecords");
    }

    #[test]
    fn query_protocol_operations_come_from_the_action() {
        let auth = AUTH.replace("/s3/", "/sqs/");
        let h =
            headers(&[("content-type", "application/x-www-form-urlencoded; charset=utf-8"), ("authorization", &auth)]);
        assert_eq!(operation("POST", "/", "", &h, b"Action=SendMessage&QueueUrl=http%3A%2F%2Fq"), "sqs:SendMessage");
        assert_eq!(
            operation("GET", "/", "Action=ReceiveMessage&Version=2012-11-05", &HeaderMap::new(), b""),
            "sqs:ReceiveMessage"
        );
    }

    #[test]
    fn s3_operations_come_from_method_path_and_query() {
        let none = HeaderMap::new();
        let cases = [
            ("HEAD", "/b/uploads/o/upl_1", "", "s3:HeadObject"),
            ("GET", "/b/uploads/o/upl_1", "uploadId=x&max-parts=1000", "s3:ListParts"),
            ("POST", "/b/uploads/o/upl_1", "uploadId=x", "s3:CompleteMultipartUpload"),
            ("DELETE", "/b/uploads/o/upl_1", "uploadId=x", "s3:AbortMultipartUpload"),
            ("PUT", "/b/k", "partNumber=2&uploadId=x", "s3:UploadPart"),
            ("POST", "/b/k", "uploads", "s3:CreateMultipartUpload"),
            ("GET", "/b", "uploads&prefix=k", "s3:ListMultipartUploads"),
            ("POST", "/b", "delete", "s3:DeleteObjects"),
            ("DELETE", "/b/k", "tagging", "s3:DeleteObjectTagging"),
            ("PUT", "/b/k", "tagging", "s3:PutObjectTagging"),
            ("GET", "/b", "list-type=2", "s3:ListObjectsV2"),
            ("PUT", "/b/k", "x-id=PutObject", "s3:PutObject"),
            ("GET", "/b/k", "", "s3:GetObject"),
            ("DELETE", "/b/k", "x-id=DeleteObject", "s3:DeleteObject"),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(operation(method, path, query, &none, b""), want, "{method} {path}?{query}");
        }
    }

    #[test]
    fn the_signer_is_the_access_key_id() {
        assert_eq!(signer(&headers(&[("authorization", AUTH)]), ""), "ConfirmUpload");
        let presigned =
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=CreateUpload%2F20250101%2Fus-east-1%2Fs3%2Faws4_request";
        assert_eq!(signer(&HeaderMap::new(), presigned), "CreateUpload");
        assert_eq!(signer(&HeaderMap::new(), ""), "");
        assert_eq!(signed_service(&headers(&[("authorization", AUTH)])).as_deref(), Some("s3"));
    }

    #[test]
    fn rules_match_by_operation_service_or_anything_and_by_signer() {
        let tx = "dynamodb:TransactWriteItems";
        let rule = Rule::new(tx, Fault::DropResponse);
        assert!(rule.matches(tx, "DeleteUpload") && rule.matches(tx, ""));
        assert!(!rule.matches("dynamodb:TransactGetItems", "DeleteUpload"));
        assert!(!rule.matches("dynamodb:TransactWriteItemsX", "DeleteUpload"));
        let rule = Rule::new(tx, Fault::DropResponse).by("DeleteUpload");
        assert!(rule.matches(tx, "DeleteUpload"));
        assert!(!rule.matches(tx, "Sweeper") && !rule.matches(tx, ""));
        let s3 = Rule::new("s3:*", Fault::refuse(503, "SlowDown"));
        assert!(s3.matches("s3:DeleteObjects", "Cleanup") && s3.matches("s3:HeadObject", "X"));
        assert!(!s3.matches("sqs:SendMessage", "Cleanup") && !s3.matches("s3x:HeadObject", "Cleanup"));
        let all = Rule::new("*", Fault::Delay(Duration::from_millis(1)));
        assert!(all.matches("sqs:SendMessage", "") && all.matches("s3:GetObject", "A"));
        assert_eq!(Rule::new(tx, Fault::DropResponse).next(2).times, Times::Next(2));
    }

    #[test]
    fn the_first_matching_rule_decides_and_counted_rules_are_used_up() {
        let mut f = Faults::default();
        let tx = "dynamodb:TransactWriteItems";
        let once = f.add(Rule::new(tx, Fault::DropResponse).by("CreateUpload").next(2));
        let always = f.add(Rule::new("dynamodb:*", Fault::refuse(500, "InternalServerError")));
        assert_eq!(f.take("sqs:SendMessage", "CreateUpload"), None, "no rule for SQS");
        assert_eq!(f.take(tx, "CreateUpload"), Some(Fault::DropResponse));
        assert_eq!(f.take(tx, "Sweeper"), Some(Fault::refuse(500, "InternalServerError")), "not its signer");
        assert_eq!(f.take(tx, "CreateUpload"), Some(Fault::DropResponse));
        // Used up: the next rule in order takes over.
        assert_eq!(f.take(tx, "CreateUpload"), Some(Fault::refuse(500, "InternalServerError")));
        assert!(!f.remove(once), "already gone");
        for _ in 0..10 {
            assert!(f.take("dynamodb:GetItem", "Any").is_some(), "always stays");
        }
        assert!(f.remove(always));
        assert_eq!(f.take(tx, "CreateUpload"), None, "lifted");
        let applied = f.applied();
        assert_eq!(applied.len(), 14);
        assert_eq!(applied.iter().filter(|a| a.rule == once).count(), 2);
        assert_eq!((applied[1].operation.as_str(), applied[1].signer.as_str()), (tx, "Sweeper"));
        let pass = f.add(Rule::new("dynamodb:GetItem", Fault::Pass).next(1));
        f.add(Rule::new("dynamodb:GetItem", Fault::refuse(400, "AccessDeniedException")));
        assert_eq!(f.take("dynamodb:GetItem", "X"), Some(Fault::Pass), "the first call let through");
        assert_eq!(f.take("dynamodb:GetItem", "X"), Some(Fault::refuse(400, "AccessDeniedException")));
        assert!(!f.remove(pass));
        f.clear();
        let none = f.add(Rule::new(tx, Fault::DropResponse).next(0));
        assert_eq!(f.take(tx, "X"), None, "a rule for no call is no rule");
        assert!(!f.remove(none));
        f.add(Rule::new("*", Fault::DropResponse));
        f.clear();
        assert_eq!(f.take(tx, "X"), None);
    }

    async fn body_text(r: Response<Body>) -> String {
        String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn refusals_are_shaped_as_each_protocol_answers() {
        let post = axum::http::Method::POST;
        let ddb = headers(&[("x-amz-target", "DynamoDB_20120810.TransactWriteItems")]);
        let r = refusal(400, "ThrottlingException", "dynamodb:TransactWriteItems", &post, &ddb);
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
        let v: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
        assert_eq!(v["__type"], "com.amazonaws.dynamodb.v20120810#ThrottlingException");

        let sqs = headers(&[("x-amz-target", "AmazonSQS.SendMessage")]);
        let r = refusal(500, "InternalFailure", "sqs:SendMessage", &post, &sqs);
        assert_eq!(r.headers()["x-amzn-query-error"], "InternalFailure;Receiver");
        assert!(body_text(r).await.contains("com.amazonaws.sqs#InternalFailure"));

        let events = headers(&[("x-amz-target", "AWSEvents.PutEvents")]);
        let r = refusal(400, "ThrottlingException", "events:PutEvents", &post, &events);
        let v: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
        assert_eq!(v["__type"], "com.amazonaws.events#ThrottlingException");

        let r = refusal(503, "SlowDown", "s3:DeleteObjects", &post, &HeaderMap::new());
        assert_eq!(r.status(), 503);
        assert!(body_text(r).await.contains("<Error><Code>SlowDown</Code>"));
        let r = refusal(503, "SlowDown", "s3:HeadObject", &axum::http::Method::HEAD, &HeaderMap::new());
        assert_eq!(body_text(r).await, "", "a HEAD answer has no body");

        let r = refusal(400, "AWS.SimpleQueueService.NonExistentQueue", "sqs:SendMessage", &post, &HeaderMap::new());
        let text = body_text(r).await;
        assert!(text.starts_with("<ErrorResponse><Error><Type>Sender</Type>"), "{text}");
    }

    /// An upstream that counts the requests it is sent and answers `ok`.
    async fn counting_upstream() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        let app = Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                "ok"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, seen)
    }

    #[tokio::test]
    async fn the_proxy_refuses_delays_and_drops_as_told_and_can_be_lifted() {
        use std::sync::atomic::Ordering::SeqCst;
        let (upstream, seen) = counting_upstream().await;
        let proxy = Proxy::start(&upstream).await.unwrap();
        let http = reqwest::Client::new();
        let call = |op: &'static str| {
            http.post(format!("{}/", proxy.endpoint))
                .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
                .header("authorization", AUTH.replace("/s3/", "/dynamodb/"))
                .body("{}")
                .send()
        };

        let refuse = proxy.inject(Rule::new("dynamodb:TransactWriteItems", Fault::refuse(500, "InternalServerError")));
        let r = call("TransactWriteItems").await.unwrap();
        assert_eq!(r.status(), 500);
        assert!(r.text().await.unwrap().contains("#InternalServerError"));
        assert_eq!(seen.load(SeqCst), 0, "a refused call is not forwarded");
        assert_eq!(call("GetItem").await.unwrap().text().await.unwrap(), "ok", "other operations pass");
        assert_eq!(seen.load(SeqCst), 1);
        assert!(proxy.lift(refuse));
        assert_eq!(call("TransactWriteItems").await.unwrap().text().await.unwrap(), "ok", "lifted");
        assert_eq!(seen.load(SeqCst), 2);

        let drop =
            proxy.inject(Rule::new("dynamodb:TransactWriteItems", Fault::DropResponse).by("ConfirmUpload").next(1));
        let r = match call("TransactWriteItems").await {
            Ok(r) => r.text().await.map(|_| ()),
            Err(e) => Err(e),
        };
        assert!(r.is_err(), "the caller sees a transport failure");
        assert_eq!(seen.load(SeqCst), 3, "…after the call was applied");
        assert_eq!(call("TransactWriteItems").await.unwrap().text().await.unwrap(), "ok", "used up after one");
        assert_eq!(proxy.applied_by(drop), 1);

        proxy.inject(Rule::new("dynamodb:*", Fault::Delay(Duration::from_millis(300))));
        let started = Instant::now();
        assert_eq!(call("Query").await.unwrap().text().await.unwrap(), "ok");
        assert!(started.elapsed() >= Duration::from_millis(300), "delayed");
        proxy.lift_all();
        assert_eq!(seen.load(SeqCst), 5);

        let calls = proxy.calls_since(0);
        assert_eq!(calls.len(), 6, "refused and dropped calls are recorded too");
        assert_eq!((calls[0].operation.as_str(), calls[0].status), ("dynamodb:TransactWriteItems", 500));
        assert_eq!(calls[0].signer, "ConfirmUpload");
        assert_eq!(proxy.applied().len(), 3);
    }
}
