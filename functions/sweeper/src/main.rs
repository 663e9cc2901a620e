use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use sweeper::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = Deps::from_env().await?;
    run(service_fn(|event: LambdaEvent<_>| handle(&deps, event))).await
}
