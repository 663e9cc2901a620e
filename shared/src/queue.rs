//! The SQS adapter: the cleanup queue and its message.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use serde::{Deserialize, Serialize};

use crate::domain::UploadId;
use crate::error::Error;

/// The body of a cleanup message. It names the task; the task record in
/// the store says what to remove, so a message cannot point cleanup at
/// bytes no deletion released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupMessage {
    pub upload_id: String,
}

impl CleanupMessage {
    pub fn new(id: &UploadId) -> Self {
        Self { upload_id: id.as_str().to_owned() }
    }

    /// Parses a message body; `None` for a body that is not a cleanup message.
    pub fn parse(body: &str) -> Option<UploadId> {
        let msg: CleanupMessage = serde_json::from_str(body).ok()?;
        UploadId::parse(&msg.upload_id)
    }
}

/// SQS's longest message delay.
pub const MAX_DELAY_SECONDS: i64 = 900;

#[derive(Debug, Clone)]
pub struct CleanupQueue {
    client: Client,
    url: String,
}

impl CleanupQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into() }
    }

    pub async fn enqueue(&self, id: &UploadId) -> Result<(), Error> {
        self.enqueue_after(id, 0).await
    }

    /// Enqueues one cleanup message per `(id, delay_seconds)`, ten to a
    /// `SendMessageBatch` call. Returns the ids SQS did not take (a refused
    /// entry, or every entry of a call that failed), for the caller to retry.
    pub async fn enqueue_many_after(&self, messages: &[(UploadId, i64)]) -> Result<Vec<UploadId>, Error> {
        let mut refused = Vec::new();
        for chunk in messages.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, (id, delay_seconds)) in chunk.iter().enumerate() {
                check_delay(*delay_seconds)?;
                let body = serde_json::to_string(&CleanupMessage::new(id))
                    .map_err(Error::internal("encode cleanup message"))?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(*delay_seconds as i32)
                        .build()
                        .map_err(Error::internal("build cleanup message"))?,
                );
            }
            match self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await {
                Ok(out) => refused.extend(
                    out.failed
                        .iter()
                        .filter_map(|f| f.id.parse::<usize>().ok())
                        .filter_map(|i| chunk.get(i))
                        .map(|(id, _)| id.clone()),
                ),
                Err(e) => {
                    tracing::warn!(error = %crate::error::chain(&Error::aws("enqueue cleanup")(e)), "SendMessageBatch failed");
                    refused.extend(chunk.iter().map(|(id, _)| id.clone()));
                }
            }
        }
        Ok(refused)
    }

    /// Enqueues a cleanup message that becomes visible after `delay_seconds`
    /// (SQS allows at most 900; a longer delay is an error, not a shorter
    /// wait).
    pub async fn enqueue_after(&self, id: &UploadId, delay_seconds: i64) -> Result<(), Error> {
        check_delay(delay_seconds)?;
        let body =
            serde_json::to_string(&CleanupMessage::new(id)).map_err(Error::internal("encode cleanup message"))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_seconds as i32)
            .send()
            .await
            .map_err(Error::aws("enqueue cleanup"))?;
        Ok(())
    }
}

fn check_delay(delay_seconds: i64) -> Result<(), Error> {
    if !(0..=MAX_DELAY_SECONDS).contains(&delay_seconds) {
        return Err(Error::invariant(
            "enqueue cleanup",
            format!("delay of {delay_seconds} s is outside SQS's 0..=900"),
        ));
    }
    Ok(())
}
