//! What `template.yaml` must keep true, checked on the file itself.

use serde_yaml::Value;
use xtask::stack::{project_root, Stack};
use xtask::template::Template;
use xtask::waf::{Operator, Oversize, Statement};

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

/// `X` for `!Ref X`.
fn ref_of(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag.to_string() == "!Ref" => t.value.as_str(),
        _ => None,
    }
}

fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag.to_string() == tag => Some(&t.value),
        _ => None,
    }
}

fn function_ids(doc: &Value) -> Vec<String> {
    doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| id.as_str().unwrap().to_owned())
        .collect()
}

/// Every (action, resource) a function's inline policies allow.
fn grants(doc: &Value, function: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for policy in doc["Resources"][function]["Properties"]["Policies"].as_sequence().unwrap() {
        for st in policy["Statement"].as_sequence().unwrap() {
            let actions: Vec<String> = match &st["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Sequence(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                other => panic!("{function}: action {other:?}"),
            };
            let resources: Vec<Value> = match &st["Resource"] {
                Value::Sequence(r) => r.clone(),
                r => vec![r.clone()],
            };
            for a in &actions {
                for r in &resources {
                    out.push((a.clone(), r.clone()));
                }
            }
        }
    }
    out
}

fn parameter_default(doc: &Value, name: &str) -> u64 {
    doc["Parameters"][name]["Default"].as_u64().unwrap_or_else(|| panic!("parameter {name} has a numeric default"))
}

#[test]
fn every_function_logs_to_its_own_group_with_retention() {
    let doc = raw();
    let retention = &doc["Parameters"]["LogRetentionDays"];
    assert_eq!(retention["Type"], "Number");
    assert_eq!(retention["Default"], 30);
    let allowed: Vec<u64> =
        retention["AllowedValues"].as_sequence().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(allowed.contains(&30) && allowed.contains(&365) && allowed.contains(&3653), "{allowed:?}");
    // JSON logs and levels stay global; only the group is per function.
    let global = &doc["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(global["LogFormat"], "JSON");
    assert!(!global["ApplicationLogLevel"].is_null() && !global["SystemLogLevel"].is_null());
    let functions = function_ids(&doc);
    assert_eq!(functions.len(), 8);
    let mut groups = Vec::new();
    for f in &functions {
        let config = &doc["Resources"][f.as_str()]["Properties"]["LoggingConfig"];
        // A reference, so CloudFormation creates the group before the
        // function and Lambda never creates one without retention.
        let group_id =
            ref_of(&config["LogGroup"]).unwrap_or_else(|| panic!("{f}: LoggingConfig.LogGroup is not a !Ref"));
        let group = &doc["Resources"][group_id];
        assert_eq!(group["Type"], "AWS::Logs::LogGroup", "{f}");
        assert!(!group["DeletionPolicy"].is_null() && !group["UpdateReplacePolicy"].is_null(), "{group_id}: policies");
        assert_eq!(ref_of(&group["Properties"]["RetentionInDays"]), Some("LogRetentionDays"), "{group_id}");
        let name = tagged(&group["Properties"]["LogGroupName"], "!Sub").and_then(Value::as_str).unwrap_or_default();
        assert_eq!(name, format!("/aws/lambda/${{AWS::StackName}}-{f}"), "{group_id}");
        groups.push(group_id.to_owned());
    }
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), functions.len(), "functions share a log group");
    let all_groups =
        doc["Resources"].as_mapping().unwrap().values().filter(|r| r["Type"] == "AWS::Logs::LogGroup").count();
    assert_eq!(all_groups, functions.len(), "a log group belongs to no function");
}

