//! `cargo xtask`: the project's commands (`src/main.rs`) and the tooling
//! that is no part of the local AWS: the IAM check of a test run's calls.
//!
//! Workspace layout: the local AWS (emulator, Runtime API, gateway, web ACL,
//! verifying S3, feeders, the stack built from `template.yaml`) is the
//! `local` crate; the bench and the capacity model are the `bench` crate.
//! xtask depends on both; neither depends on xtask.

pub mod events;
pub mod iam;
