//! The auth logic natively: configurations refused with every problem's
//! JSON path, requirements combined, what must be fetched first, the
//! answers' challenges, and what reaches the upstream.

use std::rc::Rc;

use auth::Config;
use auth::answer::{apply, reply, strip_outputs};
use auth::policy;
use auth::policy::{AuthzAnswer, Caches, Decision, Env, Keys, Method, Need, evaluate};
use filter_proxy::request::{Request, TableHost};
use jose::Jwks;
use serde_json::json;

mod common;

use common::{KEY, jwks, token};

fn alice() -> String {
    token(&json!({"sub": "alice", "exp": 4_102_444_800u64, "scope": "a b", "org": {"id": 7}}))
}

/// An environment with scripted keys and authorization answer.
struct Fake {
    keys: Keys,
    authz: Option<AuthzAnswer>,
    caches: Caches,
}

impl Fake {
    fn new() -> Self {
        Fake {
            keys: Keys::Fetch,
            authz: None,
            caches: Caches::new(16),
        }
    }
}

impl Env for Fake {
    fn now(&self) -> u64 {
        1_800_000_000
    }
    fn keys(&mut self, _provider: usize, _unknown_kid: bool) -> Keys {
        self.keys.clone()
    }
    fn authz(&self) -> Option<&AuthzAnswer> {
        self.authz.as_ref()
    }
    fn caches(&mut self) -> &mut Caches {
        &mut self.caches
    }
}

fn request(headers: &[(&str, &str)]) -> Request<TableHost> {
    common::request("/orders", headers)
}

fn config(rules: serde_json::Value) -> Config {
    let c = json!({
        "realm": "shop",
        "consumers": [{"name": "billing", "api_keys": [KEY]},
                      {"name": "alice-account", "jwt": {"provider": "local", "claim_value": "alice"}}],
        "api_key": {"sources": [{"header": "x-api-key"}], "hide": true},
        "jwt_providers": [
            {"name": "local", "local_jwks": jwks(), "claims_to_headers": [{"claim": "org.id", "header": "x-org"}]},
            {"name": "remote", "remote_jwks": {"cluster": "jwks", "path": "/keys"}, "from_headers": [{"name": "x-remote-token"}]}
        ],
        "ext_authz": {"cluster": "authz"},
        "rules": rules
    });
    Config::parse(c.to_string().as_bytes()).unwrap_or_else(|p| panic!("{p}"))
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let bad = json!({
        "realm": "a\"b",
        "identity_header": "bad header",
        "consumers": [{"name": "x", "basic": {"username": "u:v", "password_hash": "plain"}, "api_keys": ["short"]},
                      {"name": "x"}],
        "jwt_providers": [{"name": "p", "local_jwks": "{}", "remote_jwks": {"cluster": "c", "path": "/k"}}],
        "rules": [{"require": {"any": ["basic"]}, "action": "maybe", "claims": [{"name": "a..b", "exact": "1"}]},
                  {"identities": ["x"]}]
    });
    let problems = Config::parse(bad.to_string().as_bytes()).unwrap_err();
    let text = problems.to_string();
    for expected in [
        "/realm: a realm cannot contain quotes",
        "/identity_header:",
        "/consumers/0/basic/username: a Basic user name cannot contain `:`",
        "/consumers/0/basic/password_hash: a password hash must be",
        "/consumers/0/api_keys/0: an API key must be at least 16 characters",
        "/consumers/1/name: consumer `x` is defined twice",
        "/jwt_providers/0/remote_jwks: give `local_jwks` or `remote_jwks`, not both",
        "/rules/0/require/any: list at least two requirements",
        "/rules/0/action: `maybe`: expected `allow` or `deny`",
        "/rules/0/claims/0/name: a claim path is names separated by single dots",
        "/rules/1: `identities` and `claims` need `require`",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in {text}");
    }
    assert!(!text.contains("short"), "API keys are not echoed: {text}");
}

