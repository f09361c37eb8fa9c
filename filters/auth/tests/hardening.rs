//! The auth filter under attack, natively: a credential sent twice or in
//! two forms is refused (never one checked and the other forwarded), and
//! what reaches the upstream carries no credential that was not checked.
//! Each test here failed before its fix (issue 25).

use auth::Config;
use auth::answer::{apply, strip_outputs};
use auth::policy::{AuthzAnswer, Caches, Decision, Env, Keys, evaluate};
use filter_proxy::request::{Request, TableHost};
use serde_json::json;

mod common;

use common::{KEY, jwks, request, token};

fn valid() -> String {
    token(&json!({"sub": "alice", "exp": 4_102_444_800u64}))
}

fn forged() -> String {
    format!("{}x", valid())
}

/// Local keys only; the authorization service, when asked, allows and
/// sets no header.
struct Fake(Caches, AuthzAnswer);

impl Env for Fake {
    fn now(&self) -> u64 {
        1_800_000_000
    }
    fn keys(&mut self, _provider: usize, _unknown_kid: bool) -> Keys {
        Keys::Failed
    }
    fn authz(&self) -> Option<&AuthzAnswer> {
        Some(&self.1)
    }
    fn caches(&mut self) -> &mut Caches {
        &mut self.0
    }
}

/// A provider reading the token from a header, a query parameter and a
/// cookie; `forward` and the rule's requirement as given.
fn config(forward: bool, require: serde_json::Value) -> Config {
    let c = json!({
        "jwt_providers": [{
            "name": "local", "local_jwks": jwks(), "forward": forward,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"],
            "from_cookies": ["jwt"]
        }],
        "rules": [{"require": require}]
    });
    Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"))
}

/// The decision, and the request as the upstream would get it when allowed.
fn run(c: &Config, path: &str, headers: &[(&str, &str)]) -> (Decision, Request<TableHost>) {
    let mut r = request(path, headers);
    let decision = evaluate(
        c,
        &r,
        &mut Fake(Caches::new(16), AuthzAnswer::Allowed(vec![])),
    )
    .unwrap()
    .decision;
    if let Decision::Allow(passed) = &decision {
        strip_outputs(c, &mut r);
        apply(c, passed, &mut r);
    }
    (decision, r)
}

#[test]
fn a_query_name_is_the_credential_however_it_is_encoded() {
    let (good, bad) = (valid(), forged());
    for forward in [false, true] {
        let c = config(forward, json!({"jwt": "local"}));
        for second in [
            "access%5Ftoken",
            "access%5ftoken",
            "acc%65ss_token",
            "access_token",
        ] {
            let path = format!("/o?access_token={good}&{second}={bad}");
            let (decision, _) = run(&c, &path, &[]);
            assert!(
                matches!(decision, Decision::Unauthorized(ref r) if r.reason == "Jwt is given more than once"),
                "{second} (forward {forward}): {decision:?}"
            );
        }
        // One encoded name alone is the credential, checked and hidden.
        let (decision, r) = run(&c, &format!("/o?access%5Ftoken={good}&page=2"), &[]);
        assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
        let path = String::from_utf8(r.headers.get(":path").unwrap()).unwrap();
        if forward {
            assert!(path.contains(&good), "{path}");
        } else {
            assert_eq!(path, "/o?page=2");
        }
    }
    // Under allow_missing a forged token under an encoded name is checked,
    // not let through as "missing".
    let c = config(false, json!({"allow_missing": {"jwt": "local"}}));
    let (decision, _) = run(&c, &format!("/o?access%5Ftoken={}", forged()), &[]);
    assert!(
        matches!(decision, Decision::Unauthorized(_)),
        "{decision:?}"
    );
}

#[test]
fn a_cookie_given_twice_is_refused_in_one_line_or_two() {
    let (good, bad) = (valid(), forged());
    let c = config(true, json!({"jwt": "local"}));
    for headers in [
        vec![("cookie", format!("jwt={good}; jwt={bad}"))],
        vec![
            ("cookie", format!("a=1; jwt={good}")),
            ("cookie", format!("jwt={bad}")),
        ],
        vec![("cookie", format!("jwt={good};jwt ={bad}"))],
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (decision, _) = run(&c, "/o", &headers);
        assert!(
            matches!(decision, Decision::Unauthorized(ref r) if r.reason == "Jwt is given more than once"),
            "{headers:?}: {decision:?}"
        );
    }
}

