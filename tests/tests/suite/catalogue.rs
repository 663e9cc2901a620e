//! The error catalogue, injected: every error each AWS operation a function
//! calls can answer, once and on every retry, with the route's answer held
//! to the contract.
//!
//! Nothing here names an operation. Each scenario (create single and
//! multipart, confirm single and multipart, get, list, resume, delete of a
//! pending and of a completed upload, the cleanup function, the sweeper)
//! first runs clean through the fault proxy (`local::wire`), and the
//! operations its function called are read off the proxy's record; then
//! each error the catalogue (`local::catalogue`: botocore's service models,
//! plus the common and conditional errors by rule) has for each of them is
//! injected for that function only, once (`next(1)`: the SDK's own retry
//! usually hides it) and always (until lifted), each time on a fresh owner
//! and fresh state. A call the code starts making is covered by the next
//! run; an operation no model knows fails the test, naming it.
//!
//! Each API answer must be one the contract allows for the error's class
//! (`local::catalogue::Class`): a transient or conflicting condition is
//! success or 429/503 with `Retry-After` (202 with it where work goes on),
//! never a 500; a configuration error is success or 500 with the route's
//! failure message; an outcome of the request may be any contract answer.
//! Every error body is exactly `error` and `request_id`, with a contract
//! message (no SDK text). Then, faults lifted and the cleanup queue and the
//! sweeper drained, each owner's usage matches its sessions, no object or
//! multipart upload is without its session, no cleanup task or message is
//! left, and every completed upload that was not deleted is still complete.
//!
//! The table of (function, operation, error) → answers is written to
//! `target/error-catalogue.md` (and printed with `--nocapture`);
//! `docs/reliability.md` ("Error catalogue") holds a copy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use local::catalogue::{Class, Entry, Models};
use local::runtime::{FunctionHost, Outcome};
use local::wire::{Fault, Proxy, Rule};
use serde_json::{json, Value};
use shared::domain::{ApiKey, ObjectKey, OwnerId, Status, Timestamp, UploadId};
use shared::error::Error;
use shared::store::DeleteScope;
use tests::{bytes, endpoint, LocalApi, TestStack};

/// Uploads of 1,000 bytes or more go multipart, so a one-part multipart
/// upload is cheap; parts stay 5 MiB (one part is also the last, which may
/// be smaller).
const PARAMETERS: &[(&str, &str)] = &[("MultipartThresholdBytes", "1000"), ("PartSizeBytes", "5242880")];
const SINGLE: u64 = 100;
const MULTI: u64 = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    CreateSingle,
    CreateMultipart,
    ConfirmSingle,
    ConfirmMultipart,
    Get,
    List,
    Resume,
    DeletePending,
    DeleteCompleted,
    Cleanup,
    Sweeper,
}

impl Scenario {
    /// The function that runs it (its logical id, which signs its calls).
    fn function(self) -> &'static str {
        match self {
            Scenario::CreateSingle | Scenario::CreateMultipart => "CreateUpload",
            Scenario::ConfirmSingle | Scenario::ConfirmMultipart => "ConfirmUpload",
            Scenario::Get => "GetUpload",
            Scenario::List => "ListUploads",
            Scenario::Resume => "ResumeUpload",
            Scenario::DeletePending | Scenario::DeleteCompleted => "DeleteUpload",
            Scenario::Cleanup => "Cleanup",
            Scenario::Sweeper => "Sweeper",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::CreateSingle => "create (single PUT)",
            Scenario::CreateMultipart => "create (multipart)",
            Scenario::ConfirmSingle => "confirm (single PUT)",
            Scenario::ConfirmMultipart => "confirm (multipart)",
            Scenario::Get => "get",
            Scenario::List => "list",
            Scenario::Resume => "resume",
            Scenario::DeletePending => "delete (pending)",
            Scenario::DeleteCompleted => "delete (completed)",
            Scenario::Cleanup => "cleanup (SQS batch)",
            Scenario::Sweeper => "sweeper (schedule)",
        }
    }

    /// The route's failure message, for a 500.
    fn failure(self) -> &'static str {
        match self.function() {
            "CreateUpload" => create_upload::OPERATION.failure,
            "ConfirmUpload" => confirm_upload::OPERATION.failure,
            "GetUpload" => get_upload::OPERATION.failure,
            "ListUploads" => list_uploads::OPERATION.failure,
            "ResumeUpload" => resume_upload::OPERATION.failure,
            _ => delete_upload::OPERATION.failure,
        }
    }

    /// The status of its clean answer.
    fn success(self) -> u16 {
        match self {
            Scenario::CreateSingle | Scenario::CreateMultipart => 201,
            _ => 200,
        }
    }

    /// Whether its state is made again for every case (else, read-only,
    /// one state serves all its cases).
    fn mutates(self) -> bool {
        !matches!(self, Scenario::Get | Scenario::List | Scenario::Resume)
    }
}

