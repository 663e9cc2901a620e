//! Black-box test support: a fresh set of the template's resources in the
//! moto server `cargo xtask test` starts (`MOTO_ENDPOINT`), one set per test
//! so tests run in parallel, and helpers that put uploads into known states
//! through the same session model the functions use.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use lambda_http::{Body, Response};
use local::apigw::{rest_event, ProxyRequest};
use local::stack::Stack;
use serde_json::Value;
use shared::config::UploadPolicy;
use shared::deletion::Deleter;
use shared::domain::{ApiKey, Multipart, ObjectKey, OwnerId, Session, Status, Timestamp, UploadId};
use shared::objects::Objects;
use shared::queue::CleanupQueue;
use shared::store::Store;
use shared::uploads::Uploads;
use shared::Config;

pub mod state;

/// Generous enough for every test that does not test the quota.
pub const QUOTA: u64 = 1 << 40;
/// Likewise for the cap on pending sessions.
pub const MAX_PENDING: u64 = 100_000;
pub const MIB: usize = 1024 * 1024;

pub fn endpoint() -> String {
    std::env::var("MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!("MOTO_ENDPOINT is not set: run the tests with `cargo xtask test`, which starts the emulator")
    })
}

fn random_suffix() -> String {
    UploadId::generate().as_str()[4..14].to_owned()
}

/// Where a test stack's bucket lives: in moto (which checks no signature,
/// expiry or checksum), or in a verifying S3 of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum S3 {
    Moto,
    Verifying,
}

pub struct TestStack {
    pub stack: Stack,
    pub config: Config,
    pub store: Store,
    pub objects: Objects,
    pub queue: CleanupQueue,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    /// The verifying S3 the stack's bytes go to instead of moto's, if any
    /// ([`TestStack::with_verifying_s3`]); dropped with the stack.
    pub verifying_s3: Option<local::s3verify::VerifyingS3>,
}

impl TestStack {
    pub async fn new() -> Self {
        Self::with_parameters(&[]).await
    }

    /// A stack with default parameters whose bucket lives in `s3`.
    pub async fn on(s3: S3) -> Self {
        match s3 {
            S3::Moto => Self::new().await,
            S3::Verifying => Self::with_verifying_s3(&[]).await,
        }
    }

    /// A stack whose template parameters are overridden, as
    /// `sam deploy --parameter-overrides` would.
    pub async fn with_parameters(overrides: &[(&str, &str)]) -> Self {
        Self::provision(overrides, None).await
    }

    /// A stack whose bucket lives in a verifying S3 of its own
    /// (`local::s3verify`: SigV4 on every request, presigned URLs included,
    /// their expiry, and checksums), the rest in moto. Every signer uses the
    /// local secret, as the functions do.
    pub async fn with_verifying_s3(overrides: &[(&str, &str)]) -> Self {
        let s3 = local::s3verify::VerifyingS3::start_with(local::s3verify::Signers::AnyKeyId("testing".into()))
            .await
            .expect("verifying S3");
        Self::provision(overrides, Some(s3)).await
    }

    async fn provision(overrides: &[(&str, &str)], verifying_s3: Option<local::s3verify::VerifyingS3>) -> Self {
        shared::telemetry::init_for_tests();
        let overrides = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let s3_endpoint = verifying_s3.as_ref().map(|s| s.endpoint.as_str());
        let stack = Stack::provision_on(&endpoint(), s3_endpoint, &format!("t{}", random_suffix()), overrides)
            .await
            .expect("provisioning");
        let config = stack.config().expect("config");
        Self {
            store: stack.store().unwrap(),
            objects: stack.objects().unwrap(),
            queue: stack.cleanup_queue().unwrap(),
            s3: stack.s3_client(),
            sqs: aws_sdk_sqs::Client::new(&stack.sdk),
            ddb: aws_sdk_dynamodb::Client::new(&stack.sdk),
            config,
            stack,
            verifying_s3,
        }
    }

    /// The delete path with no wait for a final cleanup pass, so one
    /// cleanup run finishes a task (the final pass has its own test).
    pub fn deleter(&self) -> Deleter {
        Deleter { final_pass_delay_seconds: 0, ..Deleter::new(self.store.clone(), self.queue.clone(), &self.config) }
    }

    pub fn delete_deps(&self) -> delete_upload::Deps {
        delete_upload::Deps { deleter: self.deleter() }
    }

    /// The sweeper over `uploads`, re-driving tasks stuck 5 minutes.
    pub fn sweeper_deps(&self, uploads: Uploads) -> sweeper::Deps {
        sweeper::Deps {
            deleter: self.deleter(),
            uploads,
            redrive_after_seconds: 300,
            max_attempts: 8,
            metrics_namespace: "test".into(),
            publisher: self.publisher(),
            event_stuck_after_seconds: 900,
        }
    }

