//! The cleanup function's batch behaviour against moto.

use shared::domain::{ObjectKey, OwnerId, Timestamp, UploadId};
use shared::queue::CleanupMessage;
use shared::store::CleanupTask;
use tests::TestStack;

/// A task for `owner`'s object `id` in `bucket`, and its message on the queue.
async fn task(t: &TestStack, owner: &OwnerId, bucket: &str, with_object: bool) -> CleanupTask {
    let id = UploadId::generate();
    let key = ObjectKey::for_upload(owner, &id);
    if with_object {
        t.put_object(&key, b"bytes").await;
    }
    let task = CleanupTask {
        upload_id: id.clone(),
        owner: owner.clone(),
        bucket: bucket.to_owned(),
        object_key: key,
        multipart_upload_id: None,
        created_at: Timestamp::now(),
        final_pass_at: Timestamp::now(),
        attempts: 0,
    };
    t.store.put_cleanup_task(&task).await.unwrap();
    t.queue.enqueue(&id).await.unwrap();
    task
}

#[tokio::test]
async fn one_failing_s3_call_fails_only_its_message() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("ivan").unwrap();
    let good_a = task(&t, &owner, &t.config.bucket_name, true).await;
    // A bucket that does not exist: its DeleteObjects call fails.
    let broken = task(&t, &owner, "no-such-bucket-for-cleanup", false).await;
    let good_b = task(&t, &owner, &t.config.bucket_name, true).await;

    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 3);
    let failed = t.run_cleanup(&messages).await;

    let broken_msg =
        messages.iter().find(|m| CleanupMessage::parse(m.body().unwrap()) == Some(broken.upload_id.clone())).unwrap();
    assert_eq!(failed, vec![broken_msg.message_id().unwrap().to_owned()]);
    for good in [&good_a, &good_b] {
        assert!(!t.object_exists(&good.object_key).await);
        assert!(t.store.get_cleanup_task(&good.upload_id).await.unwrap().is_none());
    }
    assert_eq!(t.store.get_cleanup_task(&broken.upload_id).await.unwrap(), Some(broken), "kept for the retry");
}

#[tokio::test]
async fn poison_and_redelivered_messages() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("judy").unwrap();
    let done = task(&t, &owner, &t.config.bucket_name, true).await;
    for body in ["not json", r#"{"upload_id":"upl_nope"}"#, r#"{"upload_id":"../etc"}"#] {
        t.sqs.send_message().queue_url(&t.config.cleanup_queue_url).message_body(body).send().await.unwrap();
    }
    let messages = t.receive_cleanup_messages().await;
    assert_eq!(messages.len(), 4);
    let mut failed = t.run_cleanup(&messages).await;
    failed.sort();
    let mut poison: Vec<String> = messages
        .iter()
        .filter(|m| CleanupMessage::parse(m.body().unwrap()).is_none())
        .map(|m| m.message_id().unwrap().to_owned())
        .collect();
    poison.sort();
    assert_eq!(failed, poison, "only the poison messages fail, and go on to the DLQ");
    assert!(!t.object_exists(&done.object_key).await);

    // Redelivery of the good message: the task is gone, nothing to do.
    let good: Vec<_> = messages.into_iter().filter(|m| CleanupMessage::parse(m.body().unwrap()).is_some()).collect();
    assert!(t.run_cleanup(&good).await.is_empty());
}

#[tokio::test]
async fn a_task_whose_object_is_already_gone_is_done() {
    let t = TestStack::new().await;
    let owner = OwnerId::parse("ken").unwrap();
    let gone = task(&t, &owner, &t.config.bucket_name, false).await;
    assert!(t.run_cleanup(&t.receive_cleanup_messages().await).await.is_empty());
    assert!(t.store.get_cleanup_task(&gone.upload_id).await.unwrap().is_none());
}
