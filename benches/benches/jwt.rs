//! JWT verification natively, as the auth filter's logic runs it: parse,
//! verify the signature against a JWKS, check the claims. RS256 (2048-bit)
//! and ES256, side by side in one run; the per-request cost in the harness
//! follows when the filter's glue lands.
//!
//! `cargo bench -p proxy-wasm-benches --bench jwt`

use std::hint::black_box;

use auth::base64url::encode;
use auth::{Jwks, Requirements, Token};
use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::SeedableRng;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

fn signing_input() -> String {
    let claims =
        json!({"iss": "https://issuer.example", "sub": "alice", "aud": "api", "exp": NOW + 600});
    format!(
        "{}.{}",
        encode(br#"{"alg":"RS256","kid":"k"}"#),
        encode(claims.to_string().as_bytes())
    )
}

/// An RS256 token and its key set, and an ES256 pair.
fn fixtures() -> [(&'static str, String, Jwks); 2] {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
    let public = rsa_key.to_public_key();
    let input = signing_input();
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key).sign(input.as_bytes());
    let rs256 = format!("{input}.{}", encode(&signature.to_vec()));
    let rsa_jwks = json!({"keys": [{"kty": "RSA", "kid": "k", "n": encode(&public.n().to_bytes_be()), "e": encode(&public.e().to_bytes_be())}]});

    let ec_key = p256::ecdsa::SigningKey::random(&mut rng);
    let point = ec_key.verifying_key().to_encoded_point(false);
    let input = input.replacen(
        &encode(br#"{"alg":"RS256","kid":"k"}"#),
        &encode(br#"{"alg":"ES256","kid":"k"}"#),
        1,
    );
    let signature: p256::ecdsa::Signature = ec_key.sign(input.as_bytes());
    let es256 = format!("{input}.{}", encode(&signature.to_bytes()));
    let ec_jwks = json!({"keys": [{"kty": "EC", "kid": "k", "crv": "P-256", "x": encode(point.x().expect("x")), "y": encode(point.y().expect("y"))}]});

    let parse = |v: serde_json::Value| Jwks::parse(v.to_string().as_bytes()).expect("a JWKS");
    [
        ("RS256", rs256, parse(rsa_jwks)),
        ("ES256", es256, parse(ec_jwks)),
    ]
}

fn verify(c: &mut Criterion) {
    let rules = Requirements {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        ..Requirements::default()
    };
    let mut group = c.benchmark_group("jwt/native");
    for (alg, token, jwks) in fixtures() {
        group.bench_function(format!("{alg} parse+verify+claims"), |b| {
            b.iter(|| {
                let parsed = Token::parse(black_box(&token), 8192).expect("parses");
                parsed.verify(&jwks).expect("verifies");
                rules.check(&parsed, NOW).expect("claims hold");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
