//! Each function's real binary, driven through the Lambda Runtime API with
//! its `events/` file, against moto; and the local API Gateway in front of
//! them, as `cargo xtask dev` runs it.

use local::apigw::parse_response;
use local::feeder::Feeder;
use local::runtime::{FunctionHost, Outcome};
use local::stack::project_root;
use serde_json::Value;
use shared::domain::{ApiKey, OwnerId, Timestamp, UploadId};
use shared::store::DeleteScope;
use tests::{LocalApi, TestStack};

#[path = "binaries/events.rs"]
mod events;

fn event(name: &str) -> Value {
    let path = project_root().join("events").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn host(t: &TestStack, logical_id: &str) -> FunctionHost {
    let f = t.stack.template.functions().unwrap().into_iter().find(|f| f.logical_id == logical_id).unwrap();
    t.stack.start_function(&f, false).await.unwrap()
}

fn response(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => panic!("function error: {e}"),
    }
}

#[tokio::test]
async fn delete_upload_binary_answers_its_event() {
    let t = TestStack::new().await;
    let ev = event("delete-upload");
    let key = ApiKey::parse(ev["headers"]["x-api-key"].as_str().unwrap()).unwrap();
    let id = UploadId::parse(ev["pathParameters"]["upload_id"].as_str().unwrap()).unwrap();
    let owner = OwnerId::parse("events").unwrap();
    t.store.put_api_key(&key, &owner).await.unwrap();
    let upload = t.completed_upload_with_id(&owner, id.clone(), &[1u8; 42]).await;

    let h = host(&t, "DeleteUpload").await;
    let resp = parse_response(&response(h.invoke(&ev).await.unwrap())).unwrap();
    assert_eq!(resp.status, 200);
    let body = resp.json().unwrap();
    assert_eq!(body["message"], format!("Upload {id} deleted successfully"));
    let request_id = ev["requestContext"]["requestId"].as_str().unwrap();
    assert_eq!(body["request_id"], request_id);
    assert_eq!(resp.header("x-request-id"), Some(request_id));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert!(t.store.get_session(&owner, &id).await.unwrap().is_none());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 0);
    assert!(t.store.get_cleanup_task(&id).await.unwrap().is_some());
    assert_eq!(t.receive_cleanup_messages().await.len(), 1);

    // The same event again: the upload is gone.
    let again = parse_response(&response(h.invoke(&ev).await.unwrap())).unwrap();
    assert_eq!(again.status, 404);
    assert_eq!(again.json().unwrap()["error"], "Upload not found");

    // One JSON log line a request, carrying its request id, and never the key.
    let logs = h.logs();
    let line = logs.iter().find(|l| l.contains("request completed")).expect("a request log line");
    let line: Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(line["span"]["request_id"], request_id);
    assert_eq!(line["span"]["owner"], "events");
    assert_eq!(line["span"]["upload_id"], id.as_str());
    assert!(logs.iter().all(|l| !l.contains(key.expose())), "the API key reached a log line");
    assert!(t.object_exists(&upload.object_key).await);
}

#[tokio::test]
async fn cleanup_binary_answers_its_event() {
    let t = TestStack::new().await;
    let ev = event("cleanup");
    let body = ev["Records"][0]["body"].as_str().unwrap();
    let id = shared::queue::CleanupMessage::parse(body).unwrap();
    let owner = OwnerId::parse("events").unwrap();
    let upload = t.completed_upload_with_id(&owner, id.clone(), b"bytes").await;
    assert!(t.store.delete_session(&owner, &id, &t.config.bucket_name, 0, DeleteScope::Any).await.unwrap().is_some());

    let h = host(&t, "Cleanup").await;
    let resp = response(h.invoke(&ev).await.unwrap());
    assert_eq!(resp["batchItemFailures"], serde_json::json!([]));
    assert!(!t.object_exists(&upload.object_key).await);
    assert!(t.store.get_cleanup_task(&id).await.unwrap().is_none());

    // Redelivered: nothing left to do, still a success.
    let resp = response(h.invoke(&ev).await.unwrap());
    assert_eq!(resp["batchItemFailures"], serde_json::json!([]));
}

