//! Dev tooling shared by `cargo xtask` and the black-box tests: the moto
//! emulator, the local stack built from `template.yaml`, a Lambda Runtime
//! API that runs each function's real binary, the local API Gateway, and
//! the SQS feeder.
//!
//! Dependence runs one way: `local` (constants) ← `template`, `apigw`,
//! `runtime`, `moto`, `waf`, `pattern` ← `gateway`, `feeder` ← `stack` ←
//! `streams` (the table stream's feeder), `events` (reading them); `wire` (the
//! counting proxy) and `apppage` (the local web app on the API) stand
//! alone, and `bench` sits on top of them all.

pub mod apigw;
pub mod apppage;
pub mod bench;
pub mod capacity;
pub mod catalogue;
pub mod chromium;
pub mod events;
pub mod feeder;
pub mod gateway;
pub mod iam;
pub mod local;
pub mod moto;
pub mod pattern;
pub mod rng;
pub mod runtime;
pub mod s3verify;
pub mod samlocal;
pub mod stack;
pub mod streams;
pub mod template;
pub mod waf;
pub mod wire;
