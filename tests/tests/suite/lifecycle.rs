//! Create, send the bytes over HTTP to the presigned URLs, confirm, read,
//! list, resume and delete, against moto, asserting the state left behind.

use serde_json::Value;
use shared::config::{UploadPolicy, MIB};
use shared::domain::{ApiKey, ObjectKey, OwnerId, Status, Timestamp, UploadId};
use shared::uploads::Uploads;
use tests::{
    api_request, api_request_with_body, bytes, confirm_request, create_request, parts, put_parts, without_request_id,
    TestStack,
};

/// Small sizes so a multipart upload fits in a test: multipart from 6 MiB,
/// 5 MiB parts.
fn policy() -> UploadPolicy {
    UploadPolicy {
        multipart_threshold_bytes: 6 * MIB,
        part_size_bytes: 5 * MIB,
        quota_bytes: 1 << 40,
        ..UploadPolicy::default()
    }
}

async fn create(deps: &Uploads, key: &ApiKey, filename: &str, content_type: &str, size: usize) -> (u16, Value) {
    parts(&create_upload::handle(deps, create_request(key, filename, content_type, size as u64)).await)
}

async fn confirm(deps: &Uploads, key: &ApiKey, id: &str) -> (u16, Value) {
    parts(&confirm_upload::handle(deps, confirm_request(key, id)).await)
}

async fn get(deps: &Uploads, key: &ApiKey, id: &str) -> (u16, Value) {
    let req = api_request("GET", &format!("/uploads/{id}"), "/uploads/{upload_id}", &[("x-api-key", key.expose())]);
    parts(&get_upload::handle(deps, req).await)
}

async fn resume(deps: &Uploads, key: &ApiKey, id: &str) -> (u16, Value) {
    let req = api_request_with_body(
        "POST",
        &format!("/uploads/{id}/resume"),
        "/uploads/{upload_id}/resume",
        &[("x-api-key", key.expose())],
        b"",
    );
    parts(&resume_upload::handle(deps, req).await)
}

async fn delete(t: &TestStack, key: &ApiKey, id: &str) -> u16 {
    let req = api_request("DELETE", &format!("/uploads/{id}"), "/uploads/{upload_id}", &[("x-api-key", key.expose())]);
    parts(&delete_upload::handle(&t.delete_deps(), req).await).0
}

