//! Isolation, every route, over HTTP through the local API Gateway in front
//! of every function's binary: owner B acting on owner A's uploads (by path
//! id, canonical or as a UUID, by `x-upload-id`, with a list cursor minted
//! for A) gets exactly what a missing upload gets (404, or 400 `Invalid
//! cursor`), and a revoked or unknown key gets 401 everywhere, even on its
//! own owner's uploads. Meanwhile A's records, objects (bytes and tags) and
//! usage, and everything else the stack holds, stay as they were.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::{ApiKey, ObjectKey, OwnerId, Session, UploadId};
use shared::store::layout;
use tests::{LocalApi, TestStack};

#[path = "isolation/tokens.rs"]
mod tokens;

/// How a request presents its key.
#[derive(Debug, Clone, Copy)]
enum Presented {
    Header,
    Bearer,
}

struct Client {
    http: reqwest::Client,
    base: String,
}

/// Status, the body without its `request_id`, and the headers a client could
/// tell answers apart by (all but `x-request-id` and the date).
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

impl Client {
    async fn send(
        &self,
        method: Method,
        target: &str,
        key: &ApiKey,
        how: Presented,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{target}", self.base));
        req = match how {
            Presented::Header => req.header("x-api-key", key.expose()),
            Presented::Bearer => req.header("authorization", format!("Bearer {}", key.expose())),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let mut headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .filter(|(k, _)| !["x-request-id", "date", "content-length"].contains(&k.as_str()))
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        headers.sort();
        let mut body: Value = resp.json().await.unwrap();
        assert_eq!(body["request_id"], json!(rid), "request_id in body and header");
        body.as_object_mut().unwrap().remove("request_id");
        Answer { status, body, headers }
    }
}

/// The same 128 bits as an uppercase hyphenated UUID.
fn uuid_form(id: &UploadId) -> String {
    let h = id.as_str()[4..].to_uppercase();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// A request: label, method, path, extra headers, body.
type Req = (String, Method, String, Vec<(&'static str, String)>, Option<Value>);

/// Every request a caller can make about upload `id` (written as `id`).
fn requests_on(id: &str) -> Vec<Req> {
    vec![
        (format!("GET /uploads/{id}"), Method::GET, format!("/uploads/{id}"), vec![], None),
        (format!("DELETE /uploads/{id}"), Method::DELETE, format!("/uploads/{id}"), vec![], None),
        ("DELETE /uploads".into(), Method::DELETE, "/uploads".into(), vec![("x-upload-id", id.to_owned())], None),
        (format!("POST /uploads/{id}/confirm"), Method::POST, format!("/uploads/{id}/confirm"), vec![], None),
        (format!("POST /uploads/{id}/resume"), Method::POST, format!("/uploads/{id}/resume"), vec![], None),
    ]
}

/// What the table, the bucket and the queues hold of one owner's uploads:
/// the raw items of its sessions and its usage item, and each object's
/// bytes and tags.
async fn owner_state(t: &TestStack, owner: &OwnerId, uploads: &[&Session]) -> Vec<String> {
    let mut out = Vec::new();
    for s in uploads {
        let item = t.item(&layout::session_pk(&s.id), "SESSION").await.expect("a record");
        out.push(format!("{:?}", item.into_iter().collect::<BTreeMap<_, _>>()));
        if t.object_exists(&s.object_key).await {
            out.push(format!(
                "{} {:?} {:?}",
                s.object_key,
                t.object_bytes(&s.object_key).await,
                t.object_tags(&s.object_key).await
            ));
        } else {
            out.push(format!("{} absent", s.object_key));
        }
    }
    let usage = t.item(&layout::owner_pk(owner), "USAGE").await.expect("a usage item");
    out.push(format!("{:?}", usage.into_iter().collect::<BTreeMap<_, _>>()));
    out.push(format!("{:?}", t.store.usage(owner).await.unwrap()));
    out
}

#[tokio::test]
async fn other_owners_and_dead_keys_cannot_touch_an_upload() {
    let t = TestStack::new().await;
    let (alice, alice_key) = t.owner("alice").await;
    let (bob, bob_key) = t.owner("bob").await;
    let completed = t.completed_upload(&alice, &tests::bytes(1500, 1)).await;
    // Its bytes are in S3: a confirm that got through would complete it.
    let pending = t.pending_single_with_id(&alice, UploadId::generate(), &tests::bytes(700, 2)).await;
    let multipart = t.pending_multipart(&alice, 1).await;
    let alices = [&completed, &pending, &multipart];
    let bobs_own = t.completed_upload(&bob, &tests::bytes(300, 3)).await;

    // A second key of Alice's, revoked with the operator's command.
    let (_, revoked) = t.owner("alice").await;
    let out = std::process::Command::new(local::runtime::binary_path("xtask"))
        .args(["revoke-key", "--key", revoked.expose(), "--table", &t.config.table_name])
        .envs(local::stack::local_env(&t.stack.endpoint))
        .output()
        .expect("xtask runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unknown = ApiKey::generate();

    let api = LocalApi::start(&t).await;
    let c = Client { http: reqwest::Client::new(), base: api.base.clone() };
    use Presented::*;

    // Alice's cursor, from her first page of one.
    let page = c.send(Method::GET, "/uploads?limit=1", &alice_key, Header, &[], None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let alice_cursor = page.body["next_cursor"].as_str().expect("a next page").to_owned();

    let alice_before = owner_state(&t, &alice, &alices).await;
    let before = t.snapshot().await;
    assert_eq!(before.objects.len(), 3);
    assert_eq!(before.multipart_uploads.len(), 1);

    // What a missing upload looks like to Bob, route by route.
    let absent = UploadId::generate();
    let mut missing = Vec::new();
    for (label, method, target, headers, body) in requests_on(absent.as_str()) {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = c.send(method, &target, &bob_key, Header, &headers, body).await;
        assert_eq!((a.status, &a.body), (404, &json!({"error": "Upload not found"})), "{label}");
        missing.push(a);
    }

    // Bob on each of Alice's uploads, by every route, each id written both
    // ways, the key presented both ways: exactly what a missing one gets.
    let mut cases = 0;
    for upload in alices {
        for written in [upload.id.as_str().to_owned(), uuid_form(&upload.id)] {
            for how in [Header, Bearer] {
                for (i, (label, method, target, headers, body)) in requests_on(&written).into_iter().enumerate() {
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let a = c.send(method, &target, &bob_key, how, &headers, body).await;
                    assert_eq!(a, missing[i], "bob: {label} ({how:?})");
                    cases += 1;
                }
            }
        }
    }

    // Alice's cursor is no cursor for Bob.
    for how in [Header, Bearer] {
        for target in [format!("/uploads?cursor={alice_cursor}"), format!("/uploads?limit=1&cursor={alice_cursor}")] {
            let a = c.send(Method::GET, &target, &bob_key, how, &[], None).await;
            assert_eq!((a.status, &a.body), (400, &json!({"error": "Invalid cursor"})), "bob: {target} ({how:?})");
            cases += 1;
        }
    }
    // Bob's own list shows his upload and none of Alice's.
    let a = c.send(Method::GET, "/uploads", &bob_key, Header, &[], None).await;
    assert_eq!(a.status, 200);
    let listed: BTreeSet<&str> =
        a.body["uploads"].as_array().unwrap().iter().map(|u| u["upload_id"].as_str().unwrap()).collect();
    assert_eq!(listed, BTreeSet::from([bobs_own.id.as_str()]));

    // A revoked key of Alice's and a key never minted: 401 on every route,
    // on Alice's own uploads, her cursor, and a create that would fit.
    let create = json!({"filename": "a.txt", "content_type": "text/plain", "size": 5});
    for key in [&revoked, &unknown] {
        for how in [Header, Bearer] {
            let mut requests: Vec<Req> = vec![
                ("POST /uploads".into(), Method::POST, "/uploads".into(), vec![], Some(create.clone())),
                ("GET /uploads".into(), Method::GET, "/uploads".into(), vec![], None),
                ("GET /uploads?cursor".into(), Method::GET, format!("/uploads?cursor={alice_cursor}"), vec![], None),
            ];
            for upload in alices {
                requests.extend(requests_on(upload.id.as_str()));
            }
            for (label, method, target, headers, body) in requests {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let a = c.send(method, &target, key, how, &headers, body).await;
                assert_eq!((a.status, &a.body), (401, &json!({"error": "Unauthorized"})), "{label} ({how:?})");
                cases += 1;
            }
        }
    }
    eprintln!("{cases} isolation requests, 7 routes");

    let after = t.snapshot().await;
    let diff = before.diff(&after);
    assert!(diff.is_empty(), "the requests changed the stack:\n{diff}");
    assert_eq!(owner_state(&t, &alice, &alices).await, alice_before);

    // The same requests with Alice's key do reach her uploads: the 404s
    // above were about whose they are, not about the ids.
    for upload in alices {
        let a =
            c.send(Method::GET, &format!("/uploads/{}", uuid_form(&upload.id)), &alice_key, Bearer, &[], None).await;
        assert_eq!((a.status, a.body["upload_id"].as_str()), (200, Some(upload.id.as_str())));
    }
    let a =
        c.send(Method::GET, &format!("/uploads?limit=1&cursor={alice_cursor}"), &alice_key, Header, &[], None).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["uploads"].as_array().unwrap().len(), 1);

    // A create by Bob that names Alice, her upload and its object key in
    // extra members opens a session of Bob's own, under his prefix.
    let a = c
        .send(
            Method::POST,
            "/uploads",
            &bob_key,
            Header,
            &[],
            Some(json!({
                "filename": "b.txt", "content_type": "text/plain", "size": 5,
                "owner": "alice", "upload_id": pending.id.as_str(), "object_key": pending.object_key.as_str(),
            })),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let id = UploadId::parse(a.body["upload_id"].as_str().unwrap()).unwrap();
    assert_ne!(id, pending.id);
    let session = t.store.get_session(&bob, &id).await.unwrap().expect("Bob's session");
    assert_eq!(session.object_key, ObjectKey::for_upload(&bob, &id));
    let url = a.body["upload"]["parts"][0]["url"].as_str().unwrap();
    assert!(url.contains(&format!("/uploads/bob/{id}?")), "{url}");
    assert!(t.store.get_session(&alice, &id).await.unwrap().is_none());
    assert_eq!(owner_state(&t, &alice, &alices).await, alice_before);
}
