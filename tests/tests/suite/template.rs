//! What `template.yaml` must keep true, checked on the file itself.

use local::stack::{project_root, Stack};
use local::template::Template;
use local::waf::{AggregateKey, Field, Match, Statement};
use serde_yaml::Value;

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
        ("POST", "/tokens", "MintToken"),
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
    assert_eq!(functions.len(), 10);
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
    assert_eq!(functions, 10);
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
    assert_eq!(functions.len(), 10);
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
    // Besides the functions' groups, only the API's access log and the web
    // ACL's log (tested below).
    let mut others: Vec<&str> = doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(id, r)| r["Type"] == "AWS::Logs::LogGroup" && !groups.iter().any(|g| *id == g.as_str()))
        .map(|(id, _)| id.as_str().unwrap())
        .collect();
    others.sort();
    assert_eq!(others, ["ApiAccessLogGroup", "WafLogGroup"], "a log group belongs to no function and no log");
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
    // No key reaches WAF's logs, samples or rate-based details.
    let protected: Vec<&str> = acl["Properties"]["DataProtectionConfig"]["DataProtections"]
        .as_sequence()
        .expect("data protection")
        .iter()
        .inspect(|p| assert_eq!(p["Action"], "SUBSTITUTION", "{p:?}"))
        .inspect(|p| assert_ne!(p["ExcludeRateBasedDetails"], true, "{p:?}"))
        .flat_map(|p| p["Field"]["FieldKeys"].as_sequence().unwrap().iter().map(|k| k.as_str().unwrap()))
        .collect();
    assert_eq!(protected, ["x-api-key", "authorization"]);
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
        if condition == "TokenRateLimitOn" {
            // Each browser token on its own, below its key's allowance.
            assert_eq!(ref_of(&rate["Limit"]), Some("TokenRateLimit"));
            let scope = &rate["ScopeDownStatement"]["RegexMatchStatement"];
            assert_eq!(scope["RegexString"], "^ ?bearer ubt_", "{rule:?}");
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
    assert_switch(&doc, "KeyRateLimitOn", "KeyRateLimit");
    assert_switch(&doc, "AnonymousRateLimitOn", "AnonymousRateLimit");
    assert_switch(&doc, "TokenRateLimitOn", "TokenRateLimit");
    // The ACL and its association exist while any rule is on.
    let or = tagged(&doc["Conditions"]["WebAclOn"], "!Or").and_then(Value::as_sequence).expect("WebAclOn: !Or");
    let mut either: Vec<&str> = or.iter().map(|c| tagged(c, "!Condition").and_then(Value::as_str).unwrap()).collect();
    either.sort();
    assert_eq!(either, ["AnonymousRateLimitOn", "KeyRateLimitOn", "RequestBodyLimitOn", "TokenRateLimitOn"]);
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
    let stack = Stack::unprovisioned("t").unwrap();
    let responses = stack.template.gateway_responses(|v| stack.resolve(v)).unwrap();
    for kind in ["THROTTLED", "WAF_FILTERED"] {
        let r = &responses[kind];
        assert_eq!(r.status, Some(429), "{kind}");
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
    // Each rule by name, with what decides it: the body's size, or the
    // rate rule's key and limit.
    let acl = |overrides: &[(&str, &str)]| {
        let mut stack = Stack::unprovisioned("t").unwrap();
        stack.parameters = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let acl = stack.web_acl().unwrap();
        acl.rules()
            .iter()
            .map(|r| {
                let what = match &r.statement {
                    Statement::Match(Match::Size { field: Field::Body { .. }, size, .. }) => format!("body > {size}"),
                    Statement::Match(_) => "match".to_owned(),
                    Statement::Rate { key: AggregateKey::Ip, limit, .. } => format!("ip {limit}"),
                    Statement::Rate { key: AggregateKey::Header { name, .. }, limit, .. } => format!("{name} {limit}"),
                };
                (r.name.clone(), what)
            })
            .collect::<Vec<_>>()
    };
    let rule = |name: &str, what: &str| (name.to_owned(), what.to_owned());
    let all = acl(&[]);
    assert_eq!(
        all,
        [
            rule("max-request-body", "body > 16384"),
            rule("per-x-api-key", "x-api-key 30000"),
            rule("per-bearer-key", "authorization 30000"),
            rule("per-ip-without-key", "ip 300"),
            rule("per-browser-token", "authorization 600"),
        ]
    );
    assert_eq!(acl(&[("MaxRequestBodyBytes", "4096")])[0], rule("max-request-body", "body > 4096"));
    assert_eq!(acl(&[("MaxRequestBodyBytes", "0")]), all[1..]);
    assert_eq!(acl(&[("KeyRateLimit", "0")]), [all[0].clone(), all[3].clone(), all[4].clone()]);
    assert_eq!(acl(&[("AnonymousRateLimit", "0")]), [&all[..3], &all[4..]].concat());
    assert_eq!(acl(&[("TokenRateLimit", "0")]), all[..4]);
    let off =
        [("KeyRateLimit", "0"), ("MaxRequestBodyBytes", "0"), ("AnonymousRateLimit", "0"), ("TokenRateLimit", "0")];
    assert_eq!(acl(&off), [], "no web ACL at all");
    let mut stack = Stack::unprovisioned("t").unwrap();
    stack.parameters = off.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
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
            // CloudWatch takes at most 10 metrics (MetricStat entries) and
            // 20 entries in all.
            let stats = metrics.iter().filter(|m| !m["MetricStat"].is_null()).count();
            assert!(stats <= 10, "{id}: CloudWatch allows 10 metrics an alarm");
            assert!(metrics.len() <= 20, "{id}: CloudWatch allows 20 entries an alarm");
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

// Upload events (shared::events; docs/operations.md, "Upload events").

/// The statements of `function`'s inline policies that allow `action`.
fn statements_allowing<'a>(doc: &'a Value, function: &str, action: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for policy in doc["Resources"][function]["Properties"]["Policies"].as_sequence().unwrap() {
        for st in policy["Statement"].as_sequence().unwrap() {
            let allows = match &st["Action"] {
                Value::String(a) => a == action,
                Value::Sequence(a) => a.iter().any(|x| x == action),
                _ => false,
            };
            if allows {
                out.push(st);
            }
        }
    }
    out
}

#[test]
fn the_table_stream_feeds_the_publisher_inserted_outbox_events_only() {
    let doc = raw();
    let table = &doc["Resources"]["UploadsTable"]["Properties"];
    assert_eq!(table["StreamSpecification"]["StreamViewType"], "NEW_IMAGE", "an insert carries the whole event");

    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    let publisher = t.functions().unwrap().into_iter().find(|f| f.logical_id == "Publisher").unwrap();
    assert_eq!(publisher.binary, "publisher");
    assert!(publisher.routes.is_empty() && publisher.queue.is_none() && publisher.schedule_seconds.is_none());
    let source = publisher.stream.expect("the publisher is fed by a stream");
    assert_eq!(source.table, "UploadsTable");
    assert_eq!(source.starting_position, "TRIM_HORIZON", "events written before the mapping are published too");
    assert!(source.report_batch_item_failures, "a failed event is retried from its own record");
    assert!(source.bisect_on_error);
    assert!(source.maximum_retry_attempts.is_some_and(|n| n >= 1), "a failing batch does not block the shard forever");
    assert!(source.maximum_record_age_seconds.is_some_and(|s| s <= 86_400));
    assert_eq!(source.on_failure.as_deref(), Some("EventsDeadLetterQueue"));
    assert_eq!(doc["Resources"]["EventsDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"], true);
    let event = doc["Resources"]["Publisher"]["Properties"]["Events"]["OutboxStream"]["Properties"].clone();
    assert_eq!(event["DestinationConfig"]["OnFailure"]["Type"], "SQS");

    // The filter, as Lambda applies it to the records the stream gives.
    let record = |name: &str, image: serde_json::Value| serde_json::json!({"eventName": name, "dynamodb": {"Keys": {}, "NewImage": image, "SequenceNumber": "1"}});
    let outbox = serde_json::json!({"pk": {"S": "EVENT#evt_1"}, "sk": {"S": "EVENT"}, "type": {"S": "event"}});
    let session = serde_json::json!({"pk": {"S": "UPLOAD#upl_1"}, "sk": {"S": "SESSION"}, "type": {"S": "session"}});
    let passes = |r: &serde_json::Value| local::pattern::matches_any(&source.filters, r).unwrap();
    assert!(passes(&record("INSERT", outbox.clone())));
    assert!(!passes(&record("MODIFY", outbox)), "a rewrite of a pending event is not a new event");
    assert!(!passes(&record("INSERT", session)));
    assert!(!passes(&serde_json::json!({"eventName": "REMOVE", "dynamodb": {"Keys": {}}})), "the publisher's deletes");

    // Every function knows the bus and the source; the publisher emits its
    // metrics where the sweeper does.
    let env = &doc["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(ref_of(&env["EVENT_BUS_NAME"]), Some("UploadEventsBus"));
    let source_name = tagged(&env["EVENT_SOURCE"], "!Sub").and_then(Value::as_str).unwrap();
    assert_eq!(source_name, "upload-sessions.${AWS::StackName}");
    let namespace =
        |f: &str| doc["Resources"][f]["Properties"]["Environment"]["Variables"]["METRICS_NAMESPACE"].clone();
    assert_eq!(namespace("Publisher"), namespace("Sweeper"));
    let bus = &doc["Resources"]["UploadEventsBus"];
    assert_eq!(bus["Type"], "AWS::Events::EventBus");
    assert_eq!(tagged(&bus["Properties"]["Name"], "!Sub").and_then(Value::as_str), Some("${AWS::StackName}-uploads"));
}

#[test]
fn publishers_reach_their_bus_and_outbox_items_only() {
    let doc = raw();
    let bus: Value = serde_yaml::from_str("!GetAtt UploadEventsBus.Arn").unwrap();
    let table: Value = serde_yaml::from_str("!GetAtt UploadsTable.Arn").unwrap();
    for f in function_ids(&doc) {
        let puts = statements_allowing(&doc, &f, "events:PutEvents");
        if f == "Publisher" || f == "Sweeper" {
            assert_eq!(puts.len(), 1, "{f}");
            assert_eq!(puts[0]["Resource"], bus, "{f} publishes to the stack's bus only");
        } else {
            assert!(puts.is_empty(), "{f} may publish events");
        }
    }
    // The outbox statements are held to EVENT# items.
    let outbox_only = |st: &Value| {
        st["Resource"] == table && st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"][0] == "EVENT#*"
    };
    for action in ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:DeleteItem"] {
        let st = statements_allowing(&doc, "Publisher", action);
        assert!(!st.is_empty() && st.iter().all(|st| outbox_only(st)), "Publisher: {action}");
        assert!(statements_allowing(&doc, "Sweeper", action).iter().any(|st| outbox_only(st)), "Sweeper: {action}");
    }
    assert!(statements_allowing(&doc, "Publisher", "dynamodb:PutItem").is_empty(), "the publisher writes no event");
    // Confirm now writes the completion's event in its transaction, and
    // nothing else with PutItem.
    // (Besides the token secret, which a token's first request may create.)
    let puts = statements_allowing(&doc, "ConfirmUpload", "dynamodb:PutItem");
    let config_only = |st: &Value| st["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"][0] == "CONFIG";
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|st| outbox_only(st) || config_only(st)), "{puts:?}");
    assert!(puts.iter().any(|st| outbox_only(st)), "{puts:?}");
}

