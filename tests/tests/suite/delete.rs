//! DELETE /uploads/{upload_id} and DELETE /uploads with x-upload-id,
//! through the handler, against moto: status, body and the state left in
//! DynamoDB, S3 and SQS.

use std::time::Duration;

use delete_upload::handle;
use futures::future::join_all;
use shared::deletion::Deleter;
use shared::domain::{ApiKey, UploadId};
use shared::queue::{CleanupMessage, CleanupQueue};
use shared::store::Store;
use tests::{api_request, parts, TestStack};

const BY_ID: &str = "/uploads/{upload_id}";

fn delete_by_id(id: &str, headers: &[(&str, &str)]) -> lambda_http::Request {
    api_request("DELETE", &format!("/uploads/{id}"), BY_ID, headers)
}

fn delete_by_header(headers: &[(&str, &str)]) -> lambda_http::Request {
    api_request("DELETE", "/uploads", "/uploads", headers)
}

#[tokio::test]
async fn deleting_own_completed_upload_releases_usage_and_cleans_bytes() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("alice").await;
    let doomed = t.completed_upload(&owner, &[7u8; 1234]).await;
    let kept = t.completed_upload(&owner, &[9u8; 100]).await;
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 1334);

    let resp = handle(&t.delete_deps(), delete_by_id(doomed.id.as_str(), &[("x-api-key", key.expose())])).await;
    let (status, body) = parts(&resp);
    assert_eq!(status, 200);
    assert_eq!(body["message"], format!("Upload {} deleted successfully", doomed.id));
    assert_eq!(body.as_object().unwrap().len(), 2, "only message and request_id: {body}");

    // Record gone, usage lower by exactly its size, the other upload untouched.
    assert!(t.store.get_session(&owner, &doomed.id).await.unwrap().is_none());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 100);
    assert!(t.store.get_session(&owner, &kept.id).await.unwrap().is_some());

    // One durable task and one cleanup message naming it.
    let task = t.store.get_cleanup_task(&doomed.id).await.unwrap().expect("cleanup task");
    assert_eq!(task.object_key, doomed.object_key);
    assert_eq!(task.bucket, t.config.bucket_name);
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(CleanupMessage::parse(messages[0].body().unwrap()), Some(doomed.id.clone()));
    assert!(t.object_exists(&doomed.object_key).await, "bytes stay until cleanup runs");

    // The cleanup function removes the object and then the task.
    assert!(t.run_cleanup(&messages).await.is_empty());
    assert!(!t.object_exists(&doomed.object_key).await);
    assert!(t.store.get_cleanup_task(&doomed.id).await.unwrap().is_none());
    assert!(t.object_exists(&kept.object_key).await);

    // A redelivered message finds nothing to do and succeeds.
    assert!(t.run_cleanup(&messages).await.is_empty());
}

#[tokio::test]
async fn header_route_and_bearer_and_uuid_form_delete_too() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("bob").await;
    let upload = t.completed_upload(&owner, b"hello").await;
    let hex = &upload.id.as_str()[4..];
    let uuid = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]).to_uppercase();

    let bearer = format!("Bearer {}", key.expose());
    let resp = handle(&t.delete_deps(), delete_by_header(&[("authorization", &bearer), ("x-upload-id", &uuid)])).await;
    let (status, body) = parts(&resp);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], format!("Upload {} deleted successfully", upload.id));
    assert!(t.store.get_session(&owner, &upload.id).await.unwrap().is_none());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0);
    assert_eq!(t.receive_cleanup_messages().await.len(), 1);
}

#[tokio::test]
async fn deleting_a_pending_multipart_session_aborts_its_parts() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("carol").await;
    let session = t.pending_multipart(&owner, 2).await;
    assert_eq!(t.multipart_uploads_for(&session.object_key).await, 1);

    let resp = handle(&t.delete_deps(), delete_by_id(session.id.as_str(), &[("x-api-key", key.expose())])).await;
    assert_eq!(parts(&resp).0, 200);
    assert!(t.store.get_session(&owner, &session.id).await.unwrap().is_none());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0, "a pending session counted nothing");
    let task = t.store.get_cleanup_task(&session.id).await.unwrap().unwrap();
    assert_eq!(task.multipart_upload_id.as_deref(), Some(session.multipart.as_ref().unwrap().s3_upload_id.as_str()));

    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 1);
    assert!(t.run_cleanup(&messages).await.is_empty());
    assert_eq!(t.multipart_uploads_for(&session.object_key).await, 0);
    assert!(!t.object_exists(&session.object_key).await);
    assert!(t.store.get_cleanup_task(&session.id).await.unwrap().is_none());
}