#[test]
fn a_credential_in_two_places_is_refused() {
    let (good, bad) = (valid(), forged());
    let c = config(true, json!({"jwt": "local"}));
    let bearer = format!("Bearer {good}");
    let cookie = format!("jwt={bad}");
    for (path, headers) in [
        (
            format!("/o?access_token={bad}"),
            vec![("authorization", bearer.as_str())],
        ),
        (
            "/o".to_owned(),
            vec![
                ("authorization", bearer.as_str()),
                ("cookie", cookie.as_str()),
            ],
        ),
        (
            format!("/o?access_token={good}"),
            vec![("cookie", cookie.as_str())],
        ),
    ] {
        let (decision, _) = run(&c, &path, &headers);
        assert!(
            matches!(decision, Decision::Unauthorized(ref r) if r.reason == "Jwt is given more than once"),
            "{path} {headers:?}: {decision:?}"
        );
    }
}

#[test]
fn an_api_key_in_two_places_or_two_encodings_is_refused() {
    let c = json!({
        "consumers": [{"name": "billing", "api_keys": [KEY]}],
        "api_key": {"sources": [{"header": "x-api-key"}, {"query": "api_key"}], "hide": true},
        "rules": [{"require": "api_key"}]
    });
    let c = Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"));
    let forged = "k_live_forged_forged_forged";
    for (path, headers) in [
        (format!("/o?api_key={KEY}"), vec![("x-api-key", forged)]),
        (format!("/o?api_key={KEY}&api%5Fkey={forged}"), vec![]),
        (format!("/o?api%5fkey={forged}"), vec![("x-api-key", KEY)]),
    ] {
        let (decision, _) = run(&c, &path, &headers);
        assert!(
            matches!(decision, Decision::Unauthorized(ref r) if r.reason.contains("More than one API key")),
            "{path} {headers:?}: {decision:?}"
        );
    }
    // Alone under an encoded name: checked, and hidden from the upstream.
    let (decision, r) = run(&c, &format!("/o?api%5Fkey={KEY}&x=1"), &[]);
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    assert_eq!(r.headers.get(":path"), Some(b"/o?x=1".to_vec()));
}