/// What a scenario's function answered.
#[derive(Debug, Clone)]
enum Answer {
    Api {
        status: u16,
        retry_after: Option<String>,
        body: Value,
    },
    /// The cleanup function: messages received and reported failed.
    Batch {
        received: usize,
        failed: usize,
    },
    /// The sweeper's report, or its invocation's error.
    Sweep(Result<Value, String>),
}

impl Answer {
    /// A short form for the table: `201`, `503 RA`, `409 Upload bytes
    /// missing`, `500`, `ok`, `1/2 retried`, `report` …
    fn short(&self) -> String {
        match self {
            Answer::Api { status, retry_after, body } => {
                let ra = if retry_after.is_some() { " RA" } else { "" };
                match (*status, body["error"].as_str()) {
                    (s, Some(m)) if (400..500).contains(&s) && s != 429 => format!("{s} {m}"),
                    (s, _) => format!("{s}{ra}"),
                }
            }
            Answer::Batch { failed: 0, .. } => "ok".into(),
            Answer::Batch { received, failed } => format!("{failed}/{received} retried"),
            Answer::Sweep(Ok(r)) => match r["failed"].as_u64() {
                Some(0) | None => "ok".into(),
                Some(n) => format!("{n} failed"),
            },
            Answer::Sweep(Err(_)) => "run failed".into(),
        }
    }
}

