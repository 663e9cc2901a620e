//! AWS clients, built once at cold start from the standard AWS environment
//! (region, credentials, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`).
//!
//! A function reads only what Lambda gives it: the region and the execution
//! role's credentials from its environment (or, where an environment gets
//! them from a container credentials endpoint, from there). It does not run
//! `aws-config`'s default chain, which also looks for profile files, SSO,
//! web identity tokens through STS and the instance metadata service, none
//! of which exists in a Lambda environment: left unreferenced, that code is
//! not linked into the functions (smaller `bootstrap`, faster link and
//! init). Tools run by people (`cargo xtask mint-key`) use the whole chain,
//! [`tool_sdk_config`].
//!
//! The SDK crates are built without a default HTTPS client (theirs is rustls
//! on aws-lc-rs); every client gets [`https_client`], the same hyper 1 client
//! on rustls 0.23 with ring, so the workspace holds one TLS stack, the one
//! reqwest uses too.

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

use crate::config::{Config, ConfigError};
use crate::deletion::Deleter;
use crate::events::Publisher;
use crate::objects::Objects;
use crate::queue::CleanupQueue;
use crate::store::Store;
use crate::uploads::Uploads;

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

/// A variable of the environment, unset when empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The configuration of a function's clients, from Lambda's environment:
/// `AWS_REGION` (or `AWS_DEFAULT_REGION`); credentials from
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
/// else from the container credentials endpoint
/// (`AWS_CONTAINER_CREDENTIALS_FULL_URI` or `…_RELATIVE_URI`); the endpoint
/// from `AWS_ENDPOINT_URL`. Retries, timeouts, the identity cache, sleep
/// and clock are the SDK clients' defaults for the latest behavior version.
pub async fn sdk_config() -> SdkConfig {
    let credentials = CredentialsProviderChain::first_try("Environment", EnvironmentVariableCredentialsProvider::new())
        .or_else("EcsContainer", EcsCredentialsProvider::builder().build());
    let mut sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).map(Region::new))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(https_client());
    sdk.set_endpoint_url(var("AWS_ENDPOINT_URL"));
    sdk.build()
}

/// The SDK's whole default chain (profiles, SSO, web identity, IMDS, …),
/// for tools people run from their own machines.
pub async fn tool_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).http_client(https_client()).load().await
}

/// A function's configuration and SDK settings, read once at cold start:
/// each function's `Deps::from_env` takes the clients it needs from it.
#[derive(Debug, Clone)]
pub struct Env {
    pub config: Config,
    pub sdk: SdkConfig,
}

impl Env {
    /// [`Config::from_env`] and [`sdk_config`].
    pub async fn load() -> Result<Self, ConfigError> {
        Ok(Self { config: Config::from_env()?, sdk: sdk_config().await })
    }

    pub fn store(&self) -> Store {
        store(&self.sdk, &self.config)
    }

    pub fn objects(&self) -> Objects {
        objects(&self.sdk, &self.config)
    }

    pub fn cleanup_queue(&self) -> CleanupQueue {
        cleanup_queue(&self.sdk, &self.config)
    }

    pub fn publisher(&self) -> Result<Publisher, ConfigError> {
        publisher(&self.sdk, &self.config)
    }

    /// Sessions and their bytes, under the configured upload policy.
    pub fn uploads(&self) -> Uploads {
        Uploads {
            store: self.store(),
            objects: self.objects(),
            bucket: self.config.bucket_name.clone(),
            policy: self.config.uploads.clone(),
        }
    }

    /// Deletion: the store and the cleanup queue.
    pub fn deleter(&self) -> Deleter {
        Deleter::new(self.store(), self.cleanup_queue(), &self.config)
    }
}

pub fn store(sdk: &SdkConfig, config: &Config) -> Store {
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
    let dynamodb = match var("AWS_ENDPOINT_URL_DYNAMODB") {
        Some(url) => dynamodb.endpoint_url(url),
        None => dynamodb,
    };
    Store::new(aws_sdk_dynamodb::Client::from_conf(dynamodb.build()), &config.table_name)
        .with_key_rate_limit(config.key_rate_limit)
        .with_events(&config.bucket_name)
}

pub fn objects(sdk: &SdkConfig, config: &Config) -> Objects {
    let s3 = aws_sdk_s3::config::Builder::from(sdk).force_path_style(config.s3_force_path_style);
    let s3 = match var("AWS_ENDPOINT_URL_S3") {
        Some(url) => s3.endpoint_url(url),
        None => s3,
    };
    Objects::new(aws_sdk_s3::Client::from_conf(s3.build())).signing_with(sdk.credentials_provider())
}

pub fn cleanup_queue(sdk: &SdkConfig, config: &Config) -> CleanupQueue {
    let sqs = aws_sdk_sqs::config::Builder::from(sdk);
    let sqs = match var("AWS_ENDPOINT_URL_SQS") {
        Some(url) => sqs.endpoint_url(url),
        None => sqs,
    };
    CleanupQueue::new(aws_sdk_sqs::Client::from_conf(sqs.build()), &config.cleanup_queue_url)
}

/// The publisher of upload events, to the bus `EVENT_BUS_NAME` names.
pub fn publisher(sdk: &SdkConfig, config: &Config) -> Result<Publisher, ConfigError> {
    let bus = config.event_bus_name.clone().ok_or(ConfigError::Missing("EVENT_BUS_NAME"))?;
    let eventbridge = aws_sdk_eventbridge::config::Builder::from(sdk);
    let eventbridge = match var("AWS_ENDPOINT_URL_EVENTBRIDGE") {
        Some(url) => eventbridge.endpoint_url(url),
        None => eventbridge,
    };
    Ok(Publisher {
        client: aws_sdk_eventbridge::Client::from_conf(eventbridge.build()),
        bus,
        source: config.event_source.clone(),
        store: store(sdk, config),
    })
}
