//! Structured logging. JSON lines when Lambda asks for them
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`) or `LOG_FORMAT=json`; compact text
//! otherwise. The level comes from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`
//! (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned())
        .to_ascii_lowercase();
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = ["AWS_LAMBDA_LOG_FORMAT", "LOG_FORMAT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|f| f.eq_ignore_ascii_case("json")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_target(false);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// For tests: compact lines through libtest's capture, so a passing test is
/// quiet and a failing one shows its logs.
pub fn init_for_tests() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_test_writer()
        .compact()
        .try_init();
}