#[tokio::test]
async fn local_api_serves_the_template_routes_and_feeds_cleanup() {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("local").await;
    let upload = t.completed_upload(&owner, &[8u8; 300]).await;

    let api = LocalApi::start(&t).await;
    let cleanup = api.hosts["Cleanup"].1.clone();
    let base = api.base.clone();
    let http = reqwest::Client::new();

    // Not a route of the template: API Gateway's 403.
    for (method, path) in [
        (reqwest::Method::GET, "/nope"),
        (reqwest::Method::PATCH, "/uploads/x"),
        (reqwest::Method::DELETE, "/uploads/a/b"),
    ] {
        let r = http.request(method, format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "Missing Authentication Token");
    }

    let r =
        http.delete(format!("{base}/uploads/{}", upload.id)).header("x-api-key", key.expose()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], format!("Upload {} deleted successfully", upload.id));
    assert_eq!(body["request_id"], rid);

    let r = http.delete(format!("{base}/uploads")).header("x-api-key", key.expose()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "Missing Upload-Id header");

    // The feeder hands the queue to the cleanup binary, as the event source mapping does.
    let queue = t.stack.physical("CleanupQueue").unwrap().clone();
    let feeder = Feeder {
        client: t.sqs.clone(),
        queue_url: queue.reference,
        queue_arn: queue.arn,
        batch_size: 10,
        wait_seconds: 0,
    };
    let round = feeder.round(&cleanup).await.unwrap();
    assert_eq!((round.received, round.failed), (1, 0));
    assert!(!t.object_exists(&upload.object_key).await);
    // With the template's 15-minute URLs, the task waits for its final pass
    // (the URLs' lifetime, the 60 s margin and the time a PUT of its 5
    // bytes begun at the URL's expiry may take, 1 s), and the handled
    // message is gone.
    let task = t.store.get_cleanup_task(&upload.id).await.unwrap().expect("task kept for the final pass");
    let wait = task.final_pass_at.unix_seconds() - shared::domain::Timestamp::now().unix_seconds();
    assert!((900..=961).contains(&wait), "final pass in {wait} s");
    assert!(t.receive_cleanup_messages().await.is_empty(), "the handled message was deleted");
}

/// The key and upload id the API events carry, the key minted for owner
/// `events`.
async fn event_identity(t: &TestStack) -> (OwnerId, UploadId) {
    let ev = event("get-upload");
    let key = ApiKey::parse(ev["headers"]["x-api-key"].as_str().unwrap()).unwrap();
    let id = UploadId::parse(ev["pathParameters"]["upload_id"].as_str().unwrap()).unwrap();
    let owner = OwnerId::parse("events").unwrap();
    t.store.put_api_key(&key, &owner).await.unwrap();
    (owner, id)
}

async fn invoke_api(t: &TestStack, function: &str, event_name: &str) -> (u16, Value) {
    let h = host(t, function).await;
    let resp = parse_response(&response(h.invoke(&event(event_name)).await.unwrap())).unwrap();
    let body = resp.json().unwrap();
    assert_eq!(resp.header("x-request-id"), body["request_id"].as_str());
    assert!(
        h.logs().iter().all(|l| !l.contains("usk_") && !l.contains("ubt_")),
        "a key or token reached {function}'s log"
    );
    (resp.status, body)
}

