//! Races as production has them: every request goes through the local API
//! Gateway to the functions' real binaries, run as several instances at
//! once (new ones start while all are busy, as on Lambda), and each round
//! ends in a check that the state left in DynamoDB, S3 and SQS is a legal
//! one.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};
use shared::domain::{ApiKey, ObjectKey, OwnerId, Status, Timestamp, UploadId};
use shared::queue::CleanupMessage;
use tests::{bytes, put_parts, without_request_id, LocalApi, TestStack, MIB};

/// Rounds of each race.
const ROUNDS: usize = 6;
/// Concurrent requests of one kind in a round.
const AT_ONCE: usize = 8;

struct Api {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        req = req.header("x-api-key", self.key.expose());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// Creates an upload of `data` and sends its bytes; returns the create answer.
    async fn uploaded(&self, data: &[u8]) -> Value {
        let body = json!({ "filename": "race.bin", "content_type": "application/octet-stream", "size": data.len() });
        let (status, created) = self.call("POST", "/uploads", Some(body)).await;
        assert_eq!(status, 201, "{created}");
        assert!(put_parts(&created["upload"], data, None).await.iter().all(|s| *s == 200));
        created
    }

    async fn confirm(&self, id: &str) -> (u16, Value) {
        self.call("POST", &format!("/uploads/{id}/confirm"), None).await
    }

    async fn delete(&self, id: &str) -> (u16, Value) {
        self.call("DELETE", &format!("/uploads/{id}"), None).await
    }
}

async fn setup(name: &str, parameters: &[(&str, &str)]) -> (TestStack, LocalApi, Api, OwnerId) {
    let t = TestStack::with_parameters(parameters).await;
    let (owner, key) = t.owner(name).await;
    let local = LocalApi::start(&t).await;
    let api = Api { http: reqwest::Client::new(), base: local.base.clone(), key };
    (t, local, api, owner)
}

/// Small multipart parts, so a race can use a multipart upload cheaply.
const SMALL_PARTS: &[(&str, &str)] = &[("MultipartThresholdBytes", "6291456"), ("PartSizeBytes", "5242880")];

fn id_of(v: &Value) -> String {
    v["upload_id"].as_str().unwrap().to_owned()
}

/// The legal state of an owner after every deletion was cleaned up:
/// `bytes_used` is the sum of the completed sessions' sizes, every object
/// in the bucket belongs to a session, every completed session's object is
/// there and untagged, and no cleanup task or multipart upload is left.
async fn assert_legal(t: &TestStack, owner: &OwnerId, sessions: &[UploadId]) {
    t.drain_cleanup().await;
    let (mut expected_usage, mut expected_reserved) = (0, 0);
    let mut live_keys = Vec::new();
    for id in sessions {
        if let Some(s) = t.store.get_session(owner, id).await.unwrap() {
            live_keys.push(s.object_key.as_str().to_owned());
            if s.status == Status::Completed {
                expected_usage += s.size;
                assert!(t.object_exists(&s.object_key).await, "a completed upload lost its object");
                assert!(
                    t.object_tags(&s.object_key).await.is_empty(),
                    "a completed upload's object carries the expiring tag"
                );
            } else {
                expected_reserved += s.size;
            }
        } else {
            // A task may remain only while it waits for its final pass
            // (after every presigned URL has expired).
            if let Some(task) = t.store.get_cleanup_task(id).await.unwrap() {
                assert!(task.final_pass_at > Timestamp::now(), "a cleanup task was left for {id}");
            }
            let key = ObjectKey::for_upload(owner, id);
            assert!(!t.object_exists(&key).await, "the object of deleted upload {id} is still there");
            assert_eq!(t.multipart_uploads_for(&key).await, 0, "parts of deleted upload {id} are still there");
        }
    }
    let usage = t.store.usage(owner).await.unwrap();
    assert_eq!(usage.used, expected_usage, "bytes_used drifted");
    assert_eq!(usage.reserved, expected_reserved, "bytes_reserved drifted");
    for key in t.all_keys().await {
        assert!(live_keys.contains(&key), "object {key} belongs to no session");
    }
}

