use mint_token::{handle, Deps};

/// Builds the table's client once and serves: one invocation at a time on
/// one thread, or up to `AWS_LAMBDA_MAX_CONCURRENCY` at once on Lambda
/// Managed Instances.
fn main() -> Result<(), lambda_http::Error> {
    shared::runtime::block_on(async {
        shared::telemetry::init();
        let deps = Deps::from_env().await?;
        shared::runtime::serve_http(deps, handle).await
    })
}