/// The contract's client-facing messages (`Error`'s), for 4xx and 429/503.
fn contract_messages() -> BTreeSet<String> {
    [
        Error::Unauthorized,
        Error::MissingUploadId,
        Error::InvalidUploadId,
        Error::NotFound,
        Error::InvalidBody,
        Error::UnsupportedMediaType,
        Error::QuotaExceeded,
        Error::TooManyPending,
        Error::AlreadyCompleted,
        Error::BytesMissing,
        Error::SizeMismatch,
        Error::ChecksumMismatch,
        Error::Expired,
        Error::TooManyRequests,
        Error::Busy,
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

/// Why `answer` is not one the contract allows for an error of `class` in
/// `scenario`, if it is not.
fn violation(scenario: Scenario, class: Class, answer: &Answer, messages: &BTreeSet<String>) -> Option<String> {
    let (status, retry_after, body) = match answer {
        // A batch's failed messages come back (and, past maxReceiveCount,
        // park in the DLQ): never lost; checked after the drain.
        Answer::Batch { .. } => return None,
        // A failed run is run again by the schedule; checked after the drain.
        Answer::Sweep(_) => return None,
        Answer::Api { status, retry_after, body } => (*status, retry_after, body),
    };
    if (200..300).contains(&status) {
        if status == 202 && retry_after.is_none() {
            return Some("202 without Retry-After".into());
        }
        return None;
    }
    let keys: Vec<&String> = body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    if keys != ["error", "request_id"] {
        return Some(format!("error body keys {keys:?}, not exactly error and request_id"));
    }
    let message = body["error"].as_str().unwrap_or_default();
    let retryable = matches!(status, 429 | 503);
    if retryable {
        if retry_after.is_none() {
            return Some(format!("{status} without Retry-After"));
        }
        if !messages.contains(message) {
            return Some(format!("{status} with {message:?}, not a contract message"));
        }
    } else if status == 500 {
        if message != scenario.failure() {
            return Some(format!("500 with {message:?}, not {:?}", scenario.failure()));
        }
    } else if !messages.contains(message) {
        return Some(format!("{status} with {message:?}, not a contract message"));
    }
    let allowed = match class {
        Class::Transient | Class::Conflict => retryable,
        Class::Configuration => status == 500,
        Class::Outcome => true,
    };
    (!allowed).then(|| format!("{status} {message:?} for a {} error", class.name()))
}

/// One stack, its functions behind the proxy, the local API.
struct Bench {
    t: TestStack,
    proxy: Proxy,
    api: LocalApi,
    http: reqwest::Client,
    owners: std::sync::Mutex<u32>,
    group: &'static str,
}

/// What a case prepared: its owner and the completed uploads that must
/// survive it (unless it deletes them).
struct Prepared {
    owner: OwnerId,
    key: ApiKey,
    id: Option<UploadId>,
    completed: Vec<UploadId>,
}

impl Bench {
    async fn start(group: &'static str) -> Self {
        let t = TestStack::with_parameters(PARAMETERS).await;
        let proxy = Proxy::start(&endpoint()).await.unwrap();
        let env = [("AWS_ENDPOINT_URL", proxy.endpoint.as_str())];
        let mut hosts = BTreeMap::new();
        for f in t.stack.template.functions().unwrap() {
            let host = t.stack.start_function_with(&f, false, &env).await.unwrap();
            hosts.insert(f.logical_id.clone(), (f, Arc::new(host)));
        }
        let api = LocalApi::serve(&t, hosts).await;
        Bench { t, proxy, api, http: reqwest::Client::new(), owners: std::sync::Mutex::new(0), group }
    }

    fn host(&self, id: &str) -> Arc<FunctionHost> {
        self.api.hosts[id].1.clone()
    }

    async fn owner(&self) -> (OwnerId, ApiKey) {
        let n = {
            let mut n = self.owners.lock().unwrap();
            *n += 1;
            *n
        };
        self.t.owner(&format!("{}-{n}", self.group)).await
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        key: &ApiKey,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.api.base));
        req = req.header("x-api-key", key.expose());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let body = resp.json().await.unwrap_or(Value::Null);
        Answer::Api { status, retry_after, body }
    }

    /// The state `scenario` works on, for a fresh owner.
    async fn prepare(&self, scenario: Scenario) -> Prepared {
        let t = &self.t;
        let (owner, key) = self.owner().await;
        let later = Timestamp::now().plus_seconds(24 * 3600);
        let mut p = Prepared { owner: owner.clone(), key, id: None, completed: Vec::new() };
        match scenario {
            Scenario::CreateSingle | Scenario::CreateMultipart => {}
            Scenario::ConfirmSingle => {
                p.id =
                    Some(t.pending_single_with_id(&owner, UploadId::generate(), &bytes(SINGLE as usize, 1)).await.id);
            }
            Scenario::ConfirmMultipart => {
                let data = bytes(MULTI as usize, 2);
                p.id = Some(t.pending_one_part(&owner, MULTI, Some(&data), later).await.id);
            }
            Scenario::Get | Scenario::DeleteCompleted => {
                let done = t.completed_upload(&owner, &bytes(SINGLE as usize, 3)).await;
                p.id = Some(done.id.clone());
                p.completed.push(done.id);
            }
            Scenario::List => {
                let done = t.completed_upload(&owner, &bytes(SINGLE as usize, 4)).await;
                t.pending_one_part(&owner, MULTI, None, later).await;
                p.completed.push(done.id);
            }
            Scenario::Resume | Scenario::DeletePending => {
                p.id = Some(t.pending_one_part(&owner, MULTI, None, later).await.id);
            }
            Scenario::Cleanup => {
                // A completed single-PUT upload and a pending multipart one,
                // deleted: two messages, one batch.
                let deleter = t.deleter();
                let done = t.completed_upload(&owner, &bytes(SINGLE as usize, 5)).await;
                let pending = t.pending_one_part(&owner, MULTI, Some(&bytes(MULTI as usize, 6)), later).await;
                for id in [&done.id, &pending.id] {
                    deleter.delete(&owner, id, DeleteScope::Any).await.unwrap().unwrap();
                }
            }
            Scenario::Sweeper => {
                // An expired pending multipart upload, and a cleanup task
                // whose message was lost six minutes ago.
                t.pending_one_part(&owner, MULTI, Some(&bytes(MULTI as usize, 7)), Timestamp::now().plus_seconds(-5))
                    .await;
                let done = t.completed_upload(&owner, &bytes(SINGLE as usize, 8)).await;
                t.deleter().delete(&owner, &done.id, DeleteScope::Any).await.unwrap().unwrap();
                for m in t.receive_cleanup_messages().await {
                    let url = &t.config.cleanup_queue_url;
                    t.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(m.receipt_handle().unwrap())
                        .send()
                        .await
                        .unwrap();
                }
                let mut task = t.store.get_cleanup_task(&done.id).await.unwrap().expect("its task");
                task.final_pass_at = Timestamp::now().plus_seconds(-360);
                t.store.put_cleanup_task(&task).await.unwrap();
            }
        }
        p
    }

    /// Runs `scenario` on `p` through the functions.
    async fn act(&self, scenario: Scenario, p: &Prepared) -> Answer {
        let id = || p.id.as_ref().map(UploadId::as_str).unwrap_or_default().to_owned();
        let create =
            |size: u64| json!({ "filename": "f.bin", "content_type": "application/octet-stream", "size": size });
        match scenario {
            Scenario::CreateSingle => self.call("POST", "/uploads", &p.key, &[], Some(create(SINGLE))).await,
            Scenario::CreateMultipart => self.call("POST", "/uploads", &p.key, &[], Some(create(MULTI))).await,
            Scenario::ConfirmSingle | Scenario::ConfirmMultipart => {
                self.call("POST", &format!("/uploads/{}/confirm", id()), &p.key, &[], None).await
            }
            Scenario::Get => self.call("GET", &format!("/uploads/{}", id()), &p.key, &[], None).await,
            Scenario::List => self.call("GET", "/uploads?limit=10", &p.key, &[], None).await,
            Scenario::Resume => self.call("POST", &format!("/uploads/{}/resume", id()), &p.key, &[], None).await,
            Scenario::DeletePending => self.call("DELETE", &format!("/uploads/{}", id()), &p.key, &[], None).await,
            Scenario::DeleteCompleted => {
                self.call("DELETE", "/uploads", &p.key, &[("x-upload-id", id().as_str())], None).await
            }
            Scenario::Cleanup => self.feed_cleanup().await,
            Scenario::Sweeper => {
                match self.host("Sweeper").invoke(&local::feeder::scheduled_event("Sweeper")).await.unwrap() {
                    Outcome::Response(v) => Answer::Sweep(Ok(v)),
                    Outcome::Error(e) => Answer::Sweep(Err(e.to_string())),
                }
            }
        }
    }

    /// One round of the event source mapping: the visible messages to the
    /// cleanup binary; those it reports failed made visible again at once.
    async fn feed_cleanup(&self) -> Answer {
        let t = &self.t;
        let messages = t.receive_cleanup_messages().await;
        let event = local::feeder::sqs_event(&messages, &t.cleanup_queue_arn());
        let failed: Vec<String> = match self.host("Cleanup").invoke(&event).await.unwrap() {
            Outcome::Response(v) => v["batchItemFailures"]
                .as_array()
                .map(|a| a.iter().filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            // The whole batch comes back.
            Outcome::Error(_) => messages.iter().filter_map(|m| m.message_id().map(str::to_owned)).collect(),
        };
        let url = &t.config.cleanup_queue_url;
        for m in &messages {
            let handle = m.receipt_handle().unwrap();
            if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                t.sqs
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                t.sqs.delete_message().queue_url(url).receipt_handle(handle).send().await.unwrap();
            }
        }
        Answer::Batch { received: messages.len(), failed: failed.len() }
    }

    /// Faults lifted: the sweeper (in-process, as of now) and the cleanup
    /// queue, until no cleanup task is left. Every task is made due first,
    /// as if its final pass time had come.
    async fn drain(&self) -> Result<(), String> {
        let t = &self.t;
        let sweeper = t.sweeper_deps(t.uploads(t.config.uploads.clone()));
        for _ in 0..4 {
            // The sweep reads only the shards where these tasks are: all 3 × 32
            // of them made each drain ~100 queries. So the drain expires no
            // pending session and re-drives no event outside those shards;
            // `check` asserts neither (the sweeper scenario sweeps them all).
            let mut shards = BTreeSet::new();
            for id in t.cleanup_task_ids().await {
                shards.insert(shared::store::due_shard(&id));
                if let Some(mut task) = t.store.get_cleanup_task(&id).await.map_err(|e| e.to_string())? {
                    task.final_pass_at = Timestamp::now().plus_seconds(-360);
                    t.store.put_cleanup_task(&task).await.map_err(|e| e.to_string())?;
                }
            }
            let shards: Vec<u32> = shards.into_iter().collect();
            let stop_at = std::time::Instant::now() + std::time::Duration::from_secs(60);
            sweeper::sweep_shards(&sweeper, Timestamp::now(), stop_at, &shards)
                .await
                .map_err(|e| shared::error::chain(&e))?;
            t.drain_cleanup().await;
            if t.cleanup_task_ids().await.is_empty() {
                return Ok(());
            }
        }
        Err(format!("cleanup tasks left after draining: {:?}", t.cleanup_task_ids().await))
    }

    /// The invariants, for the owners of `cases`, after a drain.
    async fn check(&self, cases: &[(String, Prepared, Option<Answer>)]) -> Vec<String> {
        let t = &self.t;
        let mut problems = Vec::new();
        if let Err(e) = self.drain().await {
            problems.push(format!("{}: {e}", self.group));
        }
        if !t.receive_cleanup_messages().await.is_empty() {
            problems.push(format!("{}: cleanup messages left after draining", self.group));
        }
        let objects: BTreeSet<String> = t.all_keys().await.into_iter().collect();
        let uploads = t.all_multipart_uploads().await;
        let mut known = BTreeSet::new();
        for (case, p, answer) in cases {
            let sessions = t.all_sessions(&p.owner).await;
            let (mut used, mut reserved, mut pending) = (0, 0, 0);
            for s in &sessions {
                let key = ObjectKey::for_upload(&p.owner, &s.id);
                known.insert(key.as_str().to_owned());
                if s.status == Status::Completed {
                    used += s.size;
                    if !objects.contains(key.as_str()) {
                        problems.push(format!("{case}: completed upload {} has no object", s.id));
                    }
                } else {
                    reserved += s.size;
                    pending += 1;
                }
            }
            match t.store.usage(&p.owner).await {
                Ok(u) if (u.used, u.reserved, u.pending) == (used, reserved, pending) => {}
                Ok(u) => problems.push(format!(
                    "{case}: usage (used, reserved, pending) {:?}, sessions say {:?}",
                    (u.used, u.reserved, u.pending),
                    (used, reserved, pending)
                )),
                Err(e) => problems.push(format!("{case}: usage unreadable: {e}")),
            }
            // A completed upload not deleted by a 200 is still there.
            let deleted = matches!(answer, Some(Answer::Api { status: 200, .. }))
                && matches!(case.split(" | ").next(), Some(s) if s.starts_with("delete"));
            for id in &p.completed {
                let kept = sessions.iter().any(|s| &s.id == id && s.status == Status::Completed);
                if !deleted && !kept {
                    problems.push(format!("{case}: completed upload {id} lost"));
                }
            }
            // A confirm answered 200 completed stays completed.
            if let (Some(id), Some(Answer::Api { status: 200, body, .. })) = (&p.id, answer) {
                if body["status"] == "completed"
                    && !sessions.iter().any(|s| &s.id == id && s.status == Status::Completed)
                {
                    problems.push(format!("{case}: upload {id} answered completed is not"));
                }
            }
        }
        for key in objects.difference(&known) {
            problems.push(format!("{}: object {key} has no session", self.group));
        }
        for (key, _) in uploads.iter().filter(|(k, _)| !known.contains(k)) {
            problems.push(format!("{}: multipart upload of {key} has no session", self.group));
        }
        problems
    }
}

