//! The local API: serves exactly the routes `template.yaml` declares, builds
//! the proxy event API Gateway would, and invokes the function's binary.
//!
//! Like an API Gateway REST API, a path or method no route declares gets
//! `403 {"message":"Missing Authentication Token"}`, and the stage's web ACL
//! (`local/src/waf.rs`: its body size rule, then its rate-based rules on
//! the API key's header) is applied before any route: a request a rule
//! blocks gets that rule's custom response (the size rule's 413), or the
//! template's `WAF_FILTERED` response for a rule without one.
//!
//! Its limits are API Gateway's and Lambda's: a body over 10 MiB gets API
//! Gateway's own 413 (`REQUEST_TOO_LARGE`, whose text cannot be customised)
//! before the web ACL sees it, and an event over Lambda's 6 MB invocation
//! payload gets the 500 API Gateway answers when Lambda refuses an
//! invocation (no function runs). With the template's body size rule on
//! (`MaxRequestBodyBytes`, 16 KB by default) no body that large gets that
//! far: only a stack deployed with the rule off can still answer that 500.
//! Header values that are not ASCII reach the function as UTF-8 text (bytes
//! that are not UTF-8 replaced), as they reach it through API Gateway,
//! rather than being dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use serde_json::json;

use crate::apigw::{parse_response, rest_event, ProxyRequest};
use crate::runtime::{uuid_like, FunctionHost, Outcome};
use crate::template::{Cors, GatewayResponse, Route};
use crate::waf::{CustomResponse, WebAcl};

/// Where the local API also serves the one-file upload page
/// (`web/upload.html`, which holds the API key it is given): a local tool
/// beside the API, at a path no route of the contract can take (no API
/// Gateway stage serves it). `cargo xtask dev` serves the Uppy page, which
/// holds only tokens, at [`crate::apppage::UPLOAD_PAGE_PATH`].
pub const BASIC_PAGE_PATH: &str = "/_local/basic";
const BASIC_PAGE: &str = include_str!("../../web/upload.html");

/// Limit on request bodies, as API Gateway's 10 MB payload limit
/// (10,485,760 bytes).
const MAX_BODY: usize = 10 * 1024 * 1024;

/// API Gateway's answer to a body over `MAX_BODY`.
pub const TOO_LARGE: &str = "HTTP content length exceeded 10485760 bytes.";

/// Lambda's limit on a synchronous invocation's payload (the event),
/// 6 MB: an event over it is refused before any function runs.
pub const MAX_INVOKE_PAYLOAD: usize = 6 * 1024 * 1024;

pub struct Gateway {
    pub routes: Vec<Route>,
    pub functions: HashMap<String, Arc<FunctionHost>>,
    pub web_acl: WebAcl,
    /// The API's own answers by type, from the template.
    pub responses: BTreeMap<String, GatewayResponse>,
    /// The API's CORS settings: every path answers `OPTIONS` with them, as
    /// the mock method SAM adds does.
    pub cors: Option<Cors>,
}

