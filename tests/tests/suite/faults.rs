//! Faults on the wire: every function runs as its real binary with its AWS
//! endpoint pointed at a fault-injecting proxy in front of the emulator
//! (`local::wire`), which refuses, delays, or applies a call and then
//! breaks the connection instead of answering, per operation and per
//! function. For create, confirm, delete, cleanup and the sweeper, each
//! test shows that
//!
//! - a failure before the commit gives the documented 5xx and changes
//!   nothing (the whole table, bucket, multipart uploads and queues are
//!   compared before and after);
//! - a response lost after the commit is safe to retry: the quota counters
//!   are exact, there is no second object and no stuck session;
//!
//! and, for the queue and S3: an SQS outage after a delete commits loses
//! nothing (the sweeper re-drives the durable task); an S3 outage during
//! cleanup retries the message, parks it in the DLQ past the template's
//! `maxReceiveCount` with the task still recorded, and a redrive completes
//! it.
//!
//! The SDK retries a transient failure itself (three attempts in all), so
//! one refused call is invisible (shown once, below); rules that must reach
//! the function are set for every call until lifted. moto ignores
//! `ClientRequestToken`, so when the SDK retries a `TransactWriteItems`
//! whose answer was dropped, moto applies it again (DynamoDB would answer
//! the retry as the first): the functions must recognise their own commit,
//! which is the stricter test. `docs/reliability.md` ("Faults") sums up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use local::runtime::{FunctionHost, Outcome};
use local::wire::{Fault, Proxy, Rule};
use serde_json::{json, Value};
use shared::domain::{ApiKey, ObjectKey, OwnerId, Status, Timestamp, UploadId};
use shared::queue::CleanupMessage;
use tests::state::{ObjectState, QueueState, Snapshot};
use tests::{bytes, endpoint, put_parts, LocalApi, TestStack, MIB};

#[path = "faults/events.rs"]
mod events;

const TX: &str = "dynamodb:TransactWriteItems";

/// Small multipart parts, so a test can afford a multipart upload.
const SMALL_PARTS: &[(&str, &str)] = &[("MultipartThresholdBytes", "6291456"), ("PartSizeBytes", "5242880")];

/// The stack, its functions behind the proxy and the local API Gateway, and
/// one owner with a key.
struct Faulty {
    t: TestStack,
    proxy: Proxy,
    api: LocalApi,
    http: reqwest::Client,
    owner: OwnerId,
    key: ApiKey,
}

/// An API answer: status, `Retry-After`, JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    /// A 5xx with exactly the contract's message and nothing else: no SDK
    /// text, no table name.
    fn assert_error(&self, status: u16, message: &str, retry_after: Option<&str>) {
        assert_eq!((self.status, self.body["error"].as_str()), (status, Some(message)), "{self:?}");
        assert_eq!(self.retry_after.as_deref(), retry_after, "{self:?}");
        let keys: Vec<&String> = self.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "request_id"], "no internal detail reaches the client: {self:?}");
    }
}

impl Faulty {
    async fn start(name: &str, parameters: &[(&str, &str)], extra: &[(&str, &str)]) -> Self {
        Self::start_with_timeouts(name, parameters, extra, &[]).await
    }

    /// As [`Faulty::start`], with some functions' timeouts (logical id,
    /// seconds) set shorter than the template's, as their deadlines.
    async fn start_with_timeouts(
        name: &str,
        parameters: &[(&str, &str)],
        extra: &[(&str, &str)],
        timeouts: &[(&str, u64)],
    ) -> Self {
        let t = TestStack::with_parameters(parameters).await;
        let (owner, key) = t.owner(name).await;
        let proxy = Proxy::start(&endpoint()).await.unwrap();
        let mut env = vec![("AWS_ENDPOINT_URL", proxy.endpoint.as_str())];
        env.extend_from_slice(extra);
        let mut hosts = BTreeMap::new();
        for mut f in t.stack.template.functions().unwrap() {
            if let Some((_, seconds)) = timeouts.iter().find(|(id, _)| *id == f.logical_id) {
                f.timeout_seconds = *seconds;
            }
            let host = t.stack.start_function_with(&f, false, &env).await.unwrap();
            hosts.insert(f.logical_id.clone(), (f, Arc::new(host)));
        }
        let api = LocalApi::serve(&t, hosts).await;
        Faulty { t, proxy, api, http: reqwest::Client::new(), owner, key }
    }

