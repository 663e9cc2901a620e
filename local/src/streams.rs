//! Feeds a table's DynamoDB stream to a function the way a Lambda event
//! source mapping of type `DynamoDB` does, as the template declares it
//! ([`StreamSource`]): read the shard from a checkpoint, keep the records
//! the `FilterCriteria` match (the others count as processed), invoke with
//! up to `BatchSize` of them, and move the checkpoint past what succeeded.
//!
//! - `ReportBatchItemFailures`: the answer's `batchItemFailures` name
//!   sequence numbers; the batch is retried from the lowest of them. An
//!   identifier that is no record of the batch fails the whole batch.
//! - A function error (or timeout) fails the whole batch; with
//!   `BisectBatchOnFunctionError` the retry takes half as many records.
//! - Past `MaximumRetryAttempts` retries, or once its first record is older
//!   than `MaximumRecordAgeInSeconds`, the batch is given up: a record of
//!   it (Lambda's shape: `requestContext`, `DDBStreamBatchInfo`…) goes to
//!   the `OnFailure` queue, and the checkpoint moves past it.
//!
//! moto keeps one shard per stream; the feeder reads that one. It asks for
//! a fresh shard iterator every round: moto restores a table from a copy
//! when a transaction is cancelled, and an iterator taken before would go
//! on reading the copy's discarded shard (see `local/moto_serial.py`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::pattern;
use crate::runtime::{FunctionHost, Outcome};
use crate::stack::Stack;
use crate::template::{Function, StreamSource};
use crate::{ACCOUNT, REGION};

/// Where the next read starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// The oldest record the stream keeps.
    TrimHorizon,
    /// After the newest record there is when the feeder first reads.
    Latest,
    At(String),
    After(String),
}

pub struct StreamFeeder {
    pub client: aws_sdk_dynamodbstreams::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub stream_arn: String,
    pub source: StreamSource,
    /// URL of the queue given-up batches are reported to, if any.
    pub on_failure_url: Option<String>,
    /// What the failure records name as the function.
    pub function_arn: String,
    /// Pause after the first failed invocation of a batch, doubling with
    /// each retry up to [`MAX_BACKOFF`].
    pub retry_backoff: Duration,
    shard_id: Option<String>,
    position: Position,
    /// Failed invocations of the batch at `position`.
    attempts: u32,
    /// Records a batch takes now: `BatchSize`, halved by bisection.
    limit: usize,
}

/// Longest pause between two attempts at one batch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Records one `GetRecords` reads at most (the stream's own maximum).
const READ_LIMIT: i32 = 1000;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Stream records read.
    pub read: usize,
    /// Records handed to the function.
    pub invoked: usize,
    /// Of those, the ones that failed: from the first reported failure on,
    /// or all of them on a function error.
    pub failed: usize,
    /// Records given up and reported to the on-failure destination.
    pub discarded: usize,
}

