//! Load with faults on: many owners' mixed operations at once through the
//! local API, every function its binary with several instances, and
//! between the functions and the emulator the fault proxy refusing some
//! calls and dropping the answers of others after they were applied.
//! Clients retry as a real one would (5xx, 429, a lost connection: the same
//! request again, with backoff). Then, faults off, everything drained
//! (cleanup's first pass from the queue; the final passes brought due and
//! re-driven by the sweeper), the invariants: each owner's usage equals
//! what its sessions hold; every object and multipart upload in the bucket
//! belongs to a live session; every completed upload's object is there; no
//! cleanup task, queued message or dead letter is left.
//!
//! `UPLOADS_LOAD_OPS` sets the operations (default 400, a minute here;
//! `docs/reliability.md` has a run of 3,000), `UPLOADS_LOAD_SEED` the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bench::rng::Rng;
use futures::future::join_all;
use serde_json::{json, Value};
use shared::domain::{ApiKey, OwnerId, Status, Timestamp, UploadId};
use tests::{endpoint, put_parts, LocalApi, TestStack};
use tokio::sync::Mutex;

const OWNERS: usize = 24;
const WORKERS: usize = 12;
const INSTANCES: usize = 4;
/// A client's tries of one request.
const ATTEMPTS: u32 = 10;
/// The template's `CLEANUP_REDRIVE_AFTER_SECONDS`.
const REDRIVE_AFTER_SECONDS: i64 = 300;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default, Debug)]
struct Tally {
    ops: usize,
    retries: usize,
    /// What the answers that were retried were (0: no answer).
    retried: BTreeMap<(String, u16), usize>,
    by_status: BTreeMap<(String, u16), usize>,
    gave_up: usize,
}

struct Client {
    http: reqwest::Client,
    base: String,
    tally: Mutex<Tally>,
}

impl Client {
    /// Sends until an answer that is not a server failure, at most
    /// `ATTEMPTS` times.
    async fn send(
        &self,
        op: &str,
        method: reqwest::Method,
        path: &str,
        key: &ApiKey,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut attempt = 0;
        loop {
            let mut req =
                self.http.request(method.clone(), format!("{}{path}", self.base)).header("x-api-key", key.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            let answer = match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let wait = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    Some((status, wait, r.json::<Value>().await.unwrap_or(Value::Null)))
                }
                Err(_) => None,
            };
            let retry = match &answer {
                Some((s, _, _)) => *s >= 500 || *s == 429,
                None => true,
            };
            let mut tally = self.tally.lock().await;
            if !retry || attempt == ATTEMPTS - 1 {
                tally.ops += 1;
                let (status, _, body) = answer.unwrap_or((0, None, Value::Null));
                *tally.by_status.entry((op.to_owned(), status)).or_default() += 1;
                if retry {
                    tally.gave_up += 1;
                }
                return (status, body);
            }
            tally.retries += 1;
            *tally.retried.entry((op.to_owned(), answer.as_ref().map_or(0, |(s, _, _)| *s))).or_default() += 1;
            drop(tally);
            attempt += 1;
            // As a client should: `Retry-After` when the answer gives one,
            // else exponential backoff, at most 2 s.
            let backoff = Duration::from_millis((50u64 << attempt.min(6)).min(2000));
            let told = answer.and_then(|(_, wait, _)| wait).map(Duration::from_secs).unwrap_or_default();
            tokio::time::sleep(backoff.max(told)).await;
        }
    }
}

