//! The runtime loop every function's `main` ends in: one invocation at a
//! time on Lambda, several at once on Lambda Managed Instances.
//!
//! On Lambda Managed Instances one execution environment takes up to
//! `AWS_LAMBDA_MAX_CONCURRENCY` invocations at once. `run_concurrent` of
//! `lambda_runtime` (feature `concurrency-tokio`) then polls `/next` from
//! that many tokio tasks, each handling its invocations one after another;
//! with the variable unset (classic Lambda, `cargo xtask dev` by default) it
//! runs the same sequential loop as `run`. Every task holds a clone of one
//! service, so a handler's dependencies are built once in `main` and shared
//! behind an [`Arc`] (the SDK clients inside are thread-safe pools already),
//! and handlers keep their plain shape: `async fn handle(&Deps, request)`.
//!
//! Before lambda_http turns an API Gateway event into a [`Request`], the
//! event's `Host` and `X-Forwarded-Proto` are checked: lambda_http builds the
//! request's URI from them and the path and panics when they do not make
//! one, which a client sending `X-Forwarded-Proto: a b` could otherwise
//! turn into a 502 (see [`make_uri_buildable`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_http::http::header::HOST;
use lambda_http::http::{HeaderName, Uri};
use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::{service_fn, Adapter, Body, Error, Request, Response, Service};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A handler: an `async fn(&D, R)` whose future may move between threads.
///
/// Only a trait can name the future of a function that borrows its first
/// argument, and so require it to be `Send`; every such `async fn` is one.
pub trait Handler<'a, D: 'a, R>: Fn(&'a D, R) -> Self::Future {
    type Future: Future<Output = Self::Answer> + Send + 'a;
    type Answer;
}

