//! Removes the bytes of deleted uploads, fed by the cleanup queue.
//!
//! Each message names a cleanup task. A batch is worked as a whole, so its
//! AWS calls do not grow with its size: one `BatchGetItem` reads the tasks
//! (100 a call); one `DeleteObjects` per bucket removes the objects (1,000
//! keys a call); multipart uploads are aborted one by one (and any other
//! upload listed for the key); one `BatchWriteItem` removes the tasks whose
//! final pass is done (25 a call), or one `SendMessageBatch` schedules the
//! final pass of the others (10 a call). A batch of 10 single-`PUT`
//! deletions is 3 calls on either pass. Only the messages that failed are
//! reported, so SQS redelivers just those and, past `maxReceiveCount`,
//! parks them in the DLQ. A message whose task is already gone succeeds
//! without doing anything.
//!
//! A presigned URL handed out before the deletion stays valid until it
//! expires, so a late `PUT` could land bytes after the first pass. Each task
//! therefore carries `final_pass_at` (the deletion plus the URL lifetime and
//! a margin): a pass before then removes the bytes and keeps the task for
//! the final pass, which removes the bytes again and then the task. So a
//! deletion takes two passes (one when the task is already past its final
//! pass time). The final pass comes from a delayed message when
//! `final_pass_at` is within SQS's longest delay (900 s), and otherwise from
//! the sweeper: a task is due for the sweeper at its final pass from the
//! moment it is written, so a lost message, a failed schedule or a long
//! wait all end in that pass, and never in a chain of delayed messages.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use lambda_runtime::LambdaEvent;
use shared::config::ConfigError;
use shared::domain::{ObjectKey, Timestamp, UploadId};
use shared::error::chain;
use shared::objects::Objects;
use shared::queue::{CleanupMessage, CleanupQueue, MAX_DELAY_SECONDS};
use shared::store::{CleanupTask, Store};
use shared::aws;
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
        let env = aws::Env::load().await?;
        Ok(Self { store: env.store(), objects: env.objects(), queue: env.cleanup_queue() })
    }
}

/// One SQS record on its way through the batch.
struct Job {
    message_id: String,
    span: Span,
    state: State,
}

impl Job {
    /// The id whose task is still to be read.
    fn reading(&self) -> Option<&UploadId> {
        match &self.state {
            State::Read(id) => Some(id),
            _ => None,
        }
    }
}

enum State {
    /// Its task is still to be read.
    Read(UploadId),
    /// Still to be cleaned.
    Todo(CleanupTask),
    /// Nothing (left) to do: the task is gone.
    Done,
    Failed(String),
}

pub async fn handle(deps: &Deps, event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let mut jobs: Vec<Job> = event
        .payload
        .records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let message_id = record.message_id.unwrap_or_else(|| format!("#{i}"));
            let span = info_span!("cleanup", message_id = %message_id, upload_id = tracing::field::Empty);
            let state = match record.body.as_deref().and_then(CleanupMessage::parse) {
                None => State::Failed("message body is not a cleanup message".into()),
                Some(id) => {
                    span.record("upload_id", id.as_str());
                    State::Read(id)
                }
            };
            Job { message_id, span, state }
        })
        .collect();

    read_tasks(deps, &mut jobs).await;
    delete_objects(deps, &mut jobs).await;
    abort_multipart_uploads(deps, &mut jobs).await;
    finish(deps, &mut jobs).await;

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

/// The tasks the batch's messages name, in one read. A message whose task
/// is gone has nothing left to do.
async fn read_tasks(deps: &Deps, jobs: &mut [Job]) {
    let ids: Vec<UploadId> = jobs.iter().filter_map(Job::reading).cloned().collect();
    if ids.is_empty() {
        return;
    }
    match deps.store.get_cleanup_tasks(&ids).await {
        Ok(tasks) => {
            for job in jobs.iter_mut() {
                let Some(id) = job.reading() else { continue };
                job.state = match tasks.get(id) {
                    None => State::Done,
                    Some(Ok(task)) => State::Todo(task.clone()),
                    Some(Err(e)) => State::Failed(chain(e)),
                };
            }
        }
        Err(e) => {
            let why = chain(&e);
            for job in jobs.iter_mut().filter(|j| j.reading().is_some()) {
                job.state = State::Failed(why.clone());
            }
        }
    }
}

