//! A counting, timing HTTP proxy on loopback, between the functions and the
//! emulator: point a function's `AWS_ENDPOINT_URL` at it and every AWS call
//! the function makes is recorded as it crosses the wire, with the AWS
//! operation, the access key id that signed it and the round trip through
//! to the emulator. `cargo xtask bench` counts and times calls with it.
//!
//! The proxy forwards requests as they are (method, path, query, headers,
//! body) and answers with the emulator's answer as it is; it reads whole
//! bodies, which is fine for the small requests the functions send.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use axum::body::Body;
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
}

/// The proxy: its endpoint and the calls it has seen, in the order they
/// were answered.
pub struct Proxy {
    pub endpoint: String,
    calls: Arc<Mutex<Vec<Call>>>,
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
        let state =
            Arc::new(Upstream { base: upstream.trim_end_matches('/').to_owned(), client, calls: calls.clone() });
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Proxy { endpoint, calls, server })
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
    let answered = Instant::now();
    up.calls.lock().unwrap_or_else(|e| e.into_inner()).push(Call {
        operation,
        signer,
        arrived,
        answered,
        status: status.as_u16(),
    });
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
        let service = if prefix.starts_with("DynamoDB") {
            "dynamodb"
        } else if prefix.starts_with("AmazonSQS") {
            "sqs"
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
/// `xtask/moto_serial.py` names it for the IAM check.
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
}