    fn host(&self, id: &str) -> Arc<FunctionHost> {
        self.api.hosts[id].1.clone()
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.api.base));
        req = req.header("x-api-key", self.key.expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        Answer { status, retry_after, body: resp.json().await.unwrap() }
    }

    async fn create(&self, size: usize) -> Answer {
        let body = json!({ "filename": "f.bin", "content_type": "application/octet-stream", "size": size });
        self.call("POST", "/uploads", Some(body)).await
    }

    /// A session created through the API with its bytes sent.
    async fn uploaded(&self, size: usize, seed: u64) -> UploadId {
        let created = self.create(size).await;
        assert_eq!(created.status, 201, "{created:?}");
        assert!(put_parts(&created.body["upload"], &bytes(size, seed), None).await.iter().all(|s| *s == 200));
        id_of(&created.body)
    }

    async fn confirm(&self, id: &UploadId) -> Answer {
        self.call("POST", &format!("/uploads/{id}/confirm"), None).await
    }

    /// The sweeper's binary, run once as its schedule would; its report.
    async fn sweep(&self) -> Value {
        match self.host("Sweeper").invoke(&local::feeder::scheduled_event("Sweeper")).await.unwrap() {
            Outcome::Response(v) => v,
            Outcome::Error(e) => panic!("sweeper failed: {e}"),
        }
    }

    fn queue_url(&self, logical: &str) -> String {
        self.t.stack.physical(logical).unwrap().reference.clone()
    }

    async fn receive(&self, logical: &str) -> Vec<Message> {
        let out = self
            .t
            .sqs
            .receive_message()
            .queue_url(self.queue_url(logical))
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        out.messages.unwrap_or_default()
    }

    /// One round of the cleanup queue's event source mapping: receive a
    /// batch, hand it to the cleanup binary, delete what it did not report
    /// failed. A failed message is made visible again at once, as if its
    /// visibility timeout (180 s) had passed. `None` when nothing was
    /// received; else (received, failed).
    async fn feed_cleanup(&self) -> Option<(usize, usize)> {
        let messages = self.receive("CleanupQueue").await;
        if messages.is_empty() {
            return None;
        }
        let event = local::feeder::sqs_event(&messages, &self.t.cleanup_queue_arn());
        let failed: Vec<String> = match self.host("Cleanup").invoke(&event).await.unwrap() {
            Outcome::Response(v) => v["batchItemFailures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
                .collect(),
            Outcome::Error(e) => panic!("cleanup failed as a whole: {e}"),
        };
        let url = self.queue_url("CleanupQueue");
        for m in &messages {
            let handle = m.receipt_handle().unwrap();
            if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                let visible = self.t.sqs.change_message_visibility().queue_url(&url).receipt_handle(handle);
                visible.visibility_timeout(0).send().await.unwrap();
            } else {
                self.t.sqs.delete_message().queue_url(&url).receipt_handle(handle).send().await.unwrap();
            }
        }
        Some((messages.len(), failed.len()))
    }

    /// The owner's usage item as stored: used, reserved, held, pending.
    async fn usage(&self) -> [u64; 4] {
        let item = self.t.item(&format!("OWNER#{}", self.owner.as_str()), "USAGE").await.unwrap_or_default();
        let n = |k: &str| item.get(k).map(|v| v.as_n().unwrap().parse().unwrap()).unwrap_or(0);
        [n("bytes_used"), n("bytes_reserved"), n("bytes_held"), n("pending_count")]
    }

    /// Everything the stack holds, read without receiving from the queues
    /// (their messages stay where they are).
    async fn world(&self) -> Snapshot {
        let t = &self.t;
        let mut objects = BTreeMap::new();
        let listed = t.s3.list_objects_v2().bucket(&t.config.bucket_name).send().await.unwrap();
        for o in listed.contents() {
            let key = o.key().unwrap().to_owned();
            let mut tags = t.object_tags(&ObjectKey::from_stored(&key).unwrap()).await;
            tags.sort();
            let size = o.size().unwrap_or_default();
            objects.insert(key, ObjectState { size, etag: o.e_tag().unwrap_or_default().to_owned(), tags });
        }
        let mut queues = BTreeMap::new();
        for logical in ["CleanupQueue", "CleanupDeadLetterQueue"] {
            use QueueAttributeName as A;
            let attrs = t
                .sqs
                .get_queue_attributes()
                .queue_url(self.queue_url(logical))
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap_or_default();
            let count = |name: A| attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0);
            let state = QueueState {
                visible: count(A::ApproximateNumberOfMessages),
                in_flight: count(A::ApproximateNumberOfMessagesNotVisible),
                delayed: count(A::ApproximateNumberOfMessagesDelayed),
                received: 0,
            };
            queues.insert(logical.to_owned(), state);
        }
        Snapshot { items: t.scan_table().await, objects, multipart_uploads: t.all_multipart_uploads().await, queues }
    }

    /// Messages visible on `logical` (not received).
    async fn visible(&self, logical: &str) -> u64 {
        self.world().await.queues[logical].visible
    }

    /// Makes `id`'s cleanup task look `seconds` old: its final pass that
    /// long ago (and so, past 300 s, due for the sweeper's re-drive), as if
    /// the time had passed.
    async fn age_task(&self, id: &UploadId, seconds: i64) {
        let mut task = self.t.store.get_cleanup_task(id).await.unwrap().expect("cleanup task");
        task.final_pass_at = Timestamp::now().plus_seconds(-seconds);
        self.t.store.put_cleanup_task(&task).await.unwrap();
    }
}

