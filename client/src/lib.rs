//! `uploads`, the command-line client of the upload sessions API, as a
//! library: the binary (`main.rs`) only parses the command line and turns
//! the result into an exit code; tests call the same functions.
//!
//! - [`api`]: a small client of the API's routes and their views;
//! - [`plan`], [`checksum`]: how a file is cut into parts, and the
//!   checksums S3 checks them against;
//! - [`transfer`]: parts sent in parallel, retried, URLs renewed;
//! - [`download`]: reading an upload back, verified;
//! - [`commands`]: put, resume, get, ls, rm, show;
//! - [`error`]: the one error type and its exit codes.

pub mod api;
pub mod checksum;
pub mod cli;
pub mod commands;
pub mod download;
pub mod error;
pub mod plan;
pub mod retry;
pub mod transfer;
pub mod ui;

pub use commands::run;
pub use error::Error;
