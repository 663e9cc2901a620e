//! Upload events through faults and races: each committed completion,
//! deletion and expiry leaves exactly one outbox item (its event id derived
//! from the upload and the change, so a lost answer's retry names the same
//! event), a cancelled or refused transaction leaves none, and the events
//! agree with what the table finally holds. The publishing side (stream,
//! publisher, bus) has its own tests with the local pipeline.

use std::collections::BTreeMap;

use local::wire::{Fault, Rule};
use serde_json::Value;
use shared::domain::{Status, Timestamp, UploadId};
use shared::events::{event_id, EventType};

use super::{id_of, Faulty, TX};

/// Every outbox item in the table, by event id, with its detail.
async fn outbox(f: &Faulty) -> BTreeMap<String, Value> {
    f.t.outbox_events().await
}

/// The one event of `kind` for `id` in `outbox`, checked against the
/// schema's fixed fields.
fn the_event<'a>(outbox: &'a BTreeMap<String, Value>, id: &UploadId, kind: EventType) -> &'a Value {
    let eid = event_id(id, kind);
    let detail = outbox.get(&eid).unwrap_or_else(|| panic!("no {} event for {id}: {outbox:#?}", kind.as_str()));
    assert_eq!(detail["event_id"], eid.as_str());
    assert_eq!(detail["type"], kind.as_str());
    assert_eq!(detail["schema_version"], 1);
    assert_eq!(detail["sequence"], kind.sequence());
    assert_eq!(detail["upload_id"], id.as_str());
    assert!(Timestamp::parse(detail["occurred_at"].as_str().unwrap()).is_some());
    let text = detail.to_string();
    assert!(!text.contains("usk_") && !text.contains("ubt_") && !text.contains("X-Amz-Signature"), "{text}");
    detail
}

#[tokio::test]
async fn each_committed_change_leaves_one_event_and_a_refused_one_none() {
    let f = Faulty::start("events", &[], &[("CONFIRM_WAIT_SECONDS", "1")]).await;

    // A completion refused at its commit: no event. Its retry: one.
    let id = f.uploaded(700, 1).await;
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(500, "InternalServerError")).by("ConfirmUpload"));
    f.confirm(&id).await.assert_error(503, "Service busy", Some("1"));
    f.proxy.lift(rule);
    assert!(outbox(&f).await.is_empty(), "a refused commit wrote an event");
    assert_eq!(f.confirm(&id).await.status, 200);
    let events = outbox(&f).await;
    assert_eq!(events.len(), 1);
    let completed = the_event(&events, &id, EventType::Completed);
    assert_eq!(completed["owner"], "events");
    assert_eq!(completed["bucket"], f.t.config.bucket_name.as_str());
    assert_eq!(completed["key"], format!("uploads/events/{id}"));
    assert_eq!((completed["size"].as_u64(), completed["status"].as_str()), (Some(700), Some("completed")));
    assert_eq!(completed["filename"], "f.bin");
    assert!(completed["checksum"].is_null());

    // A completion committed with every answer lost: the function finds
    // its commit; one event, and a confirm again adds none.
    let lost = f.uploaded(300, 2).await;
    let rule = f.proxy.inject(Rule::new(TX, Fault::DropResponse).by("ConfirmUpload"));
    assert_eq!(f.confirm(&lost).await.status, 200);
    f.proxy.lift(rule);
    assert_eq!(f.confirm(&lost).await.status, 200);
    let events = outbox(&f).await;
    assert_eq!(events.len(), 2);
    the_event(&events, &lost, EventType::Completed);

    // A deletion refused: no event. One committed with its answer lost
    // (the SDK's retry meets its own commit): one, reporting the status
    // the upload had.
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(400, "AccessDeniedException")).by("DeleteUpload"));
    f.call("DELETE", &format!("/uploads/{id}"), None).await.assert_error(500, "Failed to delete upload record", None);
    f.proxy.lift(rule);
    assert_eq!(outbox(&f).await.len(), 2);
    let rule = f.proxy.inject(Rule::new(TX, Fault::DropResponse).by("DeleteUpload").next(1));
    assert_eq!(f.call("DELETE", &format!("/uploads/{id}"), None).await.status, 200);
    f.proxy.lift(rule);
    assert_eq!(f.call("DELETE", &format!("/uploads/{id}"), None).await.status, 404);
    let events = outbox(&f).await;
    assert_eq!(events.len(), 3);
    let deleted = the_event(&events, &id, EventType::Deleted);
    assert_eq!((deleted["status"].as_str(), deleted["size"].as_u64()), (Some("completed"), Some(700)));
    assert_eq!(deleted["key"], completed["key"]);

    // A pending upload deleted: its event says pending; no completion.
    let created = f.create(50).await;
    let pending = id_of(&created.body);
    assert_eq!(f.call("DELETE", &format!("/uploads/{pending}"), None).await.status, 200);
    let events = outbox(&f).await;
    assert_eq!(the_event(&events, &pending, EventType::Deleted)["status"], "pending");
    assert!(!events.contains_key(&event_id(&pending, EventType::Completed)));

    // An expiry refused, then committed with its answer lost: one event.
    let expired = f.t.pending_multipart_expiring(&f.owner, 1, Timestamp::now().plus_seconds(-5)).await;
    let rule = f.proxy.inject(Rule::new(TX, Fault::refuse(500, "InternalServerError")).by("Sweeper"));
    assert_eq!(f.sweep().await["expired"], 0);
    f.proxy.lift(rule);
    assert!(!outbox(&f).await.contains_key(&event_id(&expired.id, EventType::Expired)));
    let rule = f.proxy.inject(Rule::new(TX, Fault::DropResponse).by("Sweeper").next(1));
    assert_eq!(f.sweep().await["expired"], 1);
    f.proxy.lift(rule);
    let events = outbox(&f).await;
    assert_eq!(events.len(), 5);
    let expiry = the_event(&events, &expired.id, EventType::Expired);
    assert_eq!((expiry["status"].as_str(), expiry["size"].as_u64()), (Some("pending"), Some(expired.size)));
}

