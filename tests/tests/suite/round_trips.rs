//! AWS calls per invocation, counted on the wire: every function runs as its
//! binary with its AWS endpoint pointed at a counting proxy in front of the
//! emulator (`local::wire`), and a client drives the API through the local
//! gateway. The counts are the targets `docs/performance.md` states; a
//! change that adds a round trip to a warm path fails here.

use std::collections::BTreeMap;
use std::sync::Arc;

use local::runtime::Outcome;
use local::wire::Proxy;
use serde_json::{json, Value};
use shared::domain::ApiKey;
use tests::{endpoint, put_parts, LocalApi, TestStack};

struct Api {
    api: LocalApi,
    proxy: Proxy,
    http: reqwest::Client,
}

impl Api {
    /// Every function of `t`'s template, calling AWS through a counting
    /// proxy, behind the local gateway.
    async fn start(t: &TestStack) -> Self {
        let proxy = Proxy::start(&endpoint()).await.unwrap();
        let mut hosts = BTreeMap::new();
        for f in t.stack.template.functions().unwrap() {
            let host = t.stack.start_function_with(&f, false, &[("AWS_ENDPOINT_URL", &proxy.endpoint)]).await.unwrap();
            hosts.insert(f.logical_id.clone(), (f, Arc::new(host)));
        }
        Api { api: LocalApi::serve(t, hosts).await, proxy, http: reqwest::Client::new() }
    }

    /// The operations `function` sent, in order, while `step` ran.
    async fn calls<F: std::future::Future<Output = T>, T>(&self, function: &str, step: F) -> (T, Vec<String>) {
        let mark = self.proxy.len();
        let out = step.await;
        let calls = self.proxy.calls_since(mark).into_iter().filter(|c| c.signer == function).map(|c| c.operation);
        (out, calls.collect())
    }

    async fn send(&self, method: reqwest::Method, path: &str, key: &ApiKey, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.api.base)).header("x-api-key", key.expose());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn warm_routes_make_the_stated_number_of_aws_calls() {
    // URLs live 300 s, so a deletion's final pass (360 s later) is a delayed message.
    let t = TestStack::with_parameters(&[("PresignedUrlTtlSeconds", "300")]).await;
    let (owner, key) = t.owner("calls").await;
    let api = Api::start(&t).await;
    use reqwest::Method;

    // Warm every function once (its first call builds nothing we count,
    // but the cursor secret of list is read once per process).
    let (_, calls) = api.calls("ListUploads", api.send(Method::GET, "/uploads", &key, None)).await;
    assert_eq!(calls, ["dynamodb:GetItem", "dynamodb:Query"], "list of nothing: no cursor, no cursor secret");

    let new = json!({ "filename": "a.txt", "content_type": "text/plain", "size": 5 });
    let ((status, created), calls) =
        api.calls("CreateUpload", api.send(Method::POST, "/uploads", &key, Some(new))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(calls, ["dynamodb:GetItem", "dynamodb:TransactWriteItems"], "single-PUT create");
    let id = created["upload_id"].as_str().unwrap().to_owned();
    assert_eq!(put_parts(&created["upload"], b"hello", None).await, [200]);

    let (_, calls) = api.calls("GetUpload", api.send(Method::GET, &format!("/uploads/{id}"), &key, None)).await;
    assert_eq!(calls, ["dynamodb:BatchGetItem", "s3:HeadObject"], "get of a pending single PUT");

    let confirm = format!("/uploads/{id}/confirm");
    let ((status, body), calls) = api.calls("ConfirmUpload", api.send(Method::POST, &confirm, &key, None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        calls,
        ["dynamodb:BatchGetItem", "s3:HeadObject", "s3:DeleteObjectTagging", "dynamodb:TransactWriteItems"],
        "single-PUT confirm: at most 4"
    );
    let (_, calls) = api.calls("ConfirmUpload", api.send(Method::POST, &confirm, &key, None)).await;
    assert_eq!(calls, ["dynamodb:BatchGetItem"], "a repeated confirm");

    let (_, calls) = api.calls("GetUpload", api.send(Method::GET, &format!("/uploads/{id}"), &key, None)).await;
    assert_eq!(calls, ["dynamodb:BatchGetItem"], "get of a completed upload");

    let (_, calls) = api.calls("ListUploads", api.send(Method::GET, "/uploads", &key, None)).await;
    assert_eq!(calls, ["dynamodb:GetItem", "dynamodb:Query"], "list, warm");

    let ((status, _), calls) =
        api.calls("DeleteUpload", api.send(Method::DELETE, &format!("/uploads/{id}"), &key, None)).await;
    assert_eq!(status, 200);
    assert_eq!(calls, ["dynamodb:BatchGetItem", "dynamodb:TransactWriteItems", "sqs:SendMessage"], "delete: at most 3");
    let (_, calls) = api.calls("DeleteUpload", api.send(Method::DELETE, &format!("/uploads/{id}"), &key, None)).await;
    assert_eq!(calls, ["dynamodb:BatchGetItem"], "a repeated delete (404)");

    // Cleanup of a batch of 10 deletions (the one above and 9 more).
    for n in 0..9u8 {
        let upload = t.completed_upload(&owner, &[n; 10]).await;
        assert_eq!(api.send(Method::DELETE, &format!("/uploads/{}", upload.id), &key, None).await.0, 200);
    }
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 10);
    let event = local::feeder::sqs_event(&messages, &t.cleanup_queue_arn());
    let cleanup = api.api.hosts["Cleanup"].1.clone();
    let (outcome, calls) = api.calls("Cleanup", cleanup.invoke(&event)).await;
    assert!(matches!(outcome.unwrap(), Outcome::Response(r) if r["batchItemFailures"] == json!([])));
    assert_eq!(
        calls,
        ["dynamodb:BatchGetItem", "s3:DeleteObjects", "sqs:SendMessageBatch"],
        "first pass of 10: the bytes go, 10 final passes are scheduled"
    );
    let scheduled = t.receive_cleanup_messages().await;
    assert!(scheduled.is_empty(), "the final passes are delayed, not visible yet");
    let usage = t.store.usage(&owner).await.unwrap();
    assert_eq!((usage.used, usage.reserved, usage.pending), (0, 0, 0));
    assert!(t.all_keys().await.is_empty(), "every object is gone after the first pass");

    // The final pass of the same 10 (as the delayed messages would bring it,
    // once due): the tasks go in one batched write.
    let tasks: Vec<_> =
        messages.iter().map(|m| shared::queue::CleanupMessage::parse(m.body.as_deref().unwrap()).unwrap()).collect();
    for id in &tasks {
        let mut task = t.store.get_cleanup_task(id).await.unwrap().unwrap();
        task.final_pass_at = shared::domain::Timestamp::now();
        t.store.put_cleanup_task(&task).await.unwrap();
    }
    let (outcome, calls) = api.calls("Cleanup", cleanup.invoke(&event)).await;
    assert!(matches!(outcome.unwrap(), Outcome::Response(r) if r["batchItemFailures"] == json!([])));
    assert_eq!(calls, ["dynamodb:BatchGetItem", "s3:DeleteObjects", "dynamodb:BatchWriteItem"], "final pass of 10");
    for id in &tasks {
        assert!(t.store.get_cleanup_task(id).await.unwrap().is_none());
    }
}