#[tokio::test]
async fn cleanup_aborts_leftover_multipart_uploads_for_the_key() {
    // A part in flight when the first abort ran can leave an upload behind;
    // cleanup lists the key's uploads and aborts again.
    let t = TestStack::new().await;
    let (owner, key) = t.owner("carol").await;
    let session = t.pending_multipart(&owner, 1).await;
    let stray =
        t.s3.create_multipart_upload()
            .bucket(&t.config.bucket_name)
            .key(session.object_key.as_str())
            .send()
            .await
            .unwrap();
    t.upload_part(&session.object_key, stray.upload_id().unwrap(), 1).await;
    assert_eq!(t.multipart_uploads_for(&session.object_key).await, 2);

    let resp = handle(&t.delete_deps(), delete_by_id(session.id.as_str(), &[("x-api-key", key.expose())])).await;
    assert_eq!(parts(&resp).0, 200);
    assert!(t.run_cleanup(&t.receive_cleanup_messages().await).await.is_empty());
    assert_eq!(t.multipart_uploads_for(&session.object_key).await, 0);
}

#[tokio::test]
async fn missing_and_unknown_keys_are_401() {
    let t = TestStack::new().await;
    let (owner, _key) = t.owner("dave").await;
    let upload = t.completed_upload(&owner, b"data").await;
    let unknown = ApiKey::generate();
    let bearer_unknown = format!("Bearer {}", unknown.expose());
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("x-api-key", unknown.expose())],
        vec![("x-api-key", "not-a-key")],
        vec![("x-api-key", "")],
        vec![("authorization", &bearer_unknown)],
        vec![("authorization", "Basic dXNlcjpwYXNz")],
    ];
    for headers in cases {
        let resp = handle(&t.delete_deps(), delete_by_id(upload.id.as_str(), &headers)).await;
        let (status, body) = parts(&resp);
        assert_eq!((status, body["error"].as_str()), (401, Some("Unauthorized")), "headers {headers:?}");
        let resp = handle(
            &t.delete_deps(),
            delete_by_header(&[headers.as_slice(), &[("x-upload-id", upload.id.as_str())]].concat()),
        )
        .await;
        assert_eq!(parts(&resp).0, 401);
    }
    assert!(t.store.get_session(&owner, &upload.id).await.unwrap().is_some());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 4);
    assert!(t.receive_cleanup_messages().await.is_empty());
}

/// Deps whose DynamoDB and SQS are a dead endpoint: any store call fails.
fn unreachable_deps(t: &TestStack) -> delete_upload::Deps {
    let dead = local::stack::sdk_config("http://127.0.0.1:9")
        .to_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build();
    delete_upload::Deps {
        deleter: Deleter {
            store: Store::new(aws_sdk_dynamodb::Client::new(&dead), &t.config.table_name),
            queue: CleanupQueue::new(aws_sdk_sqs::Client::new(&dead), &t.config.cleanup_queue_url),
            ..t.deleter()
        },
    }
}

