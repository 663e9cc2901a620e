//! GET /uploads: the caller's uploads only, newest first, opaque signed
//! cursors, bounded limits.

use std::collections::HashSet;

use serde_json::Value;
use shared::domain::ApiKey;
use tests::{api_request_with_query, parts, TestStack};

async fn list(deps: &list_uploads::Deps, key: &ApiKey, query: &[(&str, &str)]) -> (u16, Value) {
    let req = api_request_with_query("/uploads", &[("x-api-key", key.expose())], query);
    parts(&list_uploads::handle(deps, req).await)
}

#[tokio::test]
async fn pages_cover_everything_once_newest_first() {
    let t = TestStack::new().await;
    let (alice, alice_key) = t.owner("alice").await;
    let (bob, bob_key) = t.owner("bob").await;
    let mut mine = Vec::new();
    for i in 0..7u8 {
        mine.push(t.completed_upload(&alice, &[i; 10]).await.id);
    }
    for _ in 0..2 {
        mine.push(t.pending_multipart(&alice, 0).await.id);
    }
    let mut bobs = Vec::new();
    for i in 0..3u8 {
        bobs.push(t.completed_upload(&bob, &[i; 5]).await.id);
    }
    let deps = list_uploads::Deps::new(t.store.clone());

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "4")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let (status, body) = list(&deps, &alice_key, &query).await;
        assert_eq!(status, 200, "{body}");
        let uploads = body["uploads"].as_array().unwrap();
        assert!(uploads.len() <= 4);
        seen.extend(
            uploads
                .iter()
                .map(|u| (u["created_at"].as_str().unwrap().to_owned(), u["upload_id"].as_str().unwrap().to_owned())),
        );
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert!(pages >= 3);
    let ids: HashSet<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), seen.len(), "no duplicates");
    let expected: HashSet<&str> = mine.iter().map(|id| id.as_str()).collect();
    assert_eq!(ids, expected, "no gaps, nobody else's");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    // Bob sees only his.
    let (_, body) = list(&deps, &bob_key, &[]).await;
    let theirs: HashSet<&str> =
        body["uploads"].as_array().unwrap().iter().map(|u| u["upload_id"].as_str().unwrap()).collect();
    assert_eq!(theirs, bobs.iter().map(|id| id.as_str()).collect());
    assert!(body["next_cursor"].is_null());
}

#[tokio::test]
async fn forged_and_foreign_cursors_and_bad_limits_are_400() {
    let t = TestStack::new().await;
    let (alice, alice_key) = t.owner("alice").await;
    let (_bob, bob_key) = t.owner("bob").await;
    for i in 0..3u8 {
        t.completed_upload(&alice, &[i; 3]).await;
    }
    let deps = list_uploads::Deps::new(t.store.clone());
    let (_, first) = list(&deps, &alice_key, &[("limit", "1")]).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();

    // Bob replaying Alice's cursor: 400, not Alice's data.
    let (status, body) = list(&deps, &bob_key, &[("cursor", &cursor)]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Invalid cursor")));
    assert!(body.get("uploads").is_none());

    let (pos, tag) = cursor.split_once('.').unwrap();
    let mut flipped = pos.to_owned().into_bytes();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let forged = vec![
        format!("{}.{tag}", String::from_utf8(flipped).unwrap()),
        format!("{pos}.{}", "A".repeat(tag.len())),
        "garbage".to_owned(),
        String::new(),
        "x".repeat(2000),
    ];
    for c in forged {
        let (status, body) = list(&deps, &alice_key, &[("cursor", &c)]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("Invalid cursor")), "{c:?}");
    }
    for limit in ["0", "101", "-5", "ten", ""] {
        let (status, body) = list(&deps, &alice_key, &[("limit", limit)]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("Invalid limit")), "{limit:?}");
    }
    let (status, body) = list(&deps, &alice_key, &[("limit", "1"), ("limit", "2")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("Invalid limit")));
    // The real cursor still works for its owner.
    let (status, body) = list(&deps, &alice_key, &[("cursor", &cursor)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["uploads"].as_array().unwrap().len(), 2);
    // No key: 401 before anything else.
    let req = api_request_with_query("/uploads", &[], &[("limit", "0")]);
    assert_eq!(parts(&list_uploads::handle(&deps, req).await).0, 401);
}