/// What one worker does: `n` operations over random owners' uploads.
async fn worker(client: &Client, keys: &[ApiKey], known: &Mutex<Vec<(usize, String)>>, seed: u64, n: u64) {
    let mut rng = Rng(seed);
    for _ in 0..n {
        let o = (rng.next() % keys.len() as u64) as usize;
        let key = &keys[o];
        let pick = |rng: &mut Rng, known: &Vec<(usize, String)>| {
            let mine: Vec<&String> = known.iter().filter(|(k, _)| *k == o).map(|(_, id)| id).collect();
            (!mine.is_empty()).then(|| mine[(rng.next() % mine.len() as u64) as usize].clone())
        };
        match rng.next() % 20 {
            // A single-PUT upload: open, send (mostly), confirm (mostly).
            0..=8 => {
                let size = 1 + rng.next() % 3000;
                let body = json!({"filename": "l.bin", "content_type": "application/octet-stream", "size": size});
                let (status, created) =
                    client.send("create", reqwest::Method::POST, "/uploads", key, Some(&body)).await;
                if status != 201 {
                    continue;
                }
                let id = created["upload_id"].as_str().unwrap().to_owned();
                known.lock().await.push((o, id.clone()));
                if rng.chance(90) {
                    put_parts(&created["upload"], &tests::bytes(size as usize, rng.next()), None).await;
                    if rng.chance(85) {
                        client
                            .send("confirm", reqwest::Method::POST, &format!("/uploads/{id}/confirm"), key, None)
                            .await;
                    }
                }
            }
            // A multipart session, left pending (its reservation held, its
            // multipart upload open) until a delete or the end.
            9 => {
                let body = json!({"filename": "m.bin", "content_type": "application/octet-stream", "size": 40 << 20});
                let (status, created) =
                    client.send("create", reqwest::Method::POST, "/uploads", key, Some(&body)).await;
                if status == 201 {
                    known.lock().await.push((o, created["upload_id"].as_str().unwrap().to_owned()));
                }
            }
            10..=12 => {
                let Some(id) = pick(&mut rng, &*known.lock().await) else { continue };
                client.send("get", reqwest::Method::GET, &format!("/uploads/{id}"), key, None).await;
            }
            13 => {
                client.send("list", reqwest::Method::GET, "/uploads?limit=20", key, None).await;
            }
            14 => {
                let Some(id) = pick(&mut rng, &*known.lock().await) else { continue };
                client.send("resume", reqwest::Method::POST, &format!("/uploads/{id}/resume"), key, None).await;
            }
            _ => {
                let Some(id) = pick(&mut rng, &*known.lock().await) else { continue };
                client.send("delete", reqwest::Method::DELETE, &format!("/uploads/{id}"), key, None).await;
            }
        }
    }
}

/// Feeds the cleanup queue to the cleanup function as its event source
/// mapping would ([`local::feeder::Feeder`]) until a receive finds nothing.
/// Faults are off by then, so no message may fail.
async fn drain_queue(t: &TestStack, api: &LocalApi) -> usize {
    let feeder = local::feeder::Feeder {
        client: t.sqs.clone(),
        queue_url: t.config.cleanup_queue_url.clone(),
        queue_arn: t.cleanup_queue_arn(),
        batch_size: 10,
        wait_seconds: 0,
    };
    let cleanup = &api.hosts["Cleanup"].1;
    let mut handled = 0;
    loop {
        let round = feeder.round(cleanup).await.unwrap();
        if round.received == 0 {
            return handled;
        }
        assert_eq!(round.failed, 0, "cleanup failed a message with faults off");
        handled += round.received;
    }
}

/// Every cleanup task's final pass brought to now, then sweeps and cleanup
/// until no task is left (at most `rounds` rounds).
async fn finish_tasks(t: &TestStack, api: &LocalApi, rounds: usize) -> usize {
    let sweeper = api.hosts["Sweeper"].1.clone();
    for round in 0..rounds {
        let tasks: Vec<UploadId> = t
            .scan_table()
            .await
            .into_iter()
            .filter(|((_, sk), _)| sk == "CLEANUP")
            .filter_map(|((pk, _), _)| pk.strip_prefix("CLEANUP#").and_then(UploadId::parse))
            .collect();
        if tasks.is_empty() {
            return round;
        }
        for id in &tasks {
            if let Some(mut task) = t.store.get_cleanup_task(id).await.unwrap() {
                // Past its final pass and the sweeper's re-drive grace
                // (`CLEANUP_REDRIVE_AFTER_SECONDS`, 300 in the template).
                task.final_pass_at = Timestamp::now().plus_seconds(-REDRIVE_AFTER_SECONDS - 1);
                t.store.put_cleanup_task(&task).await.unwrap();
            }
        }
        sweeper.invoke(&local::feeder::scheduled_event("Sweeper")).await.unwrap();
        drain_queue(t, api).await;
    }
    panic!("cleanup tasks left after {rounds} rounds of sweeper and cleanup");
}