#[test]
fn a_token_cannot_take_a_consumers_identity() {
    let c = json!({
        "consumers": [{"name": "ops", "basic": {"username": "ops", "password_hash": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="}}],
        "jwt_providers": [{"name": "social", "local_jwks": jwks()}],
        "rules": [
            {"match": {"path": {"prefix": "/admin"}}, "require": {"any": ["basic", {"jwt": "social"}]}, "identities": ["ops"]},
            {"require": {"jwt": "social"}}
        ]
    });
    let c = Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"));
    let ops_token = format!(
        "Bearer {}",
        token(&json!({"sub": "ops", "exp": 4_102_444_800u64}))
    );
    // A `social` token whose `sub` is `ops` is not the consumer `ops`.
    let (decision, _) = run(&c, "/admin", &[("authorization", &ops_token)]);
    assert!(matches!(decision, Decision::Forbidden(_)), "{decision:?}");
    // Elsewhere it passes, named in its provider's namespace upstream.
    let (decision, r) = run(
        &c,
        "/orders",
        &[("authorization", &ops_token), ("x-auth-identity", "ops")],
    );
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    assert_eq!(
        r.headers.get("x-auth-identity"),
        Some(b"social:ops".to_vec())
    );
}

#[test]
fn identities_name_consumers_or_provider_namespaces() {
    let c = json!({
        "consumers": [{"name": "a:b", "api_keys": ["k_live_0123456789abcdef"]}, {"name": "ops", "api_keys": ["k_live_fedcba9876543210"]}],
        "jwt_providers": [{"name": "social", "local_jwks": jwks()}],
        "rules": [{"require": {"any": ["api_key", {"jwt": "social"}]}, "identities": ["ops", "social:alice", "bob", "other:x"]}]
    });
    let text = Config::parse(c.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    for expected in [
        "/consumers/0/name: a consumer name cannot contain `:`",
        "/rules/0/identities/2: `bob` is neither a consumer nor `<provider>:<claim value>`",
        "/rules/0/identities/3: `other:x` is neither a consumer",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in {text}");
    }
    assert!(!text.contains("identities/0"), "{text}");
    assert!(!text.contains("identities/1"), "{text}");
}

#[test]
fn a_claim_that_cannot_be_a_header_value_refuses_the_token() {
    let c = json!({
        "jwt_providers": [{"name": "local", "local_jwks": jwks(),
            "claims_to_headers": [{"claim": "org.name", "header": "x-org"}]}],
        "rules": [{"require": {"jwt": "local"}}]
    });
    let c = Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"));
    let with = |claims: serde_json::Value| {
        let bearer = format!("Bearer {}", token(&claims));
        run(&c, "/o", &[("authorization", &bearer)]).0
    };
    let exp = 4_102_444_800u64;
    for (claims, claim) in [
        (
            json!({"sub": "a", "exp": exp, "org": {"name": "x\r\nx-admin: 1"}}),
            "org.name",
        ),
        (
            json!({"sub": "a", "exp": exp, "org": {"name": ["ok", "n\u{0}l"]}}),
            "org.name",
        ),
        (json!({"sub": "a\nb", "exp": exp}), "sub"),
        (json!({"sub": "a\u{7f}", "exp": exp}), "sub"),
    ] {
        let decision = with(claims.clone());
        assert!(
            matches!(&decision, Decision::Unauthorized(r)
                if r.reason == format!("Jwt payload [{claim}] cannot be a header value")
                    && r.code == Some("invalid_token")),
            "{claims}: {decision:?}"
        );
    }
    // Tabs, spaces, non-ASCII and nested JSON (its escapes are text) pass.
    for claims in [
        json!({"sub": "a\tb c", "exp": exp, "org": {"name": "Zürich"}}),
        json!({"sub": "a", "exp": exp, "org": {"name": {"raw": "x\ny"}}}),
    ] {
        assert!(
            matches!(with(claims.clone()), Decision::Allow(_)),
            "{claims}"
        );
    }
}

#[test]
fn an_unknown_basic_user_is_checked_against_the_costliest_hash() {
    let bcrypt = |password: &str, cost: u32| {
        bcrypt::hash_with_salt(password, cost, [7; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY)
    };
    let c = json!({
        "consumers": [
            {"name": "a", "basic": {"username": "a", "password_hash": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="}},
            {"name": "b", "basic": {"username": "b", "password_hash": bcrypt("pb", 4)}},
            {"name": "c", "basic": {"username": "c", "password_hash": bcrypt("pc", 5)}},
            {"name": "d", "basic": {"username": "d", "password_hash": bcrypt("pd", 4)}}
        ],
        "rules": [{"require": "basic"}]
    });
    let c = Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"));
    let decoy = auth::policy::basic_decoy(&c).unwrap();
    assert_eq!(decoy, &c.basic_users[2].hash, "user c's cost-5 hash");
    assert!(decoy.verify(b"pc"));
    // The unknown user's answer is the wrong password's, word for word
    // (`benches/benches/basic_auth.rs` shows the time is the same too).
    let basic = |user_pass: &str| {
        use base64::Engine as _;
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        );
        run(&c, "/o", &[("authorization", &value)]).0
    };
    let (unknown, wrong) = (basic("zed:pc"), basic("c:nope"));
    assert!(matches!(&unknown, Decision::Unauthorized(_)), "{unknown:?}");
    assert_eq!(format!("{unknown:?}"), format!("{wrong:?}"));
    assert!(matches!(basic("c:pc"), Decision::Allow(_)));
}

/// An HS256 token over raw header and claims text, signed with `secret`.
fn signed(header: &str, claims: &str, secret: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn jwt_config(provider: serde_json::Value) -> Result<Config, String> {
    let c = json!({"jwt_providers": [provider], "rules": [{"require": {"jwt": "p"}}]});
    Config::parse(c.to_string().as_bytes()).map_err(|p| p.to_string())
}

fn bearer(c: &Config, token: &str) -> Decision {
    run(c, "/o", &[("authorization", &format!("Bearer {token}"))]).0
}

fn refused_with(decision: &Decision, reason: &str) -> bool {
    matches!(decision, Decision::Unauthorized(r) if r.reason == reason)
}

#[test]
fn a_critical_header_extension_is_refused() {
    let c = jwt_config(json!({"name": "p", "local_jwks": jwks()})).unwrap();
    let claims = r#"{"sub":"a","exp":4102444800}"#;
    let secret = common::SECRET;
    assert!(matches!(
        bearer(&c, &signed(r#"{"alg":"HS256","kid":"hs"}"#, claims, secret)),
        Decision::Allow(_)
    ));
    for header in [
        r#"{"alg":"HS256","kid":"hs","crit":["b64"],"b64":false}"#,
        r#"{"alg":"HS256","kid":"hs","crit":["exp"],"exp":1}"#,
        r#"{"alg":"HS256","kid":"hs","crit":[]}"#,
    ] {
        let decision = bearer(&c, &signed(header, claims, secret));
        assert!(
            refused_with(
                &decision,
                "Jwt header [crit] names extensions that are not supported"
            ),
            "{header}: {decision:?}"
        );
    }
}

#[test]
fn the_client_cannot_send_what_the_authorization_service_sets() {
    let c = json!({
        "ext_authz": {"cluster": "authz", "upstream_headers": ["x-user", "x-tenant"]},
        "rules": [{"require": "ext_authz"}]
    });
    let c = Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"));
    let (decision, r) = run(
        &c,
        "/o",
        &[
            ("x-user", "admin"),
            ("x-tenant", "root"),
            ("x-other", "kept"),
        ],
    );
    assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    assert!(!r.headers.contains("x-user"));
    assert!(!r.headers.contains("x-tenant"));
    assert_eq!(r.headers.get("x-other"), Some(b"kept".to_vec()));
}

#[test]
fn hmac_keys_are_at_least_as_long_as_their_hash() {
    use base64::Engine as _;
    let k = |n: usize| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![7u8; n]);
    let err = jwt_config(json!({"name": "p", "local_jwks": {"keys": [{"kty": "oct", "k": k(1)}]}}))
        .unwrap_err();
    assert!(
        err.contains(
            "/jwt_providers/0/local_jwks: keys[0]: an `oct` key must be at least 32 bytes"
        ),
        "{err}"
    );
    let err = jwt_config(
        json!({"name": "p", "local_jwks": {"keys": [{"kty": "oct", "alg": "HS512", "k": k(48)}]}}),
    )
    .unwrap_err();
    assert!(err.contains("must be at least 64 bytes"), "{err}");
    // A 32-byte key without `alg` verifies HS256, never HS512.
    let c = jwt_config(json!({"name": "p", "local_jwks": {"keys": [{"kty": "oct", "k": k(32)}]}}))
        .unwrap();
    let claims = r#"{"sub":"a","exp":4102444800}"#;
    assert!(matches!(
        bearer(&c, &signed(r#"{"alg":"HS256"}"#, claims, &[7; 32])),
        Decision::Allow(_)
    ));
    let hs512 = {
        use base64::Engine as _;
        use hmac::Mac as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let input = format!("{}.{}", b64(br#"{"alg":"HS512"}"#), b64(claims.as_bytes()));
        let mut mac = <hmac::Hmac<sha2::Sha512> as hmac::Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let decision = bearer(&c, &hs512);
    assert!(
        refused_with(
            &decision,
            "Jwks doesn't have key to match kid or alg from Jwt"
        ),
        "{decision:?}"
    );
}

#[test]
fn a_token_without_kid_is_tried_against_a_few_keys_only() {
    use base64::Engine as _;
    let secret = |i: u8| vec![i; 32];
    let keys: Vec<serde_json::Value> = (1..=5)
        .map(|i| json!({"kty": "oct", "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret(i)), "kid": format!("k{i}")}))
        .collect();
    let claims = r#"{"sub":"a","exp":4102444800}"#;
    let fifth = signed(r#"{"alg":"HS256"}"#, claims, &secret(5));
    let fifth_tagged = signed(r#"{"alg":"HS256","kid":"k5"}"#, claims, &secret(5));
    let third = signed(r#"{"alg":"HS256"}"#, claims, &secret(3));
    let c = jwt_config(json!({"name": "p", "local_jwks": {"keys": keys}})).unwrap();
    assert!(
        matches!(bearer(&c, &third), Decision::Allow(_)),
        "within the default 3"
    );
    let decision = bearer(&c, &fifth);
    assert!(
        refused_with(&decision, "Jwt verification fails"),
        "{decision:?}"
    );
    assert!(
        matches!(bearer(&c, &fifth_tagged), Decision::Allow(_)),
        "a kid picks its key"
    );
    let c =
        jwt_config(json!({"name": "p", "local_jwks": {"keys": keys}, "max_keys_without_kid": 5}))
            .unwrap();
    assert!(matches!(bearer(&c, &fifth), Decision::Allow(_)));
    let err = jwt_config(json!({"name": "p", "local_jwks": jwks(), "max_keys_without_kid": 0}))
        .unwrap_err();
    assert!(
        err.contains("/jwt_providers/0/max_keys_without_kid"),
        "{err}"
    );
}

#[test]
fn a_token_for_another_audience_is_forbidden_as_jwt_authn_answers() {
    let c = jwt_config(json!({"name": "p", "local_jwks": jwks(), "audiences": ["api"]})).unwrap();
    let other = token(&json!({"sub": "a", "aud": "other", "exp": 4_102_444_800u64}));
    let decision = bearer(&c, &other);
    let (answer, details) = auth::answer::reply(&c, c.rules.first(), &decision).unwrap();
    assert_eq!(answer.status, 403);
    assert_eq!(answer.body, b"Audiences in Jwt are not allowed");
    assert_eq!(details, "auth_invalid_credentials{jwt}");
    let mine = token(&json!({"sub": "a", "aud": ["x", "api"], "exp": 4_102_444_800u64}));
    assert!(matches!(bearer(&c, &mine), Decision::Allow(_)));
}

#[test]
fn a_default_that_differs_from_jwt_authn_is_named_at_configure() {
    let c = jwt_config(json!({"name": "p", "local_jwks": jwks()})).unwrap();
    assert_eq!(
        c.notices,
        [
            "/jwt_providers/0: tokens without `exp` are refused (`require_expiration` defaults to true here, to false in Envoy's jwt_authn; set it to accept them)"
        ]
    );
    let no_exp = token(&json!({"sub": "a"}));
    let decision = bearer(&c, &no_exp);
    assert!(
        refused_with(&decision, "Jwt has no expiration (exp) and one is required"),
        "{decision:?}"
    );
    let c = jwt_config(json!({"name": "p", "local_jwks": jwks(), "require_expiration": false}))
        .unwrap();
    assert!(c.notices.is_empty());
    assert!(matches!(bearer(&c, &no_exp), Decision::Allow(_)));
}

/// An environment whose clock the test moves.
struct Clock(u64, Caches);

impl Env for Clock {
    fn now(&self) -> u64 {
        self.0
    }
    fn keys(&mut self, _provider: usize, _unknown_kid: bool) -> Keys {
        Keys::Failed
    }
    fn authz(&self) -> Option<&AuthzAnswer> {
        None
    }
    fn caches(&mut self) -> &mut Caches {
        &mut self.1
    }
}

#[test]
fn a_cached_token_still_expires_and_keeps_its_identity() {
    let c =
        jwt_config(json!({"name": "p", "local_jwks": jwks(), "clock_skew_seconds": 0})).unwrap();
    let exp = 1_800_000_100u64;
    let bearer = format!("Bearer {}", token(&json!({"sub": "a", "exp": exp})));
    let r = request("/o", &[("authorization", &bearer)]);
    let mut env = Clock(1_800_000_000, Caches::new(4));
    let first = evaluate(&c, &r, &mut env).unwrap().decision;
    assert_eq!(env.1.tokens.len(), 1);
    // The hit answers what the full check answered.
    assert_eq!(evaluate(&c, &r, &mut env).unwrap().decision, first);
    assert!(matches!(&first, Decision::Allow(p) if p.identity.as_deref() == Some("p:a")));
    env.0 = exp + 1;
    let later = evaluate(&c, &r, &mut env).unwrap().decision;
    assert!(refused_with(&later, "Jwt is expired"), "{later:?}");
}

/// The token cache answers only for the very token it verified: after a
/// valid token is cached, the same token with one byte changed (in the
/// payload or the signature) is verified afresh and refused, and is not
/// cached.
#[test]
fn a_cache_hit_needs_the_whole_token() {
    let c = jwt_config(json!({"name": "p", "local_jwks": jwks()})).unwrap();
    let valid = token(&json!({"sub": "a", "exp": 1_800_000_600u64}));
    let mut env = Clock(1_800_000_000, Caches::new(4));
    let allow = |text: &str, env: &mut Clock| {
        let bearer = format!("Bearer {text}");
        evaluate(&c, &request("/o", &[("authorization", &bearer)]), env)
            .unwrap()
            .decision
    };
    assert!(matches!(allow(&valid, &mut env), Decision::Allow(_)));
    assert_eq!(env.1.tokens.len(), 1);
    let (input, signature) = valid.rsplit_once('.').unwrap();
    let flip = |s: &str, at: usize| {
        let mut b = s.as_bytes().to_vec();
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    for forged in [
        format!("{input}.{}", flip(signature, 3)),
        format!("{}.{signature}", flip(input, input.len() - 3)),
    ] {
        let answer = allow(&forged, &mut env);
        assert!(matches!(answer, Decision::Unauthorized(_)), "{answer:?}");
    }
    assert_eq!(env.1.tokens.len(), 1, "nothing forged was cached");
    assert!(matches!(allow(&valid, &mut env), Decision::Allow(_)));
}
