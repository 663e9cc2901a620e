//! The upload events' publisher, fed by the table's DynamoDB stream: each
//! new outbox item (the event source mapping's filter passes only those)
//! is sent to the bus and then cleared (see [`shared::events`]).
//!
//! A record it could not publish is reported in `batchItemFailures`, so
//! Lambda retries the shard from there; events of other uploads in the same
//! batch go on. Whatever the stream gives up on stays in the outbox, where
//! the sweeper re-drives it.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use shared::config::ConfigError;
use shared::domain::UploadId;
use shared::events::{self, Publisher};
use shared::{aws, telemetry};
use tracing::{info, warn};

/// What publishing needs: the bus and the table.
#[derive(Debug, Clone)]
pub struct Deps {
    pub publisher: Publisher,
    /// CloudWatch namespace of its metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl Deps {
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            publisher: aws::Env::load().await?.publisher()?,
            metrics_namespace: std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "UploadSessions".to_owned()),
        })
    }
}

/// The outbox event (its id, its upload's) a record inserts, if it does.
fn outboxed(record: &EventRecord) -> Option<(String, UploadId)> {
    if record.event_name != "INSERT" {
        return None;
    }
    let image = &record.change.new_image;
    events::from_image(|name| match image.get(name) {
        Some(serde_dynamo::AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    })
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
    let mut batch = Vec::new();
    // Each event with its record's sequence number, to report a failure by.
    let mut sequence = Vec::new();
    for record in &event.payload.records {
        match outboxed(record) {
            Some(e) => {
                sequence.push((e.0.clone(), record.change.sequence_number.clone()));
                batch.push(e);
            }
            // Not an outbox insert (the mapping's filter should have kept it
            // away): nothing to publish.
            None => warn!(event_id = %record.event_id, name = %record.event_name, "stream record is no outbox event"),
        }
    }
    let count = batch.len();
    let outcome = deps.publisher.publish(&batch).await;
    // Only passing failures go back to the stream, which retries the shard
    // from the first of them; an event the bus refuses for good would
    // block the shard, so it is left to the sweeper (and its alarm).
    let failures: Vec<DynamoDbBatchItemFailure> = sequence
        .iter()
        .filter(|(id, _)| outcome.retry.contains(id))
        .map(|(_, seq)| {
            let mut f = DynamoDbBatchItemFailure::default();
            f.item_identifier = seq.clone();
            f
        })
        .collect();
    telemetry::metric(&deps.metrics_namespace, "EventsPublished", outcome.published.len() as f64);
    let unpublished = outcome.retry.len() + outcome.refused.len();
    if unpublished > 0 {
        telemetry::metric(&deps.metrics_namespace, "EventsNotPublished", unpublished as f64);
    }
    if outcome.not_cleared > 0 {
        telemetry::metric(&deps.metrics_namespace, "EventsNotCleared", outcome.not_cleared as f64);
    }
    info!(
        events = count,
        published = outcome.published.len(),
        retry = outcome.retry.len(),
        refused = outcome.refused.len(),
        "publish done"
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}