fn id_of(body: &Value) -> UploadId {
    UploadId::parse(body["upload_id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn single_put_full_flow() {
    let t = TestStack::new().await;
    let deps = t.uploads(policy());
    let (owner, key) = t.owner("alice").await;
    let data = bytes(1000, 1);

    let (status, body) = create(&deps, &key, "Grüße aus Köln ☀.txt", "text/plain; charset=utf-8", data.len()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["filename"], "Grüße aus Köln ☀.txt");
    let id = id_of(&body);
    let expires = Timestamp::parse(body["expires_at"].as_str().unwrap()).unwrap();
    let in_a_day = Timestamp::now().plus_seconds(86_400).unix_seconds();
    assert!((in_a_day - 5..=in_a_day + 5).contains(&expires.unix_seconds()));
    let upload = &body["upload"];
    assert_eq!(upload["type"], "single");
    assert_eq!(upload["parts"].as_array().unwrap().len(), 1);
    assert_eq!(upload["parts"][0]["headers"]["content-type"], "text/plain; charset=utf-8");
    let signed: Vec<&String> = upload["parts"][0]["headers"].as_object().unwrap().keys().collect();
    assert_eq!(
        signed,
        vec!["content-length", "content-type", "if-none-match", "x-amz-tagging"],
        "only the signed headers"
    );
    assert_eq!(upload["parts"][0]["headers"]["x-amz-tagging"], "upload-state=pending");
    assert_eq!(upload["parts"][0]["headers"]["if-none-match"], "*");
    let url = upload["parts"][0]["url"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-tagging"),
        "{url}"
    );
    assert_eq!(upload["more_parts"], false);
    // The record: pending, keyed by id, object key from owner and id only.
    let stored = t.store.get_session(&owner, &id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Pending);
    assert_eq!(stored.object_key, ObjectKey::for_upload(&owner, &id));
    assert!(stored.multipart.is_none());

    assert_eq!(put_parts(upload, &data, None).await, vec![200]);
    assert_eq!(t.object_tags(&stored.object_key).await, vec![("upload-state".to_owned(), "pending".to_owned())]);
    let (_, progress) = get(&deps, &key, id.as_str()).await;
    assert_eq!(progress["upload"]["parts_received"], serde_json::json!([1]));
    assert_eq!(progress["upload"]["parts_missing"], serde_json::json!([]));

    let (status, body) = confirm(&deps, &key, id.as_str()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "completed");
    assert!(body["expires_at"].is_null());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 1000);
    assert_eq!(t.object_bytes(&stored.object_key).await, data);
    assert!(t.object_tags(&stored.object_key).await.is_empty(), "a completed upload's object is untagged");

    let (status, body) = get(&deps, &key, id.as_str()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")));
    assert!(body.get("upload").is_none());

    assert_eq!(delete(&t, &key, id.as_str()).await, 200);
    assert_eq!(t.drain_cleanup().await, 1);
    assert!(!t.object_exists(&stored.object_key).await);
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0);
    assert!(t.store.get_cleanup_task(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn multipart_full_flow_parts_in_any_order() {
    let t = TestStack::new().await;
    let deps = t.uploads(policy());
    let (owner, key) = t.owner("bob").await;
    let data = bytes(12 * MIB as usize, 2);

    let (status, body) = create(&deps, &key, "video.mp4", "video/mp4", data.len()).await;
    assert_eq!(status, 201, "{body}");
    let id = id_of(&body);
    let upload = &body["upload"];
    assert_eq!(
        (upload["type"].as_str(), upload["part_size"].as_u64(), upload["part_count"].as_u64()),
        (Some("multipart"), Some(5 * MIB), Some(3))
    );
    let sizes: Vec<u64> = upload["parts"].as_array().unwrap().iter().map(|p| p["size"].as_u64().unwrap()).collect();
    assert_eq!(sizes, vec![5 * MIB, 5 * MIB, 2 * MIB]);
    let stored = t.store.get_session(&owner, &id).await.unwrap().unwrap();
    assert_eq!(t.multipart_uploads_for(&stored.object_key).await, 1);

    assert_eq!(put_parts(upload, &data, Some(&[3, 1, 2])).await, vec![200, 200, 200]);
    let (status, body) = confirm(&deps, &key, id.as_str()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.object_bytes(&stored.object_key).await, data);
    assert!(t.object_tags(&stored.object_key).await.is_empty(), "a completed upload's object is untagged");
    assert_eq!(t.multipart_uploads_for(&stored.object_key).await, 0);
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 12 * MIB);

    assert_eq!(delete(&t, &key, id.as_str()).await, 200);
    t.drain_cleanup().await;
    assert!(!t.object_exists(&stored.object_key).await);
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0);
}

#[tokio::test]
async fn resume_after_two_of_three_parts() {
    let t = TestStack::new().await;
    let deps = t.uploads(policy());
    let (_owner, key) = t.owner("carol").await;
    let data = bytes(11 * MIB as usize, 3);
    let (_, body) = create(&deps, &key, "disk.img", "application/octet-stream", data.len()).await;
    let id = id_of(&body);
    put_parts(&body["upload"], &data, Some(&[1, 3])).await;

    let (status, progress) = get(&deps, &key, id.as_str()).await;
    assert_eq!(status, 200);
    assert_eq!(progress["upload"]["parts_received"], serde_json::json!([1, 3]));
    assert_eq!(progress["upload"]["parts_missing"], serde_json::json!([2]));
    let (status, early) = confirm(&deps, &key, id.as_str()).await;
    assert_eq!((status, early["error"].as_str()), (409, Some("Upload bytes missing")));

    let (status, resumed) = resume(&deps, &key, id.as_str()).await;
    assert_eq!(status, 200, "{resumed}");
    let fresh = resumed["upload"]["parts"].as_array().unwrap();
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["part_number"], 2);
    assert_eq!(resumed["upload"]["parts_received"], serde_json::json!([1, 3]));
    assert_eq!(put_parts(&resumed["upload"], &data, None).await, vec![200]);

    let (status, body) = confirm(&deps, &key, id.as_str()).await;
    assert_eq!(status, 200, "{body}");
    let stored = t.store.get_session(&OwnerId::parse("carol").unwrap(), &id).await.unwrap().unwrap();
    assert_eq!(t.object_bytes(&stored.object_key).await, data);
    let (status, body) = resume(&deps, &key, id.as_str()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("Upload already completed")));
}