/// One row of the table: a function's operation and one error, with what
/// each scenario answered when it was injected once and always.
#[derive(Debug, Default)]
struct Row {
    status: u16,
    source: &'static str,
    class: &'static str,
    once: BTreeSet<String>,
    always: BTreeSet<String>,
}

#[derive(Default)]
struct Report {
    rows: BTreeMap<(String, String, String), Row>,
    cases: usize,
    failures: Vec<String>,
    /// Operations each function called, by scenario.
    seen: BTreeMap<&'static str, BTreeSet<String>>,
}

/// Runs `scenarios` on a stack of their own: the clean run, then every
/// catalogued error of every operation seen, once and always.
async fn run_group(group: &'static str, scenarios: &[Scenario], models: &Models) -> Report {
    let started = Instant::now();
    let b = Bench::start(group).await;
    let messages = contract_messages();
    let mut report = Report::default();
    let mut cases: Vec<(String, Prepared, Option<Answer>)> = Vec::new();
    for &scenario in scenarios {
        let function = scenario.function();
        // The clean run: what does the function call?
        let p = b.prepare(scenario).await;
        let mark = b.proxy.len();
        let clean = b.act(scenario, &p).await;
        let mut operations: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for call in b.proxy.calls_since(mark).into_iter().filter(|c| c.signer == function) {
            operations.entry(call.operation).or_default().extend(call.conditions);
        }
        let ok = match &clean {
            Answer::Api { status, .. } => *status == scenario.success(),
            Answer::Batch { failed, received } => *failed == 0 && *received == 2,
            Answer::Sweep(r) => r.as_ref().is_ok_and(|v| v["failed"] == 0 && v["expired"] == 1 && v["redriven"] == 1),
        };
        if !ok {
            report.failures.push(format!("{}: the clean run answered {clean:?}", scenario.name()));
        }
        if operations.is_empty() {
            report.failures.push(format!("{}: {function} made no AWS call", scenario.name()));
        }
        report.seen.insert(scenario.name(), operations.keys().cloned().collect());
        cases.push((format!("{} | clean", scenario.name()), p, Some(clean)));
        // Read-only scenarios keep one state for all their cases.
        let shared_state = if scenario.mutates() { None } else { Some(b.prepare(scenario).await) };
        for (operation, conditions) in &operations {
            let conditions: Vec<String> = conditions.iter().cloned().collect();
            let entries: Vec<Entry> = match models.errors(operation, &conditions) {
                Ok(e) => e,
                Err(e) => {
                    report.failures.push(format!("{}: {e:#}", scenario.name()));
                    continue;
                }
            };
            for entry in entries {
                for once in [true, false] {
                    let fresh;
                    let p = match &shared_state {
                        Some(p) => p,
                        None => {
                            fresh = b.prepare(scenario).await;
                            &fresh
                        }
                    };
                    let rule = Rule::new(operation, Fault::refuse(entry.status, &entry.code)).by(function);
                    let rule = b.proxy.inject(if once { rule.next(1) } else { rule });
                    let answer = b.act(scenario, p).await;
                    b.proxy.lift(rule);
                    let reached = b.proxy.applied_by(rule) > 0;
                    let mode = if once { "once" } else { "always" };
                    let case = format!("{} | {operation} {} {} {mode}", scenario.name(), entry.status, entry.code);
                    report.cases += 1;
                    let shown = if reached { answer.short() } else { "not called".to_owned() };
                    let row = report
                        .rows
                        .entry((function.to_owned(), operation.clone(), entry.code.clone()))
                        .or_insert_with(|| Row {
                            status: entry.status,
                            source: entry.source.name(),
                            class: entry.class.name(),
                            ..Row::default()
                        });
                    if once { &mut row.once } else { &mut row.always }.insert(shown);
                    if let Some(why) = violation(scenario, entry.class, &answer, &messages) {
                        // A gateway 502: the function itself failed; its
                        // last log lines say why.
                        let logs = b.host(function).logs();
                        let tail = match &answer {
                            Answer::Api { status: 502, .. } => logs[logs.len().saturating_sub(3)..].join("\n    "),
                            _ => String::new(),
                        };
                        report.failures.push(format!("{case}: {why}\n    {tail}"));
                    }
                    if scenario == Scenario::Cleanup {
                        // The next case's batch is its own: what this one
                        // left (its failed messages, visible again) is fed
                        // to the cleanup handler, faults lifted.
                        b.t.drain_cleanup().await;
                    }
                    if shared_state.is_none() {
                        cases.push((case, fresh_prepared(p), Some(answer)));
                    }
                }
            }
        }
        if let Some(p) = shared_state {
            cases.push((format!("{} | shared state", scenario.name()), p, None));
        }
    }
    b.proxy.lift_all();
    report.failures.extend(b.check(&cases).await);
    eprintln!("catalogue: group {group}: {} cases in {:.0} s", report.cases, started.elapsed().as_secs_f64());
    report
}

