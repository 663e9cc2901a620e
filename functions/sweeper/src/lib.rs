//! The scheduled sweeper.
//!
//! 1. Finishes completions: a pending session a confirm marked completing
//!    (S3 was still completing its multipart upload when the confirm had to
//!    answer) and no retry finished is completed here, as a confirm would.
//! 2. Expires abandoned sessions: pending sessions past `expires_at` are
//!    deleted through the same path as a client's delete (transaction with a
//!    cleanup task, then the cleanup message), on condition that they are
//!    still pending and expired when the transaction commits.
//! 3. Re-drives stuck cleanups: tasks due more than `redrive_after` ago (their
//!    message was lost, the function died before enqueueing, cleanup kept
//!    failing, or a final pass is due that no delayed message covers) are
//!    claimed with a conditional write, which counts the attempt and puts
//!    the next re-drive further off (doubling, at most 6 h), and enqueued
//!    again. A task past `CLEANUP_MAX_ATTEMPTS` is logged as an error and
//!    counted in the `StuckCleanupTasks` metric (an alarm watches it); it
//!    keeps being re-driven, since its bytes must still go.
//! 4. Re-drives upload events: an outbox item still there
//!    [`OUTBOX_REDRIVE_AFTER_SECONDS`] after its change committed (the
//!    stream's publisher failed past its retries, or lost the record) is
//!    published here (and cleared), completions before the deletions of
//!    their upload, as the publisher does. One older than
//!    `EVENT_STUCK_AFTER_SECONDS` (default 900) is counted in the
//!    `StuckEvents` metric (an alarm watches it).
//!
//! Each run reads the `by_due` index page after page until close to its
//! deadline (the Lambda's, less a margin) or until nothing is due. One bad
//! item (unreadable, or failing) is logged and skipped; the others go on.
//! Two sweepers running at once do no double work: each completion,
//! deletion and claim is a conditional write only one of them can win.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use shared::completion::{self, Confirmed};
use shared::config::{number, ConfigError};
use shared::deletion::Deleter;
use shared::domain::Timestamp;
use shared::error::chain;
use shared::events::Publisher;
use shared::store::{
    DeleteScope, DueEvent, DueItems, DueSession, DueTask, Item, DUE_SHARDS, OUTBOX_REDRIVE_AFTER_SECONDS,
};
use shared::uploads::Uploads;
use shared::{aws, telemetry, Error};
use tracing::{error, info, warn};

const PAGE: i32 = 100;
/// Items of one shard handled at once.
const CONCURRENCY: usize = 4;
/// Shards of each kind read at once (two kinds go on together).
const SHARDS_AT_ONCE: usize = 4;
/// The longest wait between two re-drives of one task.
const MAX_REDRIVE_BACKOFF_SECONDS: i64 = 6 * 3600;
/// Time kept free before the Lambda's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);
/// How long a run started without a deadline (tests) may work.
const DEFAULT_RUN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Deps {
    pub deleter: Deleter,
    /// For finishing completions.
    pub uploads: Uploads,
    /// A cleanup task due this long ago is stuck (`CLEANUP_REDRIVE_AFTER_SECONDS`, default 300).
    pub redrive_after_seconds: i64,
    /// Re-drives of one task before it is reported stuck (`CLEANUP_MAX_ATTEMPTS`, default 8).
    pub max_attempts: u32,
    /// CloudWatch namespace of the sweeper's metrics (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
    /// Re-drives upload events (`EVENT_BUS_NAME`); `None`: not this run's job.
    pub publisher: Option<Publisher>,
    /// An event still unpublished this long after its change is stuck
    /// (`EVENT_STUCK_AFTER_SECONDS`, default 900).
    pub event_stuck_after_seconds: i64,
}