impl StreamFeeder {
    /// The feeder of `function`'s `DynamoDB` event source on `stack`.
    pub fn new(stack: &Stack, function: &Function) -> Result<Self> {
        let source =
            function.stream.clone().ok_or_else(|| anyhow!("{} has no DynamoDB event source", function.logical_id))?;
        for filter in &source.filters {
            pattern::check(filter).with_context(|| format!("{}'s FilterCriteria", function.logical_id))?;
        }
        let stream_arn = stack
            .physical(&source.table)?
            .attributes
            .get("StreamArn")
            .cloned()
            .ok_or_else(|| anyhow!("table {} has no stream (StreamSpecification)", source.table))?;
        let on_failure_url = source
            .on_failure
            .as_ref()
            .map(|q| Ok::<_, anyhow::Error>(stack.physical(q)?.reference.clone()))
            .transpose()?;
        let position = match source.starting_position.as_str() {
            "TRIM_HORIZON" => Position::TrimHorizon,
            "LATEST" => Position::Latest,
            other => bail!("{}: StartingPosition {other} is not TRIM_HORIZON or LATEST", function.logical_id),
        };
        Ok(StreamFeeder {
            client: aws_sdk_dynamodbstreams::Client::new(&stack.sdk),
            sqs: aws_sdk_sqs::Client::new(&stack.sdk),
            stream_arn,
            limit: source.batch_size,
            source,
            on_failure_url,
            function_arn: format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}-{}", stack.name, function.logical_id),
            retry_backoff: Duration::from_millis(100),
            shard_id: None,
            position,
            attempts: 0,
        })
    }

    /// Reads from the checkpoint, hands the next batch to `host` and moves
    /// the checkpoint as its answer says. After a failed invocation it
    /// waits the retry's backoff before returning.
    pub async fn round(&mut self, host: &FunctionHost) -> Result<Round> {
        let shard = self.shard().await?;
        if self.position == Position::Latest {
            self.position = match self.newest(&shard).await? {
                Some(seq) => Position::After(seq),
                None => Position::TrimHorizon,
            };
        }
        let records = self.read(&shard, READ_LIMIT).await?;
        let mut round = Round { read: records.len(), ..Round::default() };
        // The batch: matching records up to the limit. `examined` is the
        // last record it covers, matching or not.
        let mut batch: Vec<Value> = Vec::new();
        let mut examined: Option<String> = None;
        for r in &records {
            let record = lambda_record(r, &self.stream_arn)?;
            examined = Some(sequence_number(&record)?.to_owned());
            if pattern::matches_any(&self.source.filters, &record)? {
                batch.push(record);
                if batch.len() >= self.limit {
                    break;
                }
            }
        }
        let Some(examined) = examined else { return Ok(round) };
        if batch.is_empty() {
            self.position = Position::After(examined);
            return Ok(round);
        }
        if let Some(max_age) = self.source.maximum_record_age_seconds {
            let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
            let too_old: Vec<Value> = batch
                .iter()
                .take_while(|r| {
                    r["dynamodb"]["ApproximateCreationDateTime"].as_f64().is_some_and(|t| now - t > max_age as f64)
                })
                .cloned()
                .collect();
            if !too_old.is_empty() {
                round.discarded = too_old.len();
                self.give_up(&shard, &too_old, "RecordAgeExceeded").await?;
                return Ok(round);
            }
        }
        round.invoked = batch.len();
        let event = json!({ "Records": batch });
        let (first, function_error) = match host.invoke(&event).await {
            Ok(Outcome::Response(answer)) => {
                match reported_failure(&answer, &batch).filter(|_| self.source.report_batch_item_failures) {
                    Some(first) => (first, false),
                    None => {
                        self.position = Position::After(examined);
                        self.attempts = 0;
                        self.limit = self.source.batch_size;
                        return Ok(round);
                    }
                }
            }
            Ok(Outcome::Error(_)) => (0, true),
            Err(e) => {
                eprintln!("[stream {}] {e:#}", host.name);
                (0, true)
            }
        };
        round.failed = batch.len() - first;
        let retry_from = Position::At(sequence_number(&batch[first])?.to_owned());
        // Attempts count the failures of one batch; a failure after some
        // of its records succeeded starts the count again.
        self.attempts = if first == 0 { self.attempts + 1 } else { 1 };
        self.position = retry_from;
        if self.source.maximum_retry_attempts.is_some_and(|max| self.attempts > max) {
            round.discarded = round.failed;
            self.give_up(&shard, &batch[first..], "RetryAttemptsExhausted").await?;
            return Ok(round);
        }
        if function_error && self.source.bisect_on_error {
            self.limit = (batch.len() / 2).max(1);
        }
        let backoff = self.retry_backoff.saturating_mul(1 << (self.attempts - 1).min(16)).min(MAX_BACKOFF);
        tokio::time::sleep(backoff).await;
        Ok(round)
    }

    /// The stream's shard (moto keeps one).
    async fn shard(&mut self) -> Result<String> {
        if let Some(id) = &self.shard_id {
            return Ok(id.clone());
        }
        let out = self.client.describe_stream().stream_arn(&self.stream_arn).send().await.context("DescribeStream")?;
        let shards = out.stream_description.and_then(|d| d.shards).unwrap_or_default();
        let [shard] = shards.as_slice() else {
            bail!("the stream {} has {} shards; the local feeder reads one", self.stream_arn, shards.len())
        };
        let id = shard.shard_id.clone().ok_or_else(|| anyhow!("a shard without id"))?;
        self.shard_id = Some(id.clone());
        Ok(id)
    }

    async fn read(&self, shard: &str, limit: i32) -> Result<Vec<Record>> {
        let (kind, seq) = match &self.position {
            Position::TrimHorizon | Position::Latest => (ShardIteratorType::TrimHorizon, None),
            Position::At(s) => (ShardIteratorType::AtSequenceNumber, Some(s.clone())),
            Position::After(s) => (ShardIteratorType::AfterSequenceNumber, Some(s.clone())),
        };
        let iterator = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(seq)
            .send()
            .await
            .context("GetShardIterator")?
            .shard_iterator
            .ok_or_else(|| anyhow!("GetShardIterator answered no iterator"))?;
        let out = self.client.get_records().shard_iterator(iterator).limit(limit).send().await.context("GetRecords")?;
        Ok(out.records.unwrap_or_default())
    }

    /// The newest sequence number in the shard, if any record is there.
    async fn newest(&self, shard: &str) -> Result<Option<String>> {
        let mut last = None;
        loop {
            let records = self.read(shard, READ_LIMIT).await?;
            let Some(seq) = records.last().and_then(|r| r.dynamodb.as_ref()?.sequence_number.clone()) else {
                return Ok(last);
            };
            last = Some(seq.clone());
            if records.len() < READ_LIMIT as usize {
                return Ok(last);
            }
        }
    }

    /// Reports `records` to the on-failure destination (if any) and moves
    /// the checkpoint past them, as Lambda does with a batch it gives up.
    async fn give_up(&mut self, shard: &str, records: &[Value], condition: &str) -> Result<()> {
        let (first, last) = match records {
            [first, .., last] => (first, last),
            [only] => (only, only),
            [] => return Ok(()),
        };
        if let Some(url) = &self.on_failure_url {
            let arrival = |r: &Value| {
                r["dynamodb"]["ApproximateCreationDateTime"]
                    .as_f64()
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp_nanos((t * 1e9) as i128).ok())
                    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            };
            let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339)?;
            let report = json!({
                "requestContext": {
                    "requestId": crate::runtime::uuid_like(),
                    "functionArn": self.function_arn,
                    "condition": condition,
                    "approximateInvokeCount": self.attempts,
                },
                "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
                "version": "1.0",
                "timestamp": now,
                "DDBStreamBatchInfo": {
                    "shardId": shard,
                    "startSequenceNumber": sequence_number(first)?,
                    "endSequenceNumber": sequence_number(last)?,
                    "approximateArrivalOfFirstRecord": arrival(first),
                    "approximateArrivalOfLastRecord": arrival(last),
                    "batchSize": records.len(),
                    "streamArn": self.stream_arn,
                },
            });
            self.sqs
                .send_message()
                .queue_url(url)
                .message_body(report.to_string())
                .send()
                .await
                .context("reporting a given-up batch to its on-failure queue")?;
        }
        self.position = Position::After(sequence_number(last)?.to_owned());
        self.attempts = 0;
        self.limit = self.source.batch_size;
        Ok(())
    }
}