/// Confirms, deletes and sweeps of the same uploads at once, through every
/// function's binary: whatever order they land in, the outbox says what
/// the table did. An upload still there completed has its completion and
/// nothing else; one gone has exactly one deletion or expiry, whose
/// `status` says whether it had completed, and it has a completion event
/// exactly when it had.
#[tokio::test]
async fn racing_confirms_deletes_and_sweeps_leave_events_that_agree_with_the_table() {
    let f = Faulty::start("racer", &[], &[]).await;
    let mut ids = Vec::new();
    for seed in 0..8 {
        ids.push(f.uploaded(100 + seed as usize, seed).await);
    }
    // Two more past their expiry, for the sweeper to race.
    let mut expiring = Vec::new();
    for _ in 0..2 {
        expiring.push(f.t.pending_multipart_expiring(&f.owner, 1, Timestamp::now().plus_seconds(-5)).await.id);
    }
    let all: Vec<UploadId> = ids.iter().chain(&expiring).cloned().collect();
    let confirms = all.iter().flat_map(|id| [id, id]).map(|id| f.confirm(id));
    let paths: Vec<String> = all.iter().map(|id| format!("/uploads/{id}")).collect();
    // Every other upload deleted, so some stay completed.
    let deletes = paths.iter().step_by(2).map(|path| f.call("DELETE", path, None));
    let (_, _, _) = tokio::join!(
        futures::future::join_all(confirms),
        futures::future::join_all(deletes),
        futures::future::join_all([f.sweep(), f.sweep()])
    );
    let events = outbox(&f).await;
    let mut counted = 0;
    for id in &all {
        let session = f.t.store.get_session(&f.owner, id).await.unwrap();
        let completed = events.get(&event_id(id, EventType::Completed));
        let ended: Vec<&Value> =
            [EventType::Deleted, EventType::Expired].iter().filter_map(|k| events.get(&event_id(id, *k))).collect();
        counted += usize::from(completed.is_some()) + ended.len();
        match session {
            Some(s) => {
                assert_eq!(ended.len(), 0, "{id} is still there");
                assert_eq!(completed.is_some(), s.status == Status::Completed, "{id}: {s:?}");
                if let Some(c) = completed {
                    // The bytes the event names are in S3, at its key.
                    let key = shared::domain::ObjectKey::from_stored(c["key"].as_str().unwrap()).unwrap();
                    assert_eq!(f.t.object_bytes(&key).await.len() as u64, c["size"].as_u64().unwrap(), "{id}");
                }
            }
            None => {
                // Its bytes are on their way out: the deletion's cleanup task.
                assert!(f.t.store.get_cleanup_task(id).await.unwrap().is_some(), "{id}: no cleanup task");
                assert_eq!(ended.len(), 1, "{id} is gone: one deletion or expiry");
                let had_completed = ended[0]["status"] == "completed";
                assert_eq!(completed.is_some(), had_completed, "{id}: {}", ended[0]);
                if ended[0]["type"] == "upload.expired" {
                    assert!(expiring.contains(id) && !had_completed);
                }
            }
        }
    }
    assert_eq!(events.len(), counted, "no event for an upload outside the race");
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for detail in events.values() {
        *by_type.entry(detail["type"].as_str().unwrap()).or_default() += 1;
    }
    // For docs/reliability.md ("Upload events"), shown with --nocapture.
    eprintln!("race: {} uploads, 20 confirms, 5 deletes, 2 sweeps at once: events {by_type:?}", all.len());
    f.t.assert_usage_matches_sessions(&f.owner, "after the race").await;
}