impl Deps {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let env = aws::Env::load().await?;
        // One DynamoDB client for both, as one store.
        let uploads = env.uploads();
        Ok(Self {
            deleter: Deleter::new(uploads.store.clone(), env.cleanup_queue(), &env.config),
            uploads,
            redrive_after_seconds: number("CLEANUP_REDRIVE_AFTER_SECONDS", 300, 0, 86_400)? as i64,
            max_attempts: number("CLEANUP_MAX_ATTEMPTS", 8, 1, 1000)? as u32,
            metrics_namespace: std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "UploadSessions".to_owned()),
            publisher: match env.config.event_bus_name {
                Some(_) => Some(env.publisher()?),
                None => None,
            },
            event_stuck_after_seconds: number("EVENT_STUCK_AFTER_SECONDS", 900, 0, 86_400)? as i64,
        })
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Completions this run finished.
    pub completed: usize,
    /// Expired sessions this run deleted.
    pub expired: usize,
    /// Stuck cleanup tasks this run enqueued again.
    pub redriven: usize,
    /// Of those, tasks past the attempt bound.
    pub stuck: usize,
    /// Upload events this run published from the outbox.
    pub events_redriven: usize,
    /// Of the events it found, those unpublished past the stuck bound.
    pub events_stuck: usize,
    /// Items that failed or could not be read (logged; the next run tries again).
    pub failed: usize,
    /// Whether the run stopped at its deadline with work possibly left.
    pub out_of_time: bool,
}

pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Report, lambda_runtime::Error> {
    let now_ms = Timestamp::now().unix_millis().max(0) as u64;
    let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    let stop_at = Instant::now() + left.saturating_sub(DEADLINE_MARGIN.min(left / 4));
    let report =
        sweep_until(deps, Timestamp::now(), stop_at).await.map_err(|e| lambda_runtime::Error::from(chain(&e)))?;
    if report.stuck > 0 {
        telemetry::metric(&deps.metrics_namespace, "StuckCleanupTasks", report.stuck as f64);
    }
    if report.events_stuck > 0 {
        telemetry::metric(&deps.metrics_namespace, "StuckEvents", report.events_stuck as f64);
    }
    info!(
        completed = report.completed,
        expired = report.expired,
        redriven = report.redriven,
        stuck = report.stuck,
        events_redriven = report.events_redriven,
        events_stuck = report.events_stuck,
        failed = report.failed,
        out_of_time = report.out_of_time,
        "sweep done"
    );
    Ok(report)
}

/// One sweep as of `now`, for at most a minute.
pub async fn sweep(deps: &Deps, now: Timestamp) -> Result<Report, Error> {
    sweep_until(deps, now, Instant::now() + DEFAULT_RUN).await
}

/// What happened to one item.
enum Done {
    Nothing,
    Completed,
    Expired,
    Redriven {
        stuck: bool,
    },
    Published {
        stuck: bool,
    },
    /// The bus refused it again: counted as failed (and stuck, if so).
    Unpublished {
        stuck: bool,
    },
}

/// One sweep as of `now`, starting no new page after `stop_at`. The three
/// kinds of due work go on at once, each over every shard of the `by_due`
/// index, `SHARDS_AT_ONCE` shards at a time.
pub async fn sweep_until(deps: &Deps, now: Timestamp, stop_at: Instant) -> Result<Report, Error> {
    let every: Vec<u32> = (0..DUE_SHARDS).collect();
    sweep_shards(deps, now, stop_at, &every).await
}

