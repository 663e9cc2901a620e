//! Browser tokens over HTTP, through the local API Gateway (its web ACL
//! included) in front of every function's binary: what a token reaches and
//! what it is refused, by scope and limits; bad, altered, expired and
//! orphaned tokens; and one rate allowance for all of a key's tokens. Each
//! refusal is checked against what the table and the bucket then hold.

use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::{ApiKey, BrowserToken, KeyDigest, Status, Timestamp, TokenId, TokenScope, UploadId};
use shared::store::Secret;
use tests::{LocalApi, TestStack};

/// A credential as a request carries it.
enum Auth<'a> {
    Key(&'a ApiKey),
    Bearer(&'a str),
    ApiKeyHeader(&'a str),
}

async fn call(
    api: &LocalApi,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", api.base));
    req = match auth {
        Auth::Key(k) => req.header("x-api-key", k.expose()),
        Auth::Bearer(t) => req.header("authorization", format!("Bearer {t}")),
        Auth::ApiKeyHeader(v) => req.header("x-api-key", v),
    };
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap(), retry_after)
}

async fn mint(api: &LocalApi, key: &ApiKey, grant: Value) -> Value {
    let (status, body, _) = call(api, Method::POST, "/tokens", Auth::Key(key), Some(grant)).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn create_body(size: u64, content_type: &str) -> Value {
    json!({"filename": "photo.png", "content_type": content_type, "size": size})
}

/// Creates an upload with `auth` and returns its id.
async fn create(api: &LocalApi, auth: Auth<'_>) -> UploadId {
    let (status, body, _) = call(api, Method::POST, "/uploads", auth, Some(create_body(1024, "image/png"))).await;
    assert_eq!(status, 201, "{body}");
    UploadId::parse(body["upload_id"].as_str().unwrap()).unwrap()
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test]
async fn a_token_reaches_what_its_scope_allows_and_nothing_else() {
    let t = TestStack::new().await;
    let api = LocalApi::start(&t).await;
    let (owner, key) = t.owner("web-app").await;
    let (_, stranger_key) = t.owner("stranger").await;

    let own = mint(&api, &key, json!({"ttl_seconds": 600})).await;
    assert_eq!((own["scope"].as_str(), own["max_size"].is_null()), (Some("own"), true), "{own}");
    let expires = Timestamp::parse(own["expires_at"].as_str().unwrap()).unwrap();
    let lifetime = expires.unix_millis() - Timestamp::now().unix_millis();
    assert!((598_000..=600_000).contains(&lifetime), "expires in {lifetime} ms");
    assert_eq!(expires.unix_millis() % 1000, 0, "a whole second");
    let own_token = own["token"].as_str().unwrap();
    let other = mint(&api, &key, json!({})).await;
    let other_token = other["token"].as_str().unwrap();

    // Scope `own`: its upload, through every route on it.
    let mine = create(&api, Auth::Bearer(own_token)).await;
    let stored = t.store.get_session(&owner, &mine).await.unwrap().unwrap();
    assert_eq!(
        stored.token_id.as_ref().map(TokenId::as_str),
        own["token_id"].as_str(),
        "the session records its token"
    );
    for (method, path) in [(Method::GET, format!("/uploads/{mine}")), (Method::POST, format!("/uploads/{mine}/resume"))]
    {
        let (status, body, _) = call(&api, method, &path, Auth::Bearer(own_token), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }

    // Not the key's uploads, nor another token's: 403, and they stay.
    let keys_upload = create(&api, Auth::Key(&key)).await;
    let others_upload = create(&api, Auth::Bearer(other_token)).await;
    for id in [&keys_upload, &others_upload] {
        for (method, path) in [
            (Method::GET, format!("/uploads/{id}")),
            (Method::POST, format!("/uploads/{id}/resume")),
            (Method::POST, format!("/uploads/{id}/confirm")),
            (Method::DELETE, format!("/uploads/{id}")),
        ] {
            let (status, body, _) = call(&api, method.clone(), &path, Auth::Bearer(own_token), None).await;
            assert_eq!((status, error(&body)), (403, "Upload is outside the token's scope"), "{method} {path}");
        }
        assert_eq!(t.store.get_session(&owner, id).await.unwrap().unwrap().status, Status::Pending);
    }
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(own_token), None).await;
    assert_eq!((status, error(&body)), (403, "Token does not allow listing"));
    // Another owner's upload is missing to a token, as to its key.
    let strangers = create(&api, Auth::Key(&stranger_key)).await;
    let (status, body, _) =
        call(&api, Method::GET, &format!("/uploads/{strangers}"), Auth::Bearer(own_token), None).await;
    assert_eq!((status, error(&body)), (404, "Upload not found"));

    // Scope `owner`: every upload of the owner, and the list.
    let wide = mint(&api, &key, json!({"scope": "owner"})).await;
    let wide_token = wide["token"].as_str().unwrap();
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(wide_token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uploads"].as_array().unwrap().len(), 3);
    let (status, _, _) =
        call(&api, Method::DELETE, &format!("/uploads/{keys_upload}"), Auth::Bearer(wide_token), None).await;
    assert_eq!(status, 200);
    assert!(t.store.get_session(&owner, &keys_upload).await.unwrap().is_none());

    // Bound to one upload: that one only; it can neither create nor list.
    let bound = mint(&api, &key, json!({"upload_id": others_upload.as_str(), "scope": "owner"})).await;
    assert_eq!(bound["upload_id"].as_str(), Some(others_upload.as_str()));
    let bound_token = bound["token"].as_str().unwrap();
    let (status, _, _) =
        call(&api, Method::GET, &format!("/uploads/{others_upload}"), Auth::Bearer(bound_token), None).await;
    assert_eq!(status, 200);
    let (status, body, _) = call(&api, Method::GET, &format!("/uploads/{mine}"), Auth::Bearer(bound_token), None).await;
    assert_eq!((status, error(&body)), (403, "Upload is outside the token's scope"));
    let (status, body, _) =
        call(&api, Method::POST, "/uploads", Auth::Bearer(bound_token), Some(create_body(1, "image/png"))).await;
    assert_eq!((status, error(&body)), (403, "Token does not allow creating uploads"));
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(bound_token), None).await;
    assert_eq!((status, error(&body)), (403, "Token does not allow listing"));
    // Minting for an upload that is not the owner's: as missing.
    let (status, body, _) =
        call(&api, Method::POST, "/tokens", Auth::Key(&key), Some(json!({"upload_id": strangers.as_str()}))).await;
    assert_eq!((status, error(&body)), (404, "Upload not found"));

    // Its own upload, deleted with the token: gone, its bytes queued for cleanup.
    let (status, _, _) = call(&api, Method::DELETE, &format!("/uploads/{mine}"), Auth::Bearer(own_token), None).await;
    assert_eq!(status, 200);
    assert!(t.store.get_session(&owner, &mine).await.unwrap().is_none());
    assert!(t.store.get_cleanup_task(&mine).await.unwrap().is_some());
}

#[tokio::test]
async fn a_tokens_limits_hold_and_it_cannot_mint() {
    let t = TestStack::new().await;
    let api = LocalApi::start(&t).await;
    let (owner, key) = t.owner("avatars").await;
    let token = mint(&api, &key, json!({"max_size": 2048, "content_type": "image/*"})).await;
    let token = token["token"].as_str().unwrap();
    for (body, message) in [
        (create_body(2049, "image/png"), "Upload larger than the token allows"),
        (create_body(10, "text/plain"), "Content type not allowed by the token"),
    ] {
        let (status, answer, _) = call(&api, Method::POST, "/uploads", Auth::Bearer(token), Some(body)).await;
        assert_eq!((status, error(&answer)), (403, message));
    }
    assert!(t.all_sessions(&owner).await.is_empty(), "a refused create wrote nothing");
    assert_eq!(t.store.usage(&owner).await.unwrap().held(), 0, "and reserved nothing");
    let (status, _, _) =
        call(&api, Method::POST, "/uploads", Auth::Bearer(token), Some(create_body(2048, "IMAGE/PNG; q=1"))).await;
    assert_eq!(status, 201);

    let (status, body, _) = call(&api, Method::POST, "/tokens", Auth::Bearer(token), Some(json!({}))).await;
    assert_eq!((status, error(&body)), (403, "Tokens cannot mint tokens"));
    // A token is a Bearer credential only; in x-api-key it is junk.
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::ApiKeyHeader(token), None).await;
    assert_eq!((status, error(&body)), (401, "Unauthorized"));
    for (grant, message) in
        [(json!({"ttl_seconds": 3601}), "Invalid ttl_seconds"), (json!({"scope": "everything"}), "Invalid scope")]
    {
        let (status, body, _) = call(&api, Method::POST, "/tokens", Auth::Key(&key), Some(grant)).await;
        assert_eq!((status, error(&body)), (400, message));
    }
}

#[tokio::test]
async fn bad_expired_and_orphaned_tokens_are_401s() {
    let t = TestStack::new().await;
    let api = LocalApi::start(&t).await;

    // Before any mint there is no token secret: a token presented then is
    // invalid, and the secret is created (once), so that junk tokens cost
    // no read each afterwards.
    let forged = BrowserToken {
        id: TokenId::generate(),
        key: ApiKey::generate().digest(),
        expires_at: Timestamp::now().plus_seconds(600),
        scope: TokenScope::Owner,
        max_size: None,
        content_type: None,
        upload_id: None,
    };
    assert!(t.item("CONFIG", "TOKEN_SECRET").await.is_none());
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(&forged.encode(&[0u8; 32])), None).await;
    assert_eq!((status, error(&body)), (401, "Invalid token"));
    let created = t.item("CONFIG", "TOKEN_SECRET").await.expect("the secret, created by the first token seen");

    let (_, key) = t.owner("web-app").await;
    let minted = mint(&api, &key, json!({"scope": "owner"})).await;
    let token = minted["token"].as_str().unwrap().to_owned();
    let (status, _, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(&token), None).await;
    assert_eq!(status, 200);

    // Altered, or signed with another secret: invalid.
    let mut altered = token.clone().into_bytes();
    let at = altered.len() - 50;
    altered[at] = if altered[at] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [altered.as_str(), &forged.encode(&[0u8; 32]), "ubt_", "ubt_x.y"] {
        let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(bad), None).await;
        assert_eq!((status, error(&body)), (401, "Invalid token"), "{bad}");
    }

    // The mint used the secret the first token created.
    let secret = t.store.secret(Secret::Token).await.unwrap().to_vec();
    assert_eq!(created["secret"].as_s().unwrap(), &shared::domain::hex(&secret));
    // Signed with the table's secret, past its expiry: expired.
    let digest = KeyDigest::parse(key.digest().as_str()).unwrap();
    let expired = BrowserToken { key: digest.clone(), expires_at: Timestamp::now().plus_seconds(-1), ..forged.clone() };
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(&expired.encode(&secret)), None).await;
    assert_eq!((status, error(&body)), (401, "Token expired"));
    let live = BrowserToken { key: digest, ..forged.clone() };
    let (status, _, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(&live.encode(&secret)), None).await;
    assert_eq!(status, 200, "the same claims, unexpired, are served");

    // The minting key revoked: its tokens die with it.
    assert!(t.store.revoke_api_key(&key).await.unwrap());
    let (status, body, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(&token), None).await;
    assert_eq!((status, error(&body)), (401, "Unauthorized"));
}

