//! A random walk over one owner's uploads, one step at a time, with faults
//! (a queue that is down when a delete commits, S3 down during a confirm),
//! checking after every step that the owner's usage item says exactly what
//! the sessions that exist say: used bytes are the completed sizes,
//! reserved bytes and the pending count are the pending sessions', the
//! quota holds, and every completed upload's object is there and untagged.
//! At the end the sweeper and cleanup leave no task, object or part behind.

use bench::rng::Rng;
use serde_json::Value;
use shared::config::UploadPolicy;
use shared::deletion::Deleter;
use shared::domain::{ObjectKey, OwnerId, Status, Timestamp, UploadId};
use shared::objects::Objects;
use shared::queue::CleanupQueue;
use shared::uploads::Uploads;
use tests::{api_request, bytes, confirm_request, create_request, parts, put_parts, TestStack};

const QUOTA: u64 = 10_000;
const MAX_PENDING: u64 = 4;
const STEPS: usize = 60;

/// Clients of a service that is down: every call fails to connect (at once:
/// no retries).
fn down() -> aws_config::SdkConfig {
    let local = local::stack::sdk_config("http://127.0.0.1:9");
    local.into_builder().retry_config(aws_config::retry::RetryConfig::disabled()).build()
}

async fn check(t: &TestStack, owner: &OwnerId, step: &str) {
    let context = format!("after {step}");
    let sessions = t.assert_usage_matches_sessions(owner, &context).await;
    let (mut held, mut pending) = (0, 0);
    for s in &sessions {
        held += s.size;
        if s.status == Status::Completed {
            let object_key = ObjectKey::for_upload(owner, &s.id);
            assert!(t.object_tags(&object_key).await.is_empty(), "{context}: a completed object is tagged");
        } else {
            pending += 1;
        }
    }
    assert!(held <= QUOTA, "{context}: the quota does not hold");
    assert!(pending <= MAX_PENDING, "{context}: too many pending");
}