/// Matches `path` against a route template; returns the path parameters.
pub fn match_path(template: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (ts, ps) in t.iter().zip(&p) {
        if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if ps.is_empty() {
                return None;
            }
            params.insert(name.to_owned(), percent_decode(ps));
        } else if ts != ps {
            return None;
        }
    }
    Some(params)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn plain(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// The template's response of type `kind`, or API Gateway's default one
/// (403 `Forbidden`, as WAF_FILTERED is by default) when it declares none.
fn gateway_response(gw: &Gateway, kind: &str, request_id: &str) -> Response<Body> {
    match gw.responses.get(kind) {
        Some(declared) => rendered(declared, StatusCode::FORBIDDEN, request_id, "Forbidden"),
        None => plain(StatusCode::FORBIDDEN, json!({ "message": "Forbidden" })),
    }
}

/// An answer API Gateway gives itself with `status` and `message` (a
/// route that does not exist, a failed integration): the template's
/// `DEFAULT_4XX` or `DEFAULT_5XX` when it declares one, else API Gateway's
/// `{"message": …}`.
fn default_response(gw: &Gateway, status: StatusCode, request_id: &str, message: &str) -> Response<Body> {
    let kind = if status.is_server_error() { "DEFAULT_5XX" } else { "DEFAULT_4XX" };
    match gw.responses.get(kind) {
        Some(declared) => rendered(declared, status, request_id, message),
        None => plain(status, json!({ "message": message })),
    }
}

fn rendered(declared: &GatewayResponse, status: StatusCode, request_id: &str, message: &str) -> Response<Body> {
    let mut r = Response::new(Body::from(declared.render_error(request_id, message)));
    *r.status_mut() = declared.status.and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(status);
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in &declared.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// The answer to a preflight, as SAM's mock `OPTIONS` method gives it:
/// 200, `{}`, and the API's CORS headers.
fn preflight(cors: &Cors) -> Response<Body> {
    let mut r = Response::new(Body::from("{}\n"));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    let mut headers = vec![
        ("access-control-allow-origin", cors.allow_origin.as_str()),
        ("access-control-allow-methods", cors.allow_methods.as_str()),
        ("access-control-allow-headers", cors.allow_headers.as_str()),
    ];
    if let Some(age) = &cors.max_age {
        headers.push(("access-control-max-age", age));
    }
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

/// A web ACL rule's custom response, exactly as WAF sends it: static, with
/// no request id.
fn waf_response(custom: &CustomResponse) -> Response<Body> {
    let (media, content) = custom.body.clone().unwrap_or_default();
    let mut r = Response::new(Body::from(content));
    *r.status_mut() = StatusCode::from_u16(custom.status).unwrap_or(StatusCode::FORBIDDEN);
    if let Ok(media) = HeaderValue::from_str(&media) {
        if !media.is_empty() {
            r.headers_mut().insert("content-type", media);
        }
    }
    for (k, v) in &custom.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            r.headers_mut().insert(k, v);
        }
    }
    r
}

impl Gateway {
    pub async fn serve(self, addr: SocketAddr) -> Result<()> {
        serve_router(self.router(), addr).await
    }

    /// The API as a router (every path), to serve beside other routes.
    pub fn router(self) -> Router {
        Router::new().fallback(handle).with_state(Arc::new(self))
    }
}

/// Serves `router` on `addr`, with the peer's address the gateway needs.
pub async fn serve_router(router: Router, addr: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

async fn handle(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    if parts.method == axum::http::Method::GET && parts.uri.path() == BASIC_PAGE_PATH {
        let mut r = Response::new(Body::from(BASIC_PAGE));
        r.headers_mut().insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
        r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
        return r;
    }
    let request_id = uuid_like();
    // API Gateway's own limit comes first: a body over it reaches nothing.
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            let mut r = Response::new(Body::from(TOO_LARGE));
            *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
    };
    // A repeated header is seen by its last instance, as API Gateway hands
    // it to the function (the event's single-value `headers`).
    let header = |name: &str| parts.headers.get_all(name).iter().last().and_then(|v| v.to_str().ok());
    let seen =
        crate::waf::Seen { method: parts.method.as_str(), header: &header, body_len: body.len() as u64, ip: peer.ip() };
    if let Some(rule) = gw.web_acl.check(&seen) {
        return match &rule.response {
            Some(custom) => waf_response(custom),
            None => gateway_response(&gw, "WAF_FILTERED", &request_id),
        };
    }
    let path = parts.uri.path().to_owned();
    let method = parts.method.as_str().to_owned();
    if method == "OPTIONS" {
        if let Some(cors) = &gw.cors {
            if gw.routes.iter().any(|r| match_path(&r.path, &path).is_some()) {
                return preflight(cors);
            }
        }
    }
    let matched = gw
        .routes
        .iter()
        .find_map(|r| (r.method == method).then(|| match_path(&r.path, &path).map(|p| (r, p))).flatten());
    let Some((route, path_parameters)) = matched else {
        return default_response(&gw, StatusCode::FORBIDDEN, &request_id, "Missing Authentication Token");
    };
    let Some(host) = gw.functions.get(&route.function).cloned() else {
        return default_response(&gw, StatusCode::INTERNAL_SERVER_ERROR, &request_id, "Internal server error");
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let query = parts
        .uri
        .query()
        .map(|q| {
            q.split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
                })
                .collect()
        })
        .unwrap_or_default();
    let proxy = ProxyRequest {
        method,
        path,
        resource: route.path.clone(),
        path_parameters,
        headers,
        query,
        body: (!body.is_empty()).then(|| body.to_vec()),
        source_ip: peer.ip().to_string(),
        request_id: request_id.clone(),
    };
    let event = rest_event(&proxy);
    if serde_json::to_vec(&event).map_or(true, |e| e.len() > MAX_INVOKE_PAYLOAD) {
        // Lambda refuses the invocation; API Gateway answers 500.
        return default_response(&gw, StatusCode::INTERNAL_SERVER_ERROR, &request_id, "Internal server error");
    }
    // Like API Gateway, the invocation goes on when the client hangs up.
    let invocation = tokio::spawn(async move { host.invoke(&event).await });
    let outcome = invocation.await.unwrap_or_else(|e| Err(anyhow::anyhow!("invocation task failed: {e}")));
    match outcome {
        Ok(Outcome::Response(v)) => match parse_response(&v) {
            Ok(resp) => {
                let mut r = Response::new(Body::from(resp.body));
                *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
                for (k, v) in resp.headers {
                    if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::from_str(&v)) {
                        r.headers_mut().append(k, v);
                    }
                }
                r
            }
            Err(_) => default_response(&gw, StatusCode::BAD_GATEWAY, &request_id, "Internal server error"),
        },
        // API Gateway answers 502 when the integration fails.
        Ok(Outcome::Error(_)) | Err(_) => {
            default_response(&gw, StatusCode::BAD_GATEWAY, &request_id, "Internal server error")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(match_path("/uploads", "/uploads"), Some(BTreeMap::new()));
        let p = match_path("/uploads/{upload_id}", "/uploads/upl_1").unwrap();
        assert_eq!(p["upload_id"], "upl_1");
        assert_eq!(match_path("/uploads/{upload_id}", "/uploads/a%2Fb").unwrap()["upload_id"], "a/b");
        assert!(match_path("/uploads/{upload_id}", "/uploads/").is_none());
        assert!(match_path("/uploads/{upload_id}", "/uploads/a/b").is_none());
        assert!(match_path("/uploads", "/other").is_none());
    }
}
