//! What `template.yaml` must keep true, checked on the file itself.

use serde_yaml::Value;
use xtask::stack::project_root;
use xtask::template::Template;

fn raw() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(project_root().join("template.yaml")).unwrap()).unwrap()
}

#[test]
fn routes_are_the_delete_routes() {
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    let routes: Vec<(String, String, String)> =
        t.routes().unwrap().into_iter().map(|r| (r.method, r.path, r.function)).collect();
    for expected in [("DELETE", "/uploads", "DeleteUpload"), ("DELETE", "/uploads/{upload_id}", "DeleteUpload")] {
        let expected = (expected.0.to_owned(), expected.1.to_owned(), expected.2.to_owned());
        assert!(routes.contains(&expected), "{expected:?} missing from {routes:?}");
    }
}

#[test]
fn queue_visibility_is_at_least_six_times_the_cleanup_timeout() {
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    let cleanup = t.functions().unwrap().into_iter().find(|f| f.logical_id == "Cleanup").unwrap();
    let queue = cleanup.queue.as_deref().expect("cleanup is fed by a queue");
    let doc = raw();
    let visibility = doc["Resources"][queue]["Properties"]["VisibilityTimeout"].as_u64().unwrap();
    assert!(visibility >= 6 * cleanup.timeout_seconds, "{visibility} < 6 x {}", cleanup.timeout_seconds);
    let redrive = &doc["Resources"][queue]["Properties"]["RedrivePolicy"];
    assert!(redrive["maxReceiveCount"].as_u64().is_some());
}

#[test]
fn cleanup_reports_batch_item_failures() {
    let doc = raw();
    let events = doc["Resources"]["Cleanup"]["Properties"]["Events"].as_mapping().unwrap();
    let sqs = events.values().find(|e| e["Type"] == "SQS").unwrap();
    assert_eq!(sqs["Properties"]["FunctionResponseTypes"][0], "ReportBatchItemFailures");
}

#[test]
fn bucket_is_private_encrypted_and_aborts_incomplete_uploads() {
    let doc = raw();
    let bucket = &doc["Resources"]["UploadsBucket"]["Properties"];
    let block = &bucket["PublicAccessBlockConfiguration"];
    for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(block[k], true, "{k}");
    }
    assert!(bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"].as_sequence().is_some());
    let rules = bucket["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    assert!(rules.iter().any(|r| r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].as_u64().is_some()));
    let policy = &doc["Resources"]["UploadsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");
}

#[test]
fn table_has_ttl() {
    let doc = raw();
    let table = &doc["Resources"]["UploadsTable"]["Properties"];
    assert_eq!(table["TimeToLiveSpecification"]["AttributeName"], "ttl");
    assert_eq!(table["TimeToLiveSpecification"]["Enabled"], true);
}
