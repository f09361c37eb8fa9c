//! The JWT core natively: every algorithm signs and verifies, the attack
//! suite is refused with Envoy's answers, claim checks honour clock skew and
//! lifetimes, key sets are parsed strictly, and 10,000 random or mutated
//! tokens never panic and never verify.
//!
//! Every signature is checked both ways, in the module and through Envoy's
//! `verify_signature` as the harness answers it (for RS*/ES*), and both
//! verdicts must agree.

use hmac::Hmac;
use jose::{Alg, InModule, Jwks, JwtError, Requirements, SignatureHost, Token};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::{RngCore, SeedableRng};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::Sha256;

mod common;

use common::Envoy;
use common::signing::{jwks_json, keys, mac, rsa_jwk, sign, token_with};

const NOW: u64 = 1_800_000_000;
const MAX: usize = 8192;

fn jwks() -> Jwks {
    Jwks::parse(jwks_json().to_string().as_bytes()).unwrap()
}

fn claims() -> Value {
    json!({"iss": "https://issuer.example", "sub": "alice", "aud": ["api"], "iat": NOW - 10, "exp": NOW + 600})
}

fn token(alg: &str, kid: &str) -> String {
    token_with(
        &json!({"alg": alg, "kid": kid, "typ": "JWT"}),
        &claims(),
        alg,
    )
}

fn requirements() -> Requirements {
    Requirements {
        issuer: Some("https://issuer.example".into()),
        audiences: vec!["api".into()],
        ..Requirements::default()
    }
}

/// Verifies `token` in the module and through the host; both must give
/// the same verdict.
fn verify(token: &Token<'_>, set: &Jwks) -> Result<(), JwtError> {
    let in_module = token.verify(set, 8, &mut InModule);
    let through_host = token.verify(set, 8, &mut Envoy::default());
    assert_eq!(in_module, through_host, "the two verifiers disagree");
    in_module
}

/// Parse, verify (both ways) and check, as the filter will.
fn check(text: &str) -> Result<Token<'_>, JwtError> {
    let token = Token::parse(text, MAX)?;
    verify(&token, &jwks())?;
    requirements().check(&token, NOW)?;
    Ok(token)
}

