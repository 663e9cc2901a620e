//! The local AWS: everything `cargo xtask dev` and the black-box tests run
//! the functions against, built from `template.yaml`.
//!
//! Workspace layout: `local` (this crate) is the local AWS and depends on no
//! other tooling crate; `bench` (the measured binaries and the capacity
//! model) builds on it; `xtask` holds the commands and uses both; `tests`
//! uses `local` and `bench`.
//!
//! Dependence inside runs one way, each module using only those before
//! it: this file (the project folder, region, account, instance limits) ←
//! `template`, `apigw`, `runtime`, `moto`, `pattern`, `wire` ← `waf`,
//! `feeder`, `s3verify`, `catalogue` ← `gateway` ← `stack` ← `streams`,
//! `events`, `samlocal`; `apppage` (the local web app) and `chromium` (the
//! browser the web tests drive) stand alone. Some unit tests build a
//! `Stack` to test with. `README.md` says what each module emulates and
//! where AWS differs.
//!
//! Facts every part of the local stack shares, with no dependence on any of
//! them: the project's folder, the local region and account, and how many
//! instances of one function may run at once, each taking how many
//! invocations at once.

pub mod apigw;
pub mod apppage;
pub mod catalogue;
pub mod chromium;
pub mod events;
pub mod feeder;
pub mod gateway;
pub mod moto;
pub mod pattern;
pub mod runtime;
pub mod s3verify;
pub mod samlocal;
pub mod stack;
pub mod streams;
pub mod template;
pub mod waf;
pub mod wire;

use std::path::PathBuf;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// Default of `UPLOADS_MAX_INSTANCES`: instances of one function the local
/// stack runs at most at the same time.
pub const DEFAULT_MAX_INSTANCES: usize = 4;

/// The project's root folder (where `template.yaml` lives).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default()
}

/// `UPLOADS_MAX_INSTANCES` (1..=64), else [`DEFAULT_MAX_INSTANCES`].
pub fn max_instances() -> anyhow::Result<usize> {
    match std::env::var("UPLOADS_MAX_INSTANCES") {
        Ok(v) if !v.is_empty() => match v.parse::<usize>() {
            Ok(n) if (1..=64).contains(&n) => Ok(n),
            _ => anyhow::bail!("UPLOADS_MAX_INSTANCES must be a whole number from 1 to 64, not {v:?}"),
        },
        _ => Ok(DEFAULT_MAX_INSTANCES),
    }
}

/// `UPLOADS_MAX_CONCURRENCY` (1..=1600, Lambda's own bounds), else 1:
/// invocations one instance of an API function takes at once. Above 1, the
/// local stack runs the API functions as Lambda Managed Instances does, each
/// instance started with `AWS_LAMBDA_MAX_CONCURRENCY` set to it.
pub fn max_concurrency() -> anyhow::Result<usize> {
    match std::env::var("UPLOADS_MAX_CONCURRENCY") {
        Ok(v) if !v.is_empty() => match v.parse::<usize>() {
            Ok(n) if (1..=1600).contains(&n) => Ok(n),
            _ => anyhow::bail!("UPLOADS_MAX_CONCURRENCY must be a whole number from 1 to 1600, not {v:?}"),
        },
        _ => Ok(1),
    }
}