/// The index in `batch` of the first record `answer` reports failed, if
/// any; 0 (the whole batch) when an identifier names no record of it.
fn reported_failure(answer: &Value, batch: &[Value]) -> Option<usize> {
    let failures = answer.get("batchItemFailures").and_then(Value::as_array)?;
    let mut first: Option<usize> = None;
    for f in failures {
        let id = f.get("itemIdentifier").and_then(Value::as_str).unwrap_or_default();
        let index = batch.iter().position(|r| r["dynamodb"]["SequenceNumber"].as_str() == Some(id));
        let Some(index) = index else { return Some(0) };
        first = Some(first.map_or(index, |f| f.min(index)));
    }
    first
}

fn sequence_number(record: &Value) -> Result<&str> {
    record["dynamodb"]["SequenceNumber"].as_str().ok_or_else(|| anyhow!("a stream record without SequenceNumber"))
}

/// A stream record as Lambda hands it to a function (`aws_lambda_events`'s
/// `dynamodb::EventRecord`): attribute values in DynamoDB's JSON, the
/// creation time in epoch seconds, the stream's ARN added.
pub fn lambda_record(r: &Record, stream_arn: &str) -> Result<Value> {
    let d = r.dynamodb.as_ref().ok_or_else(|| anyhow!("a stream record without its dynamodb part"))?;
    let mut change = Map::new();
    if let Some(t) = &d.approximate_creation_date_time {
        change.insert("ApproximateCreationDateTime".into(), json!(t.as_secs_f64()));
    }
    for (name, image) in [("Keys", &d.keys), ("NewImage", &d.new_image), ("OldImage", &d.old_image)] {
        if let Some(image) = image {
            change.insert(name.into(), item_json(image)?);
        }
    }
    change.insert("SequenceNumber".into(), json!(d.sequence_number));
    change.insert("SizeBytes".into(), json!(d.size_bytes));
    change.insert("StreamViewType".into(), json!(d.stream_view_type.as_ref().map(|v| v.as_str())));
    Ok(json!({
        "eventID": r.event_id,
        "eventName": r.event_name.as_ref().map(|n| n.as_str()),
        "eventVersion": r.event_version.as_deref().unwrap_or("1.1"),
        "eventSource": r.event_source.as_deref().unwrap_or("aws:dynamodb"),
        "awsRegion": r.aws_region.as_deref().unwrap_or(REGION),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }))
}