/// The invariants, faults off and everything drained.
async fn check(t: &TestStack, owners: &[OwnerId]) -> (usize, usize, usize) {
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut pending_multipart: BTreeSet<String> = BTreeSet::new();
    let (mut completed, mut pending) = (0, 0);
    for owner in owners {
        for s in t.assert_usage_matches_sessions(owner, "after the load").await {
            let key = shared::domain::ObjectKey::for_upload(owner, &s.id);
            if s.status == Status::Completed {
                completed += 1;
            } else {
                pending += 1;
                let full = t.store.get_session(owner, &s.id).await.unwrap().expect("a listed session");
                if full.multipart.is_some() {
                    pending_multipart.insert(key.as_str().to_owned());
                }
            }
            live.insert(key.as_str().to_owned());
        }
    }
    let keys = t.all_keys().await;
    let objects = keys.len();
    let orphans: Vec<String> = keys.into_iter().filter(|k| !live.contains(k)).collect();
    assert!(orphans.is_empty(), "objects of no live session: {orphans:?}");
    let stray: Vec<(String, String)> =
        t.all_multipart_uploads().await.into_iter().filter(|(k, _)| !pending_multipart.contains(k)).collect();
    assert!(stray.is_empty(), "multipart uploads of no pending session: {stray:?}");
    let snapshot = t.snapshot().await;
    assert!(!snapshot.items.keys().any(|(_, sk)| sk == "CLEANUP"), "a cleanup task is left");
    for (queue, state) in &snapshot.queues {
        // Delayed final-pass messages may still wait in the cleanup queue:
        // their tasks are gone, so they will find nothing to do.
        assert_eq!((state.visible, state.in_flight, state.received), (0, 0, 0), "{queue}");
        if queue != "CleanupQueue" {
            assert_eq!(state.delayed, 0, "{queue}");
        }
    }
    (completed, pending, objects)
}

