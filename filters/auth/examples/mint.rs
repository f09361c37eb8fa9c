//! Mints test tokens with fixed, publicly known keys (seeded, never secret):
//! for scenario files and for users' own tests of a configuration.
//!
//! ```text
//! cargo run -p auth --example mint -- jwks [kid-suffix]   # the public key set
//! cargo run -p auth --example mint -- token ALG 'CLAIMS-JSON' [KID] [HEADER-JSON]
//! ```
//!
//! ALG is HS256, RS256, ES256, ES384, ES512 or EdDSA; KID defaults to the
//! algorithm's key id (`hs`, `rsa`, `p256`, `p384`, `p521`, `ed`). The HS256 secret is
//! `a-shared-hmac-secret-of-32-bytes`. A `kid-suffix` gives the same keys
//! other ids, to show a rotation.

use hmac::{Hmac, Mac};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::SeedableRng;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &[u8] = b"a-shared-hmac-secret-of-32-bytes";

struct Keys {
    rsa: rsa::RsaPrivateKey,
    p256: p256::ecdsa::SigningKey,
    p384: p384::ecdsa::SigningKey,
    p521: p521::ecdsa::SigningKey,
    ed25519: ed25519_dalek::SigningKey,
}

fn keys(seed: u64) -> Keys {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Keys {
        rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).expect("rsa key"),
        p256: p256::ecdsa::SigningKey::random(&mut rng),
        // Drawn after the others, so adding it left their keys unchanged.
        p384: p384::ecdsa::SigningKey::random(&mut rng),
        p521: p521::ecdsa::SigningKey::random(&mut rng),
        ed25519: ed25519_dalek::SigningKey::from_bytes(
            &[u8::try_from(seed % 256).unwrap_or(7); 32],
        ),
    }
}

fn jwks(k: &Keys, suffix: &str) -> Value {
    let rsa = k.rsa.to_public_key();
    let p = k.p256.verifying_key().to_encoded_point(false);
    let q = k.p384.verifying_key().to_encoded_point(false);
    let r = p521::ecdsa::VerifyingKey::from(&k.p521).to_encoded_point(false);
    json!({"keys": [
        {"kty": "RSA", "kid": format!("rsa{suffix}"), "alg": "RS256", "n": encode(&rsa.n().to_bytes_be()), "e": encode(&rsa.e().to_bytes_be())},
        {"kty": "EC", "kid": format!("p256{suffix}"), "crv": "P-256", "x": encode(p.x().expect("x")), "y": encode(p.y().expect("y"))},
        {"kty": "EC", "kid": format!("p384{suffix}"), "crv": "P-384", "x": encode(q.x().expect("x")), "y": encode(q.y().expect("y"))},
        {"kty": "EC", "kid": format!("p521{suffix}"), "crv": "P-521", "x": encode(r.x().expect("x")), "y": encode(r.y().expect("y"))},
        {"kty": "OKP", "kid": format!("ed{suffix}"), "crv": "Ed25519", "x": encode(k.ed25519.verifying_key().as_bytes())},
        {"kty": "oct", "kid": format!("hs{suffix}"), "alg": "HS256", "k": encode(SECRET)},
    ]})
}

fn sign(k: &Keys, alg: &str, input: &[u8]) -> Vec<u8> {
    match alg {
        "HS256" => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).expect("hmac key");
            mac.update(input);
            mac.finalize().into_bytes().to_vec()
        }
        "RS256" => rsa::pkcs1v15::SigningKey::<Sha256>::new(k.rsa.clone())
            .sign(input)
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
        other => {
            eprintln!("unknown algorithm {other}: HS256, RS256, ES256, ES384, ES512 or EdDSA");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed = std::env::var("MINT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let k = keys(seed);
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["jwks", rest @ ..] => println!("{}", jwks(&k, rest.first().copied().unwrap_or(""))),
        ["token", alg, claims, rest @ ..] => {
            let default_kid = match *alg {
                "HS256" => "hs",
                "RS256" => "rsa",
                "ES256" => "p256",
                "ES384" => "p384",
                "ES512" => "p521",
                _ => "ed",
            };
            let kid = rest.first().copied().unwrap_or(default_kid);
            let mut header = match rest.get(1) {
                Some(h) => serde_json::from_str(h).expect("header JSON"),
                None => json!({"alg": alg, "typ": "JWT"}),
            };
            if !kid.is_empty() {
                header["kid"] = json!(kid);
            }
            let claims: Value = serde_json::from_str(claims).expect("claims JSON");
            let input = format!(
                "{}.{}",
                encode(header.to_string().as_bytes()),
                encode(claims.to_string().as_bytes())
            );
            println!("{input}.{}", encode(&sign(&k, alg, input.as_bytes())));
        }
        _ => {
            eprintln!(
                "usage: mint jwks [kid-suffix] | mint token ALG CLAIMS-JSON [KID] [HEADER-JSON]"
            );
            std::process::exit(2);
        }
    }
}

/// Base64url without padding, as JWS writes it.
fn encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
