//! Structured logging. JSON lines when Lambda asks for them
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`) or `LOG_FORMAT=json`; compact text
//! otherwise.
//!
//! The level (`AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, default `info`) is a
//! plain level name and applies to this project's crates only. Every other
//! crate (the AWS SDK, hyper, the Lambda runtime) logs at `warn` at most,
//! whatever is configured: at `debug` and `trace` they log whole events,
//! headers and bodies, which carry API keys and presigned signatures. A
//! value that is not a level name (a directive such as `aws_smithy=trace`
//! among them) falls back to `info`, so no setting can turn them on.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Crates whose log lines are ours: the shared crate and every function.
const OWN_CRATES: &[&str] = &[
    "shared",
    "create_upload",
    "get_upload",
    "list_uploads",
    "confirm_upload",
    "resume_upload",
    "delete_upload",
    "cleanup",
    "sweeper",
];

/// The most any other crate may log.
const DEPENDENCY_CAP: LevelFilter = LevelFilter::WARN;

/// The configured level of this project's crates.
fn level(value: Option<String>) -> LevelFilter {
    match value.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
        Some("trace") => LevelFilter::TRACE,
        Some("debug") => LevelFilter::DEBUG,
        Some("warn") => LevelFilter::WARN,
        Some("error") | Some("fatal") => LevelFilter::ERROR,
        _ => LevelFilter::INFO,
    }
}

/// The filter: `level` for our crates, at most [`DEPENDENCY_CAP`] for the rest.
pub fn filter(level: LevelFilter) -> Targets {
    OWN_CRATES.iter().fold(Targets::new().with_default(DEPENDENCY_CAP.min(level)), |t, c| t.with_target(*c, level))
}

pub fn init() {
    let level = level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().or_else(|| std::env::var("RUST_LOG").ok()));
    let json = ["AWS_LAMBDA_LOG_FORMAT", "LOG_FORMAT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|f| f.eq_ignore_ascii_case("json")));
    let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_target(false);
    let registry = tracing_subscriber::registry().with(filter(level));
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        registry.with(fmt.json().flatten_event(true).with_current_span(true).with_span_list(false)).try_init()
    } else {
        registry.with(fmt.compact()).try_init()
    };
}

/// For tests: compact lines through libtest's capture, so a passing test is
/// quiet and a failing one shows its logs.
pub fn init_for_tests() {
    let _ = tracing_subscriber::registry()
        .with(filter(LevelFilter::INFO))
        .with(tracing_subscriber::fmt::layer().with_test_writer().compact())
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn only_level_names_are_levels() {
        assert_eq!(level(Some("TRACE".into())), LevelFilter::TRACE);
        assert_eq!(level(Some("FATAL".into())), LevelFilter::ERROR);
        assert_eq!(level(Some("aws_smithy_runtime=trace".into())), LevelFilter::INFO);
        assert_eq!(level(None), LevelFilter::INFO);
    }

    #[test]
    fn dependencies_never_log_below_warn() {
        let f = filter(LevelFilter::TRACE);
        assert!(f.would_enable("shared::http", &Level::TRACE));
        assert!(f.would_enable("confirm_upload", &Level::DEBUG));
        for dep in ["lambda_runtime", "lambda_runtime_api_client", "lambda_http", "aws_smithy_runtime", "hyper", "h2"] {
            assert!(!f.would_enable(dep, &Level::INFO), "{dep}");
            assert!(f.would_enable(dep, &Level::WARN), "{dep}");
        }
        let quiet = filter(LevelFilter::ERROR);
        assert!(!quiet.would_enable("aws_smithy_runtime", &Level::WARN));
    }
}

/// Emits one CloudWatch metric in Embedded Metric Format: a JSON line on
/// stdout that Lambda's log pipeline turns into the metric `name` (no
/// dimensions) in `namespace`.
pub fn metric(namespace: &str, name: &str, value: f64) {
    println!("{}", metric_line(namespace, name, value, crate::domain::Timestamp::now()));
}

/// The level every metric line carries: the most severe Lambda knows, so
/// that no `ApplicationLogLevel` (the template's `LogLevel`, up to FATAL)
/// filters a metric out. Lambda gives a JSON line without a valid `level`,
/// or without a valid RFC 3339 `timestamp`, the level INFO, and drops it
/// at WARN and above: the alarms on these metrics could never fire.
pub const METRIC_LEVEL: &str = "FATAL";

/// One metric's Embedded Metric Format line, as of `now`.
pub fn metric_line(namespace: &str, name: &str, value: f64, now: crate::domain::Timestamp) -> serde_json::Value {
    let mut line = serde_json::json!({
        "level": METRIC_LEVEL,
        "timestamp": now.to_rfc3339(),
        "_aws": {
            "Timestamp": now.unix_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[]],
                "Metrics": [{ "Name": name, "Unit": "Count" }],
            }],
        },
    });
    line[name] = serde_json::json!(value);
    line
}

#[cfg(test)]
mod metric_tests {
    use super::*;
    use crate::domain::Timestamp;

    /// The line passes Lambda's log-level filter at every level the
    /// template allows, and is still a valid EMF document.
    #[test]
    fn a_metric_line_survives_every_log_level() {
        let now = Timestamp::parse("2026-12-06T12:00:00Z").unwrap();
        let line = metric_line("UploadSessions/s", "StuckCleanupTasks", 2.0, now);
        assert_eq!(line["level"], "FATAL");
        let stamp = line["timestamp"].as_str().unwrap();
        assert_eq!(Timestamp::parse(stamp), Some(now), "an RFC 3339 timestamp Lambda accepts");
        let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap();
        let levels = template.split("AllowedValues: [TRACE, DEBUG, INFO, WARN, ERROR, FATAL]").count();
        assert!(levels > 1, "LogLevel's values are the ones this test knows");
        assert_eq!(line["_aws"]["Timestamp"], now.unix_millis());
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "StuckCleanupTasks");
        assert_eq!(line["StuckCleanupTasks"], 2.0);
    }
}
