use get_upload::handle;
use shared::uploads::Uploads;

/// Builds the clients once and serves: one invocation at a time, or up to
/// `AWS_LAMBDA_MAX_CONCURRENCY` at once on Lambda Managed Instances.
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let deps = Uploads::from_env().await?;
    shared::runtime::serve_http(deps, handle).await
}