/// As [`sweep_until`], over only `shards` of the `by_due` index (each
/// upload's work is in [`shared::store::due_shard`] of its id): a sweep of
/// the shards where known work is, instead of all of them.
pub async fn sweep_shards(deps: &Deps, now: Timestamp, stop_at: Instant, shards: &[u32]) -> Result<Report, Error> {
    let store = &deps.deleter.store;
    let before = now.plus_seconds(-deps.redrive_after_seconds);
    let sessions = every_shard(
        shards,
        stop_at,
        |shard, start| store.due_pending_sessions(shard, now, PAGE, start),
        |s: DueSession| async move {
            let result = settle(deps, &s, now, stop_at).await;
            if let Err(e) = &result {
                warn!(upload_id = %s.id, error = %chain(e), "could not settle a due session");
            }
            result
        },
    );
    let tasks = every_shard(
        shards,
        stop_at,
        |shard, start| store.due_cleanup_tasks(shard, before, PAGE, start),
        |task: DueTask| async move {
            let result = redrive(deps, &task, now).await;
            if let Err(e) = &result {
                warn!(upload_id = %task.upload_id, error = %chain(e), "could not re-drive cleanup task");
            }
            result
        },
    );
    // An event's due time is already `OUTBOX_REDRIVE_AFTER_SECONDS` after its change.
    let events = every_shard(
        if deps.publisher.is_some() { shards } else { &[] },
        stop_at,
        |shard, start| store.due_outbox_events(shard, now, PAGE, start),
        |event: DueEvent| async move {
            let result = republish(deps, &event, now).await;
            if let Err(e) = &result {
                warn!(event_id = %event.event_id, error = %chain(e), "could not re-drive an upload event");
            }
            result
        },
    );
    let (sessions, tasks, events) = tokio::join!(sessions, tasks, events);
    let mut report = Report::default();
    for shard in sessions.into_iter().chain(tasks).chain(events) {
        // A shard whose page could not be read is counted and left for the
        // next run; the other shards' work stands.
        let (part, finished) = match shard {
            Ok(done) => done,
            Err(e) => {
                warn!(error = %chain(&e), "could not read a shard of due work");
                report.failed += 1;
                continue;
            }
        };
        report.completed += part.completed;
        report.expired += part.expired;
        report.redriven += part.redriven;
        report.stuck += part.stuck;
        report.events_redriven += part.events_redriven;
        report.events_stuck += part.events_stuck;
        report.failed += part.failed;
        report.out_of_time |= !finished;
    }
    Ok(report)
}

/// A due pending session: finish its completion, or expire it.
async fn settle(deps: &Deps, s: &DueSession, now: Timestamp, stop_at: Instant) -> Result<Done, Error> {
    if let Some(since) = s.completing_since {
        let abandoned = since.plus_seconds(completion::ABANDONED_AFTER_SECONDS) <= now;
        if !abandoned || s.expires_at > now {
            // The rest of the run, not a client's budget: S3 may take
            // minutes to complete 10,000 parts, and documents nothing of a
            // completion whose caller went away, so the sweeper is where a
            // long completion gets the time to finish.
            let answer_by = tokio::time::Instant::from_std(stop_at);
            return Ok(match completion::confirm(&deps.uploads, &s.owner, &s.id, answer_by, Duration::MAX).await {
                Ok(Confirmed::Completed(_)) => Done::Completed,
                Ok(Confirmed::InProgress(_)) => Done::Nothing,
                // Deleted meanwhile: nothing to finish.
                Err(Error::NotFound) => Done::Nothing,
                Err(e) => return Err(e),
            });
        }
    }
    let deleted = deps.deleter.delete(&s.owner, &s.id, DeleteScope::ExpiredPending(now)).await?;
    Ok(if deleted.is_some() { Done::Expired } else { Done::Nothing })
}

/// Claims a stale task (counting the attempt, backing off the next one)
/// and enqueues it again.
async fn redrive(deps: &Deps, task: &DueTask, now: Timestamp) -> Result<Done, Error> {
    let attempt = task.attempts.saturating_add(1);
    let backoff =
        deps.redrive_after_seconds.max(1).saturating_mul(1 << attempt.min(20)).min(MAX_REDRIVE_BACKOFF_SECONDS);
    // The sweeper acts on tasks due `redrive_after` ago; the next re-drive
    // comes `backoff` from now.
    let next = now.plus_seconds(backoff - deps.redrive_after_seconds);
    let Some(attempts) = deps.deleter.store.claim_cleanup_task(task, next).await? else {
        return Ok(Done::Nothing);
    };
    deps.deleter.queue.enqueue(&task.upload_id).await?;
    let stuck = attempts > deps.max_attempts;
    if stuck {
        error!(upload_id = %task.upload_id, attempts, "cleanup task is stuck: its bytes are still not removed");
    }
    Ok(Done::Redriven { stuck })
}

