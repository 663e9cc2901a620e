//! AWS clients, built once at cold start from the standard AWS environment
//! (region, credentials, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`).
//!
//! The SDK crates are built without a default HTTPS client (theirs is rustls
//! on aws-lc-rs); every client gets [`https_client`], the same hyper 1 client
//! on rustls 0.23 with ring, so the workspace holds one TLS stack, the one
//! reqwest uses too.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

use crate::config::Config;
use crate::objects::Objects;
use crate::queue::CleanupQueue;
use crate::store::Store;

/// The SDK's default HTTPS client with ring in place of aws-lc-rs, built as
/// `aws-smithy-runtime` builds its own: the client's timeouts and sleep, the
/// platform's root certificates, proxies from `HTTPS_PROXY`/`NO_PROXY`.
/// An `SdkConfig` built without it has no HTTP client and fails every call.
pub fn https_client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()).load().await
}

pub fn store(sdk: &SdkConfig, config: &Config) -> Store {
    Store::new(aws_sdk_dynamodb::Client::new(sdk), &config.table_name)
}

pub fn objects(sdk: &SdkConfig, config: &Config) -> Objects {
    let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(config.s3_force_path_style).build();
    Objects::new(aws_sdk_s3::Client::from_conf(s3))
}

pub fn cleanup_queue(sdk: &SdkConfig, config: &Config) -> CleanupQueue {
    CleanupQueue::new(aws_sdk_sqs::Client::new(sdk), &config.cleanup_queue_url)
}