#[tokio::test]
async fn malformed_ids_are_400_without_any_store_call() {
    let t = TestStack::new().await;
    let deps = unreachable_deps(&t);
    let key = ApiKey::generate();
    let bad_ids = [
        "123",
        "upl_",
        "upl_0123456789abcdef0123456789ABCDEF",
        "upl_0123456789abcdef0123456789abcde",
        "upl_0123456789abcdef0123456789abcdef0",
        "upl_0123456789abcdef0123456789abcdeg",
        "0123456789abcdef0123456789abcdef",
        "01234567-89ab-cdef-0123-456789abcdeg",
        "%00",
        "upl_0123456789abcdef0123456789abcdef%0A",
    ];
    for bad in bad_ids {
        let resp = handle(&deps, delete_by_id(bad, &[("x-api-key", key.expose())])).await;
        let (status, body) = parts(&resp);
        assert_eq!((status, body["error"].as_str()), (400, Some("Invalid upload id")), "path id {bad:?}");
        let resp = handle(&deps, delete_by_header(&[("x-api-key", key.expose()), ("x-upload-id", bad)])).await;
        let (status, body) = parts(&resp);
        assert_eq!((status, body["error"].as_str()), (400, Some("Invalid upload id")), "header id {bad:?}");
    }
    // The same deps do reach for the store once the id is well formed: the
    // dead endpoint then shows as the contract's 500, with no detail.
    let resp = handle(&deps, delete_by_id(UploadId::generate().as_str(), &[("x-api-key", key.expose())])).await;
    let (status, body) = parts(&resp);
    assert_eq!((status, body["error"].as_str()), (500, Some("Failed to delete upload record")));
    assert_eq!(body.as_object().unwrap().len(), 2, "no internal detail: {body}");
}

#[tokio::test]
async fn missing_upload_id_header_is_400() {
    let t = TestStack::new().await;
    let (_owner, key) = t.owner("erin").await;
    for headers in [
        vec![("x-api-key", key.expose())],
        vec![("x-api-key", key.expose()), ("x-upload-id", "")],
        vec![("x-api-key", key.expose()), ("x-upload-id", "  ")],
    ] {
        let resp = handle(&t.delete_deps(), delete_by_header(&headers)).await;
        let (status, body) = parts(&resp);
        assert_eq!((status, body["error"].as_str()), (400, Some("Missing Upload-Id header")), "{headers:?}");
    }
}

#[tokio::test]
async fn unknown_foreign_and_repeated_deletes_are_404_and_change_nothing() {
    let t = TestStack::new().await;
    let (alice, alice_key) = t.owner("alice").await;
    let (mallory, mallory_key) = t.owner("mallory").await;
    let alices = t.completed_upload(&alice, &[1u8; 500]).await;
    let mallorys = t.completed_upload(&mallory, &[2u8; 50]).await;

    // Unknown id.
    let resp =
        handle(&t.delete_deps(), delete_by_id(UploadId::generate().as_str(), &[("x-api-key", alice_key.expose())]))
            .await;
    let (status, body) = parts(&resp);
    assert_eq!((status, body["error"].as_str()), (404, Some("Upload not found")));

    // Another owner's upload: the same 404, and nothing of it moves.
    for req in [
        delete_by_id(alices.id.as_str(), &[("x-api-key", mallory_key.expose())]),
        delete_by_header(&[("x-api-key", mallory_key.expose()), ("x-upload-id", alices.id.as_str())]),
    ] {
        let (status, body) = parts(&handle(&t.delete_deps(), req).await);
        assert_eq!((status, body["error"].as_str()), (404, Some("Upload not found")));
    }
    assert_eq!(t.store.get_session(&alice, &alices.id).await.unwrap().as_ref(), Some(&alices));
    assert!(t.object_exists(&alices.object_key).await);
    assert_eq!(t.store.bytes_used(&alice).await.unwrap(), 500);
    assert_eq!(t.store.bytes_used(&mallory).await.unwrap(), 50);
    assert!(t.store.get_cleanup_task(&alices.id).await.unwrap().is_none());
    assert!(t.receive_cleanup_messages().await.is_empty());

    // Repeated delete.
    let first =
        handle(&t.delete_deps(), delete_by_id(mallorys.id.as_str(), &[("x-api-key", mallory_key.expose())])).await;
    assert_eq!(parts(&first).0, 200);
    let again =
        handle(&t.delete_deps(), delete_by_id(mallorys.id.as_str(), &[("x-api-key", mallory_key.expose())])).await;
    let (status, body) = parts(&again);
    assert_eq!((status, body["error"].as_str()), (404, Some("Upload not found")));
    assert_eq!(t.store.bytes_used(&mallory).await.unwrap(), 0);
    assert_eq!(t.receive_cleanup_messages().await.len(), 1);
}

