//! Nothing secret leaves the service. Every route is driven through the
//! local API (each function its binary), first working, then with AWS
//! failing under it: the table gone, so every API route fails at its first
//! call; S3 and SQS unreachable; cleanup and
//! the sweeper run on both. Over every response body and every line the
//! functions logged, nothing carries an API key, a presigned signature
//! (outside the URLs a create, a resume or a get of a completed upload hands
//! out), the table's or queue's
//! name or URL, an ARN, or an AWS error's message (the service's words; its
//! error code and request id are what the logs keep).

use local::runtime::FunctionHost;
use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::UploadId;
use tests::{LocalApi, TestStack};

/// Words AWS (and moto) put in error messages, which must stay out.
const AWS_MESSAGES: &[&str] = &[
    "Requested resource not found",
    "The specified bucket does not exist",
    "The specified queue does not exist",
    "NonExistentQueue: The",
    "is not authorized to perform",
    "service error:",
];

struct Captured {
    /// `(what was sent, status, body)` of every API answer.
    answers: Vec<(String, u16, String)>,
}

impl Captured {
    async fn send(
        &mut self,
        http: &reqwest::Client,
        base: &str,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = http.request(method.clone(), format!("{base}{path}")).header("x-api-key", key);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.answers.push((format!("{method} {path}"), status, text.clone()));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Every route once, as the owner of `key`; returns what each answered.
async fn every_route(c: &mut Captured, http: &reqwest::Client, base: &str, key: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    let single = json!({"filename": "a.txt", "content_type": "text/plain", "size": 5});
    let multi = json!({"filename": "b.bin", "content_type": "application/octet-stream", "size": 100 * 1024 * 1024});
    let (s, created) = c.send(http, base, Method::POST, "/uploads", key, Some(single)).await;
    statuses.push(s);
    let (s, multipart) = c.send(http, base, Method::POST, "/uploads", key, Some(multi)).await;
    statuses.push(s);
    let some_id = UploadId::generate();
    let id = created["upload_id"].as_str().map(str::to_owned).unwrap_or_else(|| some_id.as_str().to_owned());
    let mp = multipart["upload_id"].as_str().map(str::to_owned).unwrap_or_else(|| some_id.as_str().to_owned());
    let put = &created["upload"]["parts"][0];
    if let Some(url) = put["url"].as_str() {
        // Refused when S3 is down; the confirm's answer tells.
        let mut req = http.put(url).body("hello");
        for (name, value) in put["headers"].as_object().into_iter().flatten() {
            if name != "content-length" {
                req = req.header(name, value.as_str().unwrap());
            }
        }
        let _ = req.send().await;
    }
    for (method, path) in [
        (Method::POST, format!("/uploads/{mp}/resume")),
        (Method::POST, format!("/uploads/{id}/confirm")),
        (Method::GET, format!("/uploads/{id}")),
        (Method::GET, "/uploads?limit=5".to_owned()),
        (Method::DELETE, format!("/uploads/{id}")),
        (Method::DELETE, format!("/uploads/{mp}")),
    ] {
        statuses.push(c.send(http, base, method, &path, key, None).await.0);
    }
    statuses
}

async fn run_cleanup_and_sweeper(t: &TestStack, api: &LocalApi) {
    let messages = t.receive_cleanup_messages().await;
    if !messages.is_empty() {
        let event = local::feeder::sqs_event(&messages, &t.cleanup_queue_arn());
        let _ = api.hosts["Cleanup"].1.invoke(&event).await.unwrap();
    }
    let _ = api.hosts["Sweeper"].1.invoke(&local::feeder::scheduled_event("Sweeper")).await.unwrap();
}

fn logs(hosts: &[&FunctionHost]) -> Vec<String> {
    hosts.iter().flat_map(|h| h.logs()).collect()
}

/// Fails with every finding at once.
fn assert_clean(t: &TestStack, c: &Captured, lines: &[String], keys: &[&str]) {
    let mut forbidden: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    forbidden.push(t.config.table_name.clone());
    forbidden.push(t.config.cleanup_queue_url.clone());
    forbidden.push("arn:aws".into());
    forbidden.extend(AWS_MESSAGES.iter().map(|m| m.to_string()));
    let mut findings = Vec::new();
    for (sent, status, body) in &c.answers {
        // A create's or resume's presigned URLs carry a signature by design,
        // and so does a completed upload's download URL; no other answer may.
        let download = *status == 200
            && sent.starts_with("GET /uploads/upl_")
            && serde_json::from_str::<Value>(body).is_ok_and(|b| b["status"] == "completed");
        let hands_out_urls = (*status < 300 && (sent == "POST /uploads" || sent.ends_with("/resume"))) || download;
        let mut checks: Vec<&str> = forbidden.iter().map(String::as_str).collect();
        if !hands_out_urls {
            checks.push("X-Amz-Signature");
        }
        for f in checks {
            if body.contains(f) {
                findings.push(format!("{sent} answered {status} with {f:?}: {body}"));
            }
        }
    }
    for line in lines {
        for f in forbidden.iter().map(String::as_str).chain(["X-Amz-Signature", "X-Amz-Credential"]) {
            if line.contains(f) {
                findings.push(format!("log line with {f:?}: {line}"));
            }
        }
    }
    assert!(findings.is_empty(), "{} findings:\n{}", findings.len(), findings.join("\n"));
}

#[tokio::test]
async fn no_answer_or_log_line_carries_a_secret_even_when_aws_fails() {
    let t = TestStack::new().await;
    let (_, key) = t.owner("secrets").await;
    let (_, other_key) = t.owner("secrets-b").await;
    let http = reqwest::Client::new();
    let mut c = Captured { answers: Vec::new() };

    // Working, then with S3 and SQS unreachable, each on functions of its
    // own.
    let api = LocalApi::start(&t).await;
    let working = every_route(&mut c, &http, &api.base, key.expose()).await;
    assert_eq!(working, [201, 201, 200, 200, 200, 200, 200, 200], "{:#?}", c.answers);
    // Another owner's key and an unknown one, on the same routes.
    every_route(&mut c, &http, &api.base, other_key.expose()).await;
    every_route(&mut c, &http, &api.base, "usk_0000000000000000000000000000000000000000000000000000000000000000").await;
    run_cleanup_and_sweeper(&t, &api).await;

    // S3 and SQS unreachable: their service endpoints, which the functions
    // take from `AWS_ENDPOINT_URL_<SERVICE>`, on a port nobody listens on.
    let broken = [("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9"), ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:9")];
    let mut hosts = std::collections::BTreeMap::new();
    for f in t.stack.template.functions().unwrap() {
        let scaling = local::runtime::Scaling::instances(1);
        let host = t.stack.start_function_scaled(&f, false, &broken, scaling).await.unwrap();
        hosts.insert(f.logical_id.clone(), (f, std::sync::Arc::new(host)));
    }
    let s3_down = LocalApi::serve(&t, hosts).await;
    let statuses = every_route(&mut c, &http, &s3_down.base, key.expose()).await;
    // What needs S3 fails (a multipart create; confirm; a pending upload's
    // view, which asks S3 what arrived); list and delete do not (the
    // delete's message is lost, its task stays for the sweeper). The resume
    // and second delete name the multipart upload never created: 404.
    assert_eq!(statuses, [201, 500, 404, 500, 500, 200, 200, 404], "{:#?}", &c.answers[c.answers.len() - 8..]);
    run_cleanup_and_sweeper(&t, &s3_down).await;

    // The table gone: every API route fails at its first call.
    t.ddb.delete_table().table_name(&t.config.table_name).send().await.unwrap();
    let failing = every_route(&mut c, &http, &api.base, key.expose()).await;
    assert!(failing.iter().all(|s| *s == 500), "{failing:?}");
    for (sent, status, body) in c.answers.iter().rev().take(failing.len()) {
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(*status, 500, "{sent}");
        assert!(body["error"].as_str().is_some_and(|m| m.starts_with("Failed to ")), "{sent}: {body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "only error and request_id: {body}");
    }
    run_cleanup_and_sweeper(&t, &api).await;

    let all_hosts: Vec<&FunctionHost> =
        api.hosts.values().chain(s3_down.hosts.values()).map(|(_, h)| h.as_ref()).collect();
    let lines = logs(&all_hosts);
    assert!(lines.iter().any(|l| l.contains("internal failure")), "the failures were logged");
    assert!(
        lines.iter().any(|l| l.contains("ResourceNotFoundException")),
        "the logs keep the AWS error code: {:#?}",
        lines.iter().filter(|l| l.contains("internal failure")).take(3).collect::<Vec<_>>()
    );
    assert_clean(&t, &c, &lines, &[key.expose(), other_key.expose()]);
}
