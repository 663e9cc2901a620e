//! The error catalogue: every error an AWS operation can answer, generated
//! from the service models botocore ships (in the moto virtualenv, `.venv/`;
//! `local/aws_models.py` reads them) plus the errors every call of a service
//! can meet, which the models do not declare. Nothing here is listed per
//! operation: an operation's entries are its model's `errors` and the
//! rules below, written once per service with the documentation that says
//! so. `tests/tests/suite/catalogue.rs` injects each entry through the fault proxy
//! ([`crate::wire`]) for every operation the functions are seen to call, and
//! `cargo xtask catalogue OPERATION…` prints an operation's entries.
//!
//! Each entry has a [`Class`], the kind of answer the service would be
//! giving, which decides what a route may answer for it (see
//! `docs/reliability.md`, "Error catalogue").

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// The services the functions call, as botocore names their models.
pub const SERVICES: &[&str] = &["s3", "dynamodb", "sqs"];

/// What kind of condition an error reports, and so what a caller may make
/// of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Throttling, an internal or unavailable service, a timed-out request,
    /// expired credentials: the same call succeeds a little later. A route
    /// answers it with success (the SDK's retries or its own got through)
    /// or 429/503 with `Retry-After`, never a 500 or another 4xx.
    Transient,
    /// A conditional write that collided with a concurrent one: retrying
    /// (or reading back what won) settles it. Answered as [`Class::Transient`]
    /// (202 where work goes on).
    Conflict,
    /// The deployment is wrong (permissions, a missing table, bucket or
    /// queue, a request the service refuses as malformed): no retry helps.
    /// Success where the call was optional, else 500 with the operation's
    /// failure message and nothing else.
    Configuration,
    /// An answer about the request's own subject (no such key or upload, a
    /// failed condition, a cancelled transaction, …): the code may read it
    /// as a result. Any answer of the contract, success, its 4xx, 429/503
    /// with `Retry-After`, or 500 with the failure message.
    Outcome,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Transient => "transient",
            Class::Conflict => "conflict",
            Class::Configuration => "configuration",
            Class::Outcome => "outcome",
        }
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The operation's `errors` in its service model.
    Model,
    /// Common to every call of the service.
    Common,
    /// Documented for calls that carry a condition.
    Conditional,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::Common => "common",
            Source::Conditional => "conditional",
        }
    }
}

/// One error an operation can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The error code on the wire (`__type`'s name, S3's `<Code>`).
    pub code: String,
    pub status: u16,
    pub source: Source,
    pub class: Class,
}

