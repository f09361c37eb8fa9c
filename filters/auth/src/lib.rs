//! The auth filter's logic, growing towards the full filter (basic auth, API
//! keys, JWT with local and remote JWKS, external authorization, consumers
//! and policies). Landed: the JWT core — strict base64url, JWK sets, token
//! parsing, signature verification for HS/RS/PS 256-512, ES256/384 and
//! EdDSA with pure-Rust RustCrypto code, and `jwt_authn`'s claim checks.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod base64url;
pub mod jwk;
pub mod jwt;

pub use jwk::{Alg, Jwks};
pub use jwt::{JwtError, Requirements, Token};