/// The publishing path through faults, the publisher's binary behind the
/// proxy: a refused `PutEvents` or outbox read is reported back to the
/// stream, which sends the record again, and nothing is lost; an outbox
/// item that could not be cleared after its event was published is
/// published again by the sweeper, under the same event id; per upload,
/// the completion reaches the queue before the deletion.
#[tokio::test]
async fn the_publishing_path_through_faults_loses_nothing_and_keeps_one_id() {
    use local::events::Tail;
    use local::streams::StreamFeeder;

    let f = Faulty::start("publishing", &[], &[]).await;
    let function = f.t.stack.template.functions().unwrap().into_iter().find(|x| x.logical_id == "Publisher").unwrap();
    let mut feeder = StreamFeeder::new(&f.t.stack, &function).unwrap();
    feeder.retry_backoff = std::time::Duration::from_millis(10);
    let host = f.host("Publisher");
    let mut tail = Tail::new(f.t.sqs.clone(), f.queue_url("UploadEventsQueue"));
    let mut delivered: Vec<(String, String)> = Vec::new();
    let feed = async |rounds: usize, feeder: &mut StreamFeeder, tail: &mut Tail| {
        let mut failed = 0;
        for _ in 0..rounds {
            failed += feeder.round(&host).await.unwrap().failed;
        }
        let got: Vec<(String, String)> = tail
            .drain(false)
            .await
            .unwrap()
            .into_iter()
            .map(|d| {
                let detail = &d.event["detail"];
                (detail["type"].as_str().unwrap().to_owned(), detail["event_id"].as_str().unwrap().to_owned())
            })
            .collect();
        (failed, got)
    };

    // PutEvents refused: reported to the stream, the item kept; once the
    // bus is back, the record sent again publishes it.
    let id = f.uploaded(400, 7).await;
    assert_eq!(f.confirm(&id).await.status, 200);
    let completed = event_id(&id, EventType::Completed);
    let rule = f.proxy.inject(Rule::new("events:PutEvents", Fault::refuse(500, "InternalException")).by("Publisher"));
    let (failed, got) = feed(2, &mut feeder, &mut tail).await;
    f.proxy.lift(rule);
    assert!(f.proxy.applied_by(rule) >= 1 && failed >= 1, "the record was reported failed");
    assert!(got.is_empty(), "{got:?}");
    assert!(outbox(&f).await.contains_key(&completed), "kept in the outbox");
    let (_, got) = feed(2, &mut feeder, &mut tail).await;
    assert_eq!(got, [("upload.completed".to_owned(), completed.clone())]);
    assert!(outbox(&f).await.is_empty(), "cleared once published");
    delivered.extend(got);

    // The outbox read refused: the same, through the other call.
    let other = f.uploaded(500, 8).await;
    let rule =
        f.proxy.inject(Rule::new("dynamodb:BatchGetItem", Fault::refuse(500, "InternalServerError")).by("Publisher"));
    assert_eq!(f.confirm(&other).await.status, 200);
    let (failed, got) = feed(2, &mut feeder, &mut tail).await;
    f.proxy.lift(rule);
    assert!(failed >= 1 && got.is_empty(), "{got:?}");
    let (_, got) = feed(2, &mut feeder, &mut tail).await;
    assert_eq!(got, [("upload.completed".to_owned(), event_id(&other, EventType::Completed))]);
    delivered.extend(got);

    // Published, but its outbox item not cleared: the sweeper publishes it
    // again (past its re-drive time), under the same id, and clears it.
    let rule =
        f.proxy.inject(Rule::new("dynamodb:DeleteItem", Fault::refuse(500, "InternalServerError")).by("Publisher"));
    assert_eq!(f.call("DELETE", &format!("/uploads/{id}"), None).await.status, 200);
    let deleted = event_id(&id, EventType::Deleted);
    let (_, got) = feed(2, &mut feeder, &mut tail).await;
    f.proxy.lift(rule);
    assert_eq!(got, [("upload.deleted".to_owned(), deleted.clone())]);
    assert!(outbox(&f).await.contains_key(&deleted), "published, not cleared");
    delivered.extend(got);
    let deps = f.t.sweeper_deps(f.t.uploads(shared::config::UploadPolicy::default()));
    let later = Timestamp::now().plus_seconds(shared::store::OUTBOX_REDRIVE_AFTER_SECONDS + 1);
    let report = sweeper::sweep(&deps, later).await.unwrap();
    assert_eq!((report.events_redriven, report.failed), (1, 0), "{report:?}");
    assert!(outbox(&f).await.is_empty());
    let got = tail.drain(false).await.unwrap();
    let again: Vec<&str> = got.iter().map(|d| d.event["detail"]["event_id"].as_str().unwrap()).collect();
    assert_eq!(again, [deleted.as_str()], "the same event, the same id");

    // Per upload, its completion reached the queue before its deletion.
    let at = |e: &str| delivered.iter().position(|(_, id)| id == e).unwrap();
    assert!(at(&completed) < at(&deleted), "{delivered:?}");
}
