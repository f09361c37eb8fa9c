//! JOSE for proxy-wasm filters, apart from any filter: JWS compact tokens
//! with the claim checks of Envoy's `jwt_authn` ([`jwt`]), JSON Web Key
//! Sets ([`jwk`]), and where a signature is verified ([`signature`]: in the
//! module on RustCrypto, or through Envoy's `verify_signature` foreign
//! function, behind the [`SignatureHost`] trait so that this crate makes
//! no proxy-wasm call itself). Plain Rust, tested natively; the auth
//! filter (`filters/auth`) and its tests use it.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod jwk;
pub mod jwt;
pub mod signature;

pub use jwk::{Alg, Jwks};
pub use jwt::{JwtError, Requirements, Token};
pub use signature::{InModule, SignatureHost, verify_signature};