#[tokio::test]
async fn lifecycle_binaries_answer_their_events() {
    let t = TestStack::new().await;
    let (owner, id) = event_identity(&t).await;

    // create-upload: a 1 MiB PDF, one presigned PUT.
    let (status, body) = invoke_api(&t, "CreateUpload", "create-upload").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["filename"], "Quarterly report Q3.pdf");
    assert_eq!(body["upload"]["type"], "single");
    let created = UploadId::parse(body["upload_id"].as_str().unwrap()).unwrap();
    assert_eq!(t.store.get_session(&owner, &created).await.unwrap().unwrap().size, 1_048_576);

    // get-upload, resume-upload, confirm-upload on the events' upload id.
    t.pending_single_with_id(&owner, id.clone(), &[9u8; 2048]).await;
    let (status, body) = invoke_api(&t, "GetUpload", "get-upload").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")), "{body}");
    assert_eq!(body["upload"]["parts_received"], serde_json::json!([1]));
    let (status, body) = invoke_api(&t, "ResumeUpload", "resume-upload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upload"]["parts"], serde_json::json!([]), "nothing missing");
    let (status, body) = invoke_api(&t, "ConfirmUpload", "confirm-upload").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 2048);

    // list-uploads: both of the owner's uploads, newest first.
    let (status, body) = invoke_api(&t, "ListUploads", "list-uploads").await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["uploads"].as_array().unwrap().iter().map(|u| u["upload_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![id.as_str(), created.as_str()]);

    // mint-token: a token of the event's grant, which the store's secret
    // verifies, for the key of the event; the token reaches no log.
    let (status, body) = invoke_api(&t, "MintToken", "mint-token").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["scope"].as_str(), body["content_type"].as_str()), (Some("own"), Some("image/*")));
    let secret = t.store.secret(shared::store::Secret::Token).await.unwrap();
    let token =
        shared::domain::BrowserToken::verify(body["token"].as_str().unwrap(), secret, Timestamp::now()).unwrap();
    let key = ApiKey::parse(event("mint-token")["headers"]["x-api-key"].as_str().unwrap()).unwrap();
    assert_eq!((token.key, token.max_size), (key.digest(), Some(104_857_600)));
    assert_eq!(body["token_id"].as_str(), Some(token.id.as_str()));
}

#[tokio::test]
async fn sweeper_binary_answers_its_event() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("events").unwrap();
    let expired = t.pending_multipart_expiring(&owner, 1, shared::domain::Timestamp::now().plus_seconds(-10)).await;
    let h = host(&t, "Sweeper").await;
    let report = response(h.invoke(&event("sweeper")).await.unwrap());
    assert_eq!(
        report,
        serde_json::json!({
            "completed": 0, "expired": 1, "redriven": 0, "stuck": 0, "events_redriven": 0, "events_stuck": 0,
            "failed": 0, "out_of_time": false
        })
    );
    assert!(t.store.get_session(&owner, &expired.id).await.unwrap().is_none());
    assert!(t.store.get_cleanup_task(&expired.id).await.unwrap().is_some());
    assert_eq!(t.receive_cleanup_messages().await.len(), 1);
    let line = h.logs().into_iter().find(|l| l.contains("sweep done")).expect("a sweep log line");
    let line: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["expired"], 1);
}

