//! Lambda Managed Instances mode: one process of a function's real binary,
//! started with `AWS_LAMBDA_MAX_CONCURRENCY`, takes many invocations at once
//! through the local Runtime API, answers each one correctly under its own
//! request id, and leaves the same state in DynamoDB, S3 and SQS as
//! invocations one at a time would. Without the variable, the same binary
//! takes one invocation at a time, as on Lambda.

use std::collections::BTreeSet;

use futures::future::join_all;
use local::apigw::{parse_response, rest_event, ProxyRequest, ProxyResponse};
use local::runtime::{FunctionHost, Outcome, Scaling};
use serde_json::Value;
use shared::domain::{ApiKey, OwnerId, Status, UploadId};
use shared::queue::CleanupMessage;
use tests::{eventually, TestStack};

/// Invocations sent at once, and the process's `AWS_LAMBDA_MAX_CONCURRENCY`.
const AT_ONCE: usize = 16;

async fn host(t: &TestStack, logical_id: &str, scaling: Scaling) -> FunctionHost {
    let f = t.stack.template.functions().unwrap().into_iter().find(|f| f.logical_id == logical_id).unwrap();
    t.stack.start_function_scaled(&f, false, &[], scaling).await.unwrap()
}

/// The proxy event API Gateway would hand the function.
fn api_event(method: &str, path: &str, resource: &str, key: &ApiKey, body: Option<Value>) -> Value {
    rest_event(&ProxyRequest {
        method: method.into(),
        path: path.into(),
        resource: resource.into(),
        path_parameters: local::gateway::match_path(resource, path).expect("path matches resource"),
        headers: vec![("x-api-key".into(), key.expose().into()), ("content-type".into(), "application/json".into())],
        body: body.map(|b| b.to_string().into_bytes()),
        source_ip: "127.0.0.1".into(),
        request_id: local::runtime::uuid_like(),
        ..Default::default()
    })
}

fn request_id(event: &Value) -> &str {
    event["requestContext"]["requestId"].as_str().unwrap()
}

/// Invokes `host` with every event at once; the answers, in order, each
/// checked to be its own request's.
async fn invoke_all(host: &FunctionHost, events: &[Value]) -> Vec<(ProxyResponse, Value)> {
    let outcomes = join_all(events.iter().map(|ev| host.invoke(ev))).await;
    events
        .iter()
        .zip(outcomes)
        .map(|(ev, outcome)| {
            let resp = match outcome.unwrap() {
                Outcome::Response(v) => parse_response(&v).unwrap(),
                Outcome::Error(e) => panic!("function error: {e}"),
            };
            let body = resp.json().unwrap();
            assert_eq!(body["request_id"], request_id(ev), "an answer went to another request");
            assert_eq!(resp.header("x-request-id"), Some(request_id(ev)));
            (resp, body)
        })
        .collect()
}

/// Each event's one `request completed` line, with its own request id and
/// owner in its span: concurrent requests do not share or swap spans.
async fn assert_one_log_line_each(host: &FunctionHost, events: &[Value], owners: &[&OwnerId]) {
    let completed = || -> Vec<Value> {
        host.logs()
            .iter()
            .filter(|l| l.contains("request completed"))
            .map(|l| serde_json::from_str(l).expect("JSON log line"))
            .collect()
    };
    assert!(eventually(5, || async { completed().len() >= events.len() }).await, "{:#?}", host.logs());
    let lines = completed();
    assert_eq!(lines.len(), events.len());
    for (ev, owner) in events.iter().zip(owners) {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["span"]["request_id"] == request_id(ev)).collect();
        assert_eq!(mine.len(), 1, "one line for request {}", request_id(ev));
        assert_eq!(mine[0]["span"]["owner"], owner.as_str());
    }
}

/// One process, many invocations in it at once.
async fn assert_served_concurrently_by_one_process(host: &FunctionHost) {
    assert_eq!(host.pids().await.len(), 1, "one process served every invocation");
    assert_eq!(host.instances().await, 1);
    eprintln!("{}: at most {} invocations at once in one process", host.name, host.busiest());
    assert!(host.busiest() > 1, "the process held {} invocation(s) at once at most", host.busiest());
    assert!(host.busiest() <= AT_ONCE, "more invocations at once than AWS_LAMBDA_MAX_CONCURRENCY");
}

