//! The HTTP edge: request ids, credentials and ids parsed from requests, and
//! the one place an outcome becomes an API Gateway response.

use std::future::Future;
use std::time::{Duration, Instant};

use api::ErrorBody;
use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde_json::Value;
use tracing::field::Empty;
use tracing::{error, info, info_span, Instrument, Span};

use crate::auth::{self, Caller, Credential};
use crate::domain::{ApiKey, BrowserToken, Session, UploadId};
use crate::error::{chain, Error};
use crate::store::Store;

/// What a handler is, for its span and its failure message.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The function's name, as in `template.yaml` and `events/`.
    pub name: &'static str,
    /// The `error` a client sees when this operation fails internally.
    pub failure: &'static str,
}

/// A successful outcome: status and JSON body (an object; the request id is
/// added to it).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// Seconds a client should wait before asking again (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl Reply {
    pub fn ok(body: impl Serialize) -> Self {
        Self { status: StatusCode::OK, body: to_body(body), retry_after: None }
    }

    pub fn created(body: impl Serialize) -> Self {
        Self { status: StatusCode::CREATED, body: to_body(body), retry_after: None }
    }

    /// 202: accepted, still in progress; ask again after `retry_after` seconds.
    pub fn accepted(body: impl Serialize, retry_after: u32) -> Self {
        Self { status: StatusCode::ACCEPTED, body: to_body(body), retry_after: Some(retry_after) }
    }
}

/// An answer's JSON. The API's views (crate `api`) are strings, integers,
/// booleans and string-keyed maps, which always serialize.
fn to_body(view: impl Serialize) -> Value {
    serde_json::to_value(view).expect("the API's views serialize to JSON")
}

/// The request body's bytes (API Gateway may hand them over base64-encoded;
/// lambda_http has decoded them by now).
pub fn body(req: &Request) -> &[u8] {
    match req.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// A request body must be JSON: a `Content-Type` other than
/// `application/json` (any case, parameters such as `charset` allowed) is
/// `UnsupportedMediaType`. A request without one is read as JSON. A
/// repeated header counts by its last value, as API Gateway hands it over.
pub fn json_content_type(req: &Request) -> Result<(), Error> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else { return Ok(()) };
    let essence = value.to_str().ok().and_then(|v| v.split(';').next()).map(str::trim);
    match essence {
        Some(e) if e.eq_ignore_ascii_case("application/json") => Ok(()),
        _ => Err(Error::UnsupportedMediaType),
    }
}

/// One query string parameter; `None` when absent. A parameter given twice
/// is ambiguous and rejected with `message`.
pub fn query_param(req: &Request, name: &str, message: &'static str) -> Result<Option<String>, Error> {
    let params = req.query_string_parameters_ref();
    let values: Vec<&str> = params.and_then(|p| p.all(name)).unwrap_or_default();
    match values.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        _ => Err(Error::Invalid(message)),
    }
}