fn item_json(item: &std::collections::HashMap<String, AttributeValue>) -> Result<Value> {
    item.iter().map(|(k, v)| Ok((k.clone(), attribute_json(v)?))).collect::<Result<Map<_, _>>>().map(Value::Object)
}

/// An attribute value in DynamoDB's JSON (`{"S": "…"}`, binary in base64).
pub fn attribute_json(v: &AttributeValue) -> Result<Value> {
    let b64 =
        |b: &aws_sdk_dynamodbstreams::primitives::Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
    Ok(match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(s) => json!({ "SS": s }),
        AttributeValue::Ns(n) => json!({ "NS": n }),
        AttributeValue::Bs(b) => json!({ "BS": b.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attribute_json).collect::<Result<Vec<_>>>()? }),
        AttributeValue::M(m) => json!({ "M": item_json(m)? }),
        other => bail!("an attribute value of a type this feeder does not know: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[&str]) -> Vec<Value> {
        seqs.iter().map(|s| json!({"dynamodb": {"SequenceNumber": s}})).collect()
    }

    #[test]
    fn the_retry_starts_at_the_first_reported_failure() {
        let b = batch(&["10", "11", "12", "13"]);
        let answer = |ids: &[&str]| json!({"batchItemFailures": ids.iter().map(|i| json!({"itemIdentifier": i})).collect::<Vec<_>>()});
        assert_eq!(reported_failure(&answer(&[]), &b), None);
        assert_eq!(reported_failure(&json!({}), &b), None);
        assert_eq!(reported_failure(&answer(&["12"]), &b), Some(2));
        assert_eq!(reported_failure(&answer(&["13", "11"]), &b), Some(1));
        // An identifier naming no record of the batch fails all of it.
        assert_eq!(reported_failure(&answer(&["99"]), &b), Some(0));
        assert_eq!(reported_failure(&answer(&[""]), &b), Some(0));
    }

    #[test]
    fn attribute_values_are_dynamodb_json() {
        let v = AttributeValue::M(
            [
                ("s".to_owned(), AttributeValue::S("x".into())),
                ("n".to_owned(), AttributeValue::N("5".into())),
                ("b".to_owned(), AttributeValue::B(aws_sdk_dynamodbstreams::primitives::Blob::new(b"hi".to_vec()))),
                ("l".to_owned(), AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)])),
            ]
            .into_iter()
            .collect(),
        );
        let j = attribute_json(&v).unwrap();
        assert_eq!(j["M"]["s"], json!({"S": "x"}));
        assert_eq!(j["M"]["n"], json!({"N": "5"}));
        assert_eq!(j["M"]["b"], json!({"B": "aGk="}));
        assert_eq!(j["M"]["l"], json!({"L": [{"BOOL": true}, {"NULL": true}]}));
    }
}