    /// The publisher of upload events to the stack's bus, when the template
    /// gives the functions one (`EVENT_BUS_NAME`).
    pub fn publisher(&self) -> Option<shared::events::Publisher> {
        self.config.event_bus_name.as_ref()?;
        Some(shared::aws::publisher(&self.stack.sdk, &self.config).expect("publisher"))
    }

    /// The tags S3 holds for the object at `key`.
    pub async fn object_tags(&self, key: &ObjectKey) -> Vec<(String, String)> {
        let out = self.s3.get_object_tagging().bucket(&self.config.bucket_name).key(key.as_str()).send().await.unwrap();
        out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
    }

    pub fn cleanup_deps(&self) -> cleanup::Deps {
        cleanup::Deps { store: self.store.clone(), objects: self.objects.clone(), queue: self.queue.clone() }
    }

    /// What create, get, confirm and resume work with, under `policy`.
    pub fn uploads(&self, policy: UploadPolicy) -> Uploads {
        Uploads {
            store: self.store.clone(),
            objects: self.objects.clone(),
            bucket: self.config.bucket_name.clone(),
            policy,
        }
    }

    /// A new owner and a key minted for it.
    pub async fn owner(&self, name: &str) -> (OwnerId, ApiKey) {
        let owner = OwnerId::parse(name).unwrap();
        let key = ApiKey::generate();
        self.store.put_api_key(&key, &owner).await.unwrap();
        (owner, key)
    }

    fn new_session(owner: &OwnerId, id: UploadId, size: u64, multipart: Option<Multipart>) -> Session {
        let now = Timestamp::now();
        Session {
            object_key: ObjectKey::for_upload(owner, &id),
            id,
            owner: owner.clone(),
            status: Status::Pending,
            filename: "report.pdf".into(),
            content_type: "application/pdf".into(),
            size,
            multipart,
            checksums: None,
            created_at: now,
            expires_at: now.plus_seconds(24 * 3600),
            completed_at: None,
            completing_since: None,
            token_id: None,
            version: 0,
        }
    }

    /// A completed single-object upload of `bytes`, counted in usage.
    pub async fn completed_upload(&self, owner: &OwnerId, bytes: &[u8]) -> Session {
        self.completed_upload_with_id(owner, UploadId::generate(), bytes).await
    }

    pub async fn completed_upload_with_id(&self, owner: &OwnerId, id: UploadId, bytes: &[u8]) -> Session {
        let session = Self::new_session(owner, id, bytes.len() as u64, None);
        self.store.create_session(&session, QUOTA, MAX_PENDING).await.unwrap();
        self.put_object(&session.object_key, bytes).await;
        self.store.complete_session(owner, &session.id).await.unwrap()
    }

    /// A pending single-`PUT` session `id` whose `bytes` are already in S3.
    pub async fn pending_single_with_id(&self, owner: &OwnerId, id: UploadId, bytes: &[u8]) -> Session {
        let session = Self::new_session(owner, id, bytes.len() as u64, None);
        self.store.create_session(&session, QUOTA, MAX_PENDING).await.unwrap();
        self.put_object(&session.object_key, bytes).await;
        session
    }

    /// A pending multipart session with `parts` 5 MiB parts already in S3.
    pub async fn pending_multipart(&self, owner: &OwnerId, parts: u32) -> Session {
        self.pending_multipart_expiring(owner, parts, Timestamp::now().plus_seconds(24 * 3600)).await
    }

    /// As [`Self::pending_multipart`], expiring at `expires_at`.
    pub async fn pending_multipart_expiring(&self, owner: &OwnerId, parts: u32, expires_at: Timestamp) -> Session {
        let id = UploadId::generate();
        let key = ObjectKey::for_upload(owner, &id);
        let mp =
            self.s3.create_multipart_upload().bucket(&self.config.bucket_name).key(key.as_str()).send().await.unwrap();
        let s3_upload_id = mp.upload_id.unwrap();
        for n in 1..=parts {
            self.upload_part(&key, &s3_upload_id, n as i32).await;
        }
        let multipart = Multipart { s3_upload_id, part_size: 5 * MIB as u64, part_count: parts + 1 };
        let session = Session {
            expires_at,
            ..Self::new_session(owner, id, (5 * MIB) as u64 * u64::from(parts + 1), Some(multipart))
        };
        self.store.create_session(&session, QUOTA, MAX_PENDING).await.unwrap();
        session
    }