/// Runs `handler` for `req` inside a span carrying the request id, route,
/// owner and upload id, logs one line with the outcome, and renders the
/// response. Every response, success or error, carries `request_id` in its
/// body and `x-request-id` as a header.
pub async fn serve<F, Fut>(req: Request, op: Operation, handler: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Reply, Error>>,
{
    let request_id = request_id(&req);
    let lambda_request_id = req.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default();
    let route = format!("{} {}", req.method(), resource(&req));
    let span = info_span!(
        "request",
        operation = op.name,
        request_id = %request_id,
        lambda_request_id = %lambda_request_id,
        route = %route,
        owner = Empty,
        upload_id = Empty,
        token_id = Empty,
    );
    async move {
        let started = Instant::now();
        let (status, mut body, retry_after) = match handler(req).await {
            Ok(reply) => (reply.status, reply.body, reply.retry_after),
            Err(err) => {
                if let Error::Internal { .. } = err {
                    error!(error = %chain(&err), "internal failure");
                }
                let body = ErrorBody { error: err.public_message(op.failure), request_id: request_id.clone() };
                (err.status(), to_body(body), err.retry_after())
            }
        };
        if let Value::Object(map) = &mut body {
            map.insert("request_id".into(), Value::String(request_id.clone()));
        }
        info!(status = status.as_u16(), latency_ms = started.elapsed().as_millis() as u64, "request completed");
        let mut response = json_response(status, &body, &request_id);
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
    .instrument(span)
    .await
}

fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(origin) = cors_allow_origin() {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    response
}

/// How long API Gateway (REST) waits for an integration's answer; past it,
/// the client gets API Gateway's own 504, outside the API's error shape.
pub const API_GATEWAY_TIMEOUT: Duration = Duration::from_secs(29);

/// Kept free before the earliest deadline, for writing the answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// The instant by which a handler must have answered `req`: API Gateway's
/// timeout counted from when it received the request (`requestTimeEpoch`,
/// which includes a cold start), or the Lambda's own deadline, whichever
/// comes first, less a margin for writing the answer. An event whose
/// `requestTimeEpoch` is further back than API Gateway waits (a replayed
/// fixture, `sam local invoke -e`) is not holding a client: only the
/// Lambda's deadline counts then. Without either, API Gateway's timeout
/// from now.
pub fn answer_by(req: &Request) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    // An epoch instant still ahead, as a tokio instant less the margin.
    let ahead = |epoch_ms: i64| {
        (epoch_ms > now_ms)
            .then(|| now + Duration::from_millis((epoch_ms - now_ms) as u64).saturating_sub(ANSWER_MARGIN))
    };
    let gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) if ctx.request_time_epoch > 0 => {
            ahead(ctx.request_time_epoch + API_GATEWAY_TIMEOUT.as_millis() as i64)
        }
        _ => None,
    };
    let lambda = req.lambda_context_ref().map(|c| c.deadline).filter(|d| *d > 0).and_then(|d| ahead(d as i64));
    // Never later than API Gateway's wait from now (a clock ahead of ours
    // cannot stretch it).
    let at_most = now + API_GATEWAY_TIMEOUT.saturating_sub(ANSWER_MARGIN);
    [gateway, lambda].into_iter().flatten().fold(at_most, tokio::time::Instant::min)
}

/// The headers a page may read from an answer besides the CORS-safelisted
/// ones: the request id and how long to wait before retrying.
pub const EXPOSED_HEADERS: &str = "retry-after,x-request-id";

/// The origin browsers may call the API from (`CORS_ALLOW_ORIGIN`, the
/// template's `CorsAllowOrigin`: one origin or `*`), read once; `None`
/// when unset (no CORS headers).
fn cors_allow_origin() -> Option<&'static HeaderValue> {
    static ORIGIN: std::sync::OnceLock<Option<HeaderValue>> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| {
            std::env::var("CORS_ALLOW_ORIGIN")
                .ok()
                .filter(|v| !v.is_empty())
                .and_then(|v| HeaderValue::from_str(&v).ok())
        })
        .as_ref()
}

/// API Gateway's id for the request; the Lambda invocation id when the
/// event has none; a fresh id as a last resort.
pub fn request_id(req: &Request) -> String {
    let from_gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .filter(|id| !id.is_empty())
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()).filter(|id| !id.is_empty()))
        .unwrap_or_else(|| UploadId::generate().as_str().replacen("upl_", "req_", 1))
}

/// The route template API Gateway matched (`/uploads/{upload_id}`), or the
/// raw path when the event carries none.
fn resource(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.resource_path.clone(),
        _ => None,
    }
    .unwrap_or_else(|| req.uri().path().to_owned())
}

