//! The integration suite: one test binary, so that the AWS SDKs, the local
//! stack and the harness are linked once, and one process runs every test
//! against one moto server (each test with its own table, bucket and queues).
//!
//! Run one part with a filter: `cargo xtask test -- faults::` or
//! `cargo xtask test -- delete::owner_deletes`.

mod binaries;
mod browser;
mod capacity;
mod catalogue;
mod cleanup;
mod client;
mod concurrency;
mod contract;
mod delete;
mod downloads;
mod faults;
mod fuzz;
mod hostile;
mod integrity;
mod invariants;
mod isolation;
mod lifecycle;
mod list;
mod load;
mod races;
mod round_trips;
mod schema_agreement;
mod secrets;
mod signatures;
mod sweeper;
mod template;
mod web_client;
mod workload;
