//! Keys of every kind the filter verifies (generated once from a fixed
//! seed), their JWKS, and tokens signed with them.

use hmac::{Hmac, Mac};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::SeedableRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};
use std::sync::OnceLock;

use super::encode;

/// Test keys, generated once from a fixed seed.
pub(crate) struct Keys {
    pub(crate) rsa: rsa::RsaPrivateKey,
    pub(crate) p256: p256::ecdsa::SigningKey,
    pub(crate) p384: p384::ecdsa::SigningKey,
    pub(crate) p521: p521::ecdsa::SigningKey,
    pub(crate) ed25519: ed25519_dalek::SigningKey,
    pub(crate) secret: Vec<u8>,
}

pub(crate) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        Keys {
            rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            p256: p256::ecdsa::SigningKey::random(&mut rng),
            p384: p384::ecdsa::SigningKey::random(&mut rng),
            p521: p521::ecdsa::SigningKey::random(&mut rng),
            ed25519: ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
            secret: b"a-shared-hmac-secret-of-64-bytes-so-hs384-and-hs512-may-use-it!!".to_vec(),
        }
    })
}

pub(crate) fn rsa_jwk(kid: &str) -> Value {
    let public = keys().rsa.to_public_key();
    json!({"kty": "RSA", "kid": kid, "n": encode(&public.n().to_bytes_be()), "e": encode(&public.e().to_bytes_be())})
}

/// One key of each kind, each with its own `kid`: `rsa`, `p256`, `p384`,
/// `p521`, `ed`, `hs`.
pub(crate) fn jwks_json() -> Value {
    let k = keys();
    let p256 = k.p256.verifying_key().to_encoded_point(false);
    let p384 = k.p384.verifying_key().to_encoded_point(false);
    let p521 = p521::ecdsa::VerifyingKey::from(&k.p521).to_encoded_point(false);
    json!({"keys": [
        rsa_jwk("rsa"),
        {"kty": "EC", "kid": "p256", "crv": "P-256", "x": encode(p256.x().unwrap()), "y": encode(p256.y().unwrap())},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": encode(p384.x().unwrap()), "y": encode(p384.y().unwrap())},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": encode(p521.x().unwrap()), "y": encode(p521.y().unwrap())},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": encode(k.ed25519.verifying_key().as_bytes())},
        {"kty": "oct", "kid": "hs", "k": encode(&k.secret)},
    ]})
}

pub(crate) fn sign(alg: &str, input: &[u8]) -> Vec<u8> {
    let k = keys();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let hmac = |mac: &mut dyn FnMut(&[u8]) -> Vec<u8>| mac(input);
    match alg {
        "HS256" => hmac(&mut |i| mac::<Hmac<Sha256>>(&k.secret, i)),
        "HS384" => hmac(&mut |i| mac::<Hmac<Sha384>>(&k.secret, i)),
        "HS512" => hmac(&mut |i| mac::<Hmac<Sha512>>(&k.secret, i)),
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(k.rsa.clone())
            .sign(input)
            .to_vec(),
        "RS384" => rsa::pkcs1v15::SigningKey::<Sha384>::new(k.rsa.clone())
            .sign(input)
            .to_vec(),
        "RS512" => rsa::pkcs1v15::SigningKey::<Sha512>::new(k.rsa.clone())
            .sign(input)
            .to_vec(),
        "PS256" => rsa::pss::SigningKey::<Sha256>::new(k.rsa.clone())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        "PS384" => rsa::pss::SigningKey::<Sha384>::new(k.rsa.clone())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        "PS512" => rsa::pss::SigningKey::<Sha512>::new(k.rsa.clone())
            .sign_with_rng(&mut rng, input)
            .to_vec(),
        "ES256" => {
            let s: p256::ecdsa::Signature = k.p256.sign(input);
            s.to_bytes().to_vec()
        }
        "ES384" => {
            let s: p384::ecdsa::Signature = k.p384.sign(input);
            s.to_bytes().to_vec()
        }
        "ES512" => {
            let s: p521::ecdsa::Signature = k.p521.sign(input);
            s.to_bytes().to_vec()
        }
        "EdDSA" => ed25519_dalek::Signer::sign(&k.ed25519, input)
            .to_bytes()
            .to_vec(),
        _ => Vec::new(),
    }
}

pub(crate) fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Vec<u8> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
    mac.update(input);
    mac.finalize().into_bytes().to_vec()
}

/// A compact token with this header and payload, signed as `alg` says.
pub(crate) fn token_with(header: &Value, claims: &Value, alg: &str) -> String {
    let input = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    format!("{input}.{}", encode(&sign(alg, input.as_bytes())))
}
