//! Everything a stack holds, read back in full, to show that a run of
//! requests left DynamoDB, S3 and SQS exactly as they were.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::TestStack;

/// One object: its size, ETag and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    pub size: i64,
    pub etag: String,
    pub tags: Vec<(String, String)>,
}

/// One queue's counts, and whether a receive found anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub received: usize,
}

/// The whole state of a test stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every item of the table (a consistent scan), by `pk` and `sk`.
    pub items: BTreeMap<(String, String), HashMap<String, AttributeValue>>,
    /// Every object of the bucket, by key.
    pub objects: BTreeMap<String, ObjectState>,
    /// Every multipart upload S3 lists: (key, upload id).
    pub multipart_uploads: Vec<(String, String)>,
    /// The cleanup queue, then its dead-letter queue.
    pub queues: BTreeMap<String, QueueState>,
}

fn key_of(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

impl TestStack {
    /// Reads everything the stack holds. Receiving from the queues hides any
    /// message for the visibility timeout, which matters only when there is
    /// one, that is when a test is already failing.
    pub async fn snapshot(&self) -> Snapshot {
        Snapshot {
            items: self.scan_table().await,
            objects: self.objects_state().await,
            multipart_uploads: self.all_multipart_uploads().await,
            queues: self.queues_state().await,
        }
    }

    /// Every item of the table, read with a strongly consistent scan.
    pub async fn scan_table(&self) -> BTreeMap<(String, String), HashMap<String, AttributeValue>> {
        let mut items = BTreeMap::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .scan()
                .table_name(&self.config.table_name)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("Scan");
            for item in out.items.unwrap_or_default() {
                items.insert((key_of(&item, "pk"), key_of(&item, "sk")), item);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return items,
            }
        }
    }

    /// The upload events in the outbox (`EVENT#<event_id>` items), by event
    /// id, each with its detail; every item's key checked against its id.
    pub async fn outbox_events(&self) -> BTreeMap<String, serde_json::Value> {
        let mut outbox = BTreeMap::new();
        for ((pk, _), item) in self.scan_table().await {
            if !pk.starts_with("EVENT#") {
                continue;
            }
            let id = item["event_id"].as_s().expect("event_id").clone();
            assert_eq!(pk, format!("EVENT#{id}"));
            let detail = serde_json::from_str(item["detail"].as_s().expect("detail")).expect("detail is JSON");
            outbox.insert(id, detail);
        }
        outbox
    }

    async fn objects_state(&self) -> BTreeMap<String, ObjectState> {
        let mut objects = BTreeMap::new();
        for o in self.all_objects().await {
            let key = o.key().unwrap_or_default().to_owned();
            let tags = self
                .s3
                .get_object_tagging()
                .bucket(&self.config.bucket_name)
                .key(&key)
                .send()
                .await
                .expect("GetObjectTagging");
            let mut tags: Vec<_> = tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
            tags.sort();
            let state = ObjectState {
                size: o.size().unwrap_or_default(),
                etag: o.e_tag().unwrap_or_default().to_owned(),
                tags,
            };
            objects.insert(key, state);
        }
        objects
    }

    /// Every multipart upload S3 lists in the bucket, sorted.
    pub async fn all_multipart_uploads(&self) -> Vec<(String, String)> {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.config.bucket_name)
            .send()
            .await
            .expect("ListMultipartUploads");
        assert!(!out.is_truncated().unwrap_or(false), "more multipart uploads than one page");
        let mut uploads: Vec<_> = out
            .uploads()
            .iter()
            .map(|u| (u.key().unwrap_or_default().to_owned(), u.upload_id().unwrap_or_default().to_owned()))
            .collect();
        uploads.sort();
        uploads
    }

    async fn queues_state(&self) -> BTreeMap<String, QueueState> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let mut queues = BTreeMap::new();
        for logical in ["CleanupQueue", "CleanupDeadLetterQueue"] {
            let url = self.stack.physical(logical).expect("queue").reference.clone();
            let attrs = self
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(A::ApproximateNumberOfMessagesDelayed)
                .send()
                .await
                .expect("GetQueueAttributes");
            let attrs = attrs.attributes.unwrap_or_default();
            let count = |name: A| attrs.get(&name).and_then(|v| v.parse().ok()).unwrap_or(0);
            let received = self
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("ReceiveMessage")
                .messages
                .unwrap_or_default()
                .len();
            let state = QueueState {
                visible: count(A::ApproximateNumberOfMessages),
                in_flight: count(A::ApproximateNumberOfMessagesNotVisible),
                delayed: count(A::ApproximateNumberOfMessagesDelayed),
                received,
            };
            queues.insert(logical.to_owned(), state);
        }
        queues
    }
}

impl Snapshot {
    /// What differs between `self` (before) and `after`, one line per
    /// difference; empty when they are equal.
    pub fn diff(&self, after: &Snapshot) -> String {
        let mut out = String::new();
        for (k, v) in &self.items {
            match after.items.get(k) {
                None => writeln!(out, "item {k:?} removed: {v:?}").unwrap(),
                Some(w) if w != v => writeln!(out, "item {k:?} changed:\n  before {v:?}\n  after  {w:?}").unwrap(),
                _ => {}
            }
        }
        for (k, w) in &after.items {
            if !self.items.contains_key(k) {
                writeln!(out, "item {k:?} added: {w:?}").unwrap();
            }
        }
        for (k, v) in &self.objects {
            match after.objects.get(k) {
                None => writeln!(out, "object {k} removed").unwrap(),
                Some(w) if w != v => writeln!(out, "object {k} changed: {v:?} -> {w:?}").unwrap(),
                _ => {}
            }
        }
        for k in after.objects.keys().filter(|k| !self.objects.contains_key(*k)) {
            writeln!(out, "object {k} added").unwrap();
        }
        if self.multipart_uploads != after.multipart_uploads {
            writeln!(out, "multipart uploads: {:?} -> {:?}", self.multipart_uploads, after.multipart_uploads).unwrap();
        }
        if self.queues != after.queues {
            writeln!(out, "queues: {:?} -> {:?}", self.queues, after.queues).unwrap();
        }
        out
    }
}