impl Drop for Faulty {
    /// The faults this test injected, by function, operation and fault, for
    /// `docs/reliability.md` (shown with `-- --nocapture`).
    fn drop(&mut self) {
        let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
        for a in self.proxy.applied() {
            *counts.entry((a.signer, a.operation, a.fault.describe())).or_default() += 1;
        }
        let total: usize = counts.values().sum();
        let mut out = format!("faults injected for owner {} ({total}):", self.owner.as_str());
        for ((signer, operation, fault), n) in counts {
            out.push_str(&format!("\n  {signer:<13} {operation:<30} {fault:<40} x{n}"));
        }
        eprintln!("{out}");
    }
}

fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    let diff = before.diff(after);
    assert!(diff.is_empty(), "{what} changed the stack:\n{diff}");
}

fn id_of(v: &Value) -> UploadId {
    UploadId::parse(v["upload_id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn create_fails_cleanly_before_its_commit_and_answers_a_lost_commit() {
    let f = Faulty::start("creator", SMALL_PARTS, &[]).await;
    let big = 6 * MIB + 1;

    // One refused call: the SDK's own retry hides it.
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(500, "InternalServerError")).by("CreateUpload").next(1));
    let hidden = f.create(10).await;
    assert_eq!(hidden.status, 201, "{hidden:?}");
    assert_eq!(f.proxy.applied_by(rule), 1);
    assert_eq!(f.usage().await, [0, 10, 10, 1]);

    // Before the commit, every call refused: throttled is 503 with
    // Retry-After, a hard failure 500 with the operation's message; no
    // session, no reservation, no multipart upload left started.
    let before = f.world().await;
    let throttled = f.proxy.inject(Rule::new(TX, Fault::refuse(400, "ThrottlingException")).by("CreateUpload"));
    f.create(10).await.assert_error(503, "Service busy", Some("1"));
    f.create(big).await.assert_error(503, "Service busy", Some("1"));
    assert_eq!(f.proxy.applied_by(throttled), 6, "three attempts per create: the SDK's own retries");
    f.proxy.lift(throttled);
    let denied = f.proxy.inject(Rule::new(TX, Fault::refuse(400, "AccessDeniedException")).by("CreateUpload"));
    f.create(big).await.assert_error(500, "Failed to create upload", None);
    f.proxy.lift(denied);
    let s3 = f.proxy.inject(Rule::new("s3:CreateMultipartUpload", Fault::refuse(503, "SlowDown")));
    f.create(big).await.assert_error(503, "Service busy", Some("1"));
    f.proxy.lift(s3);
    assert_same(&before, &f.world().await, "creates refused before their commit");

    // The commit applied, its answer lost (once: the SDK's retry meets the
    // session its first attempt wrote; every time: the SDK gives up). The
    // function recognises its own commit: 201, one session, reserved once.
    for times in [Some(1), None] {
        let rule = Rule::new(TX, Fault::DropResponse).by("CreateUpload");
        let rule = f.proxy.inject(times.map_or(rule.clone(), |n| rule.next(n)));
        let [_, reserved, held, pending] = f.usage().await;
        let created = f.create(1000).await;
        f.proxy.lift(rule);
        assert!(f.proxy.applied_by(rule) >= 1);
        assert_eq!(created.status, 201, "lost commit answer ({times:?}): {created:?}");
        let id = id_of(&created.body);
        let session = f.t.store.get_session(&f.owner, &id).await.unwrap().expect("the session answered");
        assert_eq!(session.status, Status::Pending);
        assert_eq!(f.usage().await, [0, reserved + 1000, held + 1000, pending + 1], "reserved once");
        assert_eq!(put_parts(&created.body["upload"], &bytes(1000, 1), None).await, [200], "its URL works");
    }
    let sessions = f.t.store.list_sessions(&f.owner, 100, None).await.unwrap().sessions;
    assert_eq!(sessions.len(), 3, "no second session for a lost answer");

    // S3's CreateMultipartUpload is not idempotent: a lost answer retried
    // by the SDK starts a second, empty upload no record names. The session
    // works; its deletion's cleanup aborts every upload of its key.
    let rule = f.proxy.inject(Rule::new("s3:CreateMultipartUpload", Fault::DropResponse).next(1));
    let created = f.create(big).await;
    assert_eq!((created.status, f.proxy.applied_by(rule)), (201, 1), "{created:?}");
    let id = id_of(&created.body);
    let key = ObjectKey::for_upload(&f.owner, &id);
    assert_eq!(f.t.multipart_uploads_for(&key).await, 2, "the stray upload of the lost answer");
    assert_eq!(f.call("DELETE", &format!("/uploads/{id}"), None).await.status, 200);
    f.age_task(&id, 1).await;
    assert_eq!(f.feed_cleanup().await, Some((1, 0)));
    assert_eq!(f.t.multipart_uploads_for(&key).await, 0, "both uploads aborted");
    assert!(f.t.store.get_cleanup_task(&id).await.unwrap().is_none());

    // The limit: the commit applied, its answer lost and the store
    // unreachable right after (the read-back refused; the key's own read
    // before the commit passes). The function cannot know: 500. The
    // client's retry opens a second session; the first, whose id nobody
    // learned, holds its reservation until it expires, and the sweeper then
    // releases it like any abandoned session. Nothing is held for good.
    let sessions_before = f.t.store.list_sessions(&f.owner, 100, None).await.unwrap().sessions.len();
    let [_, reserved, held, pending] = f.usage().await;
    let pass = f.proxy.inject(Rule::new("dynamodb:GetItem", Fault::Pass).by("CreateUpload").next(1));
    let blind = f.proxy.inject(Rule::new("dynamodb:GetItem", Fault::refuse(400, "AccessDeniedException")));
    let lost = f.proxy.inject(Rule::new(TX, Fault::DropResponse).by("CreateUpload"));
    f.create(400).await.assert_error(500, "Failed to create upload", None);
    assert_eq!((f.proxy.applied_by(pass), f.proxy.applied_by(blind)), (1, 1));
    f.proxy.lift_all();
    assert_eq!(f.create(400).await.status, 201, "the client's retry");
    let sessions = f.t.store.list_sessions(&f.owner, 100, None).await.unwrap().sessions;
    assert_eq!(sessions.len(), sessions_before + 2, "the orphan and the retry's session");
    assert!(f.proxy.applied_by(lost) >= 1);
    assert_eq!(f.usage().await, [0, reserved + 800, held + 800, pending + 2], "the orphan's reservation held");
    let expiry = f.t.config.uploads.session_expiry_seconds;
    let sweeper = f.t.sweeper_deps(f.t.uploads(f.t.config.uploads.clone()));
    let report = sweeper::sweep(&sweeper, Timestamp::now().plus_seconds(expiry + 1)).await.unwrap();
    assert_eq!((report.expired, report.failed), (sessions_before + 2, 0), "{report:?}");
    assert_eq!(f.usage().await, [0, 0, 0, 0], "every reservation released once its session expired");
}