/// A copy of what a case prepared, kept for the checks after the drain.
fn fresh_prepared(p: &Prepared) -> Prepared {
    Prepared { owner: p.owner.clone(), key: p.key.clone(), id: p.id.clone(), completed: p.completed.clone() }
}

fn markdown(report: &Report, models: &Models, elapsed: std::time::Duration) -> String {
    let mut out = String::new();
    let functions: BTreeSet<&str> = report.rows.keys().map(|(f, _, _)| f.as_str()).collect();
    let operations: BTreeSet<(&str, &str)> = report.rows.keys().map(|(f, o, _)| (f.as_str(), o.as_str())).collect();
    out.push_str(&format!(
        "{} cases: {} (function, operation, error) rows over {} (function, operation) pairs of {} functions, \
         each error injected once and always; {} failed. Service models: botocore {}. Wall time {:.0} s.\n\n",
        report.cases,
        report.rows.len(),
        operations.len(),
        functions.len(),
        report.failures.len(),
        models.botocore,
        elapsed.as_secs_f64()
    ));
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_source: BTreeMap<&str, usize> = BTreeMap::new();
    for row in report.rows.values() {
        *by_class.entry(row.class).or_default() += 1;
        *by_source.entry(row.source).or_default() += 1;
    }
    let list = |m: &BTreeMap<&str, usize>| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    out.push_str(&format!("Rows by class: {}. By source: {}.\n\n", list(&by_class), list(&by_source)));
    out.push_str("Operations each scenario called (clean run):\n\n");
    for (scenario, ops) in &report.seen {
        out.push_str(&format!(
            "- {scenario}: {}\n",
            ops.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push_str("\n| function | operation | error | status | source | class | once | always |\n");
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for ((function, operation, code), row) in &report.rows {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "| {function} | `{operation}` | `{code}` | {} | {} | {} | {} | {} |\n",
            row.status,
            row.source,
            row.class,
            join(&row.once),
            join(&row.always)
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_catalogued_error_of_every_call_gets_a_contract_answer() {
    let started = Instant::now();
    let models = Arc::new(Models::load().expect("the service models (botocore in .venv)"));
    let groups: &[(&'static str, &[Scenario])] = &[
        ("create", &[Scenario::CreateSingle, Scenario::CreateMultipart]),
        ("confirm-single", &[Scenario::ConfirmSingle]),
        ("confirm-multipart", &[Scenario::ConfirmMultipart]),
        ("read", &[Scenario::Get, Scenario::List, Scenario::Resume]),
        ("delete", &[Scenario::DeletePending, Scenario::DeleteCompleted]),
        ("cleanup", &[Scenario::Cleanup]),
        ("sweeper", &[Scenario::Sweeper]),
    ];
    // CATALOGUE_GROUPS=confirm-multipart,sweeper runs only those groups
    // (the table is then not written).
    let only = std::env::var("CATALOGUE_GROUPS").ok();
    let chosen = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|g| g == name));
    let runs = groups.iter().filter(|(name, _)| chosen(name)).map(|(name, scenarios)| {
        let models = models.clone();
        let (name, scenarios) = (*name, scenarios.to_vec());
        tokio::spawn(async move { run_group(name, &scenarios, &models).await })
    });
    let mut report = Report::default();
    for r in futures::future::join_all(runs).await {
        let r = r.expect("a group panicked");
        report.cases += r.cases;
        report.failures.extend(r.failures);
        report.seen.extend(r.seen);
        for (k, row) in r.rows {
            let into = report.rows.entry(k).or_insert_with(|| Row {
                status: row.status,
                source: row.source,
                class: row.class,
                ..Row::default()
            });
            into.once.extend(row.once);
            into.always.extend(row.always);
        }
    }
    let table = markdown(&report, &models, started.elapsed());
    let path = local::stack::project_root().join("target").join("error-catalogue.md");
    if only.is_none() {
        std::fs::write(&path, &table).expect("writing target/error-catalogue.md");
    }
    eprintln!("{table}\n(written to {})", path.display());
    assert!(
        report.failures.is_empty(),
        "{} of {} cases failed:\n{}",
        report.failures.len(),
        report.cases,
        report.failures.join("\n")
    );
}
