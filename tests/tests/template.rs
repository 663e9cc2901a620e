//! What `template.yaml` must keep true, checked on the file itself.

use serde_yaml::Value;
use xtask::stack::project_root;
use xtask::template::Template;

fn raw() -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(project_root().join("template.yaml")).unwrap()).unwrap()
}

#[test]
fn routes_are_the_contract_routes() {
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    let routes: Vec<(String, String, String)> =
        t.routes().unwrap().into_iter().map(|r| (r.method, r.path, r.function)).collect();
    let mut expected: Vec<(String, String, String)> = [
        ("POST", "/uploads", "CreateUpload"),
        ("GET", "/uploads", "ListUploads"),
        ("DELETE", "/uploads", "DeleteUpload"),
        ("GET", "/uploads/{upload_id}", "GetUpload"),
        ("DELETE", "/uploads/{upload_id}", "DeleteUpload"),
        ("POST", "/uploads/{upload_id}/confirm", "ConfirmUpload"),
        ("POST", "/uploads/{upload_id}/resume", "ResumeUpload"),
    ]
    .iter()
    .map(|(m, p, f)| (m.to_string(), p.to_string(), f.to_string()))
    .collect();
    expected.sort();
    let mut routes = routes;
    routes.sort();
    assert_eq!(routes, expected);
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
    // Both backstops act after the longest a session can live (7 days).
    let abort = rules.iter().find_map(|r| r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].as_u64());
    assert!(abort.is_some_and(|d| d > 7), "{abort:?}");
    let expire = rules.iter().find(|r| r["TagFilters"][0]["Key"] == "upload-state").expect("pending objects expire");
    assert_eq!(expire["TagFilters"][0]["Value"], "pending");
    assert!(expire["ExpirationInDays"].as_u64().is_some_and(|d| d > 7));
    let max_expiry = doc["Parameters"]["SessionExpirySeconds"]["MaxValue"].as_u64().unwrap();
    assert!(max_expiry <= 7 * 86_400);
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

#[test]
fn every_function_has_its_package_binary_and_event() {
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    let functions = t.functions().unwrap();
    assert_eq!(functions.len(), 8);
    for f in functions {
        let dir = project_root().join("functions").join(&f.binary);
        assert!(dir.join("Cargo.toml").exists(), "no package for {}", f.binary);
        assert!(dir.join("src/main.rs").exists(), "no binary for {}", f.binary);
        assert!(project_root().join("events").join(format!("{}.json", f.binary)).exists(), "no event for {}", f.binary);
        let kebab: String = f.logical_id.chars().enumerate().fold(String::new(), |mut out, (i, c)| {
            if c.is_uppercase() && i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
            out
        });
        assert_eq!(kebab, f.binary, "logical id and binary name differ");
    }
}

#[test]
fn function_policies_are_least_privilege() {
    let doc = raw();
    let mut functions = 0;
    for (id, resource) in doc["Resources"].as_mapping().unwrap() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        functions += 1;
        let policies =
            resource["Properties"]["Policies"].as_sequence().unwrap_or_else(|| panic!("{id:?} has no policy"));
        for policy in policies {
            let statements = policy["Statement"].as_sequence().expect("inline policy statements");
            for st in statements {
                assert_eq!(st["Effect"], "Allow");
                let actions: Vec<&str> = match &st["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Sequence(a) => a.iter().map(|x| x.as_str().unwrap()).collect(),
                    other => panic!("{id:?}: action {other:?}"),
                };
                for a in actions {
                    assert!(!a.contains('*'), "{id:?} allows the wildcard action {a}");
                }
                assert!(!st["Resource"].is_null(), "{id:?}: statement without a resource");
                assert_ne!(st["Resource"], "*", "{id:?} allows every resource");
            }
        }
    }
    assert_eq!(functions, 8);
}

#[test]
fn table_and_queues_are_protected_and_watched() {
    let doc = raw();
    let params = &doc["Parameters"];
    for p in [
        "PointInTimeRecovery",
        "DeletionProtection",
        "QuotaBytes",
        "SessionExpirySeconds",
        "PartSizeBytes",
        "LogLevel",
        "Architecture",
    ] {
        assert!(!params[p].is_null(), "parameter {p}");
    }
    assert_eq!(params["Architecture"]["Default"], "arm64");
    for q in ["CleanupQueue", "CleanupDeadLetterQueue"] {
        assert_eq!(doc["Resources"][q]["Properties"]["SqsManagedSseEnabled"], true, "{q} encrypted");
    }
    let alarm = &doc["Resources"]["CleanupDeadLetterAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    for o in ["ApiUrl", "TableName", "BucketName", "CleanupQueueUrl"] {
        assert!(!doc["Outputs"][o].is_null(), "output {o}");
    }
    let sweeper_events = doc["Resources"]["Sweeper"]["Properties"]["Events"].as_mapping().unwrap();
    assert!(sweeper_events.values().any(|e| e["Type"] == "Schedule"));
}