#[tokio::test]
async fn twenty_concurrent_deletes_succeed_once() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("frank").await;
    let upload = t.completed_upload(&owner, &[3u8; 777]).await;
    let other = t.completed_upload(&owner, &[4u8; 23]).await;
    let deps = t.delete_deps();

    let statuses: Vec<u16> = join_all((0..20).map(|_| {
        let deps = deps.clone();
        let id = upload.id.clone();
        let key = key.clone();
        tokio::spawn(
            async move { parts(&handle(&deps, delete_by_id(id.as_str(), &[("x-api-key", key.expose())])).await).0 },
        )
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap())
    .collect();

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 19, "{statuses:?}");
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 23, "released exactly once");
    assert!(t.store.get_cleanup_task(&upload.id).await.unwrap().is_some());
    assert!(t.store.get_session(&owner, &other.id).await.unwrap().is_some());
    assert_eq!(t.receive_cleanup_messages().await.len(), 1);
}

#[tokio::test]
async fn failed_enqueue_still_answers_200_and_leaves_a_durable_task() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("grace").await;
    let upload = t.completed_upload(&owner, &[5u8; 64]).await;
    let dead = unreachable_deps(&t);
    let deps = delete_upload::Deps { deleter: Deleter { queue: dead.deleter.queue, ..t.deleter() } };

    let started = std::time::Instant::now();
    let resp = handle(&deps, delete_by_id(upload.id.as_str(), &[("x-api-key", key.expose())])).await;
    let (status, body) = parts(&resp);
    assert_eq!(status, 200, "{body}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(t.store.get_session(&owner, &upload.id).await.unwrap().is_none());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0);
    let task = t.store.get_cleanup_task(&upload.id).await.unwrap().expect("durable task");
    assert_eq!(task.object_key, upload.object_key);
    assert!(t.receive_cleanup_messages().await.is_empty());
    assert!(t.object_exists(&upload.object_key).await, "bytes wait for the re-driven task");
}

#[tokio::test]
async fn store_failure_is_500_without_internal_detail() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("heidi").await;
    let upload = t.completed_upload(&owner, b"x").await;
    let deps = delete_upload::Deps {
        deleter: Deleter {
            store: Store::new(aws_sdk_dynamodb::Client::new(&t.stack.sdk), "no-such-table"),
            ..t.deleter()
        },
    };
    let resp = handle(&deps, delete_by_id(upload.id.as_str(), &[("x-api-key", key.expose())])).await;
    let (status, body) = parts(&resp);
    assert_eq!((status, body["error"].as_str()), (500, Some("Failed to delete upload record")));
    assert!(!body.to_string().contains("no-such-table"));
    assert!(t.store.get_session(&owner, &upload.id).await.unwrap().is_some());
}

/// S3 checks a presigned URL's expiry when a request starts, so a part
/// begun just before its URL expired can land long after. A deletion's
/// final pass waits, past the URLs' lifetime and the margin, as long as the
/// session's largest part takes at the slowest transfer rate allowed for.
#[tokio::test]
async fn the_final_pass_waits_out_a_part_in_flight_at_the_urls_expiry() {
    let t = TestStack::new().await;
    let (owner, _) = t.owner("slow-link").await;
    // The template's URL lifetime (the tests' own deleter makes its final
    // pass at once).
    let deleter = Deleter::new(t.store.clone(), t.queue.clone(), &t.config);
    assert_eq!(deleter.final_pass_delay_seconds, 900 + 60);
    let session = t.pending_multipart(&owner, 1).await;
    let part = session.multipart.as_ref().unwrap().part_size;
    let task = deleter.delete(&owner, &session.id, shared::store::DeleteScope::Any).await.unwrap().unwrap();
    let waited = task.final_pass_at.unix_seconds() - task.created_at.unix_seconds();
    let in_flight = part.div_ceil(shared::deletion::SLOWEST_TRANSFER_BYTES_PER_SECOND) as i64;
    assert_eq!(in_flight, 10, "a 5 MiB part at 512 KiB/s");
    assert_eq!(waited, deleter.final_pass_delay_seconds + in_flight);
    let stored = t.store.get_cleanup_task(&session.id).await.unwrap().unwrap();
    assert_eq!(stored.final_pass_at, task.final_pass_at, "the durable task carries it");
}
