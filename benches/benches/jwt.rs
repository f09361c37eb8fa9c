//! JWT verification natively, as the auth filter's logic runs it (parse,
//! verify the signature against a JWKS, check the claims), and per request
//! through the auth filter's wasm module in the harness, cold (the
//! verified-token cache off: every request verifies) and cached. RS256
//! (2048-bit) and ES256, side by side in one run.
//!
//! `cargo bench -p proxy-wasm-benches --bench jwt`

use std::hint::black_box;

use auth::base64url::encode;
use auth::{Jwks, Requirements, Token};
use criterion::{Criterion, criterion_group, criterion_main};
use proxy_wasm_harness::{Plugin, Progress, Runtime};
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

/// An RS256 token and its key set, and an ES256 pair (the set as JSON).
fn fixtures() -> [(&'static str, String, serde_json::Value); 2] {
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

    [("RS256", rs256, rsa_jwks), ("ES256", es256, ec_jwks)]
}

fn verify(c: &mut Criterion) {
    let rules = Requirements {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        ..Requirements::default()
    };
    let mut group = c.benchmark_group("jwt/native");
    for (alg, token, jwks) in fixtures() {
        let jwks = Jwks::parse(jwks.to_string().as_bytes()).expect("a JWKS");
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

fn in_harness(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("jwt/harness");
    for (alg, token, jwks) in fixtures() {
        let bearer = format!("Bearer {token}");
        let request = [
            (":method", "GET"),
            (":path", "/api/orders"),
            (":authority", "api.example"),
            ("authorization", bearer.as_str()),
        ];
        for (cache, size) in [("cold", 0), ("cached", 1024)] {
            let config = json!({
                "jwt_providers": [{"name": "main", "issuer": "https://issuer.example",
                                    "audiences": ["api"], "local_jwks": jwks}],
                "rules": [{"require": {"jwt": "main"}}],
                "token_cache_size": size
            });
            let mut vm = Plugin::builder(harness_fixtures::AUTH)
                .runtime(&runtime)
                .configuration(config.to_string())
                .build()
                .unwrap()
                .start()
                .unwrap();
            group.bench_function(format!("{alg} request, {cache}"), |b| {
                b.iter(|| {
                    let mut stream = vm.http_stream();
                    let progress = stream.send_request_headers(request, true).unwrap();
                    assert_eq!(progress, Progress::Continued, "the token passes");
                    stream
                        .send_response_headers([(":status", "200")], true)
                        .unwrap();
                    black_box(stream.finish().unwrap())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, verify, in_harness);
criterion_main!(benches);