/// Publishes an outbox event the stream left behind (a completion of its
/// upload still there goes first), then clears it.
async fn republish(deps: &Deps, due: &DueEvent, now: Timestamp) -> Result<Done, Error> {
    let publisher = deps.publisher.as_ref().ok_or_else(|| Error::invariant("re-drive event", "no publisher"))?;
    // Its due time is `OUTBOX_REDRIVE_AFTER_SECONDS` after its change.
    let age = now.unix_seconds() - due.due.unix_seconds() + OUTBOX_REDRIVE_AFTER_SECONDS;
    let stuck = age >= deps.event_stuck_after_seconds;
    let outcome = publisher.publish(&[(due.event_id.clone(), due.upload_id.clone())]).await;
    let unpublished = outcome.retry.contains(&due.event_id) || outcome.refused.contains(&due.event_id);
    if !unpublished && !outcome.published.contains(&due.event_id) {
        // Published and cleared since the index was read.
        return Ok(Done::Nothing);
    }
    if stuck {
        error!(event_id = %due.event_id, upload_id = %due.upload_id, age, "upload event is stuck: still unpublished");
    }
    if unpublished {
        warn!(event_id = %due.event_id, "the bus refused a re-driven event; the next run tries again");
        return Ok(Done::Unpublished { stuck });
    }
    Ok(Done::Published { stuck })
}

/// [`work`] over each of `shards`, `SHARDS_AT_ONCE` at a time: `page`
/// reads a shard's page, `act` handles an item. Each shard's outcome.
async fn every_shard<T, Page, PageFut, Act, ActFut>(
    shards: &[u32],
    stop_at: Instant,
    page: Page,
    act: Act,
) -> Vec<Result<(Report, bool), Error>>
where
    Page: Fn(u32, Option<Item>) -> PageFut,
    PageFut: Future<Output = Result<(DueItems<T>, Option<Item>), Error>>,
    Act: Fn(T) -> ActFut,
    ActFut: Future<Output = Result<Done, Error>>,
{
    let (page, act) = (&page, &act);
    stream::iter(shards.iter().copied())
        .map(|shard| work(stop_at, move |start| page(shard, start), act))
        .buffer_unordered(SHARDS_AT_ONCE)
        .collect()
        .await
}

/// Pages through work with `page` until nothing is left or `stop_at`
/// passes, applying `act` to each item, `CONCURRENCY` at a time. Returns
/// the outcomes counted, and `true` when every page was read.
async fn work<T, Page, PageFut, Act, ActFut>(stop_at: Instant, page: Page, act: Act) -> Result<(Report, bool), Error>
where
    Page: Fn(Option<Item>) -> PageFut,
    PageFut: Future<Output = Result<(DueItems<T>, Option<Item>), Error>>,
    Act: Fn(T) -> ActFut,
    ActFut: Future<Output = Result<Done, Error>>,
{
    let mut report = Report::default();
    let mut start = None;
    loop {
        if Instant::now() >= stop_at {
            return Ok((report, false));
        }
        let (items, next) = page(start).await?;
        let mut readable = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Ok(t) => readable.push(t),
                Err(bad) => {
                    error!(pk = %bad.pk, error = %chain(&bad.error), "skipping an unreadable item");
                    report.failed += 1;
                }
            }
        }
        let outcomes: Vec<Result<Done, Error>> =
            stream::iter(readable).map(&act).buffer_unordered(CONCURRENCY).collect().await;
        for outcome in outcomes {
            match outcome {
                Ok(Done::Nothing) => {}
                Ok(Done::Completed) => report.completed += 1,
                Ok(Done::Expired) => report.expired += 1,
                Ok(Done::Redriven { stuck }) => {
                    report.redriven += 1;
                    report.stuck += usize::from(stuck);
                }
                Ok(Done::Published { stuck }) => {
                    report.events_redriven += 1;
                    report.events_stuck += usize::from(stuck);
                }
                Ok(Done::Unpublished { stuck }) => {
                    report.failed += 1;
                    report.events_stuck += usize::from(stuck);
                }
                Err(_) => report.failed += 1,
            }
        }
        match next {
            Some(key) => start = Some(key),
            None => return Ok((report, true)),
        }
    }
}
