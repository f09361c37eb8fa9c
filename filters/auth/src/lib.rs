//! The auth filter: basic auth, API keys, JWT with local and remote JWKS,
//! external authorization, consumers and policies. The logic is plain Rust
//! tested natively ([`Config`], [`policy::evaluate`], [`answer`],
//! [`remote`]); the proxy-wasm glue lives in `filter` (wasm32 only). Tokens,
//! key sets and signatures are the `jose` crate's (`filters/jose`). The
//! configuration is documented in this crate's README.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod answer;
pub mod basic;
pub mod config;
pub mod ext_authz;
// The proxy-wasm glue (its `main!` exports the module's entry points).
#[cfg(target_arch = "wasm32")]
mod filter;
pub mod policy;
pub mod remote;
pub mod source;

pub use config::Config;