#[test]
fn api_stage_is_throttled_and_each_key_is_rate_limited() {
    let doc = raw();
    assert_eq!(parameter_default(&doc, "ApiThrottleRateLimit"), 1000);
    assert_eq!(parameter_default(&doc, "ApiThrottleBurstLimit"), 2000);
    let api = &doc["Resources"]["UploadsApi"]["Properties"];
    let settings = api["MethodSettings"].as_sequence().expect("stage method settings");
    let stage_wide = settings
        .iter()
        .find(|s| s["ResourcePath"] == "/*" && s["HttpMethod"] == "*")
        .expect("a stage-wide method setting");
    assert_eq!(ref_of(&stage_wide["ThrottlingRateLimit"]), Some("ApiThrottleRateLimit"));
    assert_eq!(ref_of(&stage_wide["ThrottlingBurstLimit"]), Some("ApiThrottleBurstLimit"));

    // Per key: a WAF rate-based rule on each header a key can come in,
    // blocking, limited by KeyRateLimit over 60 s, on the API's stage; the
    // Bearer header counted with its scheme's case and whitespace
    // normalised, as the functions accept it; and requests without any
    // credential limited per source address. Each rule present only while
    // its limit is not 0; the limits take 0 or WAF's range, 10 and up.
    for limit in ["KeyRateLimit", "AnonymousRateLimit"] {
        let p = &doc["Parameters"][limit];
        let pattern = regex_lite::Regex::new(p["AllowedPattern"].as_str().expect("AllowedPattern")).unwrap();
        for ok in ["0", "10", "11", "300", "30000", "1999999999", "2000000000"] {
            assert!(pattern.is_match(ok), "{limit} refuses {ok}");
        }
        for bad in ["1", "9", "010", "-1", "2000000001", "9999999999", "", "1e3"] {
            assert!(!pattern.is_match(bad), "{limit} accepts {bad}, which WAF refuses");
        }
    }
    assert_eq!(doc["Parameters"]["KeyRateLimit"]["Default"], "30000");
    let acl = &doc["Resources"]["KeyRateLimitAcl"];
    assert_eq!(acl["Type"], "AWS::WAFv2::WebACL");
    assert_eq!(acl["Condition"], "WebAclOn");
    assert_eq!(acl["Properties"]["Scope"], "REGIONAL");
    assert!(acl["Properties"]["DefaultAction"].get("Allow").is_some(), "the ACL blocks only what its rules match");
    let mut keys_seen = Vec::new();
    for (condition, rule) in acl_rules(&doc) {
        if rule["Statement"].get("RateBasedStatement").is_none() {
            continue;
        }
        assert!(rule["Action"].get("Block").is_some(), "{rule:?}");
        let rate = &rule["Statement"]["RateBasedStatement"];
        assert_eq!(rate["EvaluationWindowSec"].as_u64(), Some(60));
        if rate["AggregateKeyType"] == "IP" {
            assert_eq!(condition, "AnonymousRateLimitOn", "{rule:?}");
            assert_eq!(ref_of(&rate["Limit"]), Some("AnonymousRateLimit"));
            assert!(rate.get("ScopeDownStatement").is_some(), "only requests without a credential");
            keys_seen.push("ip".to_owned());
            continue;
        }
        assert_eq!(condition, "KeyRateLimitOn", "{rule:?}");
        assert_eq!(ref_of(&rate["Limit"]), Some("KeyRateLimit"));
        assert_eq!(rate["AggregateKeyType"], "CUSTOM_KEYS");
        let keys = rate["CustomKeys"].as_sequence().unwrap();
        assert_eq!(keys.len(), 1, "one key per rule: WAF skips requests missing any of its keys");
        let header = keys[0]["Header"]["Name"].as_str().unwrap().to_owned();
        let transforms: Vec<&str> = keys[0]["Header"]["TextTransformations"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t["Type"].as_str().unwrap())
            .collect();
        if header == "authorization" {
            assert_eq!(transforms, ["COMPRESS_WHITE_SPACE", "LOWERCASE"], "every spelling of Bearer is one value");
        }
        keys_seen.push(header);
    }
    keys_seen.sort();
    assert_eq!(keys_seen, ["authorization", "ip", "x-api-key"], "every header a key is accepted in, and no key");
    assert!(
        acl_rules(&doc).iter().any(|(c, r)| c == "KeyRateLimitOn" && r["Name"] == "credential-spelling"),
        "credentials spelled otherwise than the functions accept are refused at the edge"
    );
    assert_switch(&doc, "KeyRateLimitOn", "KeyRateLimit");
    assert_switch(&doc, "AnonymousRateLimitOn", "AnonymousRateLimit");
    // The ACL and its association exist while either rule is on.
    let or = tagged(&doc["Conditions"]["WebAclOn"], "!Or").and_then(Value::as_sequence).expect("WebAclOn: !Or");
    let mut either: Vec<&str> = or.iter().map(|c| tagged(c, "!Condition").and_then(Value::as_str).unwrap()).collect();
    either.sort();
    assert_eq!(either, ["AnonymousRateLimitOn", "KeyRateLimitOn", "RequestBodyLimitOn"]);
    let association = &doc["Resources"]["KeyRateLimitAssociation"];
    assert_eq!(association["Condition"], "WebAclOn");
    assert_eq!(
        tagged(&association["Properties"]["WebACLArn"], "!GetAtt").and_then(Value::as_str),
        Some("KeyRateLimitAcl.Arn")
    );
    assert_eq!(
        tagged(&association["Properties"]["ResourceArn"], "!Sub").and_then(Value::as_str),
        Some("arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${UploadsApi}/stages/${UploadsApi.Stage}")
    );

    // Both 429s API Gateway gives itself have the API's error shape and a
    // Retry-After, as the functions' own 429s do.
    let responses = Template::load(&project_root().join("template.yaml")).unwrap().gateway_responses().unwrap();
    for kind in ["THROTTLED", "WAF_FILTERED"] {
        let r = &responses[kind];
        assert_eq!(r.status, 429, "{kind}");
        let retry: u64 = r.headers.iter().find(|(k, _)| k == "Retry-After").expect("Retry-After").1.parse().unwrap();
        assert!(retry >= 1, "{kind}");
        let body: serde_json::Value = serde_json::from_str(&r.render("req-1")).expect("JSON body");
        assert_eq!(body, serde_json::json!({ "error": "Too many requests", "request_id": "req-1" }), "{kind}");
    }

    // The functions authenticate the service's own keys; API Gateway keys
    // (and so usage plans) would reject every one of them.
    assert_ne!(api["Auth"]["ApiKeyRequired"], true, "the API requires API Gateway keys");
    assert!(api["Auth"]["UsagePlan"].is_null(), "SAM's usage plan would create API Gateway keys");
    for f in function_ids(&doc) {
        for (name, event) in doc["Resources"][f.as_str()]["Properties"]["Events"].as_mapping().unwrap() {
            assert_ne!(event["Properties"]["Auth"]["ApiKeyRequired"], true, "{f} {name:?} requires API Gateway keys");
        }
    }
    assert!(
        doc["Resources"]
            .as_mapping()
            .unwrap()
            .values()
            .all(|r| r["Type"] != "AWS::ApiGateway::ApiKey" && r["Type"] != "AWS::ApiGateway::UsagePlan"),
        "no API Gateway key or usage plan"
    );
}

