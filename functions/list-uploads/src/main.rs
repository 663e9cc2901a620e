use std::convert::Infallible;

use lambda_http::{run, service_fn, Error};
use list_uploads::{handle, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = Deps::from_env().await?;
    run(service_fn(|req| async { Ok::<_, Infallible>(handle(&deps, req).await) })).await
}