#[tokio::test]
async fn pending_sessions_reserve_their_size_against_the_quota() {
    let t = TestStack::new().await;
    let deps = t.uploads(UploadPolicy { quota_bytes: 1000, max_pending_uploads: 3, ..policy() });
    let (owner, key) = t.owner("dave").await;
    let (s1, first) = create(&deps, &key, "a.bin", "application/octet-stream", 600).await;
    assert_eq!(s1, 201);
    let usage = t.store.usage(&owner).await.unwrap();
    assert_eq!((usage.used, usage.reserved, usage.pending), (0, 600, 1), "the pending session reserves its size");

    // A second that would not fit next to the first's reservation is refused.
    let (status, body) = create(&deps, &key, "b.bin", "application/octet-stream", 600).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("Quota exceeded")));
    assert_eq!(t.store.usage(&owner).await.unwrap().reserved, 600);
    // The transaction itself refuses too, whatever the early check saw.
    let mut late = t.store.get_session(&owner, &id_of(&first)).await.unwrap().unwrap();
    late.id = UploadId::generate();
    late.object_key = ObjectKey::for_upload(&owner, &late.id);
    assert!(matches!(t.store.create_session(&late, 1000, 3).await, Err(shared::Error::QuotaExceeded)));
    assert!(t.store.get_session(&owner, &late.id).await.unwrap().is_none());

    // Confirming moves the reservation to usage; the quota still counts it.
    put_parts(&first["upload"], &bytes(600, 4), None).await;
    assert_eq!(confirm(&deps, &key, id_of(&first).as_str()).await.0, 200);
    let usage = t.store.usage(&owner).await.unwrap();
    assert_eq!((usage.used, usage.reserved, usage.pending), (600, 0, 0));
    assert_eq!(create(&deps, &key, "b.bin", "application/octet-stream", 401).await.0, 403);

    // Deleting the first frees room for the second.
    assert_eq!(delete(&t, &key, id_of(&first).as_str()).await, 200);
    assert_eq!(t.store.usage(&owner).await.unwrap(), shared::store::Usage::default());
    let (status, second) = create(&deps, &key, "b.bin", "application/octet-stream", 600).await;
    assert_eq!(status, 201, "{second}");
    // Deleting a pending session releases its reservation.
    assert_eq!(delete(&t, &key, id_of(&second).as_str()).await, 200);
    assert_eq!(t.store.usage(&owner).await.unwrap(), shared::store::Usage::default());

    // The cap on pending sessions.
    for _ in 0..3 {
        assert_eq!(create(&deps, &key, "small.bin", "application/octet-stream", 10).await.0, 201);
    }
    let (status, body) = create(&deps, &key, "small.bin", "application/octet-stream", 10).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("Too many pending uploads")));
    let usage = t.store.usage(&owner).await.unwrap();
    assert_eq!((usage.reserved, usage.pending), (30, 3));
}

