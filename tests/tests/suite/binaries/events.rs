//! The upload events' local pipeline, as `cargo xtask dev` runs it: an
//! outbox item written to the table → the table's stream → the stream
//! feeder (Lambda's event source mapping, filter and retries) → the
//! publisher's binary → `PutEvents` on the stack's bus → the example rule →
//! `UploadEventsQueue`, read as `cargo xtask events` reads it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use local::events::{Delivery, Tail};
use local::runtime::FunctionHost;
use local::streams::StreamFeeder;
use local::template::Function;
use serde_json::{json, Value};
use shared::domain::{Timestamp, UploadId};
use shared::events::{event_id, EventType};
use tests::{put_parts, LocalApi, TestStack};

fn publisher(t: &TestStack) -> Function {
    t.stack.template.functions().unwrap().into_iter().find(|f| f.logical_id == "Publisher").unwrap()
}

/// A reader of the example rule's queue.
fn tail(t: &TestStack) -> Tail {
    Tail::new(t.sqs.clone(), t.stack.physical("UploadEventsQueue").unwrap().reference.clone())
}

/// An outbox item as the interface fixes it (`shared::store::outbox`
/// writes the same), for `upload`'s event of `kind`.
fn outbox_item(upload: &UploadId, kind: EventType) -> (String, HashMap<String, AttributeValue>) {
    let id = event_id(upload, kind);
    let at = Timestamp::now();
    let detail = json!({
        "schema_version": 1, "event_id": id, "type": kind.as_str(), "sequence": kind.sequence(),
        "occurred_at": at.to_rfc3339(), "upload_id": upload.as_str(), "owner": "pipeline",
        "bucket": "b", "key": format!("uploads/pipeline/{}", upload.as_str()), "size": 5,
        "content_type": "text/plain", "filename": "a.txt", "checksum": null, "status": "completed",
    });
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let item = [
        ("pk", s(&format!("EVENT#{id}"))),
        ("sk", s("EVENT")),
        ("type", s("event")),
        ("event_id", s(&id)),
        ("detail_type", s(kind.as_str())),
        ("detail", s(&detail.to_string())),
        ("upload_id", s(upload.as_str())),
        ("created_at", s(&at.to_rfc3339())),
        ("gsi2pk", s(&format!("DUE#EVENT#{:02}", shared::store::due_shard(upload)))),
        ("gsi2sk", s(&format!("{}#{}", at.plus_seconds(120).to_rfc3339(), upload.as_str()))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    (id, item)
}

async fn outbox_has(t: &TestStack, event_id: &str) -> bool {
    t.item(&format!("EVENT#{event_id}"), "EVENT").await.is_some()
}

/// What `tail` reads until it has `n` deliveries (or 30 s passed).
async fn read(tail: &mut Tail, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < n && std::time::Instant::now() < deadline {
        got.extend(tail.drain(false).await.unwrap());
        if got.len() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    got
}

/// Feeds the stream to `host` until `tail` has read `n` deliveries (or 30 s
/// passed); returns them.
async fn feed_until(feeder: &mut StreamFeeder, host: &FunctionHost, tail: &mut Tail, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < n && std::time::Instant::now() < deadline {
        let round = feeder.round(host).await.unwrap();
        got.extend(tail.drain(false).await.unwrap());
        if round.read == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    got
}

#[tokio::test]
async fn publisher_binary_answers_its_event_and_every_delivery_carries_one_event_id() {
    let t = TestStack::new().await;
    let ev = super::event("publisher");
    let image = ev["Records"][0]["dynamodb"]["NewImage"].as_object().unwrap();
    let id = image["event_id"]["S"].as_str().unwrap();
    let detail: Value = serde_json::from_str(image["detail"]["S"].as_str().unwrap()).unwrap();
    // The outbox item the record reports (every attribute is a string).
    let item: HashMap<String, AttributeValue> =
        image.iter().map(|(k, v)| (k.clone(), AttributeValue::S(v["S"].as_str().unwrap().to_owned()))).collect();
    let put = || t.ddb.put_item().table_name(&t.config.table_name).set_item(Some(item.clone())).send();
    put().await.unwrap();
    let h = super::host(&t, "Publisher").await;

    let resp = super::response(h.invoke(&ev).await.unwrap());
    assert_eq!(resp["batchItemFailures"], json!([]));
    assert!(!outbox_has(&t, id).await, "published, then cleared");
    // The same event again (a re-drive racing the stream, say): published
    // again, with the same event id.
    put().await.unwrap();
    let resp = super::response(h.invoke(&ev).await.unwrap());
    assert_eq!(resp["batchItemFailures"], json!([]));

    let mut reader = tail(&t);
    let all = read(&mut reader, 2).await;
    assert_eq!(all.len(), 2, "{all:#?}");
    for d in &all {
        let e = &d.event;
        assert_eq!(e["source"], t.config.event_source.as_str());
        assert_eq!(e["detail-type"], "upload.completed");
        assert_eq!(e["detail"], detail, "the detail as the outbox holds it");
        assert_eq!(e["detail"]["event_id"], id);
        assert!(!e.to_string().contains("x-api-key") && !e.to_string().contains("https://"), "no key, no URL");
    }
    assert_eq!(all[1].earlier, 1, "the second delivery is known for a duplicate by its event id");
    assert!(all[1].line().contains("delivered again"), "{}", all[1].line());
    // Reading consumed nothing: the next reader (the app, another
    // `cargo xtask events`) gets both at once.
    reader.release().await.unwrap();
    assert_eq!(tail(&t).drain(false).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_outbox_item_reaches_the_example_queue_through_the_stream_and_is_cleared() {
    let t = TestStack::new().await;
    let h = t.stack.start_function(&publisher(&t), false).await.unwrap();
    let mut feeder = StreamFeeder::new(&t.stack, &publisher(&t)).unwrap();
    let mut tail = tail(&t);

    // Writes of other items come down the stream too: none reaches the
    // publisher (the mapping's filter).
    // (A key and a pending session: a completion would write its event.)
    let (owner, _) = t.owner("pipeline").await;
    t.pending_multipart(&owner, 2).await;
    let mut handed = 0;
    loop {
        let r = feeder.round(&h).await.unwrap();
        if r.read == 0 {
            break;
        }
        handed += r.invoked;
    }
    assert_eq!(handed, 0, "only outbox inserts reach the publisher");

    let upload = UploadId::generate();
    let (id, item) = outbox_item(&upload, EventType::Completed);
    t.ddb.put_item().table_name(&t.config.table_name).set_item(Some(item)).send().await.unwrap();
    let got = feed_until(&mut feeder, &h, &mut tail, 1).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let e = &got[0].event;
    assert_eq!(e["detail"]["event_id"], id);
    assert_eq!(e["detail"]["upload_id"], upload.as_str());
    assert_eq!(e["detail-type"], "upload.completed");
    assert_eq!(e["source"], t.config.event_source.as_str());
    assert!(!outbox_has(&t, &id).await, "the publisher clears what the bus accepted");

    // Its removal comes down the stream as well, and is not handed over.
    let r = feeder.round(&h).await.unwrap();
    assert_eq!((r.read, r.invoked), (1, 0), "{r:?}");
    assert!(tail.drain(false).await.unwrap().is_empty(), "one event, published once");
}

#[tokio::test]
async fn a_cancelled_transaction_leaves_no_stream_record_and_no_event() {
    let t = TestStack::new().await;
    let h = t.stack.start_function(&publisher(&t), false).await.unwrap();
    let mut feeder = StreamFeeder::new(&t.stack, &publisher(&t)).unwrap();
    let upload = UploadId::generate();
    let (id, item) = outbox_item(&upload, EventType::Deleted);
    // The event's put, then a condition that fails: the transaction is
    // cancelled, the put with it.
    let put = Put::builder().table_name(&t.config.table_name).set_item(Some(item)).build().unwrap();
    let missing = [("pk", "UPLOAD#nothing"), ("sk", "SESSION")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), AttributeValue::S(v.to_owned())))
        .collect();
    let check = ConditionCheck::builder()
        .table_name(&t.config.table_name)
        .set_key(Some(missing))
        .condition_expression("attribute_exists(pk)")
        .build()
        .unwrap();
    let refused = t
        .ddb
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .transact_items(TransactWriteItem::builder().condition_check(check).build())
        .send()
        .await;
    assert!(refused.is_err(), "the transaction is cancelled");
    assert!(!outbox_has(&t, &id).await);
    let r = feeder.round(&h).await.unwrap();
    assert_eq!(r, local::streams::Round::default(), "the stream has no record of it");
    assert!(tail(&t).drain(false).await.unwrap().is_empty(), "no event invented");

    // The stream goes on after it: a committed write is read.
    let (_, item) = outbox_item(&upload, EventType::Completed);
    t.ddb.put_item().table_name(&t.config.table_name).set_item(Some(item)).send().await.unwrap();
    let got = feed_until(&mut feeder, &h, &mut tail(&t), 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event["detail-type"], "upload.completed");
}

#[tokio::test]
async fn a_batch_the_publisher_keeps_failing_is_given_up_to_the_dlq_and_stays_in_the_outbox() {
    let t = TestStack::new().await;
    let f = publisher(&t);
    // EventBridge unreachable (its endpoint on a port nobody listens on):
    // every PutEvents fails.
    let unreachable = [("AWS_ENDPOINT_URL_EVENTBRIDGE", "http://127.0.0.1:9"), ("AWS_MAX_ATTEMPTS", "1")];
    let broken = t.stack.start_function_with(&f, false, &unreachable).await.unwrap();
    let mut feeder = StreamFeeder::new(&t.stack, &f).unwrap();
    feeder.source.maximum_retry_attempts = Some(1);
    feeder.retry_backoff = Duration::from_millis(10);

    let upload = UploadId::generate();
    let (id, item) = outbox_item(&upload, EventType::Completed);
    t.ddb.put_item().table_name(&t.config.table_name).set_item(Some(item)).send().await.unwrap();
    let first = feeder.round(&broken).await.unwrap();
    assert_eq!((first.invoked, first.failed, first.discarded), (1, 1, 0), "reported failed: retried");
    let second = feeder.round(&broken).await.unwrap();
    assert_eq!((second.invoked, second.failed, second.discarded), (1, 1, 1), "past its retries: given up");

    // Lambda's on-failure record names the batch, not the event.
    let dlq = t.stack.physical("EventsDeadLetterQueue").unwrap().reference.clone();
    let messages = t.sqs.receive_message().queue_url(&dlq).max_number_of_messages(10).send().await.unwrap();
    let messages = messages.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let report: Value = serde_json::from_str(messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(report["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(report["requestContext"]["approximateInvokeCount"], 2);
    let info = &report["DDBStreamBatchInfo"];
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["startSequenceNumber"], info["endSequenceNumber"]);
    assert_eq!(info["streamArn"], t.stack.physical("UploadsTable").unwrap().attributes["StreamArn"].as_str());
    assert!(!report.to_string().contains(&id), "the record names no event");

    // Nothing lost: the event waits in the outbox for the sweeper, and the
    // shard goes on with the next event.
    assert!(outbox_has(&t, &id).await);
    let healthy = t.stack.start_function(&f, false).await.unwrap();
    let (next, item) = outbox_item(&UploadId::generate(), EventType::Completed);
    t.ddb.put_item().table_name(&t.config.table_name).set_item(Some(item)).send().await.unwrap();
    let got = feed_until(&mut feeder, &healthy, &mut tail(&t), 1).await;
    let ids: Vec<&Value> = got.iter().map(|d| &d.event["detail"]["event_id"]).collect();
    assert_eq!(ids, [&json!(next)], "the given-up batch is not read again");
}

/// Issue 18's "done": under the local stack, put, confirm and delete one
/// file; its two events can be read, completed then deleted, each with the
/// one id its upload and kind derive.
#[tokio::test]
async fn put_confirm_and_delete_through_the_api_yield_completed_then_deleted() {
    let t = TestStack::new().await;
    let (_, key) = t.owner("pipeline").await;
    let api = LocalApi::start(&t).await;
    let host: Arc<FunctionHost> = api.hosts["Publisher"].1.clone();
    let mut feeder = StreamFeeder::new(&t.stack, &publisher(&t)).unwrap();
    let feeding = tokio::spawn(async move {
        loop {
            if feeder.round(&host).await.unwrap().read == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    use reqwest::Method;
    let new = json!({ "filename": "a.txt", "content_type": "text/plain", "size": 5 });
    let (status, created) = api.send(Method::POST, "/uploads", &key, Some(new)).await;
    assert_eq!(status, 201, "{created}");
    let id = UploadId::parse(created["upload_id"].as_str().unwrap()).unwrap();
    assert_eq!(put_parts(&created["upload"], b"hello", None).await, [200]);
    let (status, body) = api.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.send(Method::DELETE, &format!("/uploads/{id}"), &key, None).await;
    assert_eq!(status, 200, "{body}");

    let mut reader = tail(&t);
    let got = read(&mut reader, 2).await;
    feeding.abort();
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|d| {
            (
                d.event["detail-type"].as_str().unwrap().to_owned(),
                d.event["detail"]["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("upload.completed".to_owned(), event_id(&id, EventType::Completed)),
            ("upload.deleted".to_owned(), event_id(&id, EventType::Deleted)),
        ]
    );
    let deleted = &got[1].event["detail"];
    assert_eq!(deleted["upload_id"], id.as_str());
    assert_eq!(deleted["size"], 5);
    assert_eq!(deleted["filename"], "a.txt");
    assert_eq!(deleted["content_type"], "text/plain");
    assert_eq!(deleted["bucket"], t.config.bucket_name.as_str());
    // The outbox is empty again, and nothing more arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(reader.drain(false).await.unwrap().is_empty());
    for kind in [EventType::Completed, EventType::Deleted] {
        assert!(!outbox_has(&t, &event_id(&id, kind)).await, "{kind:?} cleared");
    }
}

/// The consumers follow the parameters locally as on AWS: no example queue
/// without `ExampleEventsQueue`; with `EventsWebhookUrl`, the webhook's rule
/// is left out (the emulator calls no API destination) and the rest stands.
#[tokio::test]
async fn the_local_stack_provisions_the_consumers_the_parameters_ask_for() {
    let off = TestStack::with_parameters(&[("ExampleEventsQueue", "false")]).await;
    for id in ["UploadEventsQueue", "UploadEventsRule", "EventsDeliveryDeadLetterQueue"] {
        assert!(off.stack.physical(id).is_err(), "{id} without ExampleEventsQueue");
    }
    assert!(off.stack.physical("UploadEventsBus").is_ok() && off.stack.physical("EventsDeadLetterQueue").is_ok());
    assert!(local::events::event_queues(&off.stack).iter().all(|q| off.stack.physical(q).is_err()));

    let hook = TestStack::with_parameters(&[
        ("EventsWebhookUrl", "https://app.example.com/hooks/uploads"),
        ("EventsWebhookApiKey", "not-a-real-key"),
    ])
    .await;
    assert!(hook.stack.physical("UploadEventsWebhookRule").is_err(), "no API destination locally");
    for id in ["UploadEventsRule", "UploadEventsQueue", "EventsDeliveryDeadLetterQueue"] {
        assert!(hook.stack.physical(id).is_ok(), "{id}");
    }
    let rule = hook.stack.physical("UploadEventsRule").unwrap();
    assert_eq!(
        rule.arn,
        format!(
            "arn:aws:events:us-east-1:123456789012:rule/{}-uploads/{}-uploadeventsrule",
            hook.stack.name, hook.stack.name
        )
    );
}

/// What the stream leaves behind, the sweeper publishes: outbox items past
/// their re-drive time (here a completion and its upload's deletion, both
/// 20 minutes old, as if the stream had given up on them) are published by
/// one sweep, counted stuck (past `EVENT_STUCK_AFTER_SECONDS`), cleared,
/// and reach the example queue, the completion among them.
#[tokio::test]
async fn the_sweeper_publishes_what_the_stream_left_in_the_outbox() {
    let t = TestStack::new().await;
    let upload = UploadId::generate();
    let stale = |kind| {
        let (id, mut item) = outbox_item(&upload, kind);
        let at = Timestamp::now().plus_seconds(-1200);
        item.insert("created_at".into(), AttributeValue::S(at.to_rfc3339()));
        let due = format!("{}#{}", at.plus_seconds(120).to_rfc3339(), upload.as_str());
        item.insert("gsi2sk".into(), AttributeValue::S(due));
        (id, item)
    };
    let mut ids = Vec::new();
    for kind in [EventType::Deleted, EventType::Completed] {
        let (id, item) = stale(kind);
        t.ddb.put_item().table_name(&t.config.table_name).set_item(Some(item)).send().await.unwrap();
        ids.push(id);
    }
    let deps = t.sweeper_deps(t.uploads(shared::config::UploadPolicy::default()));
    assert!(deps.publisher.is_some(), "the template gives the sweeper the bus");
    let report = sweeper::sweep(&deps, Timestamp::now()).await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(report.events_redriven >= 1 && report.events_stuck >= 1, "{report:?}");
    for id in &ids {
        assert!(!outbox_has(&t, id).await, "{id} cleared");
    }
    let got = read(&mut tail(&t), 2).await;
    let mut seen: Vec<&str> = got.iter().map(|d| d.event["detail"]["event_id"].as_str().unwrap()).collect();
    seen.dedup();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, want, "both events, each under its one id");
    // A second sweep finds nothing left.
    let again = sweeper::sweep(&deps, Timestamp::now()).await.unwrap();
    assert_eq!((again.events_redriven, again.events_stuck), (0, 0), "{again:?}");
}
