//! The contract: `openapi.yaml`, `template.yaml` and the local API serve the
//! same routes, and real responses of the local stack (each function's
//! binary behind the local API Gateway) validate against the OpenAPI
//! schemas. Also: minting and revoking keys with the xtask command.

use std::collections::BTreeSet;

use local::stack::project_root;
use serde_json::{json, Value};
use tests::{LocalApi, TestStack};

fn openapi() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(project_root().join("openapi.yaml")).unwrap()).unwrap()
}

fn openapi_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The schema of `method path` answering `status`, made self-contained
/// (the OpenAPI components ride along for its `$ref`s).
fn response_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let op = &doc["paths"][path][method.to_lowercase()];
    let mut response = op["responses"][status.to_string()].clone();
    assert!(!response.is_null(), "openapi.yaml lists no {status} for {method} {path}");
    if let Some(r) = response.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap();
        response = doc["components"]["responses"][name].clone();
    }
    let schema = response["content"]["application/json"]["schema"].clone();
    assert!(!schema.is_null(), "no JSON schema for {status} of {method} {path}");
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    })
}

struct Local {
    t: TestStack,
    base: String,
    http: reqwest::Client,
    doc: Value,
    /// Kept for its lifetime: dropping it stops the local API.
    _api: LocalApi,
    checked: BTreeSet<(String, String, u16)>,
}

impl Local {
    async fn start(overrides: &[(&str, &str)]) -> Self {
        let t = TestStack::with_parameters(overrides).await;
        let api = LocalApi::start(&t).await;
        let base = api.base.clone();
        let http = reqwest::Client::new();
        Local { t, base, http, doc: openapi(), _api: api, checked: BTreeSet::new() }
    }

    /// Sends a request, validates the answer against `openapi.yaml` for the
    /// route template `route`, and returns status and body.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        route: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        match key {
            Some(t) if t.starts_with("ubt_") => req = req.header("authorization", format!("Bearer {t}")),
            Some(k) => req = req.header("x-api-key", k),
            None => {}
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let request_id = resp.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(request_id.as_deref(), body["request_id"].as_str(), "x-request-id header");
        let schema = response_schema(&self.doc, method, route, status);
        let validator = jsonschema::draft202012::new(&schema).expect("a valid schema");
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {route} {status}: {body}\n{errors:#?}");
        self.checked.insert((method.to_owned(), route.to_owned(), status));
        (status, body)
    }
}

