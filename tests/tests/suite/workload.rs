//! A randomized workload from two owners: a few hundred create / send /
//! confirm / delete operations, some racing each other. Afterwards, for
//! each owner, `bytes_used` equals the sum of the sizes of their completed
//! uploads, and once cleanup has drained, every object in the bucket belongs
//! to a live session.

use std::collections::HashMap;
use std::sync::Arc;

use bench::rng::Rng;
use futures::future::join_all;
use shared::config::UploadPolicy;
use shared::domain::{ApiKey, Status, UploadId};
use tests::{api_request, bytes, confirm_request, create_request, parts, put_parts, TestStack};

const WORKERS: u64 = 8;
/// Tight enough that creates are refused now and then, with abandoned
/// sessions holding their reservations.
const QUOTA: u64 = 60_000;
const LIFECYCLES_PER_WORKER: u64 = 16;

#[derive(Default, Debug)]
struct Tally {
    ops: usize,
    confirmed: usize,
    quota_refusals: usize,
    deleted: usize,
}

async fn lifecycle(t: &TestStack, deps: &shared::uploads::Uploads, key: &ApiKey, rng: &mut Rng, tally: &mut Tally) {
    let size = 1 + rng.next() % 4000;
    let req = create_request(key, "w.bin", "application/octet-stream", size);
    let (status, created) = parts(&create_upload::handle(deps, req).await);
    tally.ops += 1;
    if status == 403 {
        tally.quota_refusals += 1;
        return;
    }
    assert_eq!(status, 201, "{created}");
    let id = created["upload_id"].as_str().unwrap().to_owned();
    if rng.chance(85) {
        assert_eq!(put_parts(&created["upload"], &bytes(size as usize, rng.next()), None).await, vec![200]);
        tally.ops += 1;
    }
    let confirm = || {
        let req = confirm_request(key, &id);
        async move { parts(&confirm_upload::handle(deps, req).await) }
    };
    let delete = || {
        let req =
            api_request("DELETE", &format!("/uploads/{id}"), "/uploads/{upload_id}", &[("x-api-key", key.expose())]);
        async move { parts(&delete_upload::handle(&t.delete_deps(), req).await) }
    };
    let (c, d) = match rng.next() % 4 {
        // Confirm, and sometimes delete later.
        0 | 1 => {
            let c = confirm().await;
            let d = if rng.chance(50) { Some(delete().await) } else { None };
            (Some(c), d)
        }
        // Confirm and delete racing.
        2 => {
            let (c, d) = tokio::join!(confirm(), delete());
            (Some(c), Some(d))
        }
        // Abandon or delete while pending.
        _ => (None, if rng.chance(50) { Some(delete().await) } else { None }),
    };
    if let Some((status, body)) = c {
        tally.ops += 1;
        match status {
            200 => tally.confirmed += 1,
            403 => tally.quota_refusals += 1,
            404 | 409 => {}
            other => panic!("confirm answered {other}: {body}"),
        }
    }
    if let Some((status, body)) = d {
        tally.ops += 1;
        match status {
            200 => tally.deleted += 1,
            404 => {}
            other => panic!("delete answered {other}: {body}"),
        }
    }
}

#[tokio::test]
async fn usage_and_objects_stay_exact_under_a_random_workload() {
    let t = Arc::new(TestStack::new().await);
    let deps = Arc::new(t.uploads(UploadPolicy { quota_bytes: QUOTA, ..UploadPolicy::default() }));
    let owners = [t.owner("north").await, t.owner("south").await];

    let tallies = join_all((0..WORKERS).map(|w| {
        let (t, deps) = (t.clone(), deps.clone());
        let key = owners[(w % 2) as usize].1.clone();
        tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
            let mut tally = Tally::default();
            for _ in 0..LIFECYCLES_PER_WORKER {
                lifecycle(&t, &deps, &key, &mut rng, &mut tally).await;
            }
            tally
        })
    }))
    .await;
    let tallies: Vec<Tally> = tallies.into_iter().map(|r| r.unwrap()).collect();
    let ops: usize = tallies.iter().map(|t| t.ops).sum();
    let confirmed: usize = tallies.iter().map(|t| t.confirmed).sum();
    let deleted: usize = tallies.iter().map(|t| t.deleted).sum();
    let refused: usize = tallies.iter().map(|t| t.quota_refusals).sum();
    println!("{ops} operations: {confirmed} confirmed, {deleted} deleted, {refused} refused by quota");
    assert!(ops >= 300, "only {ops} operations");
    assert!(confirmed > 0 && deleted > 0);

    t.drain_cleanup().await;

    let mut live: HashMap<String, UploadId> = HashMap::new();
    let mut completed = Vec::new();
    for (owner, _) in &owners {
        let (mut completed_bytes, mut reserved_bytes, mut pending) = (0, 0, 0);
        let mut after: Option<String> = None;
        loop {
            let page = t.store.list_sessions(owner, 100, after.as_deref()).await.unwrap();
            for s in &page.sessions {
                if s.status == Status::Completed {
                    completed_bytes += s.size;
                    completed.push(shared::domain::ObjectKey::for_upload(owner, &s.id));
                } else {
                    reserved_bytes += s.size;
                    pending += 1;
                }
                live.insert(shared::domain::ObjectKey::for_upload(owner, &s.id).as_str().to_owned(), s.id.clone());
            }
            match page.last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        let usage = t.store.usage(owner).await.unwrap();
        assert_eq!(usage.used, completed_bytes, "usage of {owner}");
        assert_eq!((usage.reserved, usage.pending), (reserved_bytes, pending), "reservations of {owner}");
        assert!(completed_bytes + reserved_bytes <= QUOTA, "quota held");
    }
    for key in t.all_keys().await {
        assert!(live.contains_key(&key), "object {key} belongs to no live session");
    }
    // Every completed upload keeps its object, free of the tag the lifecycle
    // rule expires.
    for key in &completed {
        let tags = t.object_tags(key).await;
        assert!(tags.is_empty(), "completed upload's object {} carries {tags:?}", key.as_str());
    }
    // And no cleanup task is left behind.
    let far = shared::domain::Timestamp::now().plus_seconds(86_400);
    for shard in 0..shared::store::DUE_SHARDS {
        let (tasks, _) = t.store.due_cleanup_tasks(shard, far, 100, None).await.unwrap();
        assert!(tasks.is_empty(), "{} cleanup tasks left in shard {shard}", tasks.len());
    }
}