/// The web ACL's rules as `(condition, rule)`: every entry is
/// `!If [condition, rule, !Ref AWS::NoValue]`.
fn acl_rules(doc: &Value) -> Vec<(String, Value)> {
    let rules = doc["Resources"]["KeyRateLimitAcl"]["Properties"]["Rules"].as_sequence().expect("rules");
    rules
        .iter()
        .map(|entry| {
            let branches = tagged(entry, "!If").and_then(Value::as_sequence).unwrap_or_else(|| panic!("{entry:?}"));
            assert_eq!(branches.len(), 3, "{entry:?}");
            assert_eq!(ref_of(&branches[2]), Some("AWS::NoValue"), "{entry:?}");
            (branches[0].as_str().unwrap().to_owned(), branches[1].clone())
        })
        .collect()
}

/// `condition` is `!Not [!Equals [!Ref parameter, "0"]]`: 0 turns it off.
fn assert_switch(doc: &Value, condition: &str, parameter: &str) {
    let not = tagged(&doc["Conditions"][condition], "!Not").and_then(Value::as_sequence).expect("!Not");
    let equals = tagged(&not[0], "!Equals").and_then(Value::as_sequence).expect("!Not [!Equals ...]");
    assert_eq!(ref_of(&equals[0]), Some(parameter), "{condition}");
    assert!(equals[1] == "0" || equals[1] == 0, "{condition} compares with {:?}", equals[1]);
    let p = &doc["Parameters"][parameter];
    let zero = match p["AllowedPattern"].as_str() {
        Some(pattern) => regex_lite::Regex::new(pattern).unwrap().is_match("0"),
        None => p["MinValue"] == 0,
    };
    assert!(zero, "{parameter} accepts 0");
}