/// What the models say of one operation.
#[derive(Debug, Clone, Deserialize)]
pub struct OperationModel {
    pub errors: Vec<ModelError>,
    /// Conditional request headers its input can carry (`If-Match`, …).
    #[serde(default)]
    pub conditions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelError {
    pub shape: String,
    pub code: String,
    pub status: u16,
    #[serde(default)]
    pub fault: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServiceModel {
    pub api_version: Option<String>,
    pub protocol: Option<String>,
    pub operations: BTreeMap<String, OperationModel>,
}

/// The service models, as `local/aws_models.py` reduces them.
#[derive(Debug, Clone, Deserialize)]
pub struct Models {
    /// The botocore release they come from.
    pub botocore: String,
    pub services: BTreeMap<String, ServiceModel>,
}

/// Errors every call of a service can meet, with the documentation that
/// says so. Status codes as each service documents them: the AWS "Common
/// Errors" reference (ExpiredTokenException 403, InternalFailure 500,
/// ServiceUnavailable 503, ThrottlingException 400, AccessDeniedException
/// 403), DynamoDB's "Error handling with DynamoDB" (every 4xx is a 400 there;
/// InternalServerError 500, ServiceUnavailable 503), and S3's "Error
/// responses" list (AccessDenied 403, ExpiredToken 400, InternalError 500,
/// RequestTimeout 400, ServiceUnavailable 503, SlowDown 503).
const COMMON: &[(&str, &[(&str, u16)])] = &[
    (
        "s3",
        &[
            ("AccessDenied", 403),
            ("ExpiredToken", 400),
            ("InternalError", 500),
            ("RequestTimeout", 400),
            ("ServiceUnavailable", 503),
            ("SlowDown", 503),
        ],
    ),
    (
        "dynamodb",
        &[
            ("AccessDeniedException", 400),
            ("ExpiredTokenException", 400),
            ("InternalServerError", 500),
            ("ServiceUnavailable", 503),
            ("ThrottlingException", 400),
            ("UnrecognizedClientException", 400),
            ("ValidationException", 400),
        ],
    ),
    (
        "sqs",
        &[
            ("AccessDeniedException", 403),
            ("ExpiredTokenException", 403),
            ("InternalFailure", 500),
            ("ServiceUnavailable", 503),
            ("ThrottlingException", 400),
            ("ValidationError", 400),
        ],
    ),
];

impl Models {
    /// Reads the models of [`SERVICES`] from botocore in `.venv/` (created
    /// with moto if missing).
    pub fn load() -> Result<Self> {
        let python = crate::moto::ensure_installed()?;
        Self::load_with(&python)
    }

    /// As [`Models::load`], with this Python (one that has botocore).
    pub fn load_with(python: &Path) -> Result<Self> {
        let script = crate::project_root().join("local").join("aws_models.py");
        let out = std::process::Command::new(python)
            .arg(&script)
            .args(SERVICES)
            .output()
            .with_context(|| format!("running {} {}", python.display(), script.display()))?;
        if !out.status.success() {
            bail!("{} failed ({}): {}", script.display(), out.status, String::from_utf8_lossy(&out.stderr));
        }
        Self::parse(&out.stdout)
    }

    pub fn parse(json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json).context("reading the service models")
    }

    /// The model of `operation` (`service:Operation`, as the proxy names
    /// calls), or an error naming it when no model has it.
    pub fn operation(&self, operation: &str) -> Result<&OperationModel> {
        let (service, name) =
            operation.split_once(':').ok_or_else(|| anyhow!("{operation}: not a service:Operation name"))?;
        let model = self
            .services
            .get(service)
            .ok_or_else(|| anyhow!("{operation}: no service model for {service} (known: {SERVICES:?})"))?;
        model.operations.get(name).ok_or_else(|| anyhow!("{operation}: the {service} model has no operation {name}"))
    }

    /// Every error `operation` can answer, for a call that carried the
    /// conditional headers `conditions` (lowercase names, as the proxy
    /// records them): its model's errors, the service's common errors and
    /// the conditional ones, each code once (the model's status wins).
    pub fn errors(&self, operation: &str, conditions: &[String]) -> Result<Vec<Entry>> {
        let model = self.operation(operation)?;
        let service = operation.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let name = operation.split_once(':').map(|(_, n)| n).unwrap_or_default();
        let mut entries: Vec<Entry> = Vec::new();
        let mut add = |code: &str, status: u16, source: Source| {
            if !entries.iter().any(|e| e.code == code) {
                let class = classify(code, status);
                entries.push(Entry { code: code.to_owned(), status, source, class });
            }
        };
        for e in &model.errors {
            add(&e.code, e.status, Source::Model);
        }
        for (code, status) in COMMON.iter().filter(|(s, _)| *s == service).flat_map(|(_, c)| c.iter()) {
            add(code, *status, Source::Common);
        }
        for (code, status) in conditional(service, name, model, conditions) {
            add(code, status, Source::Conditional);
        }
        Ok(entries)
    }
}

/// The documented errors of conditional calls, by rule:
///
/// - S3, a call that carried a precondition (`If-Match`, `If-None-Match`,
///   `If-Modified-Since`, `If-Unmodified-Since`, which its model accepts):
///   412 `PreconditionFailed` when it does not hold; a write with
///   `If-Match`/`If-None-Match` (PutObject, CompleteMultipartUpload,
///   CopyObject): also 409 `ConditionalRequestConflict`, "a conflicting
///   operation occurred during the upload" (S3 User Guide, "Conditional
///   writes"; the API reference of PutObject's `If-None-Match`).
/// - DynamoDB, a single-item write (an operation whose model declares
///   `ConditionalCheckFailedException`: PutItem, UpdateItem, DeleteItem):
///   `TransactionConflictException`, the item being in a transaction at
///   the time ("Transactional errors", DynamoDB Developer Guide). A
///   `TransactWriteItems` with a client token can answer
///   `IdempotentParameterMismatchException` (its model declares it).
fn conditional(
    service: &str,
    operation: &str,
    model: &OperationModel,
    conditions: &[String],
) -> Vec<(&'static str, u16)> {
    let mut out = Vec::new();
    match service {
        "s3" => {
            let accepted = |c: &String| model.conditions.iter().any(|m| m.eq_ignore_ascii_case(c));
            let sent: Vec<&String> = conditions.iter().filter(|c| accepted(c)).collect();
            if !sent.is_empty() {
                out.push(("PreconditionFailed", 412));
            }
            let write = matches!(operation, "PutObject" | "CompleteMultipartUpload" | "CopyObject");
            if write
                && sent.iter().any(|c| c.eq_ignore_ascii_case("if-match") || c.eq_ignore_ascii_case("if-none-match"))
            {
                out.push(("ConditionalRequestConflict", 409));
            }
        }
        "dynamodb" => {
            if model.errors.iter().any(|e| e.code == "ConditionalCheckFailedException") {
                out.push(("TransactionConflictException", 400));
            }
            if operation == "TransactWriteItems" {
                out.push(("IdempotentParameterMismatchException", 400));
            }
        }
        _ => {}
    }
    out
}

/// The class of an error, from its code and status alone (the same rule for
/// every service and operation).
pub fn classify(code: &str, status: u16) -> Class {
    const TRANSIENT: &[&str] = &[
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "KmsThrottled",
        "SlowDown",
        "TransactionInProgressException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "ExpiredToken",
        "ExpiredTokenException",
    ];
    const CONFLICT: &[&str] =
        &["TransactionConflictException", "ReplicatedWriteConflictException", "ConditionalRequestConflict"];
    const CONFIGURATION: &[&str] = &[
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ValidationException",
        "ValidationError",
        "ResourceNotFoundException",
        "NoSuchBucket",
        "QueueDoesNotExist",
        "InvalidSecurity",
        "InvalidAddress",
        "UnsupportedOperation",
    ];
    if TRANSIENT.contains(&code) {
        Class::Transient
    } else if CONFLICT.contains(&code) {
        Class::Conflict
    } else if CONFIGURATION.contains(&code) || (code.starts_with("Kms") && code != "KmsThrottled") {
        Class::Configuration
    } else if status >= 500 {
        Class::Transient
    } else {
        Class::Outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> Models {
        Models::parse(
            br#"{"botocore": "1.0", "services": {
                "s3": {"api_version": "2006-03-01", "protocol": "rest-xml", "operations": {
                    "HeadObject": {"errors": [{"shape": "NoSuchKey", "code": "NoSuchKey", "status": 404}],
                                   "conditions": ["If-Match", "If-None-Match"]},
                    "CompleteMultipartUpload": {"errors": [], "conditions": ["If-Match", "If-None-Match"]},
                    "ListParts": {"errors": [], "conditions": []}}},
                "dynamodb": {"api_version": "2012-08-10", "protocol": "json", "operations": {
                    "UpdateItem": {"errors": [
                        {"shape": "ConditionalCheckFailedException", "code": "ConditionalCheckFailedException", "status": 400},
                        {"shape": "InternalServerError", "code": "InternalServerError", "status": 500, "fault": true}]},
                    "TransactWriteItems": {"errors": [
                        {"shape": "TransactionCanceledException", "code": "TransactionCanceledException", "status": 400}]},
                    "GetItem": {"errors": []}}}}}"#,
        )
        .unwrap()
    }

