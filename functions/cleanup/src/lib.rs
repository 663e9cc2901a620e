//! Removes the bytes of deleted uploads, fed by the cleanup queue.
//!
//! Each message names a cleanup task. For a batch: the tasks are read
//! concurrently; the objects are removed with one `DeleteObjects` call per
//! bucket (up to 1,000 keys); multipart uploads are aborted (and any left
//! listed for the key aborted again); each task whose bytes are gone is
//! removed once its final pass is done (see below). Only the messages that failed are reported, so SQS redelivers
//! just those and, past `maxReceiveCount`, parks them in the DLQ. A message
//! whose task is already gone succeeds without doing anything.
//!
//! A presigned URL handed out before the deletion stays valid until it
//! expires, so a late `PUT` could land bytes after the first pass. Each task
//! therefore carries `final_pass_at` (the deletion plus the URL lifetime and
//! a margin): a pass before then removes the bytes and keeps the task for
//! the final pass, which removes the bytes again and then the task. So a
//! deletion takes exactly two passes (one when the task is already past its
//! final pass time). The final pass comes from a delayed message when
//! `final_pass_at` is within SQS's longest delay (900 s), and otherwise from
//! the sweeper, which re-drives the deferred task once it falls due: never a
//! chain of delayed messages.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use lambda_runtime::LambdaEvent;
use shared::config::ConfigError;
use shared::domain::Timestamp;
use shared::error::chain;
use shared::objects::Objects;
use shared::queue::{CleanupMessage, CleanupQueue, MAX_DELAY_SECONDS};
use shared::store::{CleanupTask, Store};
use shared::{aws, Config, Error};
use tracing::{info, info_span, warn, Instrument, Span};

#[derive(Debug, Clone)]
pub struct Deps {
    pub store: Store,
    pub objects: Objects,
    /// For scheduling a task's final pass.
    pub queue: CleanupQueue,
}

impl Deps {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws::sdk_config().await;
        Ok(Self {
            store: aws::store(&sdk, &config),
            objects: aws::objects(&sdk, &config),
            queue: aws::cleanup_queue(&sdk, &config),
        })
    }
}

/// One SQS record on its way through the batch.
struct Job {
    message_id: String,
    span: Span,
    state: State,
}

enum State {
    /// Still to be cleaned.
    Todo(CleanupTask),
    /// Nothing (left) to do: the task is gone.
    Done,
    Failed(String),
}

pub async fn handle(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut jobs = join_all(event.payload.records.into_iter().enumerate().map(|(i, record)| async move {
        let message_id = record.message_id.unwrap_or_else(|| format!("#{i}"));
        let parsed = record.body.as_deref().and_then(CleanupMessage::parse);
        let span = info_span!("cleanup", message_id = %message_id, upload_id = tracing::field::Empty);
        let state = match parsed {
            None => State::Failed("message body is not a cleanup message".into()),
            Some(id) => {
                span.record("upload_id", id.as_str());
                match deps.store.get_cleanup_task(&id).instrument(span.clone()).await {
                    Ok(Some(task)) => State::Todo(task),
                    Ok(None) => State::Done,
                    Err(e) => State::Failed(chain(&e)),
                }
            }
        };
        Job { message_id, span, state }
    }))
    .await;

    delete_objects(deps, &mut jobs).await;

    join_all(jobs.iter_mut().map(|job| async move {
        let State::Todo(task) = &job.state else { return };
        let result = finish(deps, task).instrument(job.span.clone()).await;
        job.state = match result {
            Ok(()) => State::Done,
            Err(e) => State::Failed(chain(&e)),
        };
    }))
    .await;

    let mut response = SqsBatchResponse::default();
    for job in jobs {
        let _entered = job.span.enter();
        match job.state {
            State::Failed(why) => {
                warn!(error = %why, "cleanup failed; the message will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = job.message_id;
                response.batch_item_failures.push(failure);
            }
            _ => info!("cleanup done"),
        }
    }
    Ok(response)
}

/// Removes the objects of every pending job, one `DeleteObjects` call per
/// bucket and 1,000 keys. A failed call fails its jobs; a key S3 refuses
/// fails the job it belongs to.
async fn delete_objects(deps: &Deps, jobs: &mut [Job]) {
    let mut by_bucket: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let State::Todo(task) = &job.state {
            by_bucket.entry(task.bucket.clone()).or_default().push(i);
        }
    }
    for (bucket, indexes) in by_bucket {
        let keys: Vec<_> = indexes
            .iter()
            .filter_map(|&i| match &jobs[i].state {
                State::Todo(task) => Some(task.object_key.clone()),
                _ => None,
            })
            .collect();
        let key_refs: Vec<_> = keys.iter().collect();
        match deps.objects.delete_keys(&bucket, &key_refs).await {
            Ok(failures) => {
                for failure in failures {
                    for &i in &indexes {
                        if matches!(&jobs[i].state, State::Todo(t) if t.object_key.as_str() == failure.key) {
                            jobs[i].state = State::Failed(format!("DeleteObjects refused the key: {}", failure.code));
                        }
                    }
                }
            }
            Err(e) => {
                let why = chain(&e);
                for &i in &indexes {
                    jobs[i].state = State::Failed(why.clone());
                }
            }
        }
    }
}

/// Aborts the task's multipart upload, if any. Then, once the task's final
/// pass is due, removes the task; before that, schedules the final pass (a
/// delayed message) and leaves the task for it.
async fn finish(deps: &Deps, task: &CleanupTask) -> Result<(), Error> {
    if let Some(mp) = &task.multipart_upload_id {
        deps.objects.abort_multipart(&task.bucket, &task.object_key, mp).await?;
    }
    let wait = task.final_pass_at.unix_millis() - Timestamp::now().unix_millis();
    if wait > 0 {
        deps.store.defer_cleanup_task(task).await?;
        let delay = (wait + 999) / 1000;
        if delay <= MAX_DELAY_SECONDS {
            deps.queue.enqueue_after(&task.upload_id, delay).await?;
            info!(final_pass_in_seconds = delay, "bytes removed; final pass scheduled");
        } else {
            info!(final_pass_in_seconds = delay, "bytes removed; the sweeper drives the final pass when due");
        }
        return Ok(());
    }
    deps.store.delete_cleanup_task(&task.upload_id).await
}
