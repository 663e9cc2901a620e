//! IAM exactly as the code calls it: the emulator logs every request with
//! the access key id that signed it (each function of the local stack signs
//! with its logical id, presigned URLs included), and [`check`] holds those
//! calls against each function's policy in `template.yaml`.
//!
//! A call needs the IAM actions AWS authorizes it with: `TransactWriteItems`
//! its item actions (logged one per item), `HeadObject` `s3:GetObject` (and
//! `s3:ListBucket` when it answered 404, since without it S3 answers 403),
//! the multipart calls `s3:PutObject`, and so on. Policy conditions are not
//! evaluated: a statement whose action and resource match counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_yaml::Value;

use local::stack::Stack;
use local::template::scalar;
use local::{ACCOUNT, REGION};

/// The access key id of the tests' and the local tooling's own clients.
pub const TOOLING_KEY: &str = "testing";

/// One line of the emulator's call log.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Call {
    pub principal: String,
    pub service: String,
    pub operation: String,
    pub resource: String,
    pub status: u16,
}

/// An IAM action on a resource ARN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub action: String,
    pub arn: String,
}

/// What IAM authorizes `call` with.
pub fn needs(call: &Call) -> Vec<Need> {
    let need = |action: &str, arn: String| Need { action: action.to_owned(), arn };
    match call.service.as_str() {
        "dynamodb" => {
            vec![need(
                &format!("dynamodb:{}", call.operation),
                format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{}", call.resource),
            )]
        }
        "sqs" => {
            // SendMessageBatch, DeleteMessageBatch… are authorized as their
            // single-message actions; IAM has no `…Batch` SQS action.
            let action = call.operation.strip_suffix("Batch").unwrap_or(&call.operation);
            vec![need(&format!("sqs:{action}"), format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{}", call.resource))]
        }
        "s3" => {
            let object = format!("arn:aws:s3:::{}", call.resource);
            let bucket = format!("arn:aws:s3:::{}", call.resource.split('/').next().unwrap_or_default());
            match call.operation.as_str() {
                "HeadObject" | "GetObject" => {
                    let mut v = vec![need("s3:GetObject", object)];
                    if call.status == 404 {
                        v.push(need("s3:ListBucket", bucket));
                    }
                    v
                }
                "PutObject" | "UploadPart" | "CreateMultipartUpload" | "CompleteMultipartUpload" => {
                    vec![need("s3:PutObject", object)]
                }
                "ListParts" => vec![need("s3:ListMultipartUploadParts", object)],
                "AbortMultipartUpload" => vec![need("s3:AbortMultipartUpload", object)],
                "ListMultipartUploads" => vec![need("s3:ListBucketMultipartUploads", bucket)],
                // The keys are in the body; every key the service writes is under uploads/.
                "DeleteObjects" => vec![need("s3:DeleteObject", format!("{bucket}/uploads/*"))],
                "ListObjects" => vec![need("s3:ListBucket", bucket)],
                other => vec![need(&format!("s3:{other}"), object)],
            }
        }
        // PutEvents is authorized on the bus (logged by its name).
        "events" => vec![need(
            &format!("events:{}", call.operation),
            format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{}", call.resource),
        )],
        other => vec![need(&format!("{other}:{}", call.operation), call.resource.clone())],
    }
}

/// `*` matches any run of characters, `?` any one.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A function's allowed (action, resource pattern) pairs.
fn grants(stack: &Stack, function: &str) -> Result<Vec<(String, String)>> {
    let r = &stack.template.resources[function];
    let mut out = Vec::new();
    let policies = r.properties.get(Value::from("Policies")).and_then(Value::as_sequence).cloned().unwrap_or_default();
    for policy in policies {
        let statements = policy.get("Statement").and_then(Value::as_sequence).cloned().unwrap_or_default();
        for st in statements {
            if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
                continue;
            }
            let list = |v: Option<&Value>| -> Vec<Value> {
                match v {
                    Some(Value::Sequence(s)) => s.clone(),
                    Some(v) => vec![v.clone()],
                    None => vec![],
                }
            };
            let resources = list(st.get("Resource"))
                .iter()
                .map(|v| stack.resolve(v))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("resolving a resource of {function}'s policy"))?;
            for action in list(st.get("Action")).iter().filter_map(scalar) {
                for res in &resources {
                    out.push((action.clone(), res.clone()));
                }
            }
        }
    }
    Ok(out)
}

/// What [`check`] found for one function.
#[derive(Debug, Default)]
pub struct Report {
    /// Every need the function's calls had, with how many calls had it.
    pub used: BTreeMap<Need, usize>,
    /// The needs its policy does not grant.
    pub missing: BTreeSet<Need>,
}

