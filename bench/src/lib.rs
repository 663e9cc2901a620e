//! Performance, measured and modeled: where a reader looks for the numbers
//! in `docs/performance.md` and `docs/capacity.md`.
//!
//! - [`binaries`]: `cargo xtask bench`, every function's release binary run
//!   through the local Lambda Runtime API against the local stack, its
//!   latency and AWS calls measured (the calls counted on the wire by
//!   `local::wire`).
//! - [`capacity`]: `cargo xtask capacity`, a modeled peak of traffic
//!   through the table's key layout, held against DynamoDB's per-partition
//!   limits, with the on-demand cost per million uploads.
//! - [`rng`]: the seeded generator the model (and the randomized tests) draw
//!   from.
//!
//! Workspace layout: `local` (the local AWS) ← `bench` (this crate) ←
//! `xtask` (the commands); `tests` uses `local` and `bench`. Nothing here
//! depends on xtask.

pub mod binaries;
pub mod capacity;
pub mod rng;