/// Removes the objects of every pending job, one `DeleteObjects` call per
/// bucket and 1,000 keys. A failed call fails its jobs; a key S3 refuses
/// fails the job it belongs to.
async fn delete_objects(deps: &Deps, jobs: &mut [Job]) {
    let mut by_bucket: BTreeMap<String, Vec<ObjectKey>> = BTreeMap::new();
    for job in jobs.iter() {
        if let State::Todo(task) = &job.state {
            let keys = by_bucket.entry(task.bucket.clone()).or_default();
            if !keys.contains(&task.object_key) {
                keys.push(task.object_key.clone());
            }
        }
    }
    for (bucket, keys) in by_bucket {
        let keys: Vec<&ObjectKey> = keys.iter().collect();
        let outcome = deps.objects.delete_keys(&bucket, &keys).await;
        for job in jobs.iter_mut() {
            let State::Todo(task) = &job.state else { continue };
            if task.bucket != bucket {
                continue;
            }
            match &outcome {
                Ok(failures) => {
                    if let Some(f) = failures.iter().find(|f| f.key == task.object_key.as_str()) {
                        job.state = State::Failed(format!("DeleteObjects refused the key: {}", f.code));
                    }
                }
                Err(e) => job.state = State::Failed(chain(e)),
            }
        }
    }
}

/// Aborts the multipart upload of each job that has one (and any other
/// upload S3 lists for its key), one job at a time per call.
async fn abort_multipart_uploads(deps: &Deps, jobs: &mut [Job]) {
    join_all(jobs.iter_mut().map(|job| async move {
        let State::Todo(task) = &job.state else { return };
        let Some(mp) = &task.multipart_upload_id else { return };
        let result =
            deps.objects.abort_multipart(&task.bucket, &task.object_key, mp).instrument(job.span.clone()).await;
        if let Err(e) = result {
            job.state = State::Failed(chain(&e));
        }
    }))
    .await;
}

/// Once a job's bytes are gone: a task whose final pass is due is removed
/// (one batched write for the batch); before that, the final pass is
/// scheduled as a delayed message (one batched send), or left to the
/// sweeper when it is further off than SQS can delay. The task itself is
/// already due at its final pass for the sweeper, so nothing is written.
async fn finish(deps: &Deps, jobs: &mut [Job]) {
    let now = Timestamp::now();
    let mut remove = Vec::new();
    let mut schedule = Vec::new();
    for job in jobs.iter() {
        let State::Todo(task) = &job.state else { continue };
        let id = &task.upload_id;
        match final_pass_in(task, now) {
            None if !remove.contains(id) => remove.push(id.clone()),
            Some(delay) if delay <= MAX_DELAY_SECONDS && !schedule.iter().any(|(s, _)| s == id) => {
                schedule.push((id.clone(), delay))
            }
            _ => {}
        }
    }
    let (removed, scheduled) = futures::join!(
        async {
            if remove.is_empty() {
                Ok(())
            } else {
                deps.store.delete_cleanup_tasks(&remove).await
            }
        },
        async {
            if schedule.is_empty() {
                Ok(Vec::new())
            } else {
                deps.queue.enqueue_many_after(&schedule).await
            }
        },
    );
    for job in jobs.iter_mut() {
        let State::Todo(task) = &job.state else { continue };
        let _entered = job.span.enter();
        let next = match final_pass_in(task, now) {
            None => removed.as_ref().map_err(|e| chain(e)).map(|()| info!("final pass done; task removed")),
            Some(delay) if delay <= MAX_DELAY_SECONDS => match &scheduled {
                Ok(refused) if refused.contains(&task.upload_id) => Err("SQS refused the final pass message".into()),
                Ok(_) => Ok(info!(final_pass_in_seconds = delay, "bytes removed; final pass scheduled")),
                Err(e) => Err(chain(e)),
            },
            Some(delay) => {
                Ok(info!(final_pass_in_seconds = delay, "bytes removed; the sweeper drives the final pass when due"))
            }
        };
        drop(_entered);
        job.state = match next {
            Ok(()) => State::Done,
            Err(why) => State::Failed(why),
        };
    }
}

/// Seconds until `task`'s final pass, rounded up; `None` once it is due.
fn final_pass_in(task: &CleanupTask, now: Timestamp) -> Option<i64> {
    let wait = task.final_pass_at.unix_millis() - now.unix_millis();
    (wait > 0).then(|| (wait + 999) / 1000)
}