#[tokio::test]
async fn confirm_fails_cleanly_before_its_commit_and_counts_a_lost_commit_once() {
    let f = Faulty::start("confirmer", SMALL_PARTS, &[("CONFIRM_WAIT_SECONDS", "1")]).await;
    let uploaded = |size, seed| f.uploaded(size, seed);
    let confirm = |id| f.confirm(id);

    // S3 down while the bytes are checked: 503, nothing changed.
    let id = uploaded(700, 1).await;
    let key = ObjectKey::for_upload(&f.owner, &id);
    let before = f.world().await;
    let rule = f.proxy.inject(Rule::new("s3:HeadObject", Fault::refuse(503, "SlowDown")).by("ConfirmUpload"));
    confirm(&id).await.assert_error(503, "Service busy", Some("1"));
    f.proxy.lift(rule);
    assert_same(&before, &f.world().await, "a confirm refused by S3");

    // The commit refused: 503; the session stays pending, its reservation
    // unchanged. The one change is the one the design makes on purpose: the
    // expiring tag is removed before the commit and never put back.
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(500, "InternalServerError")).by("ConfirmUpload"));
    confirm(&id).await.assert_error(503, "Service busy", Some("1"));
    f.proxy.lift(rule);
    let mut untagged = before.clone();
    untagged.objects.get_mut(key.as_str()).unwrap().tags.clear();
    assert_same(&untagged, &f.world().await, "a confirm whose commit was refused");
    assert_eq!(f.usage().await, [0, 700, 700, 1]);
    // The client's retry completes it.
    let done = confirm(&id).await;
    assert_eq!((done.status, done.body["status"].as_str()), (200, Some("completed")), "{done:?}");
    assert_eq!(f.usage().await, [700, 0, 700, 0]);

    // The commit applied, every answer to it lost: the function finds its
    // own commit; a retry answers the same view; counted once.
    let id = uploaded(300, 2).await;
    let rule = f.proxy.inject(Rule::new(TX, Fault::DropResponse).by("ConfirmUpload"));
    let first = confirm(&id).await;
    f.proxy.lift(rule);
    assert!(f.proxy.applied_by(rule) >= 1);
    assert_eq!((first.status, first.body["status"].as_str()), (200, Some("completed")), "{first:?}");
    let again = confirm(&id).await;
    assert_eq!(tests::without_request_id(again.body), tests::without_request_id(first.body), "same view");
    assert_eq!(f.usage().await, [1000, 0, 1000, 0], "counted once");

    // S3 slower than the confirm's wait budget (1 s here): 202 with
    // Retry-After, then the retry finishes it, counted once.
    let size = 6 * MIB + 5;
    let id = uploaded(size, 3).await;
    let key = ObjectKey::for_upload(&f.owner, &id);
    let slow = Duration::from_secs(3);
    let rule = f.proxy.inject(Rule::new("s3:CompleteMultipartUpload", Fault::Delay(slow)).next(1));
    let pending = confirm(&id).await;
    assert_eq!((pending.status, pending.retry_after.as_deref()), (202, Some("5")), "{pending:?}");
    assert_eq!(pending.body["completion"], "in_progress");
    assert_eq!(f.proxy.applied_by(rule), 1);
    tokio::time::sleep(slow).await;
    let done = confirm(&id).await;
    assert_eq!((done.status, done.body["status"].as_str()), (200, Some("completed")), "{done:?}");
    assert_eq!(f.usage().await, [1000 + size as u64, 0, 1000 + size as u64, 0], "counted once");
    assert_eq!(f.t.object_bytes(&key).await, bytes(size, 3), "one object, the bytes sent");
    assert!(f.t.object_tags(&key).await.is_empty());
    assert_eq!(f.t.all_multipart_uploads().await, [], "no upload left open");
    assert_eq!(f.t.all_keys().await.len(), 3, "one object per confirmed upload");
}