#[tokio::test]
async fn confirm_refusals() {
    let t = TestStack::new().await;
    let deps = t.uploads(policy());
    let (owner, key) = t.owner("erin").await;
    let (_, mallory_key) = t.owner("mallory").await;

    // Nothing sent yet.
    let (_, missing) = create(&deps, &key, "m.bin", "application/octet-stream", 10).await;
    let (status, body) = confirm(&deps, &key, id_of(&missing).as_str()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("Upload bytes missing")));

    // Wrong size stored (sent around the presigned URL).
    let (_, wrong) = create(&deps, &key, "w.bin", "application/octet-stream", 10).await;
    let wrong_id = id_of(&wrong);
    t.put_object(&ObjectKey::for_upload(&owner, &wrong_id), b"only 7!").await;
    let (status, body) = confirm(&deps, &key, wrong_id.as_str()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("Upload size mismatch")));

    // Another owner: indistinguishable from missing, and nothing changes.
    let (_, good) = create(&deps, &key, "g.bin", "application/octet-stream", 10).await;
    put_parts(&good["upload"], &bytes(10, 6), None).await;
    let (status, body) = confirm(&deps, &mallory_key, id_of(&good).as_str()).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Upload not found")));
    assert_eq!(t.store.get_session(&owner, &id_of(&good)).await.unwrap().unwrap().status, Status::Pending);

    // Twice: the second answers like the first (a retry after a lost response).
    let (status, first) = confirm(&deps, &key, id_of(&good).as_str()).await;
    assert_eq!(status, 200);
    let (status, again) = confirm(&deps, &key, id_of(&good).as_str()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(without_request_id(again), without_request_id(first), "the same view");
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 10, "counted once");

    // Expired.
    let expired = t.pending_multipart_expiring(&owner, 1, Timestamp::now().plus_seconds(-1)).await;
    let (status, body) = confirm(&deps, &key, expired.id.as_str()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("Upload expired")));

    // Unknown and malformed ids, no key.
    let (status, _) = confirm(&deps, &key, UploadId::generate().as_str()).await;
    assert_eq!(status, 404);
    let (status, body) = confirm(&deps, &key, "nope").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Invalid upload id")));
    let req = api_request_with_body(
        "POST",
        &format!("/uploads/{}/confirm", id_of(&missing)),
        "/uploads/{upload_id}/confirm",
        &[],
        b"",
    );
    assert_eq!(parts(&confirm_upload::handle(&deps, req).await).0, 401);
}

#[tokio::test]
async fn multipart_part_of_the_wrong_size_is_a_mismatch() {
    let t = TestStack::new().await;
    let deps = t.uploads(policy());
    let (owner, key) = t.owner("frank").await;
    let (_, body) = create(&deps, &key, "v.bin", "application/octet-stream", 7 * MIB as usize).await;
    let id = id_of(&body);
    let stored = t.store.get_session(&owner, &id).await.unwrap().unwrap();
    let mp = stored.multipart.unwrap();
    // Part 1 short (sent around the presigned URL, which signs the length).
    t.s3.upload_part()
        .bucket(&t.config.bucket_name)
        .key(stored.object_key.as_str())
        .upload_id(&mp.s3_upload_id)
        .part_number(1)
        .body(aws_sdk_s3::primitives::ByteStream::from(vec![0u8; 1024]))
        .send()
        .await
        .unwrap();
    put_parts(&body["upload"], &bytes(7 * MIB as usize, 7), Some(&[2])).await;
    let (status, body) = confirm(&deps, &key, id.as_str()).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("Upload size mismatch")));
    assert_eq!(t.multipart_uploads_for(&stored.object_key).await, 1, "not completed");
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0);
}