/// All of a key's tokens share one allowance of `KeyRateLimit` a minute,
/// counted by the functions: the web ACL counts each token apart (it
/// cannot tell a token's key), so without that count each mint would be a
/// fresh allowance. The key itself keeps its own allowance at the edge.
#[tokio::test]
async fn a_keys_tokens_share_one_rate_allowance() {
    let t = TestStack::with_parameters(&[("KeyRateLimit", "10")]).await;
    let api = LocalApi::start(&t).await;
    let (_, key) = t.owner("busy").await;
    // All in one 60 s window: not within 20 s of its end.
    let into_window = Timestamp::now().unix_seconds() % 60;
    if into_window > 40 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - into_window) as u64)).await;
    }
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(mint(&api, &key, json!({"scope": "owner"})).await["token"].as_str().unwrap().to_owned());
    }
    let mut served = 0;
    let mut refused = Vec::new();
    for i in 0..15 {
        let (status, body, retry_after) = call(&api, Method::GET, "/uploads", Auth::Bearer(&tokens[i % 3]), None).await;
        match status {
            200 => served += 1,
            429 => refused.push((body, retry_after)),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(served, 10, "three tokens of one key, five requests each, one allowance of 10");
    let (body, retry_after) = &refused[0];
    assert_eq!(error(body), "Rate limit exceeded");
    let wait: u64 = retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let window = Timestamp::now().unix_seconds() / 60 * 60;
    let counter = t.item(&format!("RATE#{}", key.digest().as_str()), &format!("WINDOW#{window}")).await.unwrap();
    assert_eq!(counter["requests"].as_n().unwrap(), "10", "refusals are not counted");
    let ttl: i64 = counter["ttl"].as_n().unwrap().parse().unwrap();
    assert_eq!(ttl, window + 120, "TTL removes it a window after it ends");
    // A token of another key is not held back by this one's.
    let (_, other_key) = t.owner("calm").await;
    let calm = mint(&api, &other_key, json!({"scope": "owner"})).await;
    let (status, _, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(calm["token"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
}

/// One page cannot spend its key's shared allowance: the web ACL limits
/// each token to `TokenRateLimit`, far below `KeyRateLimit`, so another
/// token of the same key is still served.
#[tokio::test]
async fn one_token_is_held_to_its_own_allowance_before_its_keys() {
    let t = TestStack::with_parameters(&[("KeyRateLimit", "100"), ("TokenRateLimit", "10")]).await;
    let api = LocalApi::start(&t).await;
    let (_, key) = t.owner("pages").await;
    let greedy = mint(&api, &key, json!({"scope": "owner"})).await["token"].as_str().unwrap().to_owned();
    let polite = mint(&api, &key, json!({"scope": "owner"})).await["token"].as_str().unwrap().to_owned();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(call(&api, Method::GET, "/uploads", Auth::Bearer(&greedy), None).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    assert_eq!(&statuses[10..], [429, 429], "the edge refuses the rest");
    let (status, _, _) = call(&api, Method::GET, "/uploads", Auth::Bearer(&polite), None).await;
    assert_eq!(status, 200, "the key's other tokens go on");
}