    pub async fn upload_part(&self, key: &ObjectKey, s3_upload_id: &str, n: i32) -> CompletedPart {
        let out = self
            .s3
            .upload_part()
            .bucket(&self.config.bucket_name)
            .key(key.as_str())
            .upload_id(s3_upload_id)
            .part_number(n)
            .body(ByteStream::from(vec![n as u8; 5 * MIB]))
            .send()
            .await
            .unwrap();
        CompletedPart::builder().part_number(n).set_e_tag(out.e_tag).build()
    }

    pub async fn complete_multipart(&self, key: &ObjectKey, s3_upload_id: &str, parts: Vec<CompletedPart>) {
        self.s3
            .complete_multipart_upload()
            .bucket(&self.config.bucket_name)
            .key(key.as_str())
            .upload_id(s3_upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .unwrap();
    }

    pub async fn put_object(&self, key: &ObjectKey, bytes: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.config.bucket_name)
            .key(key.as_str())
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .unwrap();
    }

    pub async fn object_exists(&self, key: &ObjectKey) -> bool {
        match self.s3.head_object().bucket(&self.config.bucket_name).key(key.as_str()).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(e) => panic!("HeadObject failed: {e:?}"),
        }
    }

    /// Multipart uploads S3 still lists for exactly `key`.
    pub async fn multipart_uploads_for(&self, key: &ObjectKey) -> usize {
        let out = self.s3.list_multipart_uploads().bucket(&self.config.bucket_name).send().await.unwrap();
        out.uploads().iter().filter(|u| u.key() == Some(key.as_str())).count()
    }

    /// Every message on the cleanup queue, received (and so hidden for the
    /// queue's visibility timeout).
    pub async fn receive_cleanup_messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.config.cleanup_queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            all.extend(batch);
        }
    }

    pub fn cleanup_queue_arn(&self) -> String {
        self.stack.physical("CleanupQueue").unwrap().arn.clone()
    }

    /// Hands `messages` to the cleanup handler in-process, as Lambda would.
    pub async fn run_cleanup(&self, messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
        let event = local::feeder::sqs_event(messages, &self.cleanup_queue_arn());
        let event = serde_json::from_value(event).unwrap();
        let response = cleanup::handle(
            &self.cleanup_deps(),
            lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
        )
        .await
        .unwrap();
        response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    /// Raw item by key, to assert what the store holds.
    pub async fn item(
        &self,
        pk: &str,
        sk: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        use aws_sdk_dynamodb::types::AttributeValue::S;
        self.ddb
            .get_item()
            .table_name(&self.config.table_name)
            .key("pk", S(pk.into()))
            .key("sk", S(sk.into()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item
    }
}

/// A request as API Gateway would hand it to a function.
pub fn api_request(method: &str, path: &str, resource: &str, headers: &[(&str, &str)]) -> lambda_http::Request {
    build_request(method, path, resource, headers, &[], None)
}

/// A request with a body, as API Gateway would hand it over.
pub fn api_request_with_body(
    method: &str,
    path: &str,
    resource: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> lambda_http::Request {
    build_request(method, path, resource, headers, &[], Some(body))
}

/// A `GET` with a query string.
pub fn api_request_with_query(path: &str, headers: &[(&str, &str)], query: &[(&str, &str)]) -> lambda_http::Request {
    build_request("GET", path, path, headers, query, None)
}

/// Builds the proxy event with the local gateway's own builder and reads it
/// back as lambda_http does on Lambda.
fn build_request(
    method: &str,
    path: &str,
    resource: &str,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<&[u8]>,
) -> lambda_http::Request {
    let pairs = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let event = rest_event(&ProxyRequest {
        method: method.into(),
        path: path.into(),
        resource: resource.into(),
        path_parameters: local::gateway::match_path(resource, path).expect("path matches resource"),
        headers: pairs(headers),
        query: pairs(query),
        body: body.map(<[u8]>::to_vec),
        source_ip: "127.0.0.1".into(),
        request_id: local::runtime::uuid_like(),
    });
    lambda_http::request::from_str(&event.to_string()).expect("a valid API Gateway event")
}

/// `POST /uploads` by the owner of `key`.
pub fn create_request(key: &ApiKey, filename: &str, content_type: &str, size: u64) -> lambda_http::Request {
    let body = serde_json::json!({ "filename": filename, "content_type": content_type, "size": size }).to_string();
    api_request_with_body("POST", "/uploads", "/uploads", &[("x-api-key", key.expose())], body.as_bytes())
}

/// `POST /uploads/{id}/confirm` by the owner of `key`.
pub fn confirm_request(key: &ApiKey, id: &str) -> lambda_http::Request {
    let path = format!("/uploads/{id}/confirm");
    api_request_with_body("POST", &path, "/uploads/{upload_id}/confirm", &[("x-api-key", key.expose())], b"")
}

/// The local API Gateway over every function of `t`'s template, each run
/// as its binary, serving on a free loopback port.
pub struct LocalApi {
    pub base: String,
    pub hosts:
        std::collections::BTreeMap<String, (local::template::Function, std::sync::Arc<local::runtime::FunctionHost>)>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl LocalApi {
    pub async fn start(t: &TestStack) -> Self {
        Self::serve(t, t.stack.start_functions(false).await.unwrap()).await
    }

    /// The local API Gateway over functions already started.
    pub async fn serve(
        t: &TestStack,
        hosts: std::collections::BTreeMap<
            String,
            (local::template::Function, std::sync::Arc<local::runtime::FunctionHost>),
        >,
    ) -> Self {
        let gateway = t.stack.gateway(&hosts).unwrap();
        let port = local::moto::free_port().unwrap();
        let server = tokio::spawn(gateway.serve(([127, 0, 0, 1], port).into()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        assert!(eventually(10, || async { http.get(&base).send().await.is_ok() }).await, "local API did not start");
        LocalApi { base, hosts, server }
    }
}

impl LocalApi {
    /// Sends `method path` with `key`, and `body` as JSON if any; returns
    /// the status and the JSON body.
    pub async fn send(&self, method: reqwest::Method, path: &str, key: &ApiKey, body: Option<Value>) -> (u16, Value) {
        let mut req =
            reqwest::Client::new().request(method, format!("{}{path}", self.base)).header("x-api-key", key.expose());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The bytes of the completed upload `id`, read as a client reads
    /// them: through the `download.url` of its view. (Not with the SDK:
    /// moto answers a `GetObject` of a multipart object declared with
    /// checksums with the composite checksum without its `-N`, which the
    /// SDK then takes for a whole-object checksum and fails the read.)
    pub async fn download(&self, key: &ApiKey, id: &str) -> Vec<u8> {
        let (status, view) = self.send(reqwest::Method::GET, &format!("/uploads/{id}"), key, None).await;
        assert_eq!(status, 200, "{view}");
        let url = view["download"]["url"].as_str().unwrap_or_else(|| panic!("no download in {view}"));
        let got = reqwest::get(url).await.unwrap();
        assert_eq!(got.status(), 200);
        got.bytes().await.unwrap().to_vec()
    }
}

impl Drop for LocalApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Status and JSON body of a response, after checking the invariants every
/// response keeps: JSON content type and `request_id` equal to `x-request-id`.
pub fn parts(resp: &Response<Body>) -> (u16, Value) {
    let body: Value = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).expect("JSON body"),
        Body::Binary(b) => serde_json::from_slice(b).expect("JSON body"),
        Body::Empty => panic!("empty body"),
        _ => panic!("unexpected body"),
    };
    assert_eq!(resp.headers()["content-type"], "application/json");
    let rid = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(!rid.is_empty());
    assert_eq!(body["request_id"], rid, "request_id in body and header differ");
    (resp.status().as_u16(), body)
}

/// Waits until `cond` holds, polling, at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Sends `data` to the presigned `PUT`s of `upload` (the `upload` object of
/// a create or resume answer), only the parts numbered in `only` if given,
/// in the order given. Returns the HTTP statuses.
pub async fn put_parts(upload: &Value, data: &[u8], only: Option<&[u64]>) -> Vec<u16> {
    let http = reqwest::Client::new();
    let part_size = upload["part_size"].as_u64().unwrap() as usize;
    let mut statuses = Vec::new();
    let parts = upload["parts"].as_array().unwrap();
    let order: Vec<u64> = match only {
        Some(o) => o.to_vec(),
        None => parts.iter().map(|p| p["part_number"].as_u64().unwrap()).collect(),
    };
    for n in order {
        let part = parts.iter().find(|p| p["part_number"] == n).expect("part in answer");
        let start = (n as usize - 1) * part_size;
        let end = (start + part_size).min(data.len());
        let mut req = http.put(part["url"].as_str().unwrap()).body(data[start..end].to_vec());
        for (k, v) in part["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if status >= 400 {
            eprintln!("PUT part {n}: {status} {}", resp.text().await.unwrap_or_default());
        }
        statuses.push(status);
    }
    statuses
}

/// A response body without its `request_id`, to compare two answers.
pub fn without_request_id(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.remove("request_id");
    }
    v
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl TestStack {
    /// The object's bytes.
    pub async fn object_bytes(&self, key: &ObjectKey) -> Vec<u8> {
        let out = self.s3.get_object().bucket(&self.config.bucket_name).key(key.as_str()).send().await.unwrap();
        out.body.collect().await.unwrap().into_bytes().to_vec()
    }

    /// Every session of `owner`, read page by page as a list would.
    pub async fn all_sessions(&self, owner: &OwnerId) -> Vec<shared::domain::Listed> {
        let mut sessions = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_sessions(owner, 100, after.as_deref()).await.unwrap();
            sessions.extend(page.sessions);
            match page.last {
                Some(last) => after = Some(last),
                None => return sessions,
            }
        }
    }

    /// Asserts that `owner`'s usage item says what its sessions hold (used
    /// bytes the completed sessions', whose objects exist; reserved bytes
    /// and the pending count the pending ones') and returns its sessions.
    pub async fn assert_usage_matches_sessions(&self, owner: &OwnerId, context: &str) -> Vec<shared::domain::Listed> {
        let sessions = self.all_sessions(owner).await;
        let (mut used, mut reserved, mut pending) = (0, 0, 0);
        for s in &sessions {
            if s.status == Status::Completed {
                used += s.size;
                let key = ObjectKey::for_upload(owner, &s.id);
                assert!(self.object_exists(&key).await, "{context}: completed upload {} has no object", s.id);
            } else {
                reserved += s.size;
                pending += 1;
            }
        }
        let usage = self.store.usage(owner).await.unwrap();
        assert_eq!(
            (usage.used, usage.reserved, usage.pending),
            (used, reserved, pending),
            "{context}: usage of {owner}"
        );
        sessions
    }

    /// Every object in the bucket, as `ListObjectsV2` lists them.
    pub async fn all_objects(&self) -> Vec<aws_sdk_s3::types::Object> {
        let mut objects = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.config.bucket_name)
                .set_continuation_token(token)
                .send()
                .await
                .expect("ListObjectsV2");
            objects.extend(out.contents().iter().cloned());
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return objects,
            }
        }
    }

    /// Every key in the bucket.
    pub async fn all_keys(&self) -> Vec<String> {
        self.all_objects().await.iter().filter_map(|o| o.key().map(str::to_owned)).collect()
    }

    /// Feeds the cleanup queue to the cleanup handler until it is empty.
    pub async fn drain_cleanup(&self) -> usize {
        let mut handled = 0;
        loop {
            let messages = self.receive_cleanup_messages().await;
            if messages.is_empty() {
                return handled;
            }
            handled += messages.len();
            for chunk in messages.chunks(10) {
                let failed = self.run_cleanup(chunk).await;
                assert!(failed.is_empty(), "cleanup failed for {failed:?}");
                let entries: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(m.receipt_handle().unwrap())
                            .build()
                            .unwrap()
                    })
                    .collect();
                self.sqs
                    .delete_message_batch()
                    .queue_url(&self.config.cleanup_queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

impl TestStack {
    /// A pending multipart session of `size` bytes planned as one part (a
    /// single part may be smaller than S3's 5 MiB minimum: it is the last),
    /// expiring at `expires_at`; with `bytes`, its part is already in S3,
    /// so a confirm completes it. Cheap enough to make one per test case.
    pub async fn pending_one_part(
        &self,
        owner: &OwnerId,
        size: u64,
        bytes: Option<&[u8]>,
        expires_at: Timestamp,
    ) -> Session {
        let id = UploadId::generate();
        let key = ObjectKey::for_upload(owner, &id);
        let mp =
            self.s3.create_multipart_upload().bucket(&self.config.bucket_name).key(key.as_str()).send().await.unwrap();
        let s3_upload_id = mp.upload_id.unwrap();
        if let Some(bytes) = bytes {
            assert_eq!(bytes.len() as u64, size, "the part is the whole upload");
            self.s3
                .upload_part()
                .bucket(&self.config.bucket_name)
                .key(key.as_str())
                .upload_id(&s3_upload_id)
                .part_number(1)
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .unwrap();
        }
        let multipart = Multipart { s3_upload_id, part_size: 5 * MIB as u64, part_count: 1 };
        let session = Session { expires_at, ..Self::new_session(owner, id, size, Some(multipart)) };
        self.store.create_session(&session, QUOTA, MAX_PENDING).await.unwrap();
        session
    }

    /// Every cleanup task's upload id in the table.
    pub async fn cleanup_task_ids(&self) -> Vec<UploadId> {
        let items = self.scan_table().await;
        items.keys().filter_map(|(pk, _)| pk.strip_prefix("CLEANUP#").and_then(UploadId::parse)).collect()
    }
}
