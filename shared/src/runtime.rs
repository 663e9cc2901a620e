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

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{service_fn, Body, Error, Request, Response};
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
    lambda_http::run_concurrent(service_fn(move |request: Request| {
        let (deps, handler) = (deps.clone(), handler.clone());
        async move { Ok::<_, Infallible>(handler(&deps, request).await) }
    }))
    .await
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