/// Holds the calls in `log` against every function's policy. A function
/// that made no call at all is reported with an empty `used`, so a suite
/// that stopped exercising it cannot pass unnoticed.
pub fn check(log: &Path) -> Result<BTreeMap<String, Report>> {
    let stack = Stack::unprovisioned("*")?;
    let functions: Vec<String> = stack.template.functions()?.into_iter().map(|f| f.logical_id).collect();
    let mut reports: BTreeMap<String, Report> = functions.iter().map(|f| (f.clone(), Report::default())).collect();
    let mut granted = BTreeMap::new();
    for f in &functions {
        granted.insert(f.clone(), grants(&stack, f)?);
    }
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let call: Call = serde_json::from_str(line).with_context(|| format!("call log line {line:?}"))?;
        let Some(report) = reports.get_mut(&call.principal) else {
            // The tests' and the tooling's own clients sign as `testing`;
            // anything else is a signer no policy accounts for.
            if call.principal != TOOLING_KEY && !call.principal.is_empty() {
                anyhow::bail!(
                    "a call was signed by {:?}, which is no function of the template: {line}",
                    call.principal
                );
            }
            continue;
        };
        let grants = &granted[&call.principal];
        for need in needs(&call) {
            if !grants.iter().any(|(a, r)| glob(a, &need.action) && glob(r, &need.arn)) {
                report.missing.insert(need.clone());
            }
            *report.used.entry(need).or_default() += 1;
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("arn:aws:s3:::*-uploadsbucket/uploads/*", "arn:aws:s3:::t1-uploadsbucket/uploads/o/upl_1"));
        assert!(!glob("arn:aws:s3:::*-uploadsbucket/uploads/*", "arn:aws:s3:::t1-uploadsbucket/other"));
        assert!(glob("arn:aws:dynamodb:r:a:table/*-uploadstable", "arn:aws:dynamodb:r:a:table/t-uploadstable"));
        assert!(!glob(
            "arn:aws:dynamodb:r:a:table/*-uploadstable",
            "arn:aws:dynamodb:r:a:table/t-uploadstable/index/by_due"
        ));
        assert!(glob("s3:*", "s3:GetObject"));
    }

    #[test]
    fn a_missing_head_needs_list_bucket() {
        let call = Call {
            principal: "GetUpload".into(),
            service: "s3".into(),
            operation: "HeadObject".into(),
            resource: "b/uploads/o/upl_1".into(),
            status: 404,
        };
        let actions: Vec<String> = needs(&call).into_iter().map(|n| n.action).collect();
        assert_eq!(actions, ["s3:GetObject", "s3:ListBucket"]);
    }

    #[test]
    fn sqs_batches_need_their_single_message_action() {
        let call = Call {
            principal: "Cleanup".into(),
            service: "sqs".into(),
            operation: "SendMessageBatch".into(),
            resource: "t-cleanupqueue".into(),
            status: 200,
        };
        let actions: Vec<String> = needs(&call).into_iter().map(|n| n.action).collect();
        assert_eq!(actions, ["sqs:SendMessage"]);
    }

    #[test]
    fn the_template_grants_the_publishers_put_events_on_its_bus_only() {
        let stack = Stack::unprovisioned("*").unwrap();
        let call = |bus: &str| Call {
            principal: "Publisher".into(),
            service: "events".into(),
            operation: "PutEvents".into(),
            resource: bus.into(),
            status: 200,
        };
        for function in ["Publisher", "Sweeper"] {
            let grants = grants(&stack, function).unwrap();
            let allowed = |bus: &str| {
                needs(&call(bus)).iter().all(|n| grants.iter().any(|(a, r)| glob(a, &n.action) && glob(r, &n.arn)))
            };
            assert!(allowed("t9-uploads"), "{function}");
            assert!(!allowed("default"), "{function} may publish to the default bus");
        }
    }

    #[test]
    fn the_template_grants_what_a_delete_calls() {
        let stack = Stack::unprovisioned("*").unwrap();
        let grants = grants(&stack, "DeleteUpload").unwrap();
        let need = Need {
            action: "dynamodb:DeleteItem".into(),
            arn: format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t9-uploadstable"),
        };
        assert!(grants.iter().any(|(a, r)| glob(a, &need.action) && glob(r, &need.arn)));
        let not_granted =
            Need { action: "s3:DeleteObject".into(), arn: "arn:aws:s3:::t9-uploadsbucket/uploads/x".into() };
        assert!(!grants.iter().any(|(a, r)| glob(a, &not_granted.action) && glob(r, &not_granted.arn)));
    }
}