#[tokio::test]
async fn create_validation() {
    let t = TestStack::new().await;
    let deps = t.uploads(UploadPolicy { max_upload_bytes: 1_000_000, ..policy() });
    let (owner, key) = t.owner("gina").await;
    let long = "x".repeat(256);
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "Invalid JSON body"),
        ("[]".into(), "Invalid JSON body"),
        (r#"{"content_type":"text/plain","size":1}"#.into(), "Invalid filename"),
        (format!(r#"{{"filename":"{long}","content_type":"text/plain","size":1}}"#), "Invalid filename"),
        (r#"{"filename":"a\u0007b","content_type":"text/plain","size":1}"#.into(), "Invalid filename"),
        (r#"{"filename":"a","content_type":"text","size":1}"#.into(), "Invalid content_type"),
        (r#"{"filename":"a","size":1}"#.into(), "Invalid content_type"),
        (r#"{"filename":"a","content_type":"text/plain","size":0}"#.into(), "Invalid size"),
        (r#"{"filename":"a","content_type":"text/plain"}"#.into(), "Invalid size"),
        (
            r#"{"filename":"a","content_type":"text/plain","size":1000001}"#.into(),
            "Size exceeds the maximum upload size",
        ),
    ];
    for (body, message) in cases {
        let req =
            api_request_with_body("POST", "/uploads", "/uploads", &[("x-api-key", key.expose())], body.as_bytes());
        let (status, answer) = parts(&create_upload::handle(&deps, req).await);
        assert_eq!((status, answer["error"].as_str()), (400, Some(message)), "{body}");
    }
    let req = api_request_with_body(
        "POST",
        "/uploads",
        "/uploads",
        &[],
        br#"{"filename":"a","content_type":"text/plain","size":1}"#,
    );
    assert_eq!(parts(&create_upload::handle(&deps, req).await).0, 401);
    // Nothing was written and nothing was started in S3.
    assert!(t.store.list_sessions(&owner, 10, None).await.unwrap().sessions.is_empty());
    assert!(t.s3.list_multipart_uploads().bucket(&t.config.bucket_name).send().await.unwrap().uploads().is_empty());
}

/// S3 slower than the confirm's wait budget (here 0 s): the confirm answers
/// 202 with `Retry-After`, the session is marked completing and stays
/// pending, and neither a retry nor the sweeper ever says "bytes missing".
/// The retry (with a budget) finishes it; in another upload, the sweeper
/// does, as soon as it falls due.
#[tokio::test]
async fn a_slow_completion_answers_202_and_finishes() {
    let t = TestStack::new().await;
    let impatient = t.uploads(UploadPolicy { confirm_wait_seconds: 0, ..policy() });
    let patient = t.uploads(policy());
    let (owner, key) = t.owner("slow").await;
    let data = bytes(11 * MIB as usize, 21);

    let mut ids = Vec::new();
    for _ in 0..2 {
        let (_, created) = create(&patient, &key, "big.bin", "application/octet-stream", data.len()).await;
        assert!(put_parts(&created["upload"], &data, None).await.iter().all(|s| *s == 200));
        let id = id_of(&created);
        let resp = confirm_upload::handle(&impatient, confirm_request(&key, id.as_str())).await;
        assert_eq!(resp.headers()["retry-after"], "5");
        let (status, body) = parts(&resp);
        assert_eq!(status, 202, "{body}");
        assert_eq!((body["status"].as_str(), body["completion"].as_str()), (Some("pending"), Some("in_progress")));
        let stored = t.store.get_session(&owner, &id).await.unwrap().unwrap();
        assert_eq!(stored.status, Status::Pending);
        assert!(stored.completing_since.is_some());
        assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0, "nothing counted yet");
        ids.push((id, stored));
    }

    // A retry with a budget finishes the first.
    let (id, stored) = &ids[0];
    let (status, body) = confirm(&patient, &key, id.as_str()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");
    assert_eq!(t.object_bytes(&stored.object_key).await, data);
    assert!(t.object_tags(&stored.object_key).await.is_empty());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), data.len() as u64);

    // The sweeper finishes the second once it is due (60 s after it was marked).
    let (id, stored) = &ids[1];
    let d = t.sweeper_deps(patient.clone());
    let early = sweeper::sweep(&d, Timestamp::now()).await.unwrap();
    assert_eq!(early.completed, 0, "not due yet");
    let report = sweeper::sweep(&d, Timestamp::now().plus_seconds(61)).await.unwrap();
    assert_eq!((report.completed, report.expired, report.failed), (1, 0, 0), "{report:?}");
    let done = t.store.get_session(&owner, id).await.unwrap().unwrap();
    assert_eq!(done.status, Status::Completed);
    assert!(done.completing_since.is_none());
    assert!(t.object_tags(&stored.object_key).await.is_empty());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 2 * data.len() as u64, "each counted once");
    // And a confirm afterwards answers the completed upload.
    let (status, body) = confirm(&impatient, &key, id.as_str()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");
}
