use std::convert::Infallible;

use lambda_http::{run, service_fn, Error};
use shared::uploads::Uploads;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = Uploads::from_env().await?;
    run(service_fn(|req| async { Ok::<_, Infallible>(create_upload::handle(&deps, req).await) })).await
}
