//! HS256 test credentials and requests shared by the auth filter's tests
//! (each test binary uses a part of it).
#![allow(dead_code)]

use filter_common::headers::HeaderMap;
use filter_common::request::{Request, TableHost};
use hmac::{Hmac, Mac};
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
fn encode(bytes: &[u8]) -> String {
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
