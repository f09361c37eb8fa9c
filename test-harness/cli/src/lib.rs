//! `proxy-wasm-harness`: runs scenario files in the harness, in a real
//! Envoy (`--envoy`), or both and compares them (`--compare`); `serve` runs
//! a filter chain as a local dev proxy.
//!
//! The binary is `proxy-wasm-harness`; this library gives its fuzzer to Rust
//! tests too ([`fuzz()`]).

mod chunked;
mod cli;
mod envoy_runner;
pub mod fuzz;
mod harness_runner;
mod lint;
mod outcome;
mod report;
mod scenario;
mod serve;

pub use cli::run;
pub use fuzz::{FuzzFinding, FuzzOptions, FuzzReport, fuzz};