#[tokio::test]
async fn delete_fails_cleanly_before_its_commit_and_a_lost_commit_releases_once() {
    let f = Faulty::start("deleter", &[], &[]).await;
    let doomed = f.t.completed_upload(&f.owner, &[1; 500]).await;
    let other = f.t.completed_upload(&f.owner, &[2; 70]).await;
    let path = |id: &UploadId| format!("/uploads/{id}");

    // Refused before the commit: 503 when throttled, 500 with the
    // contract's message otherwise; nothing changes.
    let before = f.world().await;
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(400, "ThrottlingException")).by("DeleteUpload"));
    f.call("DELETE", &path(&doomed.id), None).await.assert_error(503, "Service busy", Some("1"));
    f.proxy.lift(rule);
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(400, "AccessDeniedException")).by("DeleteUpload"));
    f.call("DELETE", &path(&doomed.id), None).await.assert_error(500, "Failed to delete upload record", None);
    f.proxy.lift(rule);
    let rule = f.proxy.inject(Rule::new("dynamodb:BatchGetItem", Fault::refuse(500, "InternalServerError")));
    f.call("DELETE", &path(&doomed.id), None).await.assert_error(503, "Service busy", Some("1"));
    f.proxy.lift(rule);
    assert_same(&before, &f.world().await, "deletes refused before their commit");

    // The commit applied and its answer lost, once (the SDK's retry meets
    // its own commit) and every time (the SDK gives up): 200 either way,
    // the cleanup message sent; the client's retry is a 404 that changes
    // nothing; the size is released exactly once.
    for (session, times) in [(&doomed, Some(1)), (&other, None)] {
        let rule = Rule::new(TX, Fault::DropResponse).by("DeleteUpload");
        let rule = f.proxy.inject(times.map_or(rule.clone(), |n| rule.next(n)));
        let [used, ..] = f.usage().await;
        let first = f.call("DELETE", &path(&session.id), None).await;
        f.proxy.lift(rule);
        assert!(f.proxy.applied_by(rule) >= 1);
        assert_eq!(first.status, 200, "lost commit answer ({times:?}): {first:?}");
        assert_eq!(first.body["message"], format!("Upload {} deleted successfully", session.id));
        let retry = f.call("DELETE", &path(&session.id), None).await;
        assert_eq!((retry.status, retry.body["error"].as_str()), (404, Some("Upload not found")));
        assert!(f.t.store.get_session(&f.owner, &session.id).await.unwrap().is_none());
        let left = used - session.size;
        assert_eq!(f.usage().await, [left, 0, left, 0], "released once");
        assert!(f.t.store.get_cleanup_task(&session.id).await.unwrap().is_some(), "the durable task");
        assert_eq!(f.visible("CleanupQueue").await, 1, "one cleanup message");
        // Its cleanup (its final pass due) removes the bytes and the task.
        f.age_task(&session.id, 1).await;
        assert_eq!(f.feed_cleanup().await, Some((1, 0)));
        assert!(!f.t.object_exists(&session.object_key).await);
        assert!(f.t.store.get_cleanup_task(&session.id).await.unwrap().is_none());
    }
    assert!(f.t.all_keys().await.is_empty());
}