impl<'a, D: 'a, R, F, Fut> Handler<'a, D, R> for F
where
    F: Fn(&'a D, R) -> Fut,
    Fut: Future + Send + 'a,
{
    type Future = Fut;
    type Answer = Fut::Output;
}

/// How many invocations one process takes at once:
/// `AWS_LAMBDA_MAX_CONCURRENCY`, 1 when unset (classic Lambda).
pub fn max_concurrency() -> usize {
    std::env::var("AWS_LAMBDA_MAX_CONCURRENCY").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(1)
}

/// Runs a function's `main` on the runtime its mode needs. One invocation
/// at a time (classic Lambda, a fraction of a vCPU at the usual memory
/// sizes) gets a single-threaded runtime: nothing to hand between worker
/// threads, so no cross-thread wake-up on every socket event (measured:
/// a warm `get-upload` spent about 7 futex calls per invocation on that
/// with the multi-threaded one). Several at once (Lambda Managed Instances,
/// whole vCPUs per environment) gets one worker thread per CPU.
pub fn block_on<T>(main: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut builder = if max_concurrency() > 1 {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build()?.block_on(main)
}

/// Serves API Gateway requests with `handler` over `deps`, concurrently
/// when `AWS_LAMBDA_MAX_CONCURRENCY` is above 1.
pub async fn serve_http<D, H>(deps: D, handler: H) -> Result<(), Error>
where
    D: Send + Sync + 'static,
    H: for<'a> Handler<'a, D, Request, Answer = Response<Body>> + Clone + Send + Sync + 'static,
{
    let deps = Arc::new(deps);
    let adapter = Adapter::from(service_fn(move |request: Request| {
        let (deps, handler) = (deps.clone(), handler.clone());
        async move { Ok::<_, Infallible>(handler(&deps, request).await) }
    }));
    lambda_runtime::run_concurrent(service_fn(move |mut event: LambdaEvent<LambdaRequest>| {
        if let LambdaRequest::ApiGatewayV1(request) = &mut event.payload {
            make_uri_buildable(request);
        }
        adapter.clone().call(event)
    }))
    .await
}

fn x_forwarded_proto() -> HeaderName {
    HeaderName::from_static("x-forwarded-proto")
}

/// Whether lambda_http (1.3) can build the URI of `request`: it joins
/// `X-Forwarded-Proto` (default `https`), the `Host` header (else the
/// request context's domain name) and the path with the stage, parses that
/// as a URL and that again as an HTTP URI, and panics if either fails.
fn uri_builds(request: &ApiGatewayProxyRequest) -> bool {
    let path = request.path.as_deref().unwrap_or_default();
    let path = match request.request_context.stage.as_deref() {
        _ if std::env::var_os("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_some() => path.to_owned(),
        None | Some("$default") => path.to_owned(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.to_owned(),
        Some(stage) => format!("/{stage}{path}"),
    };
    let host =
        request.headers.get(HOST).and_then(|h| h.to_str().ok()).or(request.request_context.domain_name.as_deref());
    let url = match host {
        None => url::Url::parse(&format!("http://localhost{path}")).map(|u| u.path().to_owned()),
        Some(host) => {
            let scheme = request.headers.get(x_forwarded_proto()).and_then(|s| s.to_str().ok()).unwrap_or("https");
            url::Url::parse(&format!("{scheme}://{host}{path}")).map(String::from)
        }
    };
    url.is_ok_and(|u| Uri::try_from(u).is_ok())
}

/// Drops from an API Gateway event what would keep lambda_http from
/// building its URI (see [`uri_builds`]): an `X-Forwarded-Proto` that is
/// not a scheme, then a `Host` (and domain name) that is not a host, then
/// the path's characters a URI cannot hold (percent-encoded). The handlers
/// read neither: they go by the route, the path parameters and headers of
/// their own, so what they answer is unchanged.
pub fn make_uri_buildable(request: &mut ApiGatewayProxyRequest) {
    if uri_builds(request) {
        return;
    }
    request.headers.remove(x_forwarded_proto());
    request.multi_value_headers.remove(x_forwarded_proto());
    if uri_builds(request) {
        return;
    }
    request.headers.remove(HOST);
    request.multi_value_headers.remove(HOST);
    request.request_context.domain_name = None;
    if uri_builds(request) {
        return;
    }
    let path = request.path.take().unwrap_or_default();
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@%".contains(&b);
    request.path =
        Some(path.bytes().map(|b| if safe(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect());
}

/// Serves events of type `E` (an SQS batch, a schedule's tick) with
/// `handler` over `deps`, concurrently when `AWS_LAMBDA_MAX_CONCURRENCY` is
/// above 1.
pub async fn serve_events<D, E, O, H>(deps: D, handler: H) -> Result<(), Error>
where
    D: Send + Sync + 'static,
    E: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    H: for<'a> Handler<'a, D, LambdaEvent<E>, Answer = Result<O, Error>> + Clone + Send + Sync + 'static,
{
    let deps = Arc::new(deps);
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<E>| {
        let (deps, handler) = (deps.clone(), handler.clone());
        async move { handler(&deps, event).await }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(host: &str, proto: &str, path: &str) -> ApiGatewayProxyRequest {
        let json = serde_json::json!({
            "resource": "/uploads/{upload_id}",
            "path": path,
            "httpMethod": "GET",
            "headers": { "host": host, "x-forwarded-proto": proto, "x-api-key": "k" },
            "multiValueHeaders": { "host": [host], "x-forwarded-proto": [proto], "x-api-key": ["k"] },
            "pathParameters": { "upload_id": "x" },
            "requestContext": { "stage": "v1", "domainName": host, "httpMethod": "GET", "requestId": "r" },
        });
        serde_json::from_value(json).unwrap()
    }

    /// What lambda_http itself makes of the event, which panics on an
    /// event `make_uri_buildable` let through.
    fn convert(request: ApiGatewayProxyRequest) -> Request {
        let json = serde_json::to_string(&request).unwrap();
        lambda_http::request::from_str(&json).unwrap()
    }

    #[test]
    fn hostile_host_and_proto_no_longer_panic() {
        for (host, proto, path) in [
            ("a b", "https", "/uploads/x"),
            ("[::1", "https", "/uploads/x"),
            ("127.0.0.1:99999", "https", "/uploads/x"),
            ("api.example", "a b", "/uploads/x"),
            ("api.example", "https, http", "/uploads/x"),
            ("api.example", "javascript:", "/uploads/x"),
            ("a b", "c d", "/uploads/{x}|^`\\ \"<>"),
        ] {
            let mut request = event(host, proto, path);
            make_uri_buildable(&mut request);
            assert!(uri_builds(&request), "{host:?} {proto:?} {path:?}");
            let converted = convert(request);
            assert_eq!(converted.headers()["x-api-key"], "k");
        }
    }

    /// Why the check exists: lambda_http panics on these events as they come.
    #[test]
    fn lambda_http_panics_on_them_unchecked() {
        for (host, proto) in [("a b", "https"), ("api.example", "a b")] {
            let request = event(host, proto, "/uploads/x");
            assert!(std::panic::catch_unwind(|| convert(request)).is_err(), "{host:?} {proto:?}");
        }
    }

    #[test]
    fn sound_events_are_left_alone() {
        let mut request = event("abc.execute-api.eu-central-1.amazonaws.com", "https", "/uploads/upl_1");
        make_uri_buildable(&mut request);
        assert_eq!(request.headers[HOST], "abc.execute-api.eu-central-1.amazonaws.com");
        assert_eq!(request.headers[x_forwarded_proto()], "https");
        assert_eq!(request.path.as_deref(), Some("/uploads/upl_1"));
        let converted = convert(request);
        assert_eq!(converted.uri().to_string(), "https://abc.execute-api.eu-central-1.amazonaws.com/v1/uploads/upl_1");
    }
}