/// Every upload the clients created has the events its fate says, each
/// once (the outbox holds them: no publisher runs here): a completion
/// exactly when it is, or was before its deletion, completed; one
/// deletion or expiry exactly when it is gone. No other event exists.
/// Returns the count by type.
async fn check_events(t: &TestStack, owners: &[OwnerId], known: &[(usize, String)]) -> BTreeMap<String, usize> {
    use shared::events::{event_id, EventType};
    let outbox = t.outbox_events().await;
    let mut accounted = 0;
    let ids: BTreeSet<&(usize, String)> = known.iter().collect();
    for (o, id) in ids {
        let id = UploadId::parse(id).unwrap();
        let session = t.store.get_session(&owners[*o], &id).await.unwrap();
        let completed = outbox.get(&event_id(&id, EventType::Completed));
        let ended: Vec<&Value> =
            [EventType::Deleted, EventType::Expired].iter().filter_map(|k| outbox.get(&event_id(&id, *k))).collect();
        accounted += usize::from(completed.is_some()) + ended.len();
        match session {
            Some(s) => {
                assert!(ended.is_empty(), "{id} is there but has an end event");
                assert_eq!(completed.is_some(), s.status == Status::Completed, "{id}");
            }
            None => {
                assert_eq!(ended.len(), 1, "{id} is gone: one deletion or expiry");
                assert_eq!(completed.is_some(), ended[0]["status"] == "completed", "{id}: {}", ended[0]);
            }
        }
    }
    assert_eq!(accounted, outbox.len(), "an event for no upload the clients created");
    let mut by_type = BTreeMap::new();
    for detail in outbox.values() {
        *by_type.entry(detail["type"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    by_type
}

/// The faults the load runs under, one rule armed at a time: refusals
/// before a call is applied and answers lost after it was.
const FAULTS: &[(&str, Option<u16>, &str)] = &[
    ("dynamodb:TransactWriteItems", None, ""),
    ("dynamodb:TransactWriteItems", Some(500), "InternalServerError"),
    ("dynamodb:BatchGetItem", Some(500), "InternalServerError"),
    ("dynamodb:UpdateItem", None, ""),
    ("s3:DeleteObjects", Some(503), "SlowDown"),
    ("s3:HeadObject", Some(500), "InternalError"),
    ("s3:CreateMultipartUpload", None, ""),
    ("s3:DeleteObjectTagging", Some(503), "SlowDown"),
    ("sqs:SendMessage", Some(500), "InternalError"),
    ("sqs:SendMessage", None, ""),
];
const FAULT_EVERY: Duration = Duration::from_millis(40);
const OUTAGE: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_with_faults_loses_nothing_and_leaks_nothing() {
    let ops = env_number("UPLOADS_LOAD_OPS", 400);
    let seed = env_number("UPLOADS_LOAD_SEED", 20261123);
    let t = TestStack::with_parameters(&[("QuotaBytes", "1099511627776"), ("MaxPendingUploads", "1000")]).await;
    let mut owners = Vec::new();
    let mut keys = Vec::new();
    for n in 0..OWNERS {
        let (owner, key) = t.owner(&format!("load-{n}")).await;
        owners.push(owner);
        keys.push(key);
    }
    let proxy = Arc::new(local::wire::Proxy::start(&endpoint()).await.unwrap());
    let mut hosts = BTreeMap::new();
    for f in t.stack.template.functions().unwrap() {
        let scaling = local::runtime::Scaling::instances(INSTANCES);
        let host =
            t.stack.start_function_scaled(&f, false, &[("AWS_ENDPOINT_URL", &proxy.endpoint)], scaling).await.unwrap();
        hosts.insert(f.logical_id.clone(), (f, Arc::new(host)));
    }
    let api = LocalApi::serve(&t, hosts).await;
    let client = Client { http: reqwest::Client::new(), base: api.base.clone(), tally: Mutex::new(Tally::default()) };
    let known = Mutex::new(Vec::new());

    // Faults on while the workers run.
    let injecting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let injector = {
        let (proxy, injecting) = (proxy.clone(), injecting.clone());
        tokio::spawn(async move {
            let mut rng = Rng(seed ^ 0xfa17);
            let mut injected = 0usize;
            let mut armed = None;
            while injecting.load(std::sync::atomic::Ordering::SeqCst) {
                let (op, status, code) = FAULTS[(rng.next() % FAULTS.len() as u64) as usize];
                let fault = match status {
                    Some(s) => local::wire::Fault::refuse(s, code),
                    None => local::wire::Fault::DropResponse,
                };
                // One fault at a time: the last one, if no call took it, goes.
                if let Some(id) = armed.take() {
                    proxy.lift(id);
                }
                // For the next 1 to 3 calls (what the SDK's and the
                // functions' own retries absorb), or one time in five for
                // every call during an outage of `OUTAGE`, which reaches
                // the client.
                let rule = local::wire::Rule::new(op, fault);
                let outage = rng.chance(20);
                let rule = if outage { rule } else { rule.next(1 + (rng.next() % 3) as u32) };
                armed = Some(proxy.inject(rule));
                injected += 1;
                tokio::time::sleep(if outage { OUTAGE } else { FAULT_EVERY }).await;
            }
            injected
        })
    };
    let started = std::time::Instant::now();
    let per_worker = ops / WORKERS as u64;
    join_all((0..WORKERS).map(|w| worker(&client, &keys, &known, seed + w as u64, per_worker))).await;
    let elapsed = started.elapsed();
    injecting.store(false, std::sync::atomic::Ordering::SeqCst);
    let injected = injector.await.unwrap();
    proxy.lift_all();
    let applied = proxy.applied();

    // Drained: cleanup's first passes, then every final pass.
    let first_passes = drain_queue(&t, &api).await;
    let rounds = finish_tasks(&t, &api, 6).await;
    let (completed, pending, objects) = check(&t, &owners).await;
    let events = check_events(&t, &owners, &known.lock().await).await;

    let tally = client.tally.lock().await;
    eprintln!(
        "load: {} operations ({} retries, {} given up) by {WORKERS} clients over {OWNERS} owners in {:.1} s ({:.0}/s); \
         {injected} faults set, {} applied; drained: {first_passes} cleanup messages, {rounds} sweeper rounds; \
         left: {completed} completed and {pending} pending sessions, {objects} objects, 0 orphans, 0 tasks; \
         upload events in the outbox, agreeing with the table: {events:?}; \
         retried answers: {:?}; final answers: {:?}",
        tally.ops,
        tally.retries,
        tally.gave_up,
        elapsed.as_secs_f64(),
        tally.ops as f64 / elapsed.as_secs_f64(),
        applied.len(),
        tally.retried,
        tally.by_status,
    );
    assert!(!applied.is_empty(), "no fault was applied: the run tested nothing");
    assert_eq!(tally.gave_up, 0, "a request kept failing past the retries: {:?}", tally.by_status);
    let server_errors: usize = tally.by_status.iter().filter(|((_, s), _)| *s >= 500 || *s == 0).map(|(_, n)| n).sum();
    assert_eq!(server_errors, 0);
}