#[tokio::test]
async fn an_sqs_outage_after_a_delete_commits_loses_nothing() {
    let f = Faulty::start("queueless", &[], &[]).await;
    let doomed = f.t.completed_upload(&f.owner, &[3; 900]).await;

    // SQS refuses everything: the delete still answers 200 (its commit
    // holds the durable task), and no message is sent.
    let outage = f.proxy.inject(Rule::new("sqs:*", Fault::refuse(500, "InternalFailure")));
    let answer = f.call("DELETE", &format!("/uploads/{}", doomed.id), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(f.proxy.applied_by(outage) >= 1);
    assert!(f.t.store.get_session(&f.owner, &doomed.id).await.unwrap().is_none());
    assert_eq!(f.usage().await, [0, 0, 0, 0]);
    let world = f.world().await;
    assert_eq!(world.queues["CleanupQueue"], QueueState::default(), "no message");
    assert!(f.t.object_exists(&doomed.object_key).await, "the bytes wait for the re-drive");

    // Six minutes later the task is stale. The sweeper, with SQS still
    // down, claims it (counting the attempt) and fails to enqueue: the task
    // stays, further off.
    f.age_task(&doomed.id, 360).await;
    let report = f.sweep().await;
    assert_eq!((report["redriven"].as_u64(), report["failed"].as_u64()), (Some(0), Some(1)), "{report}");
    let task = f.t.store.get_cleanup_task(&doomed.id).await.unwrap().expect("the task stays");
    assert_eq!(task.attempts, 1);

    // SQS back, the next re-drive due: the sweeper enqueues it and cleanup
    // removes the bytes, then the task.
    f.proxy.lift(outage);
    f.age_task(&doomed.id, 360).await;
    let report = f.sweep().await;
    assert_eq!((report["redriven"].as_u64(), report["failed"].as_u64()), (Some(1), Some(0)), "{report}");
    assert_eq!(f.feed_cleanup().await, Some((1, 0)));
    assert!(!f.t.object_exists(&doomed.object_key).await);
    assert!(f.t.store.get_cleanup_task(&doomed.id).await.unwrap().is_none());
    assert_eq!(f.feed_cleanup().await, None, "nothing left on the queue");
}

#[tokio::test]
async fn cleanup_retries_through_faults_and_a_redrive_from_the_dlq_completes_it() {
    let f = Faulty::start("cleaner", &[], &[]).await;
    let (deleter, owner) = (f.t.deleter(), &f.owner);
    let gone = |s: &shared::domain::Session| {
        let (t, s) = (&f.t, s.clone());
        async move { !t.object_exists(&s.object_key).await && t.store.get_cleanup_task(&s.id).await.unwrap().is_none() }
    };

    // The task unreadable: the message fails, nothing changes.
    let first = f.t.completed_upload(owner, &[4; 64]).await;
    deleter.delete(owner, &first.id, shared::store::DeleteScope::Any).await.unwrap().unwrap();
    let before = f.world().await;
    let rule = f.proxy.inject(Rule::new("dynamodb:BatchGetItem", Fault::refuse(500, "InternalServerError")));
    assert_eq!(f.feed_cleanup().await, Some((1, 1)));
    f.proxy.lift(rule);
    assert_same(&before, &f.world().await, "a cleanup that could not read its task");

    // The objects removed, every answer lost: the message fails though the
    // bytes are gone; its redelivery finds them gone and removes the task.
    let rule = f.proxy.inject(Rule::new("s3:DeleteObjects", Fault::DropResponse));
    assert_eq!(f.feed_cleanup().await, Some((1, 1)));
    f.proxy.lift(rule);
    assert!(!f.t.object_exists(&first.object_key).await, "applied before the answer was lost");
    assert!(f.t.store.get_cleanup_task(&first.id).await.unwrap().is_some());
    assert_eq!(f.feed_cleanup().await, Some((1, 0)));
    assert!(gone(&first).await);

    // S3 down: the message fails on every receive, and past the queue's
    // maxReceiveCount SQS moves it to the DLQ; the task stays recorded.
    let max_receives: usize = f.t.stack.template.resources["CleanupQueue"].properties["RedrivePolicy"]
        ["maxReceiveCount"]
        .as_u64()
        .expect("maxReceiveCount in template.yaml") as usize;
    let second = f.t.completed_upload(owner, &[5; 64]).await;
    deleter.delete(owner, &second.id, shared::store::DeleteScope::Any).await.unwrap().unwrap();
    let outage = f.proxy.inject(Rule::new("s3:*", Fault::refuse(503, "SlowDown")).by("Cleanup"));
    let mut rounds = 0;
    while let Some((received, failed)) = f.feed_cleanup().await {
        assert_eq!((received, failed), (1, 1), "round {rounds}");
        rounds += 1;
        assert!(rounds <= max_receives, "received more than maxReceiveCount times");
    }
    assert_eq!(rounds, max_receives, "received exactly maxReceiveCount times");
    assert!(f.proxy.applied_by(outage) >= max_receives);
    let dead = f.receive("CleanupDeadLetterQueue").await;
    assert_eq!(dead.len(), 1, "parked in the DLQ");
    assert_eq!(CleanupMessage::parse(dead[0].body().unwrap()), Some(second.id.clone()));
    assert!(f.t.object_exists(&second.object_key).await);
    assert!(f.t.store.get_cleanup_task(&second.id).await.unwrap().is_some(), "the task is still recorded");

    // S3 back: a redrive moves the DLQ's messages back to the source queue
    // (as `aws sqs start-message-move-task` does; moto lacks it), and
    // cleanup completes: no object, no task.
    f.proxy.lift(outage);
    let dlq = f.queue_url("CleanupDeadLetterQueue");
    for m in dead {
        let body = m.body().unwrap();
        f.t.sqs.send_message().queue_url(f.queue_url("CleanupQueue")).message_body(body).send().await.unwrap();
        f.t.sqs.delete_message().queue_url(&dlq).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
    }
    assert_eq!(f.feed_cleanup().await, Some((1, 0)));
    assert!(gone(&second).await);
    let world = f.world().await;
    assert!(world.objects.is_empty() && world.multipart_uploads.is_empty());
    assert!(world.queues.values().all(|q| *q == QueueState::default()), "{:?}", world.queues);
}

#[tokio::test]
async fn the_sweeper_fails_cleanly_before_its_commit_and_expires_once_after_a_lost_one() {
    let f = Faulty::start("swept", &[], &[]).await;
    let expired = f.t.pending_multipart_expiring(&f.owner, 1, Timestamp::now().plus_seconds(-5)).await;
    let size = expired.size;
    assert_eq!(f.usage().await, [0, size, size, 1]);

    // Its deletion refused: counted failed, nothing changes.
    let before = f.world().await;
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(500, "InternalServerError")).by("Sweeper"));
    let report = f.sweep().await;
    f.proxy.lift(rule);
    assert_eq!((report["expired"].as_u64(), report["failed"].as_u64()), (Some(0), Some(1)), "{report}");
    assert_same(&before, &f.world().await, "a sweep whose deletion was refused");

    // Its deletion applied, the answer lost: expired once, reservation
    // released once, the cleanup message sent; the next sweep finds nothing.
    let rule = f.proxy.inject(Rule::new(TX, Fault::DropResponse).by("Sweeper").next(1));
    let report = f.sweep().await;
    assert_eq!(f.proxy.applied_by(rule), 1);
    assert_eq!((report["expired"].as_u64(), report["failed"].as_u64()), (Some(1), Some(0)), "{report}");
    assert!(f.t.store.get_session(&f.owner, &expired.id).await.unwrap().is_none());
    assert_eq!(f.usage().await, [0, 0, 0, 0], "released once");
    assert_eq!(f.visible("CleanupQueue").await, 1, "one cleanup message");
    let again = f.sweep().await;
    assert_eq!((again["expired"].as_u64(), again["failed"].as_u64()), (Some(0), Some(0)), "{again}");
    // Cleanup aborts its parts and removes the task.
    f.age_task(&expired.id, 1).await;
    assert_eq!(f.feed_cleanup().await, Some((1, 0)));
    assert_eq!(f.t.multipart_uploads_for(&expired.object_key).await, 0);
    assert!(f.t.store.get_cleanup_task(&expired.id).await.unwrap().is_none());
}

