//! The auth filter: basic auth, API keys, JWT with local and remote JWKS,
//! external authorization, consumers and policies. The logic is plain Rust
//! tested natively ([`Config`], [`policy::evaluate`], [`answer`],
//! [`remote`]); the proxy-wasm glue lives in `filter` (wasm32 only). The
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
// The proxy-wasm glue (its `main!` exports the module's entry points); off
// only for modules that embed the logic, such as the JWS vector runner.
#[cfg(all(target_arch = "wasm32", feature = "filter"))]
mod filter;
pub mod jwk;
pub mod jwt;
pub mod policy;
pub mod remote;
pub mod signature;
pub mod source;

pub use config::Config;
pub use jwk::{Alg, Jwks};
pub use jwt::{JwtError, Requirements, Token};
pub use signature::{InModule, SignatureHost, verify_signature};