/// At the most verbose level, with a real key in the event and presigned
/// URLs in the answer, no log line carries the key or a URL's signature:
/// the SDK and runtime crates never log events, headers or bodies.
#[tokio::test]
async fn the_most_verbose_level_logs_no_key_and_no_signature() {
    let t = TestStack::new().await;
    let ev = event("create-upload");
    let key = ApiKey::parse(ev["headers"]["x-api-key"].as_str().unwrap()).unwrap();
    t.store.put_api_key(&key, &OwnerId::parse("events").unwrap()).await.unwrap();
    let f = t.stack.template.functions().unwrap().into_iter().find(|f| f.logical_id == "CreateUpload").unwrap();
    let h = t
        .stack
        .start_function_with(&f, false, &[("AWS_LAMBDA_LOG_LEVEL", "TRACE"), ("RUST_LOG", "trace")])
        .await
        .unwrap();
    let resp = parse_response(&response(h.invoke(&ev).await.unwrap())).unwrap();
    assert_eq!(resp.status, 201);
    let body = resp.json().unwrap();
    let url = body["upload"]["parts"][0]["url"].as_str().unwrap();
    let signature = url.split("X-Amz-Signature=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    assert!(signature.len() >= 64, "{url}");
    // The binary did log (its request line), through the same pipeline.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = h.logs();
    assert!(logs.iter().any(|l| l.contains("request completed")), "{logs:#?}");
    for line in &logs {
        assert!(!line.contains(key.expose()), "the API key reached a log line: {line}");
        assert!(!line.contains(&signature), "a presigned signature reached a log line: {line}");
        assert!(!line.contains("x-api-key"), "request headers reached a log line: {line}");
    }
}

/// The stage's web ACL as the local gateway applies it from the template:
/// a key past `KeyRateLimit` requests in 60 s is answered 429 with
/// `Retry-After` before any function runs; other keys keep their own count.
#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_before_any_function_runs() {
    let t = TestStack::with_parameters(&[("KeyRateLimit", "10")]).await;
    let (busy_owner, busy) = t.owner("busy").await;
    let (quiet_owner, quiet) = t.owner("quiet").await;
    let api = LocalApi::start(&t).await;
    let http = reqwest::Client::new();
    let list = |key: &ApiKey| http.get(format!("{}/uploads", api.base)).header("x-api-key", key.expose());
    let create = |key: &ApiKey| {
        http.post(format!("{}/uploads", api.base))
            .header("x-api-key", key.expose())
            .json(&serde_json::json!({ "filename": "a.txt", "content_type": "text/plain", "size": 10 }))
    };

    for n in 0..10 {
        assert_eq!(list(&busy).send().await.unwrap().status(), 200, "request {n} is within the limit");
    }
    for _ in 0..3 {
        let r = create(&busy).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "10");
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "Too many requests");
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    }
    // The blocked creates never reached the function: nothing reserved.
    assert_eq!(t.store.usage(&busy_owner).await.unwrap(), Default::default());

    let r = create(&quiet).send().await.unwrap();
    assert_eq!(r.status(), 201, "another key has its own count");
    assert_eq!(t.store.usage(&quiet_owner).await.unwrap().pending, 1);
}

/// One key is served at most `KeyRateLimit` requests in 60 s per header
/// name, however it spells its credentials: scheme case and whitespace of
/// `Authorization: Bearer` share one allowance, spellings the functions
/// refuse are 401, and requests without any credential are limited per
/// source address.
#[tokio::test]
async fn no_spelling_of_a_key_multiplies_its_allowance() {
    let t = TestStack::with_parameters(&[("KeyRateLimit", "10"), ("AnonymousRateLimit", "10")]).await;
    let (_, key) = t.owner("spelled").await;
    let api = LocalApi::start(&t).await;
    let http = reqwest::Client::new();
    let k = key.expose();
    let spellings = [
        format!("Bearer {k}"),
        format!("bearer {k}"),
        format!("BEARER {k}"),
        format!("Bearer  {k}"),
        format!("Bearer\t{k}"),
    ];
    let mut served = 0;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..10 {
        for s in &spellings {
            let r = http.get(format!("{}/uploads", api.base)).header("authorization", s).send().await.unwrap();
            *statuses.entry(r.status().as_u16()).or_default() += 1;
            if r.status() == 200 {
                served += 1;
            }
        }
    }
    assert_eq!(served, 10, "one allowance for every spelling of Bearer: {statuses:?}");
    assert_eq!(statuses.get(&429), Some(&40), "{statuses:?}");

    let served = count_served(&http, &api.base, &[("x-api-key", k.to_owned())], 30).await;
    assert_eq!(served, 10, "x-api-key has one allowance of its own");

    // Spellings the functions refuse are 401, in the API's error shape.
    for bad in [format!("Basic {k}"), format!("Bearer {k} x"), format!("Bearer{k}")] {
        let r = http.get(format!("{}/uploads", api.base)).header("authorization", &bad).send().await.unwrap();
        assert_eq!(r.status(), 401, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "Unauthorized");
        assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");
    }
    let r = http.get(format!("{}/uploads", api.base)).header("x-api-key", k.to_ascii_uppercase()).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // No credential: one allowance per source address, then 429.
    let served = count_served(&http, &api.base, &[], 15).await;
    assert_eq!(served, 0, "nothing without a key is served");
    let r = http.get(format!("{}/uploads", api.base)).send().await.unwrap();
    assert_eq!(r.status(), 429, "the address is over its allowance");
    assert_eq!(r.headers()["retry-after"], "10");
}

