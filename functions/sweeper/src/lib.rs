//! The scheduled sweeper.
//!
//! 1. Expires abandoned sessions: pending sessions past `expires_at` are
//!    deleted through the same path as a client's delete (transaction with a
//!    cleanup task, then the cleanup message), on condition that they are
//!    still pending and expired when the transaction commits.
//! 2. Re-drives stuck cleanups: tasks due more than `redrive_after` ago (their
//!    message was lost, or the function died before enqueueing) are claimed
//!    with a conditional write and enqueued again.
//!
//! Work is read in pages of 100 from the `by_due` index and bounded per run.
//! Two sweepers running at once do no double work: each deletion and each
//! claim is a conditional write only one of them can win.

use std::future::Future;

use futures::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use shared::config::{number, ConfigError};
use shared::deletion::Deleter;
use shared::domain::Session;
use shared::domain::Timestamp;
use shared::error::chain;
use shared::store::{CleanupTask, DeleteScope, Item};
use shared::{aws, Config, Error};
use tracing::{info, warn};

const PAGE: i32 = 100;
/// Requests a sweeper makes at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone)]
pub struct Deps {
    pub deleter: Deleter,
    /// A cleanup task due this long ago is stuck (`CLEANUP_REDRIVE_AFTER_SECONDS`, default 300).
    pub redrive_after_seconds: i64,
    /// At most this many sessions and this many tasks a run (`SWEEP_MAX_ITEMS`, default 1000).
    pub max_items: usize,
}

impl Deps {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let sdk = aws::sdk_config().await;
        Ok(Self {
            deleter: Deleter::new(aws::store(&sdk, &config), aws::cleanup_queue(&sdk, &config), &config),
            redrive_after_seconds: number("CLEANUP_REDRIVE_AFTER_SECONDS", 300, 0, 86_400)? as i64,
            max_items: number("SWEEP_MAX_ITEMS", 1000, 1, 100_000)? as usize,
        })
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Expired sessions this run deleted.
    pub expired: usize,
    /// Stuck cleanup tasks this run enqueued again.
    pub redriven: usize,
    /// Items that failed (logged; the next run tries again).
    pub failed: usize,
}

pub async fn handle(deps: &Deps, _event: LambdaEvent<Value>) -> Result<Report, lambda_runtime::Error> {
    let report = sweep(deps, Timestamp::now()).await.map_err(|e| lambda_runtime::Error::from(chain(&e)))?;
    info!(expired = report.expired, redriven = report.redriven, failed = report.failed, "sweep done");
    Ok(report)
}

/// One sweep as of `now`.
pub async fn sweep(deps: &Deps, now: Timestamp) -> Result<Report, Error> {
    let store = &deps.deleter.store;
    let (expired, failed_expiring) = work(
        deps.max_items,
        |start| store.expired_pending_sessions(now, PAGE, start),
        |s: Session| async move {
            let result = deps.deleter.delete(&s.owner, &s.id, DeleteScope::ExpiredPending(now)).await;
            if let Err(e) = &result {
                warn!(upload_id = %s.id, error = %chain(e), "could not expire session");
            }
            result.map(|task| task.is_some())
        },
    )
    .await?;

    let before = now.plus_seconds(-deps.redrive_after_seconds);
    let (redriven, failed_redriving) = work(
        deps.max_items,
        |start| store.due_cleanup_tasks(before, PAGE, start),
        |(task, due): (CleanupTask, String)| async move {
            let result = async {
                if !store.claim_cleanup_task(&task, &due, now).await? {
                    return Ok(false);
                }
                deps.deleter.queue.enqueue(&task.upload_id).await?;
                Ok(true)
            }
            .await;
            if let Err(e) = &result {
                warn!(upload_id = %task.upload_id, error = %chain(e), "could not re-drive cleanup task");
            }
            result
        },
    )
    .await?;
    Ok(Report { expired, redriven, failed: failed_expiring + failed_redriving })
}

/// Pages through work with `page` (at most `max` items) and applies `act`
/// to each item, `CONCURRENCY` at a time. Returns how many items `act` did
/// something for, and how many failed (the next run tries those again).
async fn work<T, Page, PageFut, Act, ActFut>(max: usize, page: Page, act: Act) -> Result<(usize, usize), Error>
where
    Page: Fn(Option<Item>) -> PageFut,
    PageFut: Future<Output = Result<(Vec<T>, Option<Item>), Error>>,
    Act: Fn(T) -> ActFut,
    ActFut: Future<Output = Result<bool, Error>>,
{
    let (mut done, mut failed, mut seen) = (0, 0, 0);
    let mut start = None;
    loop {
        let (items, next) = page(start).await?;
        seen += items.len();
        let outcomes: Vec<Result<bool, Error>> =
            stream::iter(items).map(&act).buffer_unordered(CONCURRENCY).collect().await;
        for outcome in outcomes {
            match outcome {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(_) => failed += 1,
            }
        }
        match next {
            Some(key) if seen < max => start = Some(key),
            _ => return Ok((done, failed)),
        }
    }
}