#[test]
fn the_example_rule_and_the_webhook_deliver_this_stacks_events_only() {
    let doc = raw();
    let r = &doc["Resources"];
    let source: Value = serde_yaml::from_str("!Sub \"upload-sessions.${AWS::StackName}\"").unwrap();
    let kinds = ["upload.completed", "upload.deleted", "upload.expired"];
    for (rule, condition) in
        [("UploadEventsRule", "ExampleEventsQueueOn"), ("UploadEventsWebhookRule", "EventsWebhookOn")]
    {
        let p = &r[rule]["Properties"];
        assert_eq!(r[rule]["Condition"], condition, "{rule}");
        assert_eq!(ref_of(&p["EventBusName"]), Some("UploadEventsBus"), "{rule}");
        assert_eq!(p["EventPattern"]["source"], Value::Sequence(vec![source.clone()]), "{rule}");
        let types: Vec<&str> =
            p["EventPattern"]["detail-type"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(types, kinds, "{rule}");
        let target = &p["Targets"][0];
        let dlq: Value = serde_yaml::from_str("!GetAtt EventsDeliveryDeadLetterQueue.Arn").unwrap();
        assert_eq!(target["DeadLetterConfig"]["Arn"], dlq, "{rule}: undelivered events are kept");
        assert!(target["RetryPolicy"]["MaximumEventAgeInSeconds"].as_u64().is_some(), "{rule}");
    }
    // The example queue: on by default, writable by its rule only.
    assert_eq!(doc["Parameters"]["ExampleEventsQueue"]["Default"], "true");
    let queue: Value = serde_yaml::from_str("!GetAtt UploadEventsQueue.Arn").unwrap();
    assert_eq!(r["UploadEventsRule"]["Properties"]["Targets"][0]["Arn"], queue);
    let policy = &r["UploadEventsQueuePolicy"]["Properties"];
    assert_eq!(ref_of(&policy["Queues"][0]), Some("UploadEventsQueue"));
    let st = &policy["PolicyDocument"]["Statement"][0];
    assert_eq!(st["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(st["Action"], "sqs:SendMessage");
    let rule_arn: Value = serde_yaml::from_str("!GetAtt UploadEventsRule.Arn").unwrap();
    assert_eq!(st["Condition"]["ArnEquals"]["aws:SourceArn"], rule_arn);
    for q in ["UploadEventsQueue", "EventsDeliveryDeadLetterQueue"] {
        assert_eq!(r[q]["Properties"]["SqsManagedSseEnabled"], true, "{q} encrypted");
    }

    // The webhook: an API key connection with a secret parameter, called
    // with a role that may invoke that destination only.
    let key = &doc["Parameters"]["EventsWebhookApiKey"];
    assert_eq!(key["NoEcho"], true);
    assert_eq!(doc["Parameters"]["EventsWebhookUrl"]["Default"], "");
    let connection = &r["UploadEventsWebhookConnection"]["Properties"];
    assert_eq!(connection["AuthorizationType"], "API_KEY");
    let value = tagged(&connection["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"], "!Sub");
    assert_eq!(value.and_then(Value::as_str), Some("${EventsWebhookApiKey}"));
    let target = &r["UploadEventsWebhookRule"]["Properties"]["Targets"][0];
    assert_eq!(target["Arn"], serde_yaml::from_str::<Value>("!GetAtt UploadEventsWebhook.Arn").unwrap());
    assert_eq!(target["RoleArn"], serde_yaml::from_str::<Value>("!GetAtt UploadEventsWebhookRole.Arn").unwrap());
    let role = &r["UploadEventsWebhookRole"]["Properties"];
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"].as_sequence().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"], "events:InvokeApiDestination");
    assert_eq!(statements[0]["Resource"], target["Arn"]);
    let rule = &doc["Rules"]["EventsWebhookNeedsAKey"];
    assert!(
        !rule["Assertions"][0]["Assert"].is_null(),
        "a webhook without its key is refused before anything is created"
    );
    for id in
        ["UploadEventsWebhookConnection", "UploadEventsWebhook", "UploadEventsWebhookRole", "UploadEventsWebhookRule"]
    {
        assert_eq!(r[id]["Condition"], "EventsWebhookOn", "{id}");
    }

    // The parameters switch them as CloudFormation would.
    let with = |pairs: &[(&str, &str)]| {
        let mut stack = Stack::unprovisioned("t").unwrap();
        stack.parameters = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        stack
    };
    let default = with(&[]);
    for id in ["UploadEventsQueue", "UploadEventsRule", "UploadEventsQueuePolicy", "EventsDeliveryDeadLetterQueue"] {
        assert!(default.exists(id).unwrap(), "{id} by default");
    }
    assert!(!default.exists("UploadEventsWebhook").unwrap());
    let none = with(&[("ExampleEventsQueue", "false")]);
    assert!(!none.exists("UploadEventsQueue").unwrap() && !none.exists("EventsDeliveryDeadLetterQueue").unwrap());
    assert!(
        none.exists("UploadEventsBus").unwrap() && none.exists("Publisher").unwrap(),
        "events are published anyway"
    );
    let hook = with(&[("ExampleEventsQueue", "false"), ("EventsWebhookUrl", "https://app.example.com/hooks/uploads")]);
    assert!(hook.exists("UploadEventsWebhookRule").unwrap() && hook.exists("EventsDeliveryDeadLetterQueue").unwrap());
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    assert!(t.check_parameter("EventsWebhookUrl", "http://app.example.com/hook").is_err(), "HTTPS only");
}

#[test]
fn stuck_events_and_given_up_batches_raise_alarms() {
    let doc = raw();
    let r = &doc["Resources"];
    let stuck = &r["StuckEventsAlarm"]["Properties"];
    assert_eq!(stuck["MetricName"], "StuckEvents");
    assert_eq!(stuck["Namespace"], r["StuckCleanupTasksAlarm"]["Properties"]["Namespace"], "the sweeper's namespace");
    assert!(stuck["Dimensions"].is_null(), "the sweeper emits it without dimensions");
    assert_eq!(stuck["Threshold"], 1);
    assert_eq!(stuck["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    for (alarm, queue) in [
        ("EventsDeadLetterAlarm", "EventsDeadLetterQueue"),
        ("EventsDeliveryDeadLetterAlarm", "EventsDeliveryDeadLetterQueue"),
    ] {
        let p = &r[alarm]["Properties"];
        assert_eq!(p["MetricName"], "ApproximateNumberOfMessagesVisible", "{alarm}");
        let name: Value = serde_yaml::from_str(&format!("!GetAtt {queue}.QueueName")).unwrap();
        assert_eq!(p["Dimensions"][0]["Value"], name, "{alarm}");
        assert_eq!(p["Threshold"], 1, "{alarm}");
    }
    assert_eq!(r["EventsDeliveryDeadLetterAlarm"]["Condition"], r["EventsDeliveryDeadLetterQueue"]["Condition"]);
    let age = &r["PublisherIteratorAgeAlarm"]["Properties"];
    assert_eq!(age["MetricName"], "IteratorAge");
    assert_eq!(ref_of(&age["Dimensions"][0]["Value"]), Some("Publisher"));
    for o in ["EventBusName", "EventBusArn", "EventSource", "UploadEventsQueueUrl", "EventsDeadLetterQueueUrl"] {
        assert!(!doc["Outputs"][o].is_null(), "output {o}");
    }
    assert_eq!(doc["Outputs"]["UploadEventsQueueUrl"]["Condition"], "ExampleEventsQueueOn");
}

// Operations: access logs, bucket access logs, tracing, WAF logs, the API's
// alarms (docs/operations.md).

/// Every `$context.…` variable in an access log format, in order.
fn context_variables(format: &str) -> Vec<String> {
    format
        .match_indices("$context.")
        .map(|(at, _)| {
            format[at..]
                .chars()
                .skip(1)
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        })
        .collect()
}

/// The format with each variable replaced by a sample value, as API Gateway
/// renders it (`$context.error.messageString` comes quoted).
fn render_access_log(format: &str) -> serde_json::Value {
    let mut line = String::new();
    let mut rest = format;
    while let Some(at) = rest.find("$context.") {
        line.push_str(&rest[..at]);
        let variable: String = rest[at + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
        let variable = variable.trim_end_matches('.');
        line.push_str(if variable == "context.error.messageString" { "\"Internal server error\"" } else { "sample" });
        rest = &rest[at + 1 + variable.len()..];
    }
    line.push_str(rest);
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the access log format is not JSON once rendered: {e}: {line}"))
}

#[test]
fn api_access_logs_record_each_request_without_credentials() {
    let doc = raw();
    let api = &doc["Resources"]["UploadsApi"]["Properties"];
    let setting = &api["AccessLogSetting"];
    let destination = tagged(&setting["DestinationArn"], "!Sub").and_then(Value::as_str).expect("DestinationArn: !Sub");
    assert!(destination.ends_with(":log-group:${ApiAccessLogGroup}"), "{destination}");
    let group = &doc["Resources"]["ApiAccessLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert_eq!(ref_of(&group["Properties"]["RetentionInDays"]), Some("LogRetentionDays"));
    assert!(group["Condition"].is_null(), "the access log is always on");

    let format = setting["Format"].as_str().expect("a format");
    assert!(!format.contains('\n'), "one line per request");
    // Only variables that carry no credential: an allowlist, so a variable
    // added later is looked at before it is logged.
    let allowed = [
        "context.requestId",
        "context.extendedRequestId",
        "context.requestTime",
        "context.requestTimeEpoch",
        "context.identity.sourceIp",
        "context.identity.userAgent",
        "context.httpMethod",
        "context.resourcePath",
        "context.path",
        "context.protocol",
        "context.status",
        "context.responseLength",
        "context.responseLatency",
        "context.integration.latency",
        "context.integration.status",
        "context.integration.error",
        "context.integration.requestId",
        "context.waf.status",
        "context.waf.latency",
        "context.waf.error",
        "context.wafResponseCode",
        "context.error.messageString",
        "context.error.responseType",
        "context.xrayTraceId",
    ];
    let variables = context_variables(format);
    for v in &variables {
        assert!(allowed.contains(&v.as_str()), "${v} is not known to carry no credential");
    }
    let lower = format.to_ascii_lowercase();
    for secret in ["apikey", "api-key", "api_key", "authorization", "$input", "header", "$method", "$stagevariables"] {
        assert!(!lower.contains(secret), "the access log format mentions {secret}");
    }
    // Who, what, outcome, how long; WAF's verdict and the gateway's error.
    let line = render_access_log(format);
    let expect = [
        ("requestId", "context.requestId"),
        ("sourceIp", "context.identity.sourceIp"),
        ("userAgent", "context.identity.userAgent"),
        ("httpMethod", "context.httpMethod"),
        ("resourcePath", "context.resourcePath"),
        ("status", "context.status"),
        ("integrationLatency", "context.integration.latency"),
        ("responseLatency", "context.responseLatency"),
        ("wafStatus", "context.waf.status"),
        ("wafResponseCode", "context.wafResponseCode"),
        ("errorMessage", "context.error.messageString"),
    ];
    for (field, variable) in expect {
        assert!(!line[field].is_null(), "no {field} in the access log");
        assert!(
            format.contains(&format!("\"{field}\":\"${variable}\""))
                || format.contains(&format!("\"{field}\":${variable}")),
            "{field} is not ${variable}"
        );
    }

    // API Gateway's CloudWatch role (account-wide), kept when the stack goes.
    // On by default: without the account's role, the stage (with its access
    // log) cannot be created, and a first `sam deploy` must work anywhere.
    assert_eq!(doc["Parameters"]["CreateApiGatewayLoggingRole"]["Default"], "true");
    let on =
        tagged(&doc["Conditions"]["CreateApiGatewayLoggingRoleOn"], "!Equals").and_then(Value::as_sequence).unwrap();
    assert_eq!(ref_of(&on[0]), Some("CreateApiGatewayLoggingRole"));
    assert_eq!(on[1], "true");
    let account = &doc["Resources"]["ApiGatewayAccountSettings"];
    let role = &doc["Resources"]["ApiGatewayLoggingRole"];
    assert_eq!(account["Type"], "AWS::ApiGateway::Account");
    assert_eq!(role["Type"], "AWS::IAM::Role");
    for r in [account, role] {
        assert_eq!(r["Condition"], "CreateApiGatewayLoggingRoleOn");
        assert_eq!(r["DeletionPolicy"], "Retain", "deleting the stack must not break other APIs' logs");
    }
    assert_eq!(
        tagged(&account["Properties"]["CloudWatchRoleArn"], "!GetAtt").and_then(Value::as_str),
        Some("ApiGatewayLoggingRole.Arn")
    );
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "apigateway.amazonaws.com");
    let managed = tagged(&role["Properties"]["ManagedPolicyArns"][0], "!Sub").and_then(Value::as_str).unwrap();
    assert!(managed.ends_with(":iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"), "{managed}");
    // The stage waits for the setting when the stack makes it.
    let tags = tagged(&group["Properties"]["Tags"], "!If").and_then(Value::as_sequence).expect("Tags: !If");
    assert_eq!(tags[0], "CreateApiGatewayLoggingRoleOn");
    assert_eq!(ref_of(&tags[1][0]["Value"]), Some("ApiGatewayAccountSettings"));
    assert_eq!(ref_of(&tags[2]), Some("AWS::NoValue"));
}

#[test]
fn every_function_and_the_stage_are_traced() {
    let doc = raw();
    assert_eq!(doc["Globals"]["Function"]["Tracing"], "Active");
    for f in function_ids(&doc) {
        let own = &doc["Resources"][f.as_str()]["Properties"]["Tracing"];
        assert!(own.is_null() || *own == "Active", "{f} overrides Tracing with {own:?}");
    }
    assert_eq!(doc["Resources"]["UploadsApi"]["Properties"]["TracingEnabled"], true);
}

/// Every header name the web ACL's rules read (match statements and rate
/// keys), wherever it is nested.
fn acl_header_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                if k == "SingleHeader" || k == "Header" {
                    if let Some(name) = child["Name"].as_str() {
                        out.push(name.to_ascii_lowercase());
                    }
                }
                acl_header_names(child, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| acl_header_names(x, out)),
        Value::Tagged(t) => acl_header_names(&t.value, out),
        _ => {}
    }
}

#[test]
fn waf_logs_redact_every_credential_header() {
    let doc = raw();
    let acl = &doc["Resources"]["KeyRateLimitAcl"];
    let logging = &doc["Resources"]["WafLogging"];
    assert_eq!(logging["Type"], "AWS::WAFv2::LoggingConfiguration");
    assert_eq!(logging["Condition"], acl["Condition"], "logged exactly when the ACL exists");
    let p = &logging["Properties"];
    assert_eq!(tagged(&p["ResourceArn"], "!GetAtt").and_then(Value::as_str), Some("KeyRateLimitAcl.Arn"));
    let destinations = p["LogDestinationConfigs"].as_sequence().unwrap();
    assert_eq!(destinations.len(), 1);
    let destination = tagged(&destinations[0], "!Sub").and_then(Value::as_str).unwrap();
    assert!(destination.ends_with(":log-group:${WafLogGroup}"), "{destination} (WAF takes the ARN without :*)");
    let group = &doc["Resources"]["WafLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert_eq!(group["Condition"], acl["Condition"]);
    let name = tagged(&group["Properties"]["LogGroupName"], "!Sub").and_then(Value::as_str).unwrap();
    assert!(name.starts_with("aws-waf-logs-"), "WAF logs only to groups named aws-waf-logs-…: {name}");
    assert_eq!(ref_of(&group["Properties"]["RetentionInDays"]), Some("LogRetentionDays"));

    let mut redacted: Vec<String> = p["RedactedFields"]
        .as_sequence()
        .expect("RedactedFields")
        .iter()
        .map(|f| f["SingleHeader"]["Name"].as_str().expect("a redacted header").to_ascii_lowercase())
        .collect();
    redacted.sort();
    assert_eq!(redacted, ["authorization", "x-api-key"], "both headers a key comes in");
    // Whatever header the rules come to read, its value stays out of the log.
    let mut read = Vec::new();
    acl_header_names(&acl["Properties"]["Rules"], &mut read);
    read.sort();
    read.dedup();
    assert!(!read.is_empty());
    for header in read {
        assert!(redacted.contains(&header), "the ACL's rules read {header}, which its log does not redact");
    }
    // Blocked and counted requests; allowed ones are in the access log.
    let filter = &p["LoggingFilter"];
    assert_eq!(filter["DefaultBehavior"], "DROP");
    let kept: Vec<&str> = filter["Filters"][0]["Conditions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["ActionCondition"]["Action"].as_str().unwrap())
        .collect();
    assert_eq!(filter["Filters"][0]["Behavior"], "KEEP");
    assert!(kept.contains(&"BLOCK") && kept.contains(&"COUNT"), "{kept:?}");
}

#[test]
fn bucket_access_logs_are_an_option_into_a_private_bucket() {
    let doc = raw();
    assert_eq!(doc["Parameters"]["S3AccessLogging"]["Default"], "false");
    let on = tagged(&doc["Conditions"]["S3AccessLoggingOn"], "!Equals").and_then(Value::as_sequence).unwrap();
    assert_eq!(ref_of(&on[0]), Some("S3AccessLogging"));
    assert_eq!(on[1], "true");

    let logging = tagged(&doc["Resources"]["UploadsBucket"]["Properties"]["LoggingConfiguration"], "!If")
        .and_then(Value::as_sequence)
        .expect("LoggingConfiguration: !If");
    assert_eq!(logging[0], "S3AccessLoggingOn");
    assert_eq!(ref_of(&logging[1]["DestinationBucketName"]), Some("UploadsBucketLogs"));
    let prefix = logging[1]["LogFilePrefix"].as_str().unwrap();
    assert_eq!(ref_of(&logging[2]), Some("AWS::NoValue"));

    let bucket = &doc["Resources"]["UploadsBucketLogs"];
    assert_eq!(bucket["Type"], "AWS::S3::Bucket");
    assert_eq!(bucket["Condition"], "S3AccessLoggingOn");
    let b = &bucket["Properties"];
    for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        assert_eq!(b["PublicAccessBlockConfiguration"][k], true, "{k}");
    }
    // S3's log delivery writes to SSE-S3 buckets.
    assert_eq!(
        b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    let rules = b["LifecycleConfiguration"]["Rules"].as_sequence().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["Status"] == "Enabled" && ref_of(&r["ExpirationInDays"]) == Some("LogRetentionDays")));

    let policy = &doc["Resources"]["UploadsBucketLogsPolicy"];
    assert_eq!(policy["Condition"], "S3AccessLoggingOn");
    assert_eq!(ref_of(&policy["Properties"]["Bucket"]), Some("UploadsBucketLogs"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"].as_sequence().unwrap();
    let delivery = statements.iter().find(|s| s["Effect"] == "Allow").expect("log delivery allowed");
    assert_eq!(delivery["Principal"]["Service"], "logging.s3.amazonaws.com");
    assert_eq!(delivery["Action"], "s3:PutObject");
    let resource = tagged(&delivery["Resource"], "!Sub").and_then(Value::as_str).unwrap();
    assert_eq!(resource, format!("${{UploadsBucketLogs.Arn}}/{prefix}*"));
    assert_eq!(
        tagged(&delivery["Condition"]["ArnLike"]["aws:SourceArn"], "!GetAtt").and_then(Value::as_str),
        Some("UploadsBucket.Arn"),
        "only the uploads bucket's logs"
    );
    assert_eq!(ref_of(&delivery["Condition"]["StringEquals"]["aws:SourceAccount"]), Some("AWS::AccountId"));
    let tls = statements.iter().find(|s| s["Effect"] == "Deny").expect("TLS only");
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    assert_eq!(tls["Action"], "s3:*");

    // The local stack creates it only when asked to.
    let mut stack = Stack::unprovisioned("t").unwrap();
    assert!(!stack.exists("UploadsBucketLogs").unwrap());
    stack.parameters = [("S3AccessLogging".to_owned(), "true".to_owned())].into_iter().collect();
    assert!(stack.exists("UploadsBucketLogs").unwrap());
    // Tools take the first bucket of the template as the uploads bucket.
    let t = Template::load(&project_root().join("template.yaml")).unwrap();
    assert_eq!(t.of_kind("AWS::S3::Bucket").next().map(|(id, _)| id), Some("UploadsBucket"));
}

#[test]
fn api_alarms_watch_server_errors_and_p99_latency() {
    let doc = raw();
    // The alarms find the stage's metrics by the API's name.
    assert_eq!(ref_of(&doc["Resources"]["UploadsApi"]["Properties"]["Name"]), Some("AWS::StackName"));
    let stage: Value = serde_yaml::from_str("!Ref UploadsApi.Stage").unwrap();
    let name: Value = serde_yaml::from_str("!Ref AWS::StackName").unwrap();
    for (id, metric) in [("ApiServerErrorsAlarm", "5XXError"), ("ApiLatencyAlarm", "Latency")] {
        let alarm = &doc["Resources"][id];
        assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm", "{id}");
        let p = &alarm["Properties"];
        assert_eq!(p["Namespace"], "AWS/ApiGateway", "{id}");
        assert_eq!(p["MetricName"], metric, "{id}");
        let dims: Vec<(String, Value)> = p["Dimensions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|d| (d["Name"].as_str().unwrap().to_owned(), d["Value"].clone()))
            .collect();
        assert_eq!(dims, [("ApiName".to_owned(), name.clone()), ("Stage".to_owned(), stage.clone())], "{id}");
        let actions = tagged(&p["AlarmActions"], "!If").and_then(Value::as_sequence).unwrap();
        assert_eq!(actions[0], "HasAlarmTopic", "{id}");
        assert_eq!(ref_of(&actions[1][0]), Some("AlarmTopicArn"), "{id}");
        assert_eq!(p["TreatMissingData"], "notBreaching", "{id}");
    }
    // Any 5xx within a minute.
    let errors = &doc["Resources"]["ApiServerErrorsAlarm"]["Properties"];
    assert_eq!(errors["Statistic"], "Sum");
    assert!(errors["Period"].as_u64().is_some_and(|p| p <= 60));
    assert_eq!(errors["EvaluationPeriods"], 1);
    assert_eq!(errors["Threshold"], 1);
    assert_eq!(errors["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    // p99 above the parameter's threshold.
    let latency = &doc["Resources"]["ApiLatencyAlarm"]["Properties"];
    assert_eq!(latency["ExtendedStatistic"], "p99");
    assert!(latency["Statistic"].is_null());
    assert_eq!(ref_of(&latency["Threshold"]), Some("ApiLatencyAlarmMilliseconds"));
    assert_eq!(latency["ComparisonOperator"], "GreaterThanThreshold");
    let threshold = parameter_default(&doc, "ApiLatencyAlarmMilliseconds");
    // Under API Gateway's 29 s integration timeout, or it could never fire.
    assert!(threshold > 0 && threshold < 29_000, "{threshold}");
    assert!(doc["Parameters"]["ApiLatencyAlarmMilliseconds"]["MaxValue"].as_u64().is_some_and(|m| m <= 29_000));
}

/// What SAM CLI itself (`samcli`, from `.venv-tools/`) puts in each
/// function's container for `sam local invoke -t TEMPLATE --env-vars FILE`:
/// its own resolution, run without Docker.
const SAM_ENV: &str = r#"
import json, sys
from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
stacks, _ = SamLocalStackProvider.get_stacks(sys.argv[1])
provider = SamFunctionProvider(stacks)
runner = LocalLambdaRunner(local_runtime=None, function_provider=provider, cwd=".", real_path=".",
                           env_vars_values=json.load(open(sys.argv[2])))
print(json.dumps({f.name: {"env": runner._make_env_vars(f).resolve(), "codeuri": f.codeuri}
                  for f in provider.get_all()}))
"#;

/// `cargo xtask dev`'s files for `sam local` (local/src/samlocal.rs), for a
/// stack named as dev's with its bucket in the verifying S3 and its queue
/// URLs as moto gives them: one entry per function of the template, each
/// with every variable template.yaml gives that function (Globals and its
/// own) resolved, the endpoints and the queue URL on `host.docker.internal`;
/// and, through SAM CLI's own code, each container gets all of them (SAM
/// drops a variable its template does not declare: hence the local
/// template).
#[test]
fn sam_local_env_vars_point_every_function_at_the_dev_stack() {
    use local::samlocal::{self, CONTAINER_HOST};
    let mut stack = Stack::unprovisioned("dev").unwrap();
    stack.endpoint = "http://127.0.0.1:5055".into();
    stack.s3_endpoint = Some("http://127.0.0.1:5056".into());
    for (id, physical) in stack.resources.iter_mut() {
        if physical.arn.starts_with("arn:aws:sqs:") {
            physical.reference = format!("http://127.0.0.1:5055/123456789012/dev-{}", id.to_ascii_lowercase());
        }
    }
    let dir = project_root().join("target").join("tmp").join(format!("sam-local-{}", std::process::id()));
    let files = samlocal::write(&stack, CONTAINER_HOST, &dir).unwrap();
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&files.env_vars).unwrap()).unwrap();
    samlocal::check(&stack, &file, CONTAINER_HOST).unwrap();

    // Against the template's own text: Globals.Function.Environment plus
    // each function's.
    let doc = raw();
    let globals = doc["Globals"]["Function"]["Environment"]["Variables"].as_mapping().unwrap().clone();
    let ids = function_ids(&doc);
    let functions = Template::load(&project_root().join("template.yaml")).unwrap().functions().unwrap();
    assert_eq!(ids.len(), functions.len());
    let entries: Vec<&String> = file.as_object().unwrap().keys().filter(|k| *k != "Parameters").collect();
    assert_eq!(entries.len(), ids.len(), "{entries:?}");
    for id in &ids {
        let env = file[id.as_str()].as_object().unwrap_or_else(|| panic!("no entry for {id}"));
        let mut declared = globals.clone();
        if let Some(own) = doc["Resources"][id.as_str()]["Properties"]["Environment"]["Variables"].as_mapping() {
            declared.extend(own.clone());
        }
        for (name, _) in &declared {
            let name = name.as_str().unwrap();
            let value = env.get(name).and_then(|v| v.as_str()).unwrap_or_else(|| panic!("{id}: no {name}"));
            assert!(!value.is_empty() && !value.contains("!Ref") && !value.contains("${"), "{id}: {name}={value}");
        }
        assert_eq!(env["TABLE_NAME"], "dev-uploadstable", "{id}");
        assert_eq!(env["BUCKET_NAME"], "dev-uploadsbucket", "{id}");
        assert_eq!(env["CLEANUP_QUEUE_URL"], "http://host.docker.internal:5055/123456789012/dev-cleanupqueue", "{id}");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://host.docker.internal:5055", "{id}");
        assert_eq!(env["AWS_ENDPOINT_URL_S3"], "http://host.docker.internal:5056", "{id}");
        assert_eq!(env["AWS_REGION"], "us-east-1", "{id}");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"], "testing", "{id}");
        assert_eq!(env["S3_FORCE_PATH_STYLE"], "true", "{id}");
        for (name, value) in env {
            let value = value.as_str().unwrap();
            assert!(!value.contains("127.0.0.1") && !value.contains("localhost"), "{id}: {name}={value}");
        }
    }
    let commands = samlocal::commands(&files, CONTAINER_HOST);
    assert!(commands.iter().all(|c| c.contains("--env-vars ") && c.contains(" -t ")), "{commands:?}");

    // SAM CLI's own resolution, when its virtualenv is there (`cargo xtask
    // test` installs it first).
    let python = project_root().join(".venv-tools").join("bin").join("python");
    if !python.exists() {
        eprintln!("skipping SAM CLI's resolution: no {}", python.display());
        return;
    }
    let out = std::process::Command::new(&python)
        .args(["-c", SAM_ENV])
        .arg(&files.template)
        .arg(&files.env_vars)
        .current_dir(project_root())
        .env("SAM_CLI_TELEMETRY", "0")
        // The host's own AWS settings must not reach the containers.
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAHOSTKEY")
        .env("AWS_SECRET_ACCESS_KEY", "host-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sam: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for id in &ids {
        let container = &sam[id.as_str()]["env"];
        for (name, value) in file[id.as_str()].as_object().unwrap() {
            assert_eq!(&container[name], value, "{id}: SAM gives {name} {}", container[name]);
        }
        let code = sam[id.as_str()]["codeuri"].as_str().unwrap();
        assert!(code.ends_with(&format!(".aws-sam/build/{id}")), "{id}: {code}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Browsers on the allowed origin can call the API and read every answer:
/// SAM's `Cors` adds the preflights; every gateway response, the body size
/// rule's 413 and the functions' answers carry the same origin.
#[test]
fn every_answer_a_browser_can_get_carries_the_cors_origin() {
    let doc = raw();
    let p = &doc["Parameters"]["CorsAllowOrigin"];
    assert_eq!(p["Default"], "*");
    let pattern = regex_lite::Regex::new(p["AllowedPattern"].as_str().unwrap()).unwrap();
    for ok in ["*", "https://app.example.com", "http://localhost:8080"] {
        assert!(pattern.is_match(ok), "{ok}");
    }
    for bad in ["", "https://a.example.com,https://b.example.com", "https://app.example.com/path", "'*'", "null"] {
        assert!(!pattern.is_match(bad), "{bad}");
    }
    let origin = |v: &Value| tagged(v, "!Sub").and_then(Value::as_str).map(str::to_owned);
    let api = &doc["Resources"]["UploadsApi"]["Properties"];
    assert_eq!(origin(&api["Cors"]["AllowOrigin"]).as_deref(), Some("'${CorsAllowOrigin}'"));
    let allowed: Vec<&str> = api["Cors"]["AllowHeaders"].as_str().unwrap().trim_matches('\'').split(',').collect();
    for header in ["authorization", "content-type", "x-api-key", "x-upload-id"] {
        assert!(allowed.contains(&header), "{header} must be allowed: a wildcard does not cover Authorization");
    }
    let responses = api["GatewayResponses"].as_mapping().unwrap();
    for kind in ["THROTTLED", "WAF_FILTERED", "DEFAULT_4XX", "DEFAULT_5XX"] {
        let headers = &responses[kind]["ResponseParameters"]["Headers"];
        assert_eq!(origin(&headers["Access-Control-Allow-Origin"]).as_deref(), Some("'${CorsAllowOrigin}'"), "{kind}");
        assert!(headers["Access-Control-Expose-Headers"].as_str().unwrap().contains("x-request-id"), "{kind}");
        let body = responses[kind]["ResponseTemplates"]["application/json"].as_str().unwrap();
        assert!(body.contains("\"error\"") && body.contains("$context.requestId"), "{kind}: the API's error shape");
    }
    let env = &doc["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(ref_of(&env["CORS_ALLOW_ORIGIN"]), Some("CorsAllowOrigin"), "the functions' answers too");
    // The bucket takes the parts' PUTs from the same origin.
    let bucket_rules =
        doc["Resources"]["UploadsBucket"]["Properties"]["CorsConfiguration"]["CorsRules"].as_sequence().unwrap();
    for rule in bucket_rules {
        let origins = rule["AllowedOrigins"].as_sequence().unwrap();
        assert!(origins.iter().all(|o| ref_of(o) == Some("CorsAllowOrigin")), "{rule:?}");
    }
    let (_, body_rule) = acl_rules(&doc).into_iter().find(|(_, r)| r["Name"] == "max-request-body").unwrap();
    let headers = body_rule["Action"]["Block"]["CustomResponse"]["ResponseHeaders"].as_sequence().unwrap();
    assert!(headers
        .iter()
        .any(|h| h["Name"] == "Access-Control-Allow-Origin" && ref_of(&h["Value"]) == Some("CorsAllowOrigin")));
}