#[tokio::test]
async fn openapi_template_and_local_api_agree_on_routes() {
    let doc = openapi();
    let t = TestStack::new().await;
    let template: BTreeSet<(String, String)> =
        t.stack.template.routes().unwrap().into_iter().map(|r| (r.method, r.path)).collect();
    assert_eq!(openapi_routes(&doc), template);

    // The local API answers every one of those routes through a function
    // (a JSON body with a request_id), and nothing else.
    let mut local = Local::start(&[]).await;
    for (method, path) in &template {
        let concrete = path.replace("{upload_id}", "upl_00000000000000000000000000000000");
        let (status, body) = local.call(method, &concrete, path, None, None).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("Unauthorized")), "{method} {path}");
    }
    for (method, path) in
        [("PUT", "/uploads"), ("PATCH", "/uploads/upl_0"), ("GET", "/"), ("POST", "/uploads/x/cancel")]
    {
        let r = local.http.request(method.parse().unwrap(), format!("{}{path}", local.base)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
}

#[tokio::test]
async fn real_responses_validate_against_openapi() {
    let mut l = Local::start(&[("QuotaBytes", "5000")]).await;
    let (_, key) = l.t.owner("contract").await;
    let key = key.expose().to_owned();
    let k = Some(key.as_str());

    let (status, created) = l
        .call(
            "POST",
            "/uploads",
            "/uploads",
            k,
            Some(json!({"filename": "a.txt", "content_type": "text/plain", "size": 11})),
        )
        .await;
    assert_eq!(status, 201);
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let item = format!("/uploads/{id}");
    let (status, pending) = l.call("GET", &item, "/uploads/{upload_id}", k, None).await;
    assert_eq!(status, 200);
    assert_eq!(l.call("POST", &format!("{item}/confirm"), "/uploads/{upload_id}/confirm", k, None).await.0, 409);
    let (status, resumed) = l.call("POST", &format!("{item}/resume"), "/uploads/{upload_id}/resume", k, None).await;
    assert_eq!(status, 200);
    tests::put_parts(&resumed["upload"], b"hello world", None).await;
    assert_eq!(l.call("POST", &format!("{item}/confirm"), "/uploads/{upload_id}/confirm", k, None).await.0, 200);
    assert_eq!(l.call("POST", &format!("{item}/confirm"), "/uploads/{upload_id}/confirm", k, None).await.0, 200);
    let (status, completed) = l.call("GET", &item, "/uploads/{upload_id}", k, None).await;
    assert_eq!(status, 200);
    // The schema holds the download to the status: required once completed,
    // refused while pending.
    let get_schema = response_schema(&l.doc, "GET", "/uploads/{upload_id}", 200);
    let get_schema = jsonschema::draft202012::new(&get_schema).expect("a valid schema");
    let mut without = completed.clone();
    assert!(without.as_object_mut().unwrap().remove("download").is_some(), "{completed}");
    assert!(!get_schema.is_valid(&without), "a completed upload without its download");
    let mut with = pending.clone();
    with["download"] = completed["download"].clone();
    assert!(!get_schema.is_valid(&with), "a pending upload with a download");
    assert_eq!(l.call("POST", &format!("{item}/resume"), "/uploads/{upload_id}/resume", k, None).await.0, 409);
    assert_eq!(l.call("GET", "/uploads?limit=1", "/uploads", k, None).await.0, 200);
    assert_eq!(l.call("GET", "/uploads?limit=0", "/uploads", k, None).await.0, 400);
    assert_eq!(l.call("GET", "/uploads?cursor=forged", "/uploads", k, None).await.0, 400);
    assert_eq!(
        l.call(
            "POST",
            "/uploads",
            "/uploads",
            k,
            Some(json!({"filename": "big", "content_type": "a/b", "size": 9000}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        l.call("POST", "/uploads", "/uploads", k, Some(json!({"filename": "", "content_type": "a/b", "size": 1})))
            .await
            .0,
        400
    );
    assert_eq!(l.call("DELETE", &item, "/uploads/{upload_id}", k, None).await.0, 200);
    assert_eq!(l.call("DELETE", &item, "/uploads/{upload_id}", k, None).await.0, 404);
    assert_eq!(l.call("DELETE", "/uploads/nope", "/uploads/{upload_id}", k, None).await.0, 400);
    assert_eq!(l.call("DELETE", "/uploads", "/uploads", k, None).await.0, 400);
    assert_eq!(l.call("GET", &item, "/uploads/{upload_id}", None, None).await.0, 401);

    // Browser tokens: minted, used, refused.
    let grant = json!({"ttl_seconds": 60, "max_size": 100, "content_type": "text/*"});
    let (status, minted) = l.call("POST", "/tokens", "/tokens", k, Some(grant)).await;
    assert_eq!(status, 201);
    let token = minted["token"].as_str().unwrap().to_owned();
    let tk = Some(token.as_str());
    let text = |size: u64| json!({"filename": "t.txt", "content_type": "text/plain", "size": size});
    let (status, by_token) = l.call("POST", "/uploads", "/uploads", tk, Some(text(5))).await;
    assert_eq!(status, 201);
    let (status, by_key) = l.call("POST", "/uploads", "/uploads", k, Some(text(5))).await;
    assert_eq!(status, 201);
    let theirs = format!("/uploads/{}", by_key["upload_id"].as_str().unwrap());
    assert_eq!(l.call("GET", &theirs, "/uploads/{upload_id}", tk, None).await.0, 403);
    assert_eq!(l.call("DELETE", &theirs, "/uploads/{upload_id}", tk, None).await.0, 403);
    let own = format!("/uploads/{}", by_token["upload_id"].as_str().unwrap());
    assert_eq!(l.call("GET", &own, "/uploads/{upload_id}", tk, None).await.0, 200);
    assert_eq!(l.call("GET", "/uploads", "/uploads", tk, None).await.0, 403);
    assert_eq!(l.call("POST", "/uploads", "/uploads", tk, Some(text(101))).await.0, 403);
    assert_eq!(l.call("POST", "/tokens", "/tokens", tk, Some(json!({}))).await.0, 403);
    assert_eq!(l.call("POST", "/tokens", "/tokens", k, Some(json!({"ttl_seconds": 5}))).await.0, 400);
    let (status, body) = l.call("GET", &own, "/uploads/{upload_id}", Some("ubt_x.y"), None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("Invalid token")));

    // Every route got at least its success answer checked.
    let routes: BTreeSet<(String, String)> =
        l.checked.iter().filter(|c| c.2 < 300).map(|c| (c.0.clone(), c.1.clone())).collect();
    assert_eq!(routes.len(), 7, "{routes:?}");
}

#[tokio::test]
async fn mint_and_revoke_with_the_xtask_command() {
    let t = TestStack::new().await;
    let xtask_bin = local::runtime::binary_path("xtask");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&xtask_bin)
            .args(args)
            .args(["--table", &t.config.table_name])
            .envs(local::stack::local_env(&t.stack.endpoint))
            .output()
            .expect("xtask runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&["mint-key", "--owner", "team-a"]);
    assert!(ok, "{stderr}");
    let key = stdout.lines().find_map(|l| l.strip_prefix("x-api-key: ")).expect("the key, once").to_owned();
    let key = shared::domain::ApiKey::parse(&key).unwrap();
    assert_eq!(t.store.resolve_api_key(&key).await.unwrap().unwrap().as_str(), "team-a");
    assert!(!stderr.contains(key.expose()));

    let deps = t.uploads(shared::config::UploadPolicy::default());
    let get = |k: &str| {
        tests::api_request(
            "GET",
            "/uploads/upl_00000000000000000000000000000000",
            "/uploads/{upload_id}",
            &[("x-api-key", k)],
        )
    };
    assert_eq!(tests::parts(&get_upload::handle(&deps, get(key.expose())).await).0, 404, "known key");
    // The same key again: refused in words, the first owner kept.
    let (ok, stdout, stderr) = run(&["mint-key", "--owner", "team-b", "--key", key.expose()]);
    assert!(!ok && stdout.is_empty() && stderr.contains("already minted"), "{stderr}");
    assert!(!stderr.contains("ConditionalCheckFailed"), "{stderr}");
    assert_eq!(t.store.resolve_api_key(&key).await.unwrap().unwrap().as_str(), "team-a");

    let (ok, _, stderr) = run(&["revoke-key", "--key", key.expose()]);
    assert!(ok, "{stderr}");
    assert_eq!(tests::parts(&get_upload::handle(&deps, get(key.expose())).await).0, 401, "revoked at once");
    let (ok, _, _) = run(&["revoke-key", "--key", key.expose()]);
    assert!(!ok, "revoking an unknown key fails");
    let (ok, _, stderr) = run(&["mint-key", "--owner", "bad owner"]);
    assert!(!ok && stderr.contains("owner must be"), "{stderr}");
}