#[tokio::test]
async fn concurrent_confirms_of_one_upload_all_answer_the_completed_upload() {
    let (t, local, api, owner) = setup("cc", SMALL_PARTS).await;
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        // Alternate single PUT and a 2-part multipart upload.
        let size = if round % 2 == 0 { 4096 } else { 6 * MIB + 17 };
        let data = bytes(size, round as u64);
        let created = api.uploaded(&data).await;
        let id = id_of(&created);
        let answers = join_all((0..AT_ONCE).map(|_| api.confirm(&id))).await;
        let first = without_request_id(answers[0].1.clone());
        for (status, body) in answers {
            assert_eq!(status, 200, "round {round}: {body}");
            assert_eq!(without_request_id(body), first, "every confirm answers the same completed upload");
        }
        assert_eq!(first["status"], "completed");
        let session = t.store.get_session(&owner, &UploadId::parse(&id).unwrap()).await.unwrap().unwrap();
        assert_eq!(t.object_bytes(&session.object_key).await, data);
        assert!(t.object_tags(&session.object_key).await.is_empty(), "round {round}: object still tagged pending");
        ids.push(session.id);
    }
    let expected: u64 = (0..ROUNDS).map(|r| if r % 2 == 0 { 4096 } else { 6 * MIB as u64 + 17 }).sum();
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), expected, "each counted once");
    assert!(local.hosts["ConfirmUpload"].1.instances().await > 1, "the confirms ran on several instances");
    assert_legal(&t, &owner, &ids).await;
}

#[tokio::test]
async fn a_put_after_the_confirm_is_refused_by_s3() {
    let (t, _local, api, owner) = setup("pc", &[]).await;
    let data = bytes(2000, 7);
    let created = api.uploaded(&data).await;
    let id = id_of(&created);
    assert_eq!(api.confirm(&id).await.0, 200);
    // Anyone still holding the URL tries to overwrite the completed upload.
    let statuses = put_parts(&created["upload"], &bytes(2000, 8), None).await;
    assert_eq!(statuses, vec![412], "S3 refuses the overwrite");
    let session = t.store.get_session(&owner, &UploadId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(t.object_bytes(&session.object_key).await, data, "the bytes are the confirmed ones");
    assert!(t.object_tags(&session.object_key).await.is_empty());
    // A second PUT before any confirm is refused too: the first bytes stay.
    let other = api.uploaded(&bytes(100, 9)).await;
    assert_eq!(put_parts(&other["upload"], &bytes(100, 10), None).await, vec![412]);
    assert_legal(&t, &owner, &[session.id, UploadId::parse(&id_of(&other)).unwrap()]).await;
}

#[tokio::test]
async fn confirm_races_delete() {
    let (t, _local, api, owner) = setup("cd", SMALL_PARTS).await;
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let size = if round % 2 == 0 { 3000 } else { 6 * MIB };
        let created = api.uploaded(&bytes(size, 100 + round as u64)).await;
        let id = id_of(&created);
        let ((c1, b1), (d, db), (c2, b2)) = tokio::join!(api.confirm(&id), api.delete(&id), api.confirm(&id));
        assert_eq!(d, 200, "round {round}: the delete always wins over a pending or completed upload: {db}");
        for (status, body) in [(c1, b1), (c2, b2)] {
            // Before the delete: completed; after it: not found. Never a 5xx.
            assert!(status == 200 || status == 404, "round {round}: confirm answered {status} {body}");
        }
        assert_eq!(api.confirm(&id).await.0, 404);
        ids.push(UploadId::parse(&id).unwrap());
        assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0, "round {round}: usage released or never counted");
    }
    assert_legal(&t, &owner, &ids).await;
}

#[tokio::test]
async fn concurrent_deletes_remove_once() {
    let (t, local, api, owner) = setup("dd", &[]).await;
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let created = api.uploaded(&bytes(500 + round, round as u64)).await;
        let id = id_of(&created);
        assert_eq!(api.confirm(&id).await.0, 200);
        let answers = join_all((0..AT_ONCE).map(|_| api.delete(&id))).await;
        let ok = answers.iter().filter(|(s, _)| *s == 200).count();
        let missing = answers.iter().filter(|(s, b)| *s == 404 && b["error"] == "Upload not found").count();
        assert_eq!((ok, missing), (1, AT_ONCE - 1), "round {round}: {answers:?}");
        let messages = t.receive_cleanup_messages().await;
        assert_eq!(messages.len(), 1, "round {round}: one cleanup message");
        assert_eq!(CleanupMessage::parse(messages[0].body().unwrap()).unwrap().as_str(), id);
        assert!(t.run_cleanup(&messages).await.is_empty());
        assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0, "round {round}: released once");
        ids.push(UploadId::parse(&id).unwrap());
    }
    assert!(local.hosts["DeleteUpload"].1.instances().await > 1, "the deletes ran on several instances");
    assert_legal(&t, &owner, &ids).await;
}