async fn walk(seed: u64) {
    let t = TestStack::new().await;
    let (owner, key) = t.owner("walker").await;
    let policy = UploadPolicy { quota_bytes: QUOTA, max_pending_uploads: MAX_PENDING, ..UploadPolicy::default() };
    let deps = t.uploads(policy);
    let s3_down = Uploads { objects: Objects::new(aws_sdk_s3::Client::new(&down())), ..deps.clone() };
    let deleter = t.deleter();
    let queue_down =
        Deleter { queue: CleanupQueue::new(aws_sdk_sqs::Client::new(&down()), "http://127.0.0.1:9/q"), ..t.deleter() };
    let mut rng = Rng(seed);
    // Create answers of the sessions the walk opened: id → answer.
    let mut opened: Vec<(UploadId, Value)> = Vec::new();
    let (mut faults, mut completions) = (0, 0);
    let mut sent: Vec<UploadId> = Vec::new();

    for n in 0..STEPS {
        let pick = |rng: &mut Rng, opened: &Vec<(UploadId, Value)>| {
            (!opened.is_empty()).then(|| opened[(rng.next() % opened.len() as u64) as usize].clone())
        };
        let step = match rng.next() % 8 {
            0 | 1 => {
                let size = 1 + rng.next() % 3000;
                let (status, body) =
                    parts(&create_upload::handle(&deps, create_request(&key, "w.bin", "a/b", size)).await);
                match status {
                    201 => opened.push((UploadId::parse(body["upload_id"].as_str().unwrap()).unwrap(), body)),
                    403 => assert!(
                        ["Quota exceeded", "Too many pending uploads"].contains(&body["error"].as_str().unwrap()),
                        "{body}"
                    ),
                    other => panic!("create answered {other}: {body}"),
                }
                format!("create {size}: {status}")
            }
            2 | 6 => match pick(&mut rng, &opened) {
                Some((id, created)) => {
                    let statuses = put_parts(
                        &created["upload"],
                        &bytes(created["size"].as_u64().unwrap() as usize, n as u64),
                        None,
                    )
                    .await;
                    sent.push(id.clone());
                    format!("put {id}: {statuses:?}")
                }
                None => continue,
            },
            // Mostly a session whose bytes were sent, else any.
            3 | 4 => match if !sent.is_empty() && rng.next() % 4 != 0 {
                Some((sent[(rng.next() % sent.len() as u64) as usize].clone(), Value::Null))
            } else {
                pick(&mut rng, &opened)
            } {
                Some((id, _)) => {
                    let (status, body) =
                        parts(&confirm_upload::handle(&deps, confirm_request(&key, id.as_str())).await);
                    assert!([200, 404, 409].contains(&status), "confirm answered {status}: {body}");
                    format!("confirm {id}: {status}")
                }
                None => continue,
            },
            5 => match pick(&mut rng, &opened) {
                // S3 is down: the confirm fails before any commit.
                Some((id, _)) => {
                    let (status, body) =
                        parts(&confirm_upload::handle(&s3_down, confirm_request(&key, id.as_str())).await);
                    assert!([500, 404].contains(&status) || body["status"] == "completed", "{status} {body}");
                    if status == 500 {
                        assert_eq!(body["error"], "Failed to confirm upload");
                    }
                    format!("confirm with S3 down {id}: {status}")
                }
                None => continue,
            },
            _ => match pick(&mut rng, &opened) {
                Some((id, _)) => {
                    // Every other delete commits while the queue is down.
                    let faulty = rng.next() % 2 == 0;
                    let d = if faulty { &queue_down } else { &deleter };
                    let req = api_request(
                        "DELETE",
                        &format!("/uploads/{id}"),
                        "/uploads/{upload_id}",
                        &[("x-api-key", key.expose())],
                    );
                    let (status, body) =
                        parts(&delete_upload::handle(&delete_upload::Deps { deleter: d.clone() }, req).await);
                    assert!([200, 404].contains(&status), "delete answered {status}: {body}");
                    if status == 200 {
                        assert!(t.store.get_cleanup_task(&id).await.unwrap().is_some(), "the task is durable");
                        opened.retain(|(o, _)| o != &id);
                        sent.retain(|o| o != &id);
                    }
                    format!("delete{} {id}: {status}", if faulty { " with the queue down" } else { "" })
                }
                None => continue,
            },
        };
        eprintln!("step {n}: {step}");
        faults += usize::from(step.contains(" down"));
        completions += usize::from(step.starts_with("confirm") && step.ends_with(": 200"));
        check(&t, &owner, &step).await;
    }
    assert!(faults >= 3 && completions >= 2, "the walk hit {faults} faults and {completions} completions");

    // Everything left pending expires; the sweeper re-drives the tasks whose
    // message was lost; cleanup removes every byte.
    let sweeper = sweeper::Deps { redrive_after_seconds: 0, ..t.sweeper_deps(deps.clone()) };
    let later = Timestamp::now().plus_seconds(2 * 86_400);
    sweeper::sweep(&sweeper, later).await.unwrap();
    check(&t, &owner, "expiry").await;
    t.drain_cleanup().await;
    let usage = t.store.usage(&owner).await.unwrap();
    assert_eq!((usage.reserved, usage.pending), (0, 0));
    let completed_keys: Vec<String> = {
        let page = t.store.list_sessions(&owner, 100, None).await.unwrap();
        page.sessions.iter().map(|s| ObjectKey::for_upload(&owner, &s.id).as_str().to_owned()).collect()
    };
    for key in t.all_keys().await {
        assert!(completed_keys.contains(&key), "object {key} belongs to no session");
    }
    for (id, _) in &opened {
        if t.store.get_session(&owner, id).await.unwrap().is_none() {
            assert!(t.store.get_cleanup_task(id).await.unwrap().is_none(), "task of {id} left");
        }
    }
}

#[tokio::test]
async fn usage_matches_the_sessions_after_every_step_and_fault() {
    for seed in [0x5eed_0001, 0x5eed_0002] {
        walk(seed).await;
    }
}
