//! AWS clients, built once at cold start from the standard AWS environment
//! (region, credentials, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`).

use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Config;
use crate::objects::Objects;
use crate::queue::CleanupQueue;
use crate::store::Store;

pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
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
