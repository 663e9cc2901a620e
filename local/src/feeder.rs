//! Feeds an SQS queue to a function the way a Lambda event source mapping
//! with `ReportBatchItemFailures` does: receive a batch, invoke with an SQS
//! event, delete the messages not reported as failed. Failed ones become
//! visible again after the visibility timeout, and the queue's redrive
//! policy moves them to the DLQ past `maxReceiveCount`.

use anyhow::{anyhow, Result};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{json, Value};

use crate::runtime::{FunctionHost, Outcome};
use crate::{ACCOUNT, REGION};

pub struct Feeder {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    /// Long-poll wait of each receive, in seconds.
    pub wait_seconds: i32,
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub received: usize,
    pub failed: usize,
}

impl Feeder {
    /// Receives one batch and hands it to `host`. The function's answer
    /// decides which messages are deleted; a function error deletes none.
    pub async fn round(&self, host: &FunctionHost) -> Result<Round> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(Round::default());
        }
        let event = sqs_event(&messages, &self.queue_arn);
        let failed_ids: Vec<String> = match host.invoke(&event).await? {
            Outcome::Response(v) => v
                .get("batchItemFailures")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|f| f.get("itemIdentifier")?.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            // The whole batch failed: every message stays.
            Outcome::Error(_) => messages.iter().filter_map(|m| m.message_id.clone()).collect(),
        };
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| m.message_id.as_ref().is_some_and(|id| !failed_ids.contains(id)))
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .set_receipt_handle(m.receipt_handle.clone())
                    .build()
                    .map_err(|e| anyhow!(e))
            })
            .collect::<Result<_>>()?;
        if !done.is_empty() {
            self.client.delete_message_batch().queue_url(&self.queue_url).set_entries(Some(done)).send().await?;
        }
        Ok(Round { received: messages.len(), failed: failed_ids.len() })
    }
}

/// The SQS event Lambda builds for `messages` received from `queue_arn`.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> =
                m.attributes.iter().flatten().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The event EventBridge hands a function on a schedule.
pub fn scheduled_event(function: &str) -> Value {
    let now = time::OffsetDateTime::now_utc();
    json!({
        "version": "0",
        "id": crate::runtime::uuid_like(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{}:rule/{function}-schedule", ACCOUNT)],
        "detail": {}
    })
}