#[test]
fn ext_authz_body_settings_are_checked() {
    let problems = |with_request_body: serde_json::Value| {
        let bad = json!({
            "ext_authz": {"cluster": "authz", "with_request_body": with_request_body},
            "rules": [{"require": "ext_authz"}]
        });
        Config::parse(bad.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    for (settings, expected) in [
        (
            json!({}),
            "/ext_authz/with_request_body: missing field `max_request_bytes`",
        ),
        (
            json!({"max_request_bytes": 0}),
            "/ext_authz/with_request_body/max_request_bytes: 0 is out of range (1 to 1048576)",
        ),
        (
            json!({"max_request_bytes": 10, "allow_partial": true}),
            "/ext_authz/with_request_body/allow_partial: unknown field `allow_partial`",
        ),
        (
            json!({"max_request_bytes": 10, "allow_partial_message": "yes"}),
            "/ext_authz/with_request_body/allow_partial_message:",
        ),
        (json!(64), "/ext_authz/with_request_body:"),
    ] {
        let text = problems(settings);
        assert!(text.contains(expected), "missing `{expected}` in {text}");
    }
    let good = json!({
        "ext_authz": {"cluster": "authz", "with_request_body": {"max_request_bytes": 1024}},
        "rules": [{"require": "ext_authz"}]
    });
    let config = Config::parse(good.to_string().as_bytes()).unwrap();
    let body = config.ext_authz.unwrap().with_request_body.unwrap();
    assert_eq!(
        (body.max_request_bytes, body.allow_partial_message),
        (1024, false)
    );
}

#[test]
fn any_all_and_allow_missing_combine_methods() {
    let c = config(json!([
        {"match": {"path": {"prefix": "/any"}}, "require": {"any": [{"jwt": "local"}, "api_key"]}},
        {"match": {"path": {"prefix": "/all"}}, "require": {"all": [{"jwt": "local"}, "api_key"]}},
        {"require": {"allow_missing": {"jwt": "local"}}}
    ]));
    let decide = |path: &str, headers: &[(&str, &str)]| {
        let mut r = request(headers);
        r.headers.set(":path", path.as_bytes());
        evaluate(&c, &r, &mut Fake::new()).unwrap().decision
    };
    let bearer = format!("Bearer {}", alice());
    assert!(
        matches!(decide("/any", &[("x-api-key", KEY)]), Decision::Allow(p) if p.identity.as_deref() == Some("billing"))
    );
    assert!(matches!(
        decide("/any", &[]),
        Decision::Missing(Method::Jwt)
    ));
    assert!(matches!(
        decide("/all", &[("authorization", &bearer)]),
        Decision::Missing(Method::ApiKey)
    ));
    match decide("/all", &[("authorization", &bearer), ("x-api-key", KEY)]) {
        Decision::Allow(p) => {
            assert_eq!(
                p.identity.as_deref(),
                Some("alice-account"),
                "the first method's identity"
            );
            assert_eq!(p.methods, [Method::Jwt, Method::ApiKey]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(decide("/x", &[]), Decision::Allow(p) if p.identity.is_none()));
    assert!(
        matches!(decide("/x", &[("authorization", "Bearer nope")]), Decision::Unauthorized(r) if r.method == Method::Jwt)
    );
}

#[test]
fn remote_keys_and_the_authorization_answer_are_asked_for() {
    let c = config(json!([
        {"match": {"path": {"prefix": "/r"}}, "require": {"jwt": "remote"}},
        {"require": "ext_authz"}
    ]));
    let mut r = request(&[("x-remote-token", &alice())]);
    r.headers.set(":path", b"/r");
    let mut env = Fake::new();
    assert_eq!(
        evaluate(&c, &r, &mut env).unwrap_err(),
        Need::Jwks {
            provider: 1,
            refresh: false
        }
    );
    env.keys = Keys::Ready(Rc::new(Jwks::parse(jwks().as_bytes()).unwrap()), 1);
    assert!(matches!(
        evaluate(&c, &r, &mut env).unwrap().decision,
        Decision::Allow(_)
    ));
    assert_eq!(env.caches.tokens.len(), 1, "the verified token is cached");
    env.keys = Keys::Failed;
    let cached = evaluate(&c, &r, &mut env).unwrap().decision;
    assert!(
        matches!(cached, Decision::Unauthorized(ref e) if e.reason == "Jwks remote fetch is failed"),
        "{cached:?}"
    );

    let plain = request(&[]);
    let mut env = Fake::new();
    assert_eq!(evaluate(&c, &plain, &mut env).unwrap_err(), Need::ExtAuthz);
    env.authz = Some(AuthzAnswer::Denied {
        status: 429,
        headers: vec![("retry-after".into(), b"5".to_vec())],
        body: b"slow down".to_vec(),
    });
    let verdict = evaluate(&c, &plain, &mut env).unwrap();
    let (answer, details) = reply(&c, c.rules.get(1), &verdict.decision).unwrap();
    assert_eq!(
        (answer.status, answer.body.as_slice(), details.as_str()),
        (429, &b"slow down"[..], "auth_ext_authz_denied")
    );
    env.authz = Some(AuthzAnswer::Error);
    let verdict = evaluate(&c, &plain, &mut env).unwrap();
    assert_eq!(
        reply(&c, c.rules.get(1), &verdict.decision)
            .unwrap()
            .0
            .status,
        403
    );
}

#[test]
fn answers_carry_rfc_challenges_and_allowed_requests_the_outputs() {
    let c = config(json!([{"require": {"any": [{"jwt": "local"}, "api_key"]}}]));
    let expired = token(&json!({"sub": "alice", "exp": 1_000_000_000u64}));
    let r = request(&[("authorization", &format!("Bearer {expired}"))]);
    let verdict = evaluate(&c, &r, &mut Fake::new()).unwrap();
    let (answer, details) = reply(&c, c.rules.first(), &verdict.decision).unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(details, "auth_invalid_credentials{jwt}");
    let challenges: Vec<String> = answer
        .headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        .collect();
    assert_eq!(
        challenges,
        [
            r#"Bearer realm="shop", error="invalid_token", error_description="Jwt is expired""#,
            r#"ApiKey realm="shop""#
        ]
    );

    let bearer = format!("Bearer {}", alice());
    let mut r = request(&[
        ("authorization", &bearer),
        ("x-auth-identity", "root"),
        ("x-org", "0"),
    ]);
    let Decision::Allow(passed) = evaluate(&c, &r, &mut Fake::new()).unwrap().decision else {
        panic!("allowed")
    };
    strip_outputs(&c, &mut r);
    apply(&c, &passed, &mut r);
    assert_eq!(
        r.headers.get("x-auth-identity"),
        Some(b"alice-account".to_vec())
    );
    assert_eq!(r.headers.get("x-org"), Some(b"7".to_vec()));
    assert!(
        !r.headers.contains("authorization"),
        "not forwarded by default"
    );
}

#[test]
fn claim_values_read_lists_and_scopes() {
    let claims = json!({"roles": ["a", "b"], "n": {"m": 1}, "scope": "x y"});
    let claims = filter_common::value::parse(claims.to_string().as_bytes()).unwrap();
    let map = claims.as_object().unwrap();
    let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        policy::claim_text(policy::claim(map, &path("roles")).unwrap()),
        b"a,b"
    );
    assert_eq!(
        policy::claim_text(policy::claim(map, &path("n.m")).unwrap()),
        b"1"
    );
    assert!(policy::claim(map, &path("n.x")).is_none());
}