    fn codes(entries: &[Entry]) -> Vec<(&str, Source)> {
        entries.iter().map(|e| (e.code.as_str(), e.source)).collect()
    }

    #[test]
    fn an_operation_gets_its_model_errors_then_the_common_ones() {
        let m = models();
        let e = m.errors("s3:ListParts", &[]).unwrap();
        assert_eq!(e.len(), 6);
        assert!(e.iter().all(|e| e.source == Source::Common));
        let e = m.errors("dynamodb:UpdateItem", &[]).unwrap();
        assert_eq!(e[0].code, "ConditionalCheckFailedException");
        assert_eq!((e[1].code.as_str(), e[1].status, e[1].source), ("InternalServerError", 500, Source::Model));
        assert_eq!(e.iter().filter(|e| e.code == "InternalServerError").count(), 1, "each code once");
        assert!(codes(&e).contains(&("TransactionConflictException", Source::Conditional)), "a single-item write");
        let e = m.errors("dynamodb:GetItem", &[]).unwrap();
        assert!(!codes(&e).iter().any(|(c, _)| *c == "TransactionConflictException"), "a read");
        let e = m.errors("dynamodb:TransactWriteItems", &[]).unwrap();
        assert!(codes(&e).contains(&("IdempotentParameterMismatchException", Source::Conditional)));
    }