#[tokio::test]
async fn the_sweeper_races_a_client_delete() {
    let (t, local, api, owner) = setup("sd", &[]).await;
    let sweeper = local.hosts["Sweeper"].1.clone();
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let s = t.pending_multipart_expiring(&owner, 1, Timestamp::now().plus_seconds(-5)).await;
        let id = s.id.as_str().to_owned();
        let event = local::feeder::scheduled_event("Sweeper");
        let (sweep, (d, body)) = tokio::join!(sweeper.invoke(&event), api.delete(&id));
        let report = match sweep.unwrap() {
            local::runtime::Outcome::Response(v) => v,
            local::runtime::Outcome::Error(e) => panic!("sweeper failed: {e}"),
        };
        let by_sweeper = report["expired"].as_u64().unwrap();
        let by_client = u64::from(d == 200);
        assert!(d == 200 || d == 404, "round {round}: {d} {body}");
        assert_eq!(by_sweeper + by_client, 1, "round {round}: removed exactly once ({report}, {d})");
        let messages = t.receive_cleanup_messages().await;
        assert_eq!(messages.len(), 1, "round {round}: one cleanup message");
        assert!(t.run_cleanup(&messages).await.is_empty());
        assert!(t.store.get_session(&owner, &s.id).await.unwrap().is_none());
        assert_eq!(t.multipart_uploads_for(&s.object_key).await, 0, "round {round}: parts aborted");
        ids.push(s.id);
    }
    assert_legal(&t, &owner, &ids).await;
}

#[tokio::test]
async fn a_confirm_retried_after_its_response_was_lost() {
    let (t, _local, api, owner) = setup("rl", SMALL_PARTS).await;
    let mut ids = Vec::new();
    let mut expected_usage = 0;
    for round in 0..ROUNDS {
        let size = if round % 2 == 0 { 6 * MIB + 1 } else { 777 };
        let created = api.uploaded(&bytes(size, 300 + round as u64)).await;
        let id = id_of(&created);
        // The first confirm is sent whole, but the client hangs up without
        // reading its answer (as after a network cut or a client timeout);
        // the API goes on with it, as API Gateway does.
        {
            use tokio::io::AsyncWriteExt;
            let addr = api.base.trim_start_matches("http://");
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "POST /uploads/{id}/confirm HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {}\r\ncontent-length: 0\r\n\r\n",
                api.key.expose()
            );
            conn.write_all(request.as_bytes()).await.unwrap();
            conn.shutdown().await.unwrap();
        }
        // The retry, while the first may still be running, and after.
        let (status, body) = api.confirm(&id).await;
        assert!(status == 200 || status == 202, "round {round}: {status} {body}");
        let mut answer = body;
        for _ in 0..50 {
            if answer["status"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = api.confirm(&id).await.1;
        }
        assert_eq!(answer["status"], "completed", "round {round}: {answer}");
        let upload = UploadId::parse(&id).unwrap();
        let session = t.store.get_session(&owner, &upload).await.unwrap().unwrap();
        assert_eq!(session.status, Status::Completed);
        expected_usage += size as u64;
        assert_eq!(t.store.bytes_used(&owner).await.unwrap(), expected_usage, "round {round}: counted once");
        ids.push(upload);
    }
    assert_legal(&t, &owner, &ids).await;
}

#[tokio::test]
async fn concurrent_creates_never_pass_the_quota_together() {
    let (t, local, api, owner) = setup("cq", &[("QuotaBytes", "1000"), ("MaxPendingUploads", "5")]).await;
    for round in 0..ROUNDS {
        let body = json!({ "filename": "q.bin", "content_type": "application/octet-stream", "size": 600 });
        let answers = join_all((0..AT_ONCE).map(|_| api.call("POST", "/uploads", Some(body.clone())))).await;
        let created: Vec<&Value> = answers.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
        let refused = answers.iter().filter(|(s, b)| *s == 403 && b["error"] == "Quota exceeded").count();
        assert_eq!((created.len(), refused), (1, AT_ONCE - 1), "round {round}: {answers:?}");
        let usage = t.store.usage(&owner).await.unwrap();
        assert_eq!((usage.reserved, usage.pending), (600, 1), "round {round}: reserved once");
        let id = id_of(created[0]);
        assert_eq!(api.delete(&id).await.0, 200);
        assert_eq!(t.store.usage(&owner).await.unwrap(), shared::store::Usage::default(), "round {round}");
    }
    assert!(local.hosts["CreateUpload"].1.instances().await > 1, "the creates ran on several instances");
}