/// Sends `n` lists with `headers`; how many were answered 200.
async fn count_served(http: &reqwest::Client, base: &str, headers: &[(&str, String)], n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let mut req = http.get(format!("{base}/uploads"));
        for (h, v) in headers {
            req = req.header(*h, v);
        }
        if req.send().await.unwrap().status() == 200 {
            ok += 1;
        }
    }
    ok
}

/// A page on another origin can call the API and read every answer: each
/// route answers its preflight, and the functions' answers, success and
/// error, and the gateway's own (a missing route, a rate limit, a body too
/// large) carry the allowed origin and expose the request id.
#[tokio::test]
async fn every_answer_a_browser_can_get_carries_the_allowed_origin() {
    let origin = "https://app.example.com";
    let t = TestStack::with_parameters(&[("CorsAllowOrigin", origin), ("KeyRateLimit", "10")]).await;
    let (_, key) = t.owner("cors").await;
    let api = LocalApi::start(&t).await;
    let http = reqwest::Client::new();
    let id = UploadId::generate();
    let cors = |r: &reqwest::Response, what: &str| {
        assert_eq!(r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some(origin), "{what}");
    };

    for path in ["/uploads".to_owned(), format!("/uploads/{id}"), format!("/uploads/{id}/confirm")] {
        let r = http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", api.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "preflight of {path}");
        cors(&r, "preflight");
        let allowed = r.headers()["access-control-allow-headers"].to_str().unwrap().to_owned();
        assert!(allowed.split(',').any(|h| h == "authorization"), "{allowed}");
        let methods = r.headers()["access-control-allow-methods"].to_str().unwrap().to_owned();
        assert!(methods.contains("POST") && methods.contains("DELETE"), "{methods}");
    }

    let list = http.get(format!("{}/uploads", api.base)).header("x-api-key", key.expose()).send().await.unwrap();
    assert_eq!(list.status(), 200);
    cors(&list, "a success");
    let exposed = list.headers()["access-control-expose-headers"].to_str().unwrap().to_owned();
    assert!(exposed.contains("x-request-id") && exposed.contains("retry-after"), "{exposed}");

    let missing =
        http.get(format!("{}/uploads/{id}", api.base)).header("x-api-key", key.expose()).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    cors(&missing, "a function's error");

    let nowhere = http.get(format!("{}/elsewhere", api.base)).send().await.unwrap();
    assert_eq!(nowhere.status(), 403);
    cors(&nowhere, "the gateway's 403");
    let body: Value = nowhere.json().await.unwrap();
    assert_eq!(body["error"], "Missing Authentication Token", "in the API's error shape: {body}");
    assert!(body["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{body}");

    let big = http
        .post(format!("{}/uploads", api.base))
        .header("x-api-key", key.expose())
        .header("content-type", "application/json")
        .body(vec![b' '; 20_000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    cors(&big, "the web ACL's 413");

    let mut limited = None;
    for _ in 0..15 {
        let r = http.get(format!("{}/uploads", api.base)).header("x-api-key", key.expose()).send().await.unwrap();
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the key's rate limit");
    cors(&limited, "the gateway's 429");
}
