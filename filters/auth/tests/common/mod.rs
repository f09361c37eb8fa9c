//! HS256 test credentials and requests shared by the auth filter's tests
//! (each test binary uses a part of it), and Envoy's `verify_signature` as
//! the harness answers it.
#![allow(dead_code)]

pub(crate) mod signing;

use filter_proxy::headers::HeaderMap;
use filter_proxy::request::{Request, TableHost};
use hmac::{Hmac, Mac};
use jose::SignatureHost;
use jose::signature::Verifier;
use serde_json::json;
use sha2::Sha256;

pub(crate) const SECRET: &[u8] = b"a-shared-hmac-secret-of-32-bytes";
/// An API key the tests give to consumer `billing`.
pub(crate) const KEY: &str = "k_live_0123456789abcdef";

/// A JWKS with [`SECRET`] as the HS256 key `hs`.
pub(crate) fn jwks() -> String {
    json!({"keys": [{"kty": "oct", "kid": "hs", "alg": "HS256", "k": encode(SECRET)}]}).to_string()
}

/// An HS256 token with these claims, signed with [`SECRET`].
pub(crate) fn token(claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        encode(br#"{"alg":"HS256","kid":"hs"}"#),
        encode(claims.to_string().as_bytes())
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", encode(&mac.finalize().into_bytes()))
}

/// Base64url without padding, as JWS writes it.
pub(crate) fn encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A GET of `path` on `api.example` with these headers after the
/// pseudo-headers, on a host with no properties.
pub(crate) fn request(path: &str, headers: &[(&str, &str)]) -> Request<TableHost> {
    let mut entries = vec![
        (":method".to_owned(), b"GET".to_vec()),
        (":path".to_owned(), path.as_bytes().to_vec()),
        (":authority".to_owned(), b"api.example".to_vec()),
    ];
    entries.extend(
        headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    );
    Request::new(HeaderMap::new(entries), TableHost::default())
}

/// Envoy's `verify_signature`, as the harness answers it (measured against
/// Envoy 1.40 by the ABI probe); counts the signatures it checked.
#[derive(Default)]
pub(crate) struct Envoy {
    pub(crate) checked: usize,
}

impl SignatureHost for Envoy {
    fn offers_verify_signature(&self) -> bool {
        true
    }

    fn verify_signature(&mut self, arguments: &[u8]) -> Result<Vec<u8>, u32> {
        proxy_wasm_harness::foreign_functions::verify_signature(arguments)
            .map_err(|status| status as u32)
    }

    fn checked(&mut self, by: Verifier) {
        if by == Verifier::Host {
            self.checked += 1;
        }
    }
}
