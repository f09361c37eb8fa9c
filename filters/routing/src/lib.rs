//! The routing filter: a first-match list of rules, each a match expression
//! and an action: choose the upstream cluster (a header a route's
//! `cluster_header` reads; weighted and sticky splits), rewrite path, query
//! and host, redirect, answer directly or deny. The logic ([`Config`],
//! [`route`]) is plain Rust tested natively; the proxy-wasm glue lives in
//! `filter` (wasm32 only). The configuration is documented in this crate's
//! README.
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
pub mod rewrite;
pub mod route;

pub use config::Config;
pub use route::{Outcome, ReplyKind, Spreader, Taken};