/// A body over `MaxRequestBodyBytes` is refused at the edge with a 413 in
/// the API's error shape, before the rate rules and before any function
/// (Lambda would refuse a 6 MB event, which API Gateway answers with 500).
#[test]
fn request_bodies_over_the_limit_get_413_at_the_edge() {
    let doc = raw();
    let parameter = &doc["Parameters"]["MaxRequestBodyBytes"];
    assert_eq!(parameter_default(&doc, "MaxRequestBodyBytes"), 16384);
    // WAF sees at most 16 KB of an API Gateway request's body: above that
    // the rule could not be exact.
    assert!(parameter["MaxValue"].as_u64().is_some_and(|m| m <= 16384), "{parameter:?}");
    assert_switch(&doc, "RequestBodyLimitOn", "MaxRequestBodyBytes");

    let rules = acl_rules(&doc);
    let (condition, body) =
        rules.iter().find(|(_, r)| r["Statement"].get("SizeConstraintStatement").is_some()).expect("a body size rule");
    assert_eq!(condition, "RequestBodyLimitOn");
    let size = &body["Statement"]["SizeConstraintStatement"];
    assert_eq!(size["FieldToMatch"]["Body"]["OversizeHandling"], "MATCH", "bodies WAF cannot see whole match too");
    assert_eq!(size["ComparisonOperator"], "GT");
    assert_eq!(ref_of(&size["Size"]), Some("MaxRequestBodyBytes"));
    assert!(size["TextTransformations"].as_sequence().unwrap().iter().all(|t| t["Type"] == "NONE"));
    for (_, rate) in rules.iter().filter(|(_, r)| r["Statement"].get("RateBasedStatement").is_some()) {
        assert!(body["Priority"].as_u64() < rate["Priority"].as_u64(), "the size rule runs before {rate:?}");
    }
    let response = &body["Action"]["Block"]["CustomResponse"];
    assert_eq!(response["ResponseCode"], 413);
    let key = response["CustomResponseBodyKey"].as_str().unwrap();
    let content = &doc["Resources"]["KeyRateLimitAcl"]["Properties"]["CustomResponseBodies"][key];
    assert_eq!(content["ContentType"], "APPLICATION_JSON");
    let json: serde_json::Value = serde_json::from_str(content["Content"].as_str().unwrap()).unwrap();
    assert_eq!(json, serde_json::json!({ "error": "Request body too large" }));
}