#[test]
fn every_algorithm_signs_and_verifies() {
    for (alg, kid) in [
        ("HS256", "hs"),
        ("HS384", "hs"),
        ("HS512", "hs"),
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("PS384", "rsa"),
        ("PS512", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("ES512", "p521"),
        ("EdDSA", "ed"),
    ] {
        let text = token(alg, kid);
        let token = check(&text).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(token.sub.as_deref(), Some("alice"));
        assert_eq!(
            token.claims.get("iss").and_then(|v| v.as_str()),
            Some("https://issuer.example")
        );
        // Without a kid every key that fits the algorithm is tried.
        let no_kid = token_with(&json!({"alg": alg}), &claims(), alg);
        assert!(check(&no_kid).is_ok(), "{alg} without kid");
    }
}

#[test]
fn rs_and_es_go_through_the_host_the_others_stay_in_the_module() {
    let set = jwks();
    for (alg, kid) in [
        ("HS256", "hs"),
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("ES512", "p521"),
        ("EdDSA", "ed"),
    ] {
        let text = token(alg, kid);
        let token = Token::parse(&text, MAX).unwrap();
        let mut envoy = Envoy::default();
        token.verify(&set, 8, &mut envoy).unwrap();
        let by_host = matches!(
            token.alg,
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Es256 | Alg::Es384 | Alg::Es512
        );
        assert_eq!(envoy.checked, usize::from(by_host), "{alg}");
        // A forged signature is refused by the host too.
        let (input, signature) = text.rsplit_once('.').unwrap();
        let mut forged = signature.as_bytes().to_vec();
        forged[4] = if forged[4] == b'A' { b'B' } else { b'A' };
        let forged = format!("{input}.{}", String::from_utf8(forged).unwrap());
        let token = Token::parse(&forged, MAX).unwrap();
        assert_eq!(
            verify(&token, &set),
            Err(JwtError::VerificationFailed),
            "{alg}"
        );
    }
}

#[test]
fn the_self_test_passes_on_envoy_and_says_why_elsewhere() {
    jose::signature::self_test(&mut Envoy::default()).unwrap();
    let missing = jose::signature::self_test(&mut InModule).unwrap_err();
    assert!(missing.contains("NOT_FOUND"), "{missing}");

    /// A host that accepts every signature must not be trusted.
    struct Yes;
    impl SignatureHost for Yes {
        fn offers_verify_signature(&self) -> bool {
            true
        }
        fn verify_signature(&mut self, _: &[u8]) -> Result<Vec<u8>, u32> {
            Ok(vec![0x08, 0x01]) // VerifySignatureResult { result: true }
        }
    }
    let yes = jose::signature::self_test(&mut Yes).unwrap_err();
    assert!(yes.contains("forged"), "{yes}");

    /// A host answering something else entirely.
    struct Garbage;
    impl SignatureHost for Garbage {
        fn offers_verify_signature(&self) -> bool {
            true
        }
        fn verify_signature(&mut self, _: &[u8]) -> Result<Vec<u8>, u32> {
            Ok(vec![0xff, 0xff, 0xff])
        }
    }
    let garbage = jose::signature::self_test(&mut Garbage).unwrap_err();
    assert!(garbage.contains("not a VerifySignatureResult"), "{garbage}");
}

#[test]
fn the_attack_suite_is_refused() {
    let valid = token("RS256", "rsa");
    let (input, _) = valid.rsplit_once('.').unwrap();
    let refused = |text: &str| check(text).err();

    // alg: none, with and without a signature.
    let none = format!(
        "{}.{}.",
        encode(br#"{"alg":"none"}"#),
        encode(claims().to_string().as_bytes())
    );
    assert_eq!(refused(&none), Some(JwtError::AlgNotImplemented));
    assert_eq!(
        refused(&format!("{none}c2ln")),
        Some(JwtError::AlgNotImplemented)
    );

    // RS -> HS confusion: HMAC keyed with the RSA public key's bytes, in
    // every form an attacker might try, against a set with only RSA keys.
    let rsa_only = Jwks::parse(json!({"keys": [rsa_jwk("rsa")]}).to_string().as_bytes()).unwrap();
    let public = keys().rsa.to_public_key();
    let header = encode(br#"{"alg":"HS256","kid":"rsa"}"#);
    let body = encode(claims().to_string().as_bytes());
    let signing_input = format!("{header}.{body}");
    for secret in [
        public.n().to_bytes_be(),
        encode(&public.n().to_bytes_be()).into_bytes(),
        rsa_jwk("rsa").to_string().into_bytes(),
    ] {
        let forged = format!(
            "{signing_input}.{}",
            encode(&mac::<Hmac<Sha256>>(&secret, signing_input.as_bytes()))
        );
        let parsed = Token::parse(&forged, MAX).unwrap();
        assert_eq!(verify(&parsed, &rsa_only), Err(JwtError::NoMatchingKey));
    }

    // A key whose JWK pins another algorithm is not used for this one.
    let pinned = Jwks::parse(
        json!({"keys": [{"kty": "oct", "k": encode(&keys().secret), "alg": "HS512"}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let hs256 = token_with(&json!({"alg": "HS256"}), &claims(), "HS256");
    assert_eq!(
        verify(&Token::parse(&hs256, MAX).unwrap(), &pinned),
        Err(JwtError::NoMatchingKey)
    );

    assert_eq!(
        refused(&token("RS256", "other")),
        Some(JwtError::NoMatchingKey)
    );

    let expired = token_with(
        &json!({"alg": "ES256"}),
        &json!({"iss": "https://issuer.example", "aud": "api", "exp": NOW - 61}),
        "ES256",
    );
    assert_eq!(refused(&expired), Some(JwtError::Expired));
    let early = token_with(
        &json!({"alg": "ES256"}),
        &json!({"iss": "https://issuer.example", "aud": "api", "nbf": NOW + 61, "exp": NOW + 900}),
        "ES256",
    );
    assert_eq!(refused(&early), Some(JwtError::NotYetValid));
    let stranger = token_with(
        &json!({"alg": "EdDSA"}),
        &json!({"iss": "https://evil.example", "aud": "api", "exp": NOW + 60}),
        "EdDSA",
    );
    assert_eq!(refused(&stranger), Some(JwtError::UnknownIssuer));
    let elsewhere = token_with(
        &json!({"alg": "EdDSA"}),
        &json!({"iss": "https://issuer.example", "aud": ["web", "admin"], "exp": NOW + 60}),
        "EdDSA",
    );
    assert_eq!(refused(&elsewhere), Some(JwtError::AudienceNotAllowed));

    // A bad signature: one flipped byte, another key's signature, empty.
    let mut bytes =
        jose::jwk::decode_base64url(valid.rsplit_once('.').unwrap().1.as_bytes()).unwrap();
    bytes[10] ^= 1;
    let flipped = format!("{input}.{}", encode(&bytes));
    assert_eq!(refused(&flipped), Some(JwtError::VerificationFailed));
    assert_eq!(
        refused(&format!("{input}.")),
        Some(JwtError::VerificationFailed)
    );
    let other_payload = token_with(
        &json!({"alg": "RS256", "kid": "rsa"}),
        &json!({"iss": "https://issuer.example", "aud": "api", "exp": NOW + 60, "admin": true}),
        "RS256",
    );
    let spliced = format!("{}.{}", input, other_payload.rsplit_once('.').unwrap().1);
    assert_eq!(refused(&spliced), Some(JwtError::VerificationFailed));

    // Truncated and non-base64url segments.
    assert_eq!(refused(input), Some(JwtError::BadFormat));
    assert_eq!(refused(&format!("{valid}.x")), Some(JwtError::BadFormat));
    assert_eq!(refused(""), Some(JwtError::Missing));
    let (header_b64, rest) = valid.split_once('.').unwrap();
    assert_eq!(
        refused(&format!("{header_b64}=.{rest}")),
        Some(JwtError::HeaderBadBase64)
    );
    assert_eq!(
        refused(&format!("{header_b64}.a+b/.sig")),
        Some(JwtError::PayloadBadBase64)
    );
    assert_eq!(
        refused(&format!("{input}.not*base64")),
        Some(JwtError::SignatureBadBase64)
    );
    assert_eq!(
        refused(&format!("{}.{rest}", encode(b"[1,2]"))),
        Some(JwtError::HeaderBadJson)
    );

    // Oversized.
    let big = token_with(
        &json!({"alg": "HS256"}),
        &json!({"exp": NOW + 60, "pad": "x".repeat(MAX)}),
        "HS256",
    );
    assert_eq!(refused(&big), Some(JwtError::TooLarge));

    // An ES256 signature in DER form (not JWS's r||s) is refused.
    let es = token("ES256", "p256");
    let (es_input, es_sig) = es.rsplit_once('.').unwrap();
    let raw = jose::jwk::decode_base64url(es_sig.as_bytes()).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
    let der_token = format!("{es_input}.{}", encode(der.as_bytes()));
    assert_eq!(refused(&der_token), Some(JwtError::VerificationFailed));
}

/// A token signed over raw header and claims text, so a name can repeat.
fn raw_token(header: &str, claims: &str, alg: &str) -> String {
    let input = format!(
        "{}.{}",
        encode(header.as_bytes()),
        encode(claims.as_bytes())
    );
    format!("{input}.{}", encode(&sign(alg, input.as_bytes())))
}

#[test]
fn a_name_repeated_in_header_or_claims_is_refused_even_when_signed() {
    let header = r#"{"alg":"RS256","kid":"rsa"}"#;
    let claims = format!(
        r#"{{"iss":"https://issuer.example","aud":"api","exp":{}}}"#,
        NOW + 600
    );
    assert!(check(&raw_token(header, &claims, "RS256")).is_ok());
    // A second `exp` in the past, spelled plainly or escaped: a parser that
    // kept the first would accept an expired token, one that kept the last
    // would let a signer smuggle a lifetime past a check of the first.
    for second in [r#""exp":1"#, r#""\u0065xp":1"#, r#""e\u0078p":1"#] {
        let claims = format!(
            r#"{{"iss":"https://issuer.example","aud":"api","exp":{},{second}}}"#,
            NOW + 600
        );
        assert_eq!(
            check(&raw_token(header, &claims, "RS256")).err(),
            Some(JwtError::PayloadBadJson),
            "{claims}"
        );
    }
    for header in [
        r#"{"alg":"RS256","kid":"rsa","alg":"HS256"}"#,
        r#"{"alg":"RS256","kid":"rsa","\u006bid":"hs"}"#,
    ] {
        assert_eq!(
            check(&raw_token(header, &claims, "RS256")).err(),
            Some(JwtError::HeaderBadJson),
            "{header}"
        );
    }
}

#[test]
fn time_claims_honour_skew_and_lifetime() {
    let text = |claims: Value| token_with(&json!({"alg": "HS256"}), &claims, "HS256");
    let at = |claims: Value, rules: &Requirements, now: u64| {
        let t = text(claims);
        let token = Token::parse(&t, MAX).unwrap();
        rules.check(&token, now)
    };
    let rules = Requirements::default();
    assert_eq!(at(json!({"exp": NOW}), &rules, NOW + 60), Ok(()));
    assert_eq!(
        at(json!({"exp": NOW}), &rules, NOW + 61),
        Err(JwtError::Expired)
    );
    assert_eq!(
        at(json!({"exp": NOW + 5, "nbf": NOW + 60}), &rules, NOW),
        Ok(())
    );
    assert_eq!(at(json!({}), &rules, NOW), Err(JwtError::ExpMissing));
    let lax = Requirements {
        require_exp: false,
        clock_skew: 0,
        ..Requirements::default()
    };
    assert_eq!(at(json!({}), &lax, NOW), Ok(()));
    assert_eq!(
        at(json!({"exp": NOW - 1}), &lax, NOW),
        Err(JwtError::Expired)
    );
    assert_eq!(
        at(json!({"exp": (NOW as f64) + 0.5}), &lax, NOW),
        Ok(()),
        "NumericDate may have a fraction"
    );
    let short = Requirements {
        max_lifetime: Some(3600),
        ..Requirements::default()
    };
    assert_eq!(
        at(json!({"iat": NOW, "exp": NOW + 3600}), &short, NOW),
        Ok(())
    );
    assert_eq!(
        at(json!({"iat": NOW, "exp": NOW + 3601}), &short, NOW),
        Err(JwtError::LifetimeTooLong)
    );
    assert_eq!(
        at(json!({"exp": NOW + 7200}), &short, NOW),
        Err(JwtError::LifetimeTooLong),
        "without iat the lifetime counts from now"
    );
    let t = text(json!({"exp": "soon"}));
    assert_eq!(
        Token::parse(&t, MAX).err(),
        Some(JwtError::ClaimNotNumber("exp"))
    );
    let t = text(json!({"iss": 7}));
    assert_eq!(
        Token::parse(&t, MAX).err(),
        Some(JwtError::ClaimNotString("iss"))
    );
}

#[test]
fn key_sets_are_parsed_strictly() {
    let parse = |v: Value| Jwks::parse(v.to_string().as_bytes());
    // Unusable keys are skipped and named; usable ones kept.
    let set = parse(json!({"keys": [
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "enc", "n": "AA", "e": "AQAB"},
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ", "alg": "A128KW"},
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ"},
    ]}))
    .unwrap();
    assert_eq!(set.keys.len(), 1);
    assert_eq!(set.skipped.len(), 3, "{:?}", set.skipped);
    assert!(set.skipped[0].contains("secp256k1"));
    // A single JWK is a set of one.
    assert_eq!(parse(rsa_jwk("solo")).unwrap().keys.len(), 1);

    let err = |v: Value| parse(v).unwrap_err();
    assert!(err(json!({"keys": []})).contains("no usable key"));
    assert!(err(json!({"keys": [{"kty": "dsa"}]})).contains("`dsa` is not supported"));
    assert!(err(json!({"nope": 1})).contains("no `keys`"));
    assert!(Jwks::parse(b"{").unwrap_err().contains("not JSON"));
    assert!(
        err(json!({"keys": [{"kty": "RSA", "n": "AA==", "e": "AQAB"}]}))
            .contains("keys[0]: `n` is not base64url")
    );
    assert!(
        err(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": encode(&[1; 32]), "y": encode(&[2; 32])}]}))
            .contains("not on P-256")
    );
    assert!(
        err(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": encode(&[1; 31]), "y": encode(&[2; 32])}]}))
            .contains("`x` has 31 bytes")
    );
    assert!(
        err(json!({"keys": [{"kty": "oct", "k": encode(b"s"), "alg": "RS256"}]}))
            .contains("does not fit")
    );
    // A 1024-bit RSA key is refused.
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let weak = rsa::RsaPrivateKey::new(&mut rng, 1024)
        .unwrap()
        .to_public_key();
    let weak = json!({"kty": "RSA", "n": encode(&weak.n().to_bytes_be()), "e": encode(&weak.e().to_bytes_be())});
    assert!(err(weak).contains("1024 bits, fewer than 2048"));
}

#[test]
fn ten_thousand_random_and_mutated_tokens_never_panic_or_verify() {
    let set = jwks();
    let rules = requirements();
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let originals: Vec<String> = [
        ("RS256", "rsa"),
        ("ES256", "p256"),
        ("EdDSA", "ed"),
        ("HS256", "hs"),
    ]
    .iter()
    .map(|(alg, kid)| token(alg, kid))
    .collect();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ {}\"";
    let mut verified = 0;
    for i in 0..10_000 {
        let text = if i % 2 == 0 {
            // A valid token with 1-3 characters changed, inserted or removed.
            let mut bytes = originals[i % originals.len()].clone().into_bytes();
            for _ in 0..1 + rng.next_u32() % 3 {
                let at = rng.next_u32() as usize % bytes.len();
                let c = alphabet[rng.next_u32() as usize % alphabet.len()];
                match rng.next_u32() % 3 {
                    0 => bytes[at] = c,
                    1 => bytes.insert(at, c),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            String::from_utf8(bytes).unwrap()
        } else {
            // Random segments of random JSON-ish text.
            let len = rng.next_u32() as usize % 300;
            (0..len)
                .map(|_| char::from(alphabet[rng.next_u32() as usize % alphabet.len()]))
                .collect()
        };
        if let Ok(token) = Token::parse(&text, MAX)
            && verify(&token, &set).is_ok()
            && rules.check(&token, NOW).is_ok()
        {
            verified += 1;
            assert!(
                originals.contains(&text),
                "a changed token verified: {text}"
            );
        }
    }
    // A change can be a no-op (a character replaced by itself).
    assert!(verified < 100, "{verified}");
}

/// Base64url without padding, as JWS writes it.
fn encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
