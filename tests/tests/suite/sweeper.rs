//! The sweeper: expiring abandoned sessions through the delete path,
//! re-driving stuck cleanups, and two runs at once doing no double work.
//! Also the cleanup's final pass after presigned URLs expire.

use std::time::Duration;

use shared::domain::{ObjectKey, OwnerId, Timestamp, UploadId};
use shared::queue::CleanupMessage;
use shared::store::{CleanupTask, DeleteScope};
use sweeper::{sweep, Deps, Report};
use tests::TestStack;

fn deps(t: &TestStack) -> Deps {
    t.sweeper_deps(t.uploads(shared::config::UploadPolicy { quota_bytes: tests::QUOTA, ..Default::default() }))
}

#[tokio::test]
async fn expired_multipart_session_is_removed_with_its_parts() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("alice").unwrap();
    let expired = t.pending_multipart_expiring(&owner, 2, Timestamp::now().plus_seconds(-60)).await;
    let fresh = t.pending_multipart(&owner, 1).await;
    let done = t.completed_upload(&owner, &[1u8; 321]).await;

    let report = sweep(&deps(&t), Timestamp::now()).await.unwrap();
    assert_eq!(report, Report { expired: 1, ..Report::default() });
    assert!(t.store.get_session(&owner, &expired.id).await.unwrap().is_none());
    assert!(t.store.get_session(&owner, &fresh.id).await.unwrap().is_some());
    assert!(t.store.get_session(&owner, &done.id).await.unwrap().is_some());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), 321, "usage unchanged");
    let task = t.store.get_cleanup_task(&expired.id).await.unwrap().expect("task written with the deletion");
    assert_eq!(task.multipart_upload_id.as_deref(), Some(expired.multipart.as_ref().unwrap().s3_upload_id.as_str()));

    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(CleanupMessage::parse(messages[0].body().unwrap()), Some(expired.id.clone()));
    assert!(t.run_cleanup(&messages).await.is_empty());
    assert_eq!(t.multipart_uploads_for(&expired.object_key).await, 0);
    assert_eq!(t.multipart_uploads_for(&fresh.object_key).await, 1);
    assert!(t.store.get_cleanup_task(&expired.id).await.unwrap().is_none());

    // Nothing left to do.
    assert_eq!(sweep(&deps(&t), Timestamp::now()).await.unwrap(), Report::default());
}

#[tokio::test]
async fn a_session_confirmed_after_the_sweeper_read_it_is_left_alone() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("bob").unwrap();
    let s = t.pending_multipart_expiring(&owner, 1, Timestamp::now().plus_seconds(-1)).await;
    // Completed in the store (the sweeper's read would be stale now).
    t.store.complete_session(&owner, &s.id).await.unwrap();
    let deleted = t.deleter().delete(&owner, &s.id, DeleteScope::ExpiredPending(Timestamp::now())).await.unwrap();
    assert!(deleted.is_none());
    assert!(t.store.get_session(&owner, &s.id).await.unwrap().is_some());
    assert_eq!(t.store.bytes_used(&owner).await.unwrap(), s.size);
}

/// A task whose message never made it (written `age` seconds ago).
async fn stuck_task(t: &TestStack, owner: &OwnerId, age: i64) -> CleanupTask {
    let id = UploadId::generate();
    let key = ObjectKey::for_upload(owner, &id);
    t.put_object(&key, b"left behind").await;
    let at = Timestamp::now().plus_seconds(-age);
    let task = CleanupTask {
        upload_id: id,
        owner: owner.clone(),
        bucket: t.config.bucket_name.clone(),
        object_key: key,
        multipart_upload_id: None,
        created_at: at,
        final_pass_at: at,
        attempts: 0,
    };
    t.store.put_cleanup_task(&task).await.unwrap();
    task
}

#[tokio::test]
async fn stuck_cleanup_tasks_are_redriven_and_completed() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("carol").unwrap();
    let stuck = stuck_task(&t, &owner, 600).await;
    let recent = stuck_task(&t, &owner, 10).await;

    let report = sweep(&deps(&t), Timestamp::now()).await.unwrap();
    assert_eq!(report, Report { redriven: 1, ..Report::default() });
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(CleanupMessage::parse(messages[0].body().unwrap()), Some(stuck.upload_id.clone()));
    // Claimed: the next run within five minutes leaves it alone.
    assert_eq!(sweep(&deps(&t), Timestamp::now()).await.unwrap().redriven, 0);

    assert!(t.run_cleanup(&messages).await.is_empty());
    assert!(!t.object_exists(&stuck.object_key).await);
    assert!(t.store.get_cleanup_task(&stuck.upload_id).await.unwrap().is_none());
    assert!(t.object_exists(&recent.object_key).await, "a recent task is not stuck yet");
    assert!(t.store.get_cleanup_task(&recent.upload_id).await.unwrap().is_some());
}

#[tokio::test]
async fn two_concurrent_sweeps_do_no_double_work() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("dave").unwrap();
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(t.pending_multipart_expiring(&owner, 1, Timestamp::now().plus_seconds(-5)).await);
    }
    for _ in 0..4 {
        stuck_task(&t, &owner, 900).await;
    }
    let d = deps(&t);
    let now = Timestamp::now();
    let (a, b) = tokio::join!(sweep(&d, now), sweep(&d, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.expired + b.expired, 6, "{a:?} {b:?}");
    assert_eq!(a.redriven + b.redriven, 4, "{a:?} {b:?}");
    assert_eq!(a.failed + b.failed, 0);
    // One message per deleted session and per stuck task, no more.
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 10);
    let mut ids: Vec<_> = messages.iter().map(|m| CleanupMessage::parse(m.body().unwrap()).unwrap()).collect();
    ids.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    ids.dedup();
    assert_eq!(ids.len(), 10);
    for s in &sessions {
        assert!(t.store.get_session(&owner, &s.id).await.unwrap().is_none());
    }
    assert!(t.run_cleanup(&messages).await.is_empty());
    for s in &sessions {
        assert_eq!(t.multipart_uploads_for(&s.object_key).await, 0);
    }
}