/// The local gateway's web ACL is the template's, resolved for the stack's
/// parameters as CloudFormation resolves its conditions and `Fn::If` rules.
#[test]
fn the_local_web_acl_follows_the_parameters() {
    let acl = |overrides: &[(&str, &str)]| {
        let mut stack = Stack::unprovisioned("t").unwrap();
        stack.parameters = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let acl = stack.web_acl().unwrap();
        acl.rules().iter().map(|r| (r.name.clone(), r.statement.clone())).collect::<Vec<_>>()
    };
    let body = |size| Statement::BodySize { operator: Operator::Gt, size, oversize: Oversize::Match };
    let rate = |header: &str, limit| Statement::Rate {
        header: header.into(),
        limit,
        window: std::time::Duration::from_secs(60),
    };
    let all = acl(&[]);
    assert_eq!(
        all,
        [
            ("max-request-body".into(), body(16384)),
            ("per-x-api-key".into(), rate("x-api-key", 30000)),
            ("per-bearer-key".into(), rate("authorization", 30000)),
        ]
    );
    assert_eq!(acl(&[("MaxRequestBodyBytes", "4096")])[0], ("max-request-body".into(), body(4096)));
    assert_eq!(acl(&[("MaxRequestBodyBytes", "0")]), all[1..]);
    assert_eq!(acl(&[("KeyRateLimit", "0")]), all[..1]);
    assert_eq!(acl(&[("KeyRateLimit", "0"), ("MaxRequestBodyBytes", "0")]), [], "no web ACL at all");
    let mut stack = Stack::unprovisioned("t").unwrap();
    stack.parameters = [("KeyRateLimit", "0"), ("MaxRequestBodyBytes", "0")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(!stack.exists("KeyRateLimitAcl").unwrap());
    assert!(!stack.exists("KeyRateLimitAssociation").unwrap());
}

#[test]
fn cleanup_and_sweeper_concurrency_is_bounded() {
    let doc = raw();
    let cleanup = &doc["Resources"]["Cleanup"]["Properties"];
    let sqs = cleanup["Events"].as_mapping().unwrap().values().find(|e| e["Type"] == "SQS").unwrap();
    let max = &sqs["Properties"]["ScalingConfig"]["MaximumConcurrency"];
    assert_eq!(ref_of(max), Some("CleanupMaxConcurrency"));
    let max_param = &doc["Parameters"]["CleanupMaxConcurrency"];
    assert_eq!(max_param["Default"], 5);
    assert!(max_param["MinValue"].as_u64().is_some_and(|m| m >= 2), "SQS mappings need at least 2");
    assert!(max_param["MaxValue"].as_u64().is_some_and(|m| m <= 1000));

    // Reserved concurrency: 0 means none, through a condition and AWS::NoValue.
    for (function, parameter, default) in
        [("Cleanup", "CleanupReservedConcurrency", 10), ("Sweeper", "SweeperReservedConcurrency", 1)]
    {
        assert_eq!(parameter_default(&doc, parameter), default, "{parameter}");
        assert_eq!(doc["Parameters"][parameter]["MinValue"], 0, "{parameter} accepts 0");
        let reserved = &doc["Resources"][function]["Properties"]["ReservedConcurrentExecutions"];
        let branches =
            tagged(reserved, "!If").and_then(Value::as_sequence).unwrap_or_else(|| panic!("{function}: not an !If"));
        let condition = branches[0].as_str().unwrap();
        assert_eq!(ref_of(&branches[1]), Some(parameter), "{function}");
        assert_eq!(ref_of(&branches[2]), Some("AWS::NoValue"), "{function}");
        let cond = &doc["Conditions"][condition];
        let not =
            tagged(cond, "!Not").and_then(Value::as_sequence).unwrap_or_else(|| panic!("{condition}: not a !Not"));
        let equals = tagged(&not[0], "!Equals").and_then(Value::as_sequence).expect("!Not [!Equals ...]");
        assert_eq!(ref_of(&equals[0]), Some(parameter), "{condition}");
        assert!(equals[1] == "0" || equals[1] == 0, "{condition} compares with {:?}", equals[1]);
    }
    // By default the pollers never start more invocations than are reserved.
    assert!(
        parameter_default(&doc, "CleanupReservedConcurrency") >= parameter_default(&doc, "CleanupMaxConcurrency"),
        "reserved cleanup concurrency below the event source's maximum concurrency"
    );
}

/// (namespace, metric name, dimensions) of every metric an alarm watches,
/// alone or inside metric math.
type Watched = (Value, String, Vec<(String, Value)>);

fn watched(alarm: &Value) -> Vec<Watched> {
    let dims = |d: &Value| -> Vec<(String, Value)> {
        d.as_sequence()
            .map(|d| d.iter().map(|x| (x["Name"].as_str().unwrap().to_owned(), x["Value"].clone())).collect())
            .unwrap_or_default()
    };
    let p = &alarm["Properties"];
    if let Some(metrics) = p["Metrics"].as_sequence() {
        metrics
            .iter()
            .filter(|m| !m["MetricStat"].is_null())
            .map(|m| {
                let metric = &m["MetricStat"]["Metric"];
                (
                    metric["Namespace"].clone(),
                    metric["MetricName"].as_str().unwrap().to_owned(),
                    dims(&metric["Dimensions"]),
                )
            })
            .collect()
    } else {
        vec![(p["Namespace"].clone(), p["MetricName"].as_str().unwrap().to_owned(), dims(&p["Dimensions"]))]
    }
}

#[test]
fn alarms_cover_functions_table_stuck_tasks_and_dead_letters() {
    let doc = raw();
    let alarms: Vec<(&str, &Value)> = doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|(id, r)| (id.as_str().unwrap(), r))
        .collect();
    let mut all: Vec<Watched> = Vec::new();
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        assert_eq!(p["TreatMissingData"], "notBreaching", "{id}");
        let actions =
            tagged(&p["AlarmActions"], "!If").and_then(Value::as_sequence).unwrap_or_else(|| panic!("{id}: actions"));
        assert_eq!(actions[0], "HasAlarmTopic", "{id}");
        assert_eq!(ref_of(&actions[1][0]), Some("AlarmTopicArn"), "{id}");
        assert_eq!(ref_of(&actions[2]), Some("AWS::NoValue"), "{id}");
        if let Some(metrics) = p["Metrics"].as_sequence() {
            // Metric math: one expression returned, summing every metric.
            assert!(metrics.len() <= 10, "{id}: CloudWatch allows 10 metrics an alarm");
            let returned: Vec<&Value> = metrics.iter().filter(|m| m["ReturnData"] == true).collect();
            assert_eq!(returned.len(), 1, "{id}: one returned series");
            let expression = returned[0]["Expression"].as_str().unwrap_or_else(|| panic!("{id}: no expression"));
            for m in metrics.iter().filter(|m| !m["MetricStat"].is_null()) {
                assert_eq!(m["ReturnData"], false, "{id}");
                let metric_id = m["Id"].as_str().unwrap();
                let used =
                    expression.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').any(|token| token == metric_id);
                assert!(used, "{id}: {metric_id} is not in {expression}");
            }
        }
        all.extend(watched(alarm));
    }
    let has = |namespace: &str, metric: &str, want: &[(&str, &Value)]| {
        all.iter().any(|(ns, m, dims)| {
            ns == namespace
                && m == metric
                && dims.len() == want.len()
                && want.iter().all(|(k, v)| dims.iter().any(|(dk, dv)| dk == k && dv == *v))
        })
    };
    let by_ref = |id: &str| -> Value { serde_yaml::from_str(&format!("!Ref {id}")).unwrap() };

    for f in function_ids(&doc) {
        for metric in ["Errors", "Throttles"] {
            assert!(has("AWS/Lambda", metric, &[("FunctionName", &by_ref(&f))]), "no alarm on {metric} of {f}");
        }
    }

    let table = by_ref("UploadsTable");
    let indexes: Vec<Value> = doc["Resources"]["UploadsTable"]["Properties"]["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["IndexName"].clone())
        .collect();
    assert_eq!(indexes.len(), 2);
    for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
        assert!(has("AWS/DynamoDB", metric, &[("TableName", &table)]), "no alarm on {metric} of the table");
        for index in &indexes {
            assert!(
                has("AWS/DynamoDB", metric, &[("TableName", &table), ("GlobalSecondaryIndexName", index)]),
                "no alarm on {metric} of index {index:?}"
            );
        }
    }
    for operation in ["TransactWriteItems", "GetItem", "BatchGetItem", "Query", "PutItem", "UpdateItem", "DeleteItem"] {
        let op = Value::String(operation.to_owned());
        assert!(
            has("AWS/DynamoDB", "SystemErrors", &[("TableName", &table), ("Operation", &op)]),
            "no alarm on SystemErrors of {operation}"
        );
    }

    // The stuck-task metric, in the namespace the sweeper emits it to.
    let stuck = &doc["Resources"]["StuckCleanupTasksAlarm"]["Properties"];
    assert_eq!(stuck["MetricName"], "StuckCleanupTasks");
    assert_eq!(tagged(&stuck["Namespace"], "!Sub").and_then(Value::as_str), Some("UploadSessions/${AWS::StackName}"));
    assert!(stuck["Dimensions"].is_null(), "the sweeper emits it without dimensions");
    assert_eq!(stuck["Statistic"], "Sum");
    assert_eq!(stuck["Period"], 300);
    assert_eq!(stuck["Threshold"], 1);
    assert_eq!(stuck["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    for f in ["Sweeper", "Cleanup"] {
        let env = &doc["Resources"][f]["Properties"]["Environment"]["Variables"];
        assert_eq!(env["METRICS_NAMESPACE"], stuck["Namespace"], "{f} emits metrics elsewhere");
    }
    let sweeper_env = &doc["Resources"]["Sweeper"]["Properties"]["Environment"]["Variables"];
    assert!(sweeper_env["CLEANUP_MAX_ATTEMPTS"].as_str().is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n > 0)));
    assert!(sweeper_env["SWEEP_MAX_ITEMS"].is_null(), "the sweeper works until its deadline, not up to a count");

    let dlq: Value = serde_yaml::from_str("!GetAtt CleanupDeadLetterQueue.QueueName").unwrap();
    assert!(has("AWS/SQS", "ApproximateNumberOfMessagesVisible", &[("QueueName", &dlq)]), "no alarm on the DLQ depth");
    assert!(has("AWS/Lambda", "Errors", &[("FunctionName", &by_ref("Sweeper"))]));
    assert!(!doc["Resources"]["SweeperErrorsAlarm"].is_null() && !doc["Resources"]["CleanupDeadLetterAlarm"].is_null());
}

