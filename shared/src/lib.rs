//! What the upload-session functions have in common: the domain types, the
//! DynamoDB session model ([`store`]), the S3 and SQS adapters, the one
//! error type and the HTTP edge.
//!
//! The item layout of the table is documented in [`store`].

pub mod auth;
pub mod aws;
pub mod completion;
pub mod config;
pub mod cursor;
pub mod deletion;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod objects;
pub mod progress;
pub mod queue;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod uploads;
pub mod views;

pub use config::Config;
pub use error::Error;
