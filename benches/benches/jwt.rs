//! JWT verification natively, as the auth filter's logic runs it (parse,
//! verify the signature against a JWKS, check the claims), and per request
//! through the auth filter's wasm module in the harness, cold (the
//! verified-token cache off: every request verifies, through the host's
//! `verify_signature` and in the module) and cached. RS256
//! (2048-bit), ES256 and ES384, side by side in one run; and ECDSA
//! verification through our JWS layer (`jose::jwk::P256Key` and kin) beside
//! the `p256` and `p384` crates called directly, on the same signatures.
//!
//! `cargo bench -p proxy-wasm-benches --bench jwt`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jose::{Jwks, Requirements, Token};
use proxy_wasm_harness::{Plugin, Progress, Runtime};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::SeedableRng;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
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

/// An RS256 token and its key set, and ES256 and ES384 pairs (the sets as
/// JSON).
fn fixtures() -> [(&'static str, String, serde_json::Value); 3] {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("an RSA key");
    let public = rsa_key.to_public_key();
    let input = signing_input();
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key).sign(input.as_bytes());
    let rs256 = format!("{input}.{}", encode(&signature.to_vec()));
    let rsa_jwks = json!({"keys": [{"kty": "RSA", "kid": "k", "n": encode(&public.n().to_bytes_be()), "e": encode(&public.e().to_bytes_be())}]});

    let with_alg = |alg: &str| {
        input.replacen(
            &encode(br#"{"alg":"RS256","kid":"k"}"#),
            &encode(format!(r#"{{"alg":"{alg}","kid":"k"}}"#).as_bytes()),
            1,
        )
    };
    // A token signed by a fresh key of the curve, and the key's set.
    macro_rules! ec_fixture {
        ($alg:literal, $crv:literal, $krate:ident) => {{
            let key = $krate::ecdsa::SigningKey::random(&mut rng);
            let point = key.verifying_key().to_encoded_point(false);
            let input = with_alg($alg);
            let signature: $krate::ecdsa::Signature = key.sign(input.as_bytes());
            let (x, y) = (point.x().expect("x"), point.y().expect("y"));
            (
                $alg,
                format!("{input}.{}", encode(&signature.to_bytes())),
                json!({"keys": [{"kty": "EC", "kid": "k", "crv": $crv, "x": encode(x), "y": encode(y)}]}),
            )
        }};
    }

    [
        ("RS256", rs256, rsa_jwks),
        ec_fixture!("ES256", "P-256", p256),
        ec_fixture!("ES384", "P-384", p384),
    ]
}

/// Signature verification alone: through our JWS layer (`r ‖ s` parsed on
/// every call) and straight through the RustCrypto crate it wraps, on the
/// same key, message and signature.
fn ecdsa(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let message = signing_input();
    let mut group = c.benchmark_group("ecdsa/native");
    macro_rules! side_by_side {
        ($curve:literal, $krate:ident, $ours:ty) => {{
            let key = $krate::ecdsa::SigningKey::random(&mut rng);
            let signature: $krate::ecdsa::Signature = key.sign(message.as_bytes());
            let point = key.verifying_key().to_encoded_point(false);
            let ours = <$ours>::from_coordinates(point.x().expect("x"), point.y().expect("y"))
                .expect("a key");
            let bytes = signature.to_bytes();
            group.bench_function(concat!($curve, " JWS layer"), |b| {
                b.iter(|| assert!(ours.verify(black_box(message.as_bytes()), &bytes)));
            });
            group.bench_function(concat!($curve, " ", stringify!($krate), " 0.13"), |b| {
                b.iter(|| {
                    let verified = key
                        .verifying_key()
                        .verify(black_box(message.as_bytes()), &signature);
                    assert!(verified.is_ok());
                });
            });
        }};
    }
    side_by_side!("P-256", p256, jose::jwk::P256Key);
    side_by_side!("P-384", p384, jose::jwk::P384Key);
    group.finish();
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
                parsed
                    .verify(&jwks, 8, &mut jose::InModule)
                    .expect("verifies");
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
        // "cold": the signature through the harness's `verify_signature`
        // (native RustCrypto, as Envoy's is native BoringSSL); "cold, in
        // module": a host without it, so the module's wasm RustCrypto.
        for (cache, size, host_verifies) in [
            ("cold", 0, true),
            ("cold, in module", 0, false),
            ("cached", 1024, true),
        ] {
            let config = json!({
                "jwt_providers": [{"name": "main", "issuer": "https://issuer.example",
                                    "audiences": ["api"], "local_jwks": jwks}],
                "rules": [{"require": {"jwt": "main"}}],
                "token_cache_size": size
            });
            let mut builder = Plugin::builder(harness_fixtures::AUTH)
                .runtime(&runtime)
                .configuration(config.to_string());
            if !host_verifies {
                builder = builder.foreign_function("verify_signature", |_| {
                    Err(proxy_wasm_harness::Status::NotFound)
                });
            }
            let mut vm = builder.build().unwrap().start().unwrap();
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

criterion_group!(benches, verify, ecdsa, in_harness);
criterion_main!(benches);

/// Base64url without padding, as JWS writes it.
fn encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
