//! The header-transform filter: request, response, trailer and query edits
//! with templated values, guarded by conditions and scoped per route;
//! header-to-filter-state, CORS and replacement responses. The logic
//! ([`Config`], [`transform`]) is plain Rust tested natively; the proxy-wasm
//! glue lives in `filter` (wasm32 only). The configuration is documented in
//! this crate's README.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
#[cfg(target_arch = "wasm32")]
mod filter;
pub mod transform;

pub use config::Config;
pub use filter_proxy::reply::LocalReply;
pub use transform::{Decision, ResponseDecision};