#[test]
fn functions_finish_within_their_callers_limits() {
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    for f in t.functions().unwrap() {
        if !f.routes.is_empty() {
            // API Gateway REST gives up on an integration after 29 s.
            assert!(f.timeout_seconds <= 29, "{} (API) times out after {} s", f.logical_id, f.timeout_seconds);
        }
        if let Some(every) = f.schedule_seconds {
            assert!(f.timeout_seconds < every, "{} outlives its schedule", f.logical_id);
        }
    }
    let confirm = t.functions().unwrap().into_iter().find(|f| f.logical_id == "ConfirmUpload").unwrap();
    assert_eq!(confirm.timeout_seconds, 29);
    let sweeper = t.functions().unwrap().into_iter().find(|f| f.logical_id == "Sweeper").unwrap();
    assert_eq!(sweeper.timeout_seconds, 240);
}

#[test]
fn confirm_cannot_tag_objects() {
    let doc = raw();
    let actions: Vec<String> = grants(&doc, "ConfirmUpload").into_iter().map(|(a, _)| a).collect();
    assert!(!actions.iter().any(|a| a == "s3:PutObjectTagging"), "confirm may tag objects: {actions:?}");
    assert!(actions.iter().any(|a| a == "s3:DeleteObjectTagging"), "confirm must remove the pending tag");
}

