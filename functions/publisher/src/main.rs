use publisher::{handle, Deps};

/// Builds the clients once and serves: one invocation at a time on one
/// thread, or up to `AWS_LAMBDA_MAX_CONCURRENCY` at once on Lambda Managed
/// Instances.
fn main() -> Result<(), lambda_runtime::Error> {
    shared::runtime::block_on(async {
        shared::telemetry::init();
        let deps = Deps::from_env().await?;
        shared::runtime::serve_events(deps, handle).await
    })
}