#[tokio::test]
async fn one_process_serves_sixteen_creates_at_once() {
    let t = TestStack::new().await;
    let mut owners = Vec::new();
    for i in 0..AT_ONCE {
        owners.push(t.owner(&format!("many{i}")).await);
    }
    let size = |i: usize| 1000 + i as u64;
    let events: Vec<Value> = owners
        .iter()
        .enumerate()
        .map(|(i, (_, key))| {
            let body =
                serde_json::json!({ "filename": format!("f{i}.txt"), "content_type": "text/plain", "size": size(i) });
            api_event("POST", "/uploads", "/uploads", key, Some(body))
        })
        .collect();

    let h = host(&t, "CreateUpload", Scaling::managed(AT_ONCE)).await;
    let answers = invoke_all(&h, &events).await;
    assert_served_concurrently_by_one_process(&h).await;

    for (i, ((owner, _), (resp, body))) in owners.iter().zip(answers).enumerate() {
        assert_eq!(resp.status, 201, "{body}");
        assert_eq!(body["filename"], format!("f{i}.txt"));
        assert_eq!(body["upload"]["type"], "single");
        let id = UploadId::parse(body["upload_id"].as_str().unwrap()).unwrap();
        let session = t.store.get_session(owner, &id).await.unwrap().expect("the session was stored");
        assert_eq!((&session.owner, session.status, session.size), (owner, Status::Pending, size(i)));
        let usage = t.store.usage(owner).await.unwrap();
        assert_eq!((usage.pending, usage.reserved, usage.used), (1, size(i), 0), "{owner:?}");
    }
    let owner_ids: Vec<&OwnerId> = owners.iter().map(|(o, _)| o).collect();
    assert_one_log_line_each(&h, &events, &owner_ids).await;
}

#[tokio::test]
async fn one_process_serves_sixteen_deletes_at_once() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("deletes").await;
    let mut uploads = Vec::new();
    for i in 0..AT_ONCE {
        uploads.push(t.completed_upload(&owner, &vec![i as u8; 100 + i]).await);
    }
    let total: u64 = uploads.iter().map(|u| u.size).sum();
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), total);
    let events: Vec<Value> = uploads
        .iter()
        .map(|u| api_event("DELETE", &format!("/uploads/{}", u.id), "/uploads/{upload_id}", &key, None))
        .collect();

    let h = host(&t, "DeleteUpload", Scaling::managed(AT_ONCE)).await;
    let answers = invoke_all(&h, &events).await;
    assert_served_concurrently_by_one_process(&h).await;

    for (u, (resp, body)) in uploads.iter().zip(answers) {
        assert_eq!(resp.status, 200, "{body}");
        assert_eq!(body["message"], format!("Upload {} deleted successfully", u.id));
        assert!(t.store.get_session(&owner, &u.id).await.unwrap().is_none(), "{} is still there", u.id);
        assert!(t.store.get_cleanup_task(&u.id).await.unwrap().is_some(), "no cleanup task for {}", u.id);
    }
    // Every upload's bytes were released exactly once, from one usage item
    // sixteen transactions updated at once.
    assert_eq!(t.store.usage(&owner).await.unwrap(), Default::default());
    let messages = t.receive_cleanup_messages().await;
    let queued: BTreeSet<String> =
        messages.iter().map(|m| CleanupMessage::parse(m.body().unwrap()).unwrap().as_str().to_owned()).collect();
    let deleted: BTreeSet<String> = uploads.iter().map(|u| u.id.as_str().to_owned()).collect();
    assert_eq!((messages.len(), &queued), (AT_ONCE, &deleted), "one cleanup message per deleted upload");
    for batch in messages.chunks(10) {
        assert!(t.run_cleanup(batch).await.is_empty());
    }
    for u in &uploads {
        assert!(!t.object_exists(&u.object_key).await, "the bytes of {} are still there", u.id);
    }
    assert!(t.all_keys().await.is_empty());
    assert_one_log_line_each(&h, &events, &vec![&owner; AT_ONCE]).await;
}

/// Without `AWS_LAMBDA_MAX_CONCURRENCY` the binary runs Lambda's loop: even
/// with invocations waiting, its one process takes the next only after
/// answering the last.
#[tokio::test]
async fn without_max_concurrency_one_process_takes_one_invocation_at_a_time() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("oneatatime").await;
    let mut uploads = Vec::new();
    for i in 0..8 {
        uploads.push(t.completed_upload(&owner, &vec![7u8; 10 + i]).await);
    }
    let events: Vec<Value> = uploads
        .iter()
        .map(|u| api_event("GET", &format!("/uploads/{}", u.id), "/uploads/{upload_id}", &key, None))
        .collect();

    let h = host(&t, "GetUpload", Scaling::instances(1)).await;
    let answers = invoke_all(&h, &events).await;
    assert_eq!(h.pids().await.len(), 1);
    assert_eq!(h.busiest(), 1, "the process took a second invocation before answering the first");
    for (u, (resp, body)) in uploads.iter().zip(answers) {
        assert_eq!(resp.status, 200, "{body}");
        assert_eq!(body["upload_id"], u.id.as_str());
        assert_eq!(body["size"], u.size);
    }
}
