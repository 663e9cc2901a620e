use std::convert::Infallible;

use delete_upload::{handle, Deps};
use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = Deps::from_env().await?;
    run(service_fn(|req| async { Ok::<_, Infallible>(handle(&deps, req).await) })).await
}
