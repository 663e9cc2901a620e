//! The upload events a rule of the stack's bus delivers to a queue (the
//! template's example rule and its `UploadEventsQueue`), read as an app
//! would read them: [`Tail`] reads, [`Delivery`] is one message.
//! `cargo xtask events` prints them as they arrive.
//!
//! Reading does not consume: each message is received with a short
//! visibility timeout and left in the queue (for the app that reads it, or
//! the next run), made visible again when the command ends, unless
//! `--delete`. A message is printed once per run; a second delivery of an
//! event (another message with the same `event_id`, which consumers must
//! drop) is printed and marked as such.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry};
use serde_json::Value;

use crate::stack::Stack;

/// Seconds a received message stays hidden from other readers.
const VISIBILITY_SECONDS: i32 = 30;

/// The queue ids of `stack`'s template that a rule delivers events to.
pub fn event_queues(stack: &Stack) -> Vec<String> {
    let mut out = Vec::new();
    for (_, rule) in stack.template.of_kind("AWS::Events::Rule") {
        let targets = rule.properties.get("Targets").and_then(serde_yaml::Value::as_sequence);
        for target in targets.into_iter().flatten() {
            let Some(id) = target.get("Arn").and_then(crate::template::referenced_id) else { continue };
            if stack.template.resources.get(&id).is_some_and(|r| r.kind == "AWS::SQS::Queue") && !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// One message read: the event, and how many earlier messages of this run
/// carried the same event id.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: Value,
    pub earlier: usize,
}

impl Delivery {
    /// `time  type  event_id  upload_id`, marked when a repeat.
    pub fn line(&self) -> String {
        let e = &self.event;
        let d = &e["detail"];
        let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
        // The commit time the detail carries (milliseconds), else the
        // envelope's.
        let time = d["occurred_at"].as_str().or_else(|| e["time"].as_str()).unwrap_or("-");
        let kind = d["type"].as_str().or_else(|| e["detail-type"].as_str()).unwrap_or("-");
        let mut line = format!("{time}  {kind:<16}  {}  {}", text(&d["event_id"]), text(&d["upload_id"]));
        if self.earlier > 0 {
            line.push_str(&format!("  (delivered again: {} earlier this run)", self.earlier));
        }
        line
    }
}

/// Reads a queue of events, each message once.
pub struct Tail {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    seen_messages: BTreeSet<String>,
    seen_events: BTreeMap<String, usize>,
    /// The latest receipt handle of each message read and left in the queue.
    held: BTreeMap<String, String>,
}

impl Tail {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Tail { client, queue_url, seen_messages: BTreeSet::new(), seen_events: BTreeMap::new(), held: BTreeMap::new() }
    }

    /// One receive: the messages not read before in this run, in the order
    /// received; with `delete`, removed from the queue once read.
    pub async fn poll(&mut self, delete: bool) -> Result<Vec<Delivery>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(VISIBILITY_SECONDS)
            .wait_time_seconds(0)
            .send()
            .await
            .with_context(|| format!("receiving from {}", self.queue_url))?;
        let mut new = Vec::new();
        let mut done = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let id = m.message_id.clone().unwrap_or_default();
            if let Some(handle) = &m.receipt_handle {
                if delete {
                    done.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(format!("m{}", done.len()))
                            .receipt_handle(handle)
                            .build()?,
                    );
                } else {
                    self.held.insert(id.clone(), handle.clone());
                }
            }
            if !self.seen_messages.insert(id) {
                continue;
            }
            let body = m.body.unwrap_or_default();
            let event: Value =
                serde_json::from_str(&body).with_context(|| format!("a message that is not an event: {body}"))?;
            let event_id = event["detail"]["event_id"].as_str().unwrap_or_default().to_owned();
            let earlier = self.seen_events.entry(event_id).or_default();
            new.push(Delivery { event, earlier: *earlier });
            *earlier += 1;
        }
        if !done.is_empty() {
            self.client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .with_context(|| format!("deleting read messages from {}", self.queue_url))?;
        }
        Ok(new)
    }

    /// Makes the messages read and left in the queue visible again at once,
    /// for the next reader, rather than when their visibility timeout ends.
    pub async fn release(&mut self) -> Result<()> {
        let held: Vec<(String, String)> = std::mem::take(&mut self.held).into_iter().collect();
        for chunk in held.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, handle))| {
                    Ok(ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .receipt_handle(handle)
                        .visibility_timeout(0)
                        .build()?)
                })
                .collect::<Result<Vec<_>>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .with_context(|| format!("making read messages visible again in {}", self.queue_url))?;
        }
        Ok(())
    }

    /// Everything in the queue now: polls until a receive brings nothing new.
    pub async fn drain(&mut self, delete: bool) -> Result<Vec<Delivery>> {
        let mut all = Vec::new();
        loop {
            let new = self.poll(delete).await?;
            if new.is_empty() {
                return Ok(all);
            }
            all.extend(new);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_line_per_event() {
        let event = json!({
            "id": "a1", "detail-type": "upload.completed", "source": "upload-sessions.dev",
            "time": "2026-01-02T03:04:05Z",
            "detail": {"event_id": "evt_0123", "type": "upload.completed", "upload_id": "upl_9",
                       "occurred_at": "2026-01-02T03:04:05.123Z"}
        });
        let first = Delivery { event: event.clone(), earlier: 0 };
        assert_eq!(first.line(), "2026-01-02T03:04:05.123Z  upload.completed  evt_0123  upl_9");
        let again = Delivery { event, earlier: 1 };
        assert!(again.line().ends_with("(delivered again: 1 earlier this run)"), "{}", again.line());
    }

    #[test]
    fn the_dev_stack_reads_the_example_rules_queue() {
        let stack = Stack::unprovisioned("dev").unwrap();
        assert_eq!(event_queues(&stack), ["UploadEventsQueue"]);
    }
}