#[tokio::test]
async fn a_late_put_after_deletion_is_removed_by_the_final_pass() {
    let t = TestStack::new().await;
    let (owner, _key) = t.owner("erin").await;
    let upload = t.completed_upload(&owner, b"first bytes").await;
    let deleter = shared::deletion::Deleter { final_pass_delay_seconds: 2, ..t.deleter() };
    deleter.delete(&owner, &upload.id, DeleteScope::Any).await.unwrap().unwrap();

    // First pass: bytes gone, task kept, final pass scheduled as a delayed message.
    assert!(t.run_cleanup(&t.receive_cleanup_messages().await).await.is_empty());
    assert!(!t.object_exists(&upload.object_key).await);
    assert!(t.store.get_cleanup_task(&upload.id).await.unwrap().is_some());
    assert!(t.receive_cleanup_messages().await.is_empty(), "the final pass is delayed");
    // The sweeper does not count a task waiting for its final pass as stuck.
    let d = Deps { redrive_after_seconds: 0, ..deps(&t) };
    assert_eq!(sweep(&d, Timestamp::now()).await.unwrap().redriven, 0);

    // A client still holding a presigned URL sends bytes after the deletion.
    t.put_object(&upload.object_key, b"late bytes").await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 1, "the delayed final-pass message");
    assert!(t.run_cleanup(&messages).await.is_empty());
    assert!(!t.object_exists(&upload.object_key).await);
    assert!(t.store.get_cleanup_task(&upload.id).await.unwrap().is_none());
}

#[tokio::test]
async fn redrives_count_attempts_back_off_and_report_stuck_tasks() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("fred").unwrap();
    let task = stuck_task(&t, &owner, 600).await;
    let d = deps(&t);
    let now = Timestamp::now();
    assert_eq!(sweep(&d, now).await.unwrap().redriven, 1);
    assert_eq!(t.store.get_cleanup_task(&task.upload_id).await.unwrap().unwrap().attempts, 1);
    // The second re-drive comes 10 minutes later (twice the re-drive age), not sooner.
    assert_eq!(sweep(&d, now.plus_seconds(590)).await.unwrap().redriven, 0);
    assert_eq!(sweep(&d, now.plus_seconds(610)).await.unwrap().redriven, 1);
    let task = t.store.get_cleanup_task(&task.upload_id).await.unwrap().unwrap();
    assert_eq!(task.attempts, 2);
    // Then 20 minutes.
    assert_eq!(sweep(&d, now.plus_seconds(610 + 1190)).await.unwrap().redriven, 0);
    assert_eq!(sweep(&d, now.plus_seconds(610 + 1210)).await.unwrap().redriven, 1);

    // Past the bound: reported stuck, and still re-driven.
    let worn = CleanupTask { attempts: 8, ..stuck_task(&t, &owner, 600).await };
    t.store.put_cleanup_task(&worn).await.unwrap();
    let report = sweep(&d, Timestamp::now()).await.unwrap();
    assert_eq!((report.redriven, report.stuck), (1, 1), "{report:?}");
    assert_eq!(t.store.get_cleanup_task(&worn.upload_id).await.unwrap().unwrap().attempts, 9);
    // Every re-drive sent its message; cleanup then finishes both tasks.
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 4);
    assert!(t.run_cleanup(&messages).await.is_empty());
    assert!(t.store.get_cleanup_task(&worn.upload_id).await.unwrap().is_none());
    assert!(!t.object_exists(&worn.object_key).await);
}

#[tokio::test]
async fn an_unreadable_item_is_skipped_and_the_rest_is_swept() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    let t = TestStack::new().await;
    let owner = OwnerId::parse("gina").unwrap();
    // Due, but missing every attribute a session has.
    let past = Timestamp::now().plus_seconds(-3600).to_rfc3339();
    t.ddb
        .put_item()
        .table_name(&t.config.table_name)
        .item("pk", S("UPLOAD#broken".into()))
        .item("sk", S("SESSION".into()))
        .item("gsi2pk", S("DUE#PENDING#00".into()))
        .item("gsi2sk", S(format!("{past}#broken")))
        .send()
        .await
        .unwrap();
    let stuck_bad = Timestamp::now().plus_seconds(-7200).to_rfc3339();
    t.ddb
        .put_item()
        .table_name(&t.config.table_name)
        .item("pk", S("CLEANUP#broken".into()))
        .item("sk", S("CLEANUP".into()))
        .item("gsi2pk", S("DUE#CLEANUP#00".into()))
        .item("gsi2sk", S(format!("{stuck_bad}#broken")))
        .send()
        .await
        .unwrap();
    let expired = t.pending_multipart_expiring(&owner, 1, Timestamp::now().plus_seconds(-60)).await;
    let stuck = stuck_task(&t, &owner, 900).await;

    let report = sweep(&deps(&t), Timestamp::now()).await.unwrap();
    assert_eq!((report.expired, report.redriven, report.failed), (1, 1, 2), "{report:?}");
    assert!(t.store.get_session(&owner, &expired.id).await.unwrap().is_none());
    assert_eq!(t.store.get_cleanup_task(&stuck.upload_id).await.unwrap().unwrap().attempts, 1);
    assert!(t.item("UPLOAD#broken", "SESSION").await.is_some(), "left for a person to look at");
}