/// Answers only real AWS gives, each injected where it comes:
///
/// - `CompleteMultipartUpload` answered 409 `ConditionalRequestConflict`
///   (another completion of the upload in flight) is a completion in
///   progress, 202 with `Retry-After`, never a 500 that makes the client
///   upload again; the retry completes it;
/// - `UpdateItem` answered `TransactionConflictException` (the session is
///   in another request's transaction; the SDK does not retry it) is sent
///   again, so the confirm answers as if nothing had happened;
/// - S3 slower than what is left before the confirm's deadline (here
///   `ListParts`, which the old budget did not cover, with the function's
///   timeout, so its deadline, at 6 s) gets a 503 with `Retry-After` before
///   the deadline, nothing changed; without the budget the function would
///   be killed mid-request.
#[tokio::test]
async fn conflicts_only_aws_answers_and_a_slow_s3_keep_confirm_in_its_contract() {
    let f = Faulty::start_with_timeouts("conflicted", SMALL_PARTS, &[], &[("ConfirmUpload", 6)]).await;
    let size = 6 * MIB + 7;

    // 409 on completion.
    let id = f.uploaded(size, 11).await;
    let rule = f.proxy.inject(
        Rule::new("s3:CompleteMultipartUpload", Fault::refuse(409, "ConditionalRequestConflict")).by("ConfirmUpload"),
    );
    let busy = f.confirm(&id).await;
    assert_eq!((busy.status, busy.retry_after.as_deref()), (202, Some("5")), "{busy:?}");
    assert_eq!(busy.body["completion"], "in_progress");
    assert!(f.proxy.applied_by(rule) >= 1);
    f.proxy.lift(rule);
    let done = f.confirm(&id).await;
    assert_eq!((done.status, done.body["status"].as_str()), (200, Some("completed")), "{done:?}");
    assert_eq!(f.usage().await, [size as u64, 0, size as u64, 0], "counted once");

    // TransactionConflictException on the single-item write that marks the
    // session completing, three times in a row.
    let id = f.uploaded(size, 12).await;
    let conflict = Fault::refuse(400, "TransactionConflictException");
    let rule = f.proxy.inject(Rule::new("dynamodb:UpdateItem", conflict).by("ConfirmUpload").next(3));
    let done = f.confirm(&id).await;
    assert_eq!(f.proxy.applied_by(rule), 3, "the conflicts reached the function");
    assert_eq!((done.status, done.body["status"].as_str()), (200, Some("completed")), "{done:?}");
    assert_eq!(f.usage().await, [2 * size as u64, 0, 2 * size as u64, 0]);

    // ListParts slower than the time left: the deadline is 6 s away, less
    // 1 s to answer and 3 s for the commit, so S3 has 2 s. Answered before
    // the deadline, 503 with Retry-After, nothing changed; then completed.
    let id = f.uploaded(size, 13).await;
    let before = f.world().await;
    let rule =
        f.proxy.inject(Rule::new("s3:ListParts", Fault::Delay(Duration::from_secs(6))).by("ConfirmUpload").next(1));
    let started = std::time::Instant::now();
    let slow = f.confirm(&id).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "answered by its deadline, not S3's pace: {took:?}");
    slow.assert_error(503, "Service busy", Some("1"));
    assert_eq!(f.proxy.applied_by(rule), 1);
    assert_same(&before, &f.world().await, "a confirm out of time before its commit");
    let done = f.confirm(&id).await;
    assert_eq!((done.status, done.body["status"].as_str()), (200, Some("completed")), "{done:?}");
    assert_eq!(f.usage().await, [3 * size as u64, 0, 3 * size as u64, 0]);
    assert_eq!(f.t.all_multipart_uploads().await, [], "no upload left open");
}