#[test]
fn policies_grant_the_calls_the_functions_make() {
    let doc = raw();
    let table: Value = serde_yaml::from_str("!GetAtt UploadsTable.Arn").unwrap();
    let bucket: Value = serde_yaml::from_str("!GetAtt UploadsBucket.Arn").unwrap();
    let objects: Value = serde_yaml::from_str("!Sub \"${UploadsBucket.Arn}/uploads/*\"").unwrap();
    let allows =
        |f: &str, action: &str, resource: &Value| grants(&doc, f).iter().any(|(a, r)| a == action && r == resource);
    for f in ["DeleteUpload", "ConfirmUpload", "Sweeper", "Cleanup"] {
        assert!(allows(f, "dynamodb:BatchGetItem", &table), "{f}: BatchGetItem");
    }
    for f in ["DeleteUpload", "ConfirmUpload", "Sweeper"] {
        assert!(allows(f, "dynamodb:ConditionCheckItem", &table), "{f}: ConditionCheckItem");
    }
    assert!(allows("CreateUpload", "s3:ListBucketMultipartUploads", &bucket), "create's abort path lists uploads");
    // The sweeper finishes completions a confirm left in progress.
    for action in ["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:DeleteObjectTagging"] {
        assert!(allows("Sweeper", action, &objects), "Sweeper: {action}");
        assert!(allows("ConfirmUpload", action, &objects), "ConfirmUpload: {action}");
    }
    assert!(allows("Sweeper", "s3:ListBucket", &bucket), "Sweeper: ListBucket (404, not 403)");
}