    #[test]
    fn s3_preconditions_come_with_the_calls_that_carry_them() {
        let m = models();
        let plain = m.errors("s3:CompleteMultipartUpload", &[]).unwrap();
        assert!(plain.iter().all(|e| e.source != Source::Conditional));
        let e = m.errors("s3:CompleteMultipartUpload", &["if-none-match".into()]).unwrap();
        let conditional: Vec<_> = e.iter().filter(|e| e.source == Source::Conditional).collect();
        assert_eq!(conditional.len(), 2);
        assert_eq!((conditional[0].code.as_str(), conditional[0].status), ("PreconditionFailed", 412));
        assert_eq!(
            (conditional[1].code.as_str(), conditional[1].status, conditional[1].class),
            ("ConditionalRequestConflict", 409, Class::Conflict)
        );
        let e = m.errors("s3:HeadObject", &["if-match".into()]).unwrap();
        assert!(codes(&e).contains(&("PreconditionFailed", Source::Conditional)));
        assert!(!codes(&e).iter().any(|(c, _)| *c == "ConditionalRequestConflict"), "a read has no write conflict");
    }

    #[test]
    fn an_operation_no_model_knows_is_an_error_naming_it() {
        let m = models();
        let err = m.errors("dynamodb:ExecuteStatement", &[]).unwrap_err().to_string();
        assert!(err.contains("dynamodb:ExecuteStatement"), "{err}");
        assert!(m.errors("kinesis:PutRecord", &[]).unwrap_err().to_string().contains("kinesis"));
        assert!(m.errors("nonsense", &[]).is_err());
    }

    #[test]
    fn classes_follow_the_code_then_the_status() {
        assert_eq!(classify("SlowDown", 503), Class::Transient);
        assert_eq!(classify("ExpiredToken", 400), Class::Transient);
        assert_eq!(classify("RequestTimeout", 400), Class::Transient);
        assert_eq!(classify("KmsThrottled", 400), Class::Transient);
        assert_eq!(classify("TransactionConflictException", 400), Class::Conflict);
        assert_eq!(classify("AccessDenied", 403), Class::Configuration);
        assert_eq!(classify("KmsDisabled", 400), Class::Configuration);
        assert_eq!(classify("ResourceNotFoundException", 400), Class::Configuration);
        assert_eq!(classify("NoSuchUpload", 404), Class::Outcome);
        assert_eq!(classify("ConditionalCheckFailedException", 400), Class::Outcome);
        assert_eq!(classify("SomethingNew", 502), Class::Transient);
    }
}