/// The credential a request presents: an API key in `x-api-key`, or in
/// `Authorization: Bearer` an API key or a browser token (`ubt_…`, checked
/// later, by [`crate::auth::authenticate`]). A missing or malformed one is
/// `Unauthorized` without any store call.
///
/// Exactly one spelling of each is accepted, the one the web ACL's rate
/// rules count by (`template.yaml`, `KeyRateLimitAcl`): `x-api-key` is the
/// key itself; `Authorization` is the scheme `Bearer` in any case, a run of
/// spaces or tabs, and the credential, nothing after it. The ACL normalises
/// the scheme's case and the whitespace (`LOWERCASE`, `COMPRESS_WHITE_SPACE`)
/// before it counts, so all the spellings accepted here share one
/// allowance; anything else is refused, here and at the edge. Whitespace
/// around a header's value is not part of it (RFC 9110, 5.5).
pub fn credentials(req: &Request) -> Result<Credential, Error> {
    let headers = req.headers();
    if let Some(v) = headers.get("x-api-key") {
        let key = v.to_str().ok().map(|v| v.trim_matches(HTTP_WHITESPACE)).and_then(ApiKey::parse);
        return key.map(Credential::Key).ok_or(Error::Unauthorized);
    }
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match bearer {
        Some(t) if BrowserToken::is_token_shaped(t) => Ok(Credential::Token(t.to_owned())),
        Some(k) => ApiKey::parse(k).map(Credential::Key).ok_or(Error::Unauthorized),
        None => Err(Error::Unauthorized),
    }
}

/// The whitespace HTTP allows inside and around a field value.
const HTTP_WHITESPACE: [char; 2] = [' ', '\t'];

/// The token of an `Authorization: Bearer <token>` value: the scheme in any
/// case, one or more spaces or tabs, then a token without whitespace.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches(HTTP_WHITESPACE);
    let (scheme, rest) = value.split_once(HTTP_WHITESPACE)?;
    let token = rest.trim_start_matches(HTTP_WHITESPACE);
    let plain = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
    (scheme.eq_ignore_ascii_case("bearer") && plain).then_some(token)
}

/// The usual opening of a route on `/uploads/{upload_id}`: credentials
/// (401), the path's id (400), then, in one store call, the key's owner
/// (401) and that owner's session (`NotFound` when missing or another's),
/// which a token must reach (403).
pub async fn caller_and_path_session(store: &Store, req: &Request) -> Result<(Caller, Session), Error> {
    let credential = credentials(req)?;
    let id = path_upload_id(req).unwrap_or(Err(Error::InvalidUploadId))?;
    let (caller, session) = auth::authenticate_for(store, &credential, &id).await?;
    let session = session.ok_or(Error::NotFound)?;
    caller.may_reach(&session)?;
    Ok((caller, session))
}

/// The upload id in the path (`/uploads/{upload_id}`), if the route has one.
pub fn path_upload_id(req: &Request) -> Option<Result<UploadId, Error>> {
    let params = req.path_parameters_ref()?;
    let raw = params.first("upload_id")?;
    Some(parse_upload_id(raw))
}

/// The upload id in the `x-upload-id` header. Absent or empty:
/// `MissingUploadId`.
pub fn header_upload_id(req: &Request) -> Result<UploadId, Error> {
    match req.headers().get("x-upload-id") {
        None => Err(Error::MissingUploadId),
        Some(v) if v.as_bytes().iter().all(u8::is_ascii_whitespace) => Err(Error::MissingUploadId),
        Some(v) => parse_upload_id(v.to_str().map_err(|_| Error::InvalidUploadId)?.trim()),
    }
}

fn parse_upload_id(raw: &str) -> Result<UploadId, Error> {
    let id = UploadId::parse(raw).ok_or(Error::InvalidUploadId)?;
    Span::current().record("upload_id", id.as_str());
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn a_bearer_token_in_every_spelling_the_edge_counts_as_one() {
        for v in ["Bearer k", "bearer k", "BEARER k", "Bearer  k", "Bearer\tk", " Bearer \t k ", "bEaReR k"] {
            assert_eq!(bearer_token(v), Some("k"), "{v:?}");
        }
        for v in ["Bearer", "Bearer ", "Basic k", "Bearerk", "Bearer k extra", "Bearer k\u{a0}", "Token k", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
