use sweeper::{handle, Deps};

/// Builds the clients once and serves: one invocation at a time, or up to
/// `AWS_LAMBDA_MAX_CONCURRENCY` at once on Lambda Managed Instances.
#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::telemetry::init();
    let deps = Deps::from_env().await?;
    shared::runtime::serve_events(deps, handle).await
}
