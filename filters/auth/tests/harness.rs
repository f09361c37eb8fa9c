//! The built module in the harness, through its Rust API: one JWKS fetch
//! shared by every worker VM, refresh on the timer before expiry, counters,
//! secrets kept out of logs, and a property test of 10,000 random requests
//! and tokens that never traps.

use harness_fixtures::random::{header_name, header_value};
use proxy_wasm_harness::{
    CallOutcome, HttpResponse, LogLevel, Metric, Plugin, Progress, Runtime, Upstream, Vm,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::json;
use std::time::Duration;

mod common;

use common::{KEY, jwks, signing, token};

const FAR: u64 = 4_102_444_800;

fn good() -> String {
    token(&json!({"iss": "https://issuer.example", "sub": "alice", "exp": FAR}))
}

fn remote_config(cache_seconds: u64) -> String {
    json!({
        "jwt_providers": [{"name": "main", "issuer": "https://issuer.example",
            "remote_jwks": {"cluster": "jwks", "path": "/jwks", "cache_seconds": cache_seconds}}],
        "rules": [{"require": {"jwt": "main"}}]
    })
    .to_string()
}

fn get(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), "/orders".to_owned()),
        (":authority".to_owned(), "api.example".to_owned()),
    ];
    h.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    h
}

fn counter(vm: &Vm, name: &str) -> u64 {
    match vm.metric(name) {
        Some(Metric::Counter(n)) => n,
        other => panic!("{name}: {other:?}"),
    }
}

/// Sends one request and lets callouts finish; the status the client got
/// (200 when it reached the upstream).
fn status(vm: &mut Vm, headers: Vec<(String, String)>) -> u16 {
    let mut stream = vm.http_stream();
    let mut progress = stream.send_request_headers(headers, true).unwrap();
    for _ in 0..100 {
        if progress != Progress::Paused {
            break;
        }
        stream.advance_time(Duration::from_millis(50)).unwrap();
        progress = if stream.upstream_request().complete {
            Progress::Continued
        } else if stream.local_response().is_some() {
            Progress::Responded
        } else {
            Progress::Paused
        };
    }
    match stream.local_response() {
        Some(reply) => u16::try_from(reply.status).unwrap(),
        None => {
            assert!(stream.upstream_request().complete, "the request is decided");
            200
        }
    }
}

#[test]
fn one_fetch_serves_every_worker_vm_through_shared_data() {
    let runtime = Runtime::new().unwrap();
    let plugin = Plugin::builder(harness_fixtures::AUTH)
        .runtime(&runtime)
        .configuration(remote_config(600))
        .upstream(
            "jwks",
            Upstream::respond(200, [("content-type", "application/json")], jwks()),
        )
        .build()
        .unwrap();
    let mut first = plugin.start().unwrap();
    let mut second = plugin.start().unwrap();
    let bearer = format!("Bearer {}", good());
    assert_eq!(status(&mut first, get(&[("authorization", &bearer)])), 200);
    assert_eq!(first.http_calls().len(), 1, "the first worker fetched");
    assert_eq!(status(&mut second, get(&[("authorization", &bearer)])), 200);
    assert!(
        second.http_calls().is_empty(),
        "the second worker used the shared set"
    );
    assert_eq!(counter(&first, "auth.jwks.fetches"), 1);
}

#[test]
fn the_timer_refreshes_keys_before_they_expire() {
    let mut vm = Plugin::builder(harness_fixtures::AUTH)
        .configuration(remote_config(10))
        .upstream(
            "jwks",
            Upstream::respond(200, [("content-type", "application/json")], jwks()),
        )
        .build()
        .and_then(|p| p.start())
        .unwrap();
    let bearer = format!("Bearer {}", good());
    assert_eq!(status(&mut vm, get(&[("authorization", &bearer)])), 200);
    let fetched = vm.http_calls().len();
    vm.advance_time(Duration::from_secs(7)).unwrap();
    assert_eq!(
        vm.http_calls().len(),
        fetched,
        "not yet: 80% of 10 s is 8 s"
    );
    vm.advance_time(Duration::from_secs(2)).unwrap();
    assert_eq!(
        vm.http_calls().len(),
        fetched + 1,
        "the tick refreshed ahead of expiry"
    );
    vm.advance_time(Duration::from_secs(2)).unwrap();
    // After the refresh a request needs no fetch of its own.
    assert_eq!(status(&mut vm, get(&[("authorization", &bearer)])), 200);
    assert_eq!(vm.http_calls().len(), fetched + 1);
}

#[test]
fn counters_count_outcomes_per_method_and_secrets_never_reach_the_log() {
    let config = json!({
        "consumers": [{"name": "ops", "basic": {"username": "ops", "password_hash": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="}},
                      {"name": "billing", "api_keys": [KEY]}],
        "api_key": {"sources": [{"header": "x-api-key"}]},
        "jwt_providers": [{"name": "main", "local_jwks": jwks()}],
        "rules": [{"match": {"path": {"prefix": "/admin"}}, "require": "basic"},
                  {"require": {"any": [{"jwt": "main"}, "api_key"]}}]
    });
    let mut vm = Plugin::builder(harness_fixtures::AUTH)
        .configuration(config.to_string())
        .log_level(LogLevel::Trace)
        .build()
        .and_then(|p| p.start())
        .unwrap();
    let admin = |auth: &str| {
        let mut h = get(&[("authorization", auth)]);
        h[1].1 = "/admin?api_key=x".to_owned();
        h
    };
    let bearer = format!("Bearer {}", good());
    assert_eq!(status(&mut vm, admin("Basic b3BzOnNlY3JldA==")), 200);
    assert_eq!(status(&mut vm, admin("Basic b3BzOndyb25n")), 401);
    assert_eq!(status(&mut vm, get(&[("x-api-key", KEY)])), 200);
    assert_eq!(
        status(&mut vm, get(&[("x-api-key", "k_live_wrong_wrong_wrong")])),
        401
    );
    assert_eq!(status(&mut vm, get(&[("authorization", &bearer)])), 200);
    assert_eq!(status(&mut vm, get(&[])), 401);
    for (name, want) in [
        ("auth.allowed", 3),
        ("auth.unauthorized", 3),
        ("auth.forbidden", 0),
        ("auth.basic.ok", 1),
        ("auth.basic.failed", 1),
        ("auth.api_key.ok", 1),
        ("auth.api_key.failed", 1),
        ("auth.jwt.ok", 1),
    ] {
        assert_eq!(counter(&vm, name), want, "{name}");
    }
    let logs: Vec<String> = vm.take_logs().into_iter().map(|l| l.message).collect();
    assert!(!logs.is_empty());
    for secret in [
        "secret",
        "b3BzOnNlY3JldA",
        "wrong",
        KEY,
        "k_live_wrong",
        &good(),
    ] {
        assert!(
            logs.iter().all(|line| !line.contains(secret)),
            "a log line shows `{secret}`: {logs:#?}"
        );
    }
}

/// Random requests with random, mutated and valid credentials; the
/// authorization service answers at random. Nothing may trap.
#[test]
fn ten_thousand_random_requests_and_tokens_never_trap() {
    let config = json!({
        "consumers": [{"name": "ops", "basic": {"username": "ops", "password_hash": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="}},
                      {"name": "billing", "api_keys": [KEY]},
                      {"name": "alice", "jwt": {"provider": "main", "claim_value": "alice"}}],
        "api_key": {"sources": [{"header": "x-api-key"}, {"query": "api_key"}, {"cookie": "key"}], "hide": true},
        "jwt_providers": [{"name": "main", "local_jwks": jwks(), "payload_header": "x-payload",
                            "claims_to_headers": [{"claim": "a.b", "header": "x-ab"}, {"claim": "scope", "header": "x-scope"}],
                            "from_cookies": ["jwt"]},
                          {"name": "remote", "remote_jwks": {"cluster": "jwks", "path": "/jwks"}, "from_headers": [{"name": "x-token"}]}],
        "ext_authz": {"cluster": "authz", "upstream_headers": ["x-user"],
                      "with_request_body": {"max_request_bytes": 16}},
        "rules": [{"match": {"path": {"prefix": "/a"}}, "require": "basic", "identities": ["ops"]},
                  {"match": {"path": {"prefix": "/b"}}, "require": {"all": [{"jwt": "main"}, "ext_authz"]},
                   "claims": [{"name": "scope", "contains": "w"}]},
                  {"match": {"path": {"prefix": "/c"}}, "require": {"allow_missing_or_failed": {"jwt": "remote"}}},
                  {"match": {"path": {"prefix": "/d"}}, "require": "api_key", "action": "deny", "identities": ["billing"]},
                  {"require": {"any": [{"jwt": "main"}, "api_key", {"allow_missing": "basic"}]}, "log_only": false}]
    });
    let answers = |call: &proxy_wasm_harness::HttpCall| {
        let n = call.header(":path").map_or(0, str::len);
        match n % 4 {
            0 => CallOutcome::Respond(HttpResponse::new(200, [("x-user", "u")], "")),
            1 => CallOutcome::Respond(HttpResponse::new(403, [("x-reason", "no")], "denied")),
            2 => CallOutcome::Reset,
            _ => CallOutcome::Respond(HttpResponse::upstream_timeout()),
        }
    };
    let mut vm = Plugin::builder(harness_fixtures::AUTH)
        .configuration(config.to_string())
        // Bodies reach the filter while it holds the headers.
        .allow_on_headers_stop_iteration(true)
        .upstream("authz", Upstream::handler(answers))
        .upstream(
            "jwks",
            Upstream::handler(move |call| {
                if call.header(":path").is_some() {
                    CallOutcome::Respond(HttpResponse::new(
                        200,
                        [("content-type", "application/json")],
                        jwks(),
                    ))
                } else {
                    CallOutcome::Reset
                }
            }),
        )
        .build()
        .and_then(|p| p.start())
        .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let valid = good();
    let known = [
        "authorization",
        "x-api-key",
        "cookie",
        "x-token",
        "x-auth-identity",
        "x-payload",
        "x-ab",
        "origin",
        "access-control-request-method",
    ];
    for i in 0..10_000u32 {
        let mut h = get(&[]);
        h[1].1 = format!(
            "/{}{}",
            ["a", "b", "c", "d", "e"][(rng.next_u32() % 5) as usize],
            [
                "",
                "?api_key=k_live_0123456789abcdef",
                "?access_token=x.y.z"
            ][(rng.next_u32() % 3) as usize]
        );
        if rng.next_u32() % 5 == 0 {
            h[0].1 = "OPTIONS".to_owned();
        }
        for _ in 0..(rng.next_u32() % 5) {
            let name = header_name(&mut rng, &known);
            let value = match rng.next_u32() % 6 {
                0 => format!("Bearer {valid}"),
                1 => format!("Bearer {}", mutate(&valid, &mut rng)),
                2 => format!("Basic {}", encode(&header_value(&mut rng))),
                3 => KEY.to_owned(),
                // The provider reads tokens from this cookie only, so a
                // valid one is what leads rules on to the authorization
                // service.
                4 if rng.next_u32() % 2 == 0 => format!("jwt={valid}; key={KEY}"),
                4 => format!("jwt={}; key={KEY}", mutate(&valid, &mut rng)),
                _ => String::from_utf8_lossy(&header_value(&mut rng)).into_owned(),
            };
            h.push((name, value));
        }
        // A third of the requests have a body of up to 40 bytes (over the
        // service's 16 at times), in up to three chunks.
        let chunks = if rng.next_u32() % 3 == 0 {
            1 + rng.next_u32() % 3
        } else {
            0
        };
        let mut stream = vm.http_stream();
        stream
            .send_request_headers(h, chunks == 0)
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        for c in 0..chunks {
            let mut chunk = vec![0u8; (rng.next_u32() % 14) as usize];
            rng.fill_bytes(&mut chunk);
            stream
                .send_request_body(chunk, c + 1 == chunks)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
        }
        stream.advance_time(Duration::from_millis(20)).unwrap();
        stream
            .finish()
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
    }
    assert!(counter(&vm, "auth.allowed") > 0 && counter(&vm, "auth.unauthorized") > 0);
    assert!(
        vm.http_calls()
            .iter()
            .any(|c| c.upstream == "authz" && !c.body.is_empty()),
        "some checks carried a body"
    );
}

/// A token with a few random bytes changed, dropped or inserted.
fn mutate(token: &str, rng: &mut impl RngCore) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for _ in 0..=(rng.next_u32() % 4) {
        let at = (rng.next_u32() as usize) % (bytes.len() + 1);
        match rng.next_u32() % 3 {
            0 if at < bytes.len() => {
                bytes[at] = b"A.-_x=+/ \x00\xff"[(rng.next_u32() % 11) as usize]
            }
            1 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.insert(at, b"A.-_x"[(rng.next_u32() % 5) as usize]),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn body_and_trailers_wait_with_the_headers_until_the_decision() {
    // Under allow_on_headers_stop_iteration the body and trailers reach the
    // filter while it waits for a key set; neither may let the held headers
    // go on before the token is verified.
    let mut vm = Plugin::builder(harness_fixtures::AUTH)
        .configuration(remote_config(600))
        .allow_on_headers_stop_iteration(true)
        .upstream("jwks", Upstream::handler(|_| CallOutcome::Deferred))
        .build()
        .and_then(|p| p.start())
        .unwrap();
    let bearer = format!("Bearer {}", good());
    let mut headers = get(&[("authorization", &bearer)]);
    headers[0].1 = "POST".to_owned();
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(headers, false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("part", false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_trailers([("x-checksum", "1")]).unwrap(),
        Progress::Paused
    );
    assert!(stream.upstream_request().headers.is_none(), "held");
    let id = stream.id();
    let token = vm.http_calls()[0].token;
    vm.answer_http_call(
        token,
        CallOutcome::Respond(HttpResponse::new(
            200,
            [("content-type", "application/json")],
            jwks(),
        )),
    )
    .unwrap();
    let upstream = vm.stream(id).unwrap().upstream_request().clone();
    assert_eq!(
        upstream.headers.unwrap().get("x-auth-identity"),
        Some("main:alice"),
        "an unmapped token's identity is in its provider's namespace"
    );
    assert_eq!(
        (upstream.body.as_slice(), upstream.complete),
        (&b"part"[..], true)
    );
    assert!(upstream.trailers.is_some());
}

/// Base64url without padding, as JWS writes it.
fn encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Property: a credential placed twice, in two places or under an encoded
/// name is never allowed through, and whatever is allowed carries no
/// credential that was not checked. Random requests through the module,
/// for tokens (forwarded) and API keys (not hidden), the worst cases for
/// smuggling: each request holds one to three placements of a valid or a
/// forged credential, in headers, cookies (one line or several) and query
/// parameters whose names are encoded at random.
#[test]
fn smuggled_second_credentials_are_never_allowed_or_forwarded() {
    let token_config = json!({
        "jwt_providers": [{"name": "main", "local_jwks": jwks(), "forward": true,
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
            "from_params": ["access_token"], "from_cookies": ["jwt"]}],
        "rules": [{"require": {"jwt": "main"}}]
    });
    let key_config = json!({
        "consumers": [{"name": "billing", "api_keys": [KEY]}],
        "api_key": {"sources": [{"header": "x-api-key"}, {"query": "api_key"}, {"cookie": "key"}], "hide": false},
        "rules": [{"require": "api_key"}]
    });
    let valid_token = good();
    let forged_token = format!("{}AAAA", &valid_token[..valid_token.len() - 4]);
    let forged_key = "k_live_forgedforgedforged";
    let mut rng = ChaCha8Rng::seed_from_u64(25);
    for (config, header, query_names, cookie, valid, forged) in [
        (
            token_config,
            ("authorization", "Bearer "),
            [
                "access_token",
                "access%5Ftoken",
                "access%5ftoken",
                "%61ccess_token",
                "access_%74oken",
            ],
            "jwt",
            valid_token.as_str(),
            forged_token.as_str(),
        ),
        (
            key_config,
            ("x-api-key", ""),
            [
                "api_key",
                "api%5Fkey",
                "api%5fkey",
                "%61pi_key",
                "api_k%65y",
            ],
            "key",
            KEY,
            forged_key,
        ),
    ] {
        let mut vm = Plugin::builder(harness_fixtures::AUTH)
            .configuration(config.to_string())
            .build()
            .and_then(|p| p.start())
            .unwrap();
        let (mut allowed, mut refused) = (0, 0);
        for i in 0..2_000 {
            let placements = 1 + rng.next_u32() % 3;
            let mut query = Vec::new();
            let mut cookies: Vec<String> = Vec::new();
            let mut headers = get(&[]);
            let mut values = Vec::new();
            for _ in 0..placements {
                let value = if rng.next_u32() % 3 == 0 {
                    forged
                } else {
                    valid
                };
                values.push(value);
                match rng.next_u32() % 4 {
                    0 => headers.push((header.0.to_owned(), format!("{}{value}", header.1))),
                    1 => {
                        let name = query_names[(rng.next_u32() % 5) as usize];
                        query.push(format!("{name}={value}"));
                    }
                    2 => cookies.push(format!("{cookie}={value}")),
                    _ => headers.push(("cookie".to_owned(), format!("a=1; {cookie}={value}"))),
                }
            }
            if !cookies.is_empty() {
                headers.push(("cookie".to_owned(), cookies.join("; ")));
            }
            query.push("page=2".to_owned());
            headers[1].1 = format!("/o?{}", query.join("&"));
            let mut stream = vm.http_stream();
            stream
                .send_request_headers(headers.clone(), true)
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            let upstream = stream.upstream_request().clone();
            let Some(sent) = upstream
                .headers
                .filter(|_| stream.local_response().is_none())
            else {
                refused += 1;
                stream.finish().unwrap();
                continue;
            };
            allowed += 1;
            assert!(
                values.len() == 1 && values[0] == valid,
                "request {i} allowed with {} placements ({values:?}): {headers:?}",
                values.len()
            );
            for (name, value) in sent.iter() {
                assert!(
                    !String::from_utf8_lossy(value).contains(forged),
                    "request {i}: an unchecked credential reached the upstream in {}: {headers:?}",
                    String::from_utf8_lossy(name)
                );
            }
            stream.finish().unwrap();
        }
        assert!(
            allowed > 100 && refused > 500,
            "{allowed} allowed, {refused} refused"
        );
    }
}

/// What a request with a cached JWT costs, in crossings (the bench-envoy
/// auth job): a change that adds a host call or a callback fails here
/// before it shows in Envoy (docs/performance.md, "Host calls in Envoy").
#[test]
fn a_cached_token_makes_exactly_these_host_calls() {
    let config = json!({
        "jwt_providers": [{"name": "main", "issuer": "https://issuer.example",
            "local_jwks": jwks()}],
        "rules": [{"name": "all", "require": {"jwt": "main"}}]
    });
    let mut vm = Plugin::builder(harness_fixtures::AUTH)
        .configuration(config.to_string())
        .build()
        .and_then(|p| p.start())
        .unwrap();
    let bearer = format!("Bearer {}", good());
    let mut costs = Vec::new();
    for _ in 0..2 {
        let mut stream = vm.http_stream();
        let progress = stream
            .send_request_headers(get(&[("authorization", &bearer)]), true)
            .unwrap();
        assert_eq!(progress, Progress::Continued);
        stream
            .send_response_headers([(":status", "200")], false)
            .unwrap();
        stream.send_response_body("ok", true).unwrap();
        costs.push(stream.finish().unwrap().costs.remove(0));
    }
    let cached = &costs[1];
    let callbacks: Vec<_> = cached.callbacks.iter().map(|c| c.callback).collect();
    assert_eq!(
        callbacks,
        [
            "proxy_on_context_create",
            "proxy_on_request_headers",
            "proxy_on_delete"
        ],
        "no response, body, log or done callback: {cached}"
    );
    assert_eq!(
        cached.host_calls(),
        [
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_current_time_nanoseconds", 1),
            // `auth.allowed` and `auth.jwt.ok`.
            ("proxy_increment_metric", 2),
            // `x-auth-identity` set, the token's `authorization` removed.
            ("proxy_replace_header_map_value", 1),
            ("proxy_remove_header_map_value", 1),
        ],
        "{cached}"
    );
}

/// The filter reads Envoy's log level at configure: at info an allowed
/// request sends no log line (no `proxy_log` crossing for a line Envoy would
/// drop); at debug it logs the decision.
#[test]
fn debug_lines_cross_only_when_the_host_logs_debug() {
    let config = json!({
        "jwt_providers": [{"name": "main", "issuer": "https://issuer.example",
            "local_jwks": jwks()}],
        "rules": [{"name": "all", "require": {"jwt": "main"}}]
    });
    let bearer = format!("Bearer {}", good());
    for (level, lines) in [(LogLevel::Info, 0), (LogLevel::Debug, 1)] {
        let mut vm = Plugin::builder(harness_fixtures::AUTH)
            .configuration(config.to_string())
            .log_level(level)
            .build()
            .and_then(|p| p.start())
            .unwrap();
        vm.take_logs();
        let mut stream = vm.http_stream();
        stream
            .send_request_headers(get(&[("authorization", &bearer)]), true)
            .unwrap();
        let costs = stream.costs();
        assert_eq!(
            costs.host_calls_to("proxy_log"),
            lines,
            "{level:?}: {costs}"
        );
        stream.finish().unwrap();
        let logged = vm
            .take_logs()
            .iter()
            .filter(|l| l.message.contains("allowed by rule all"))
            .count();
        assert_eq!(logged as u32, lines, "{level:?}");
    }
}

/// RS*/ES* signatures go through the host's `verify_signature` when its
/// self-test passes at configure, and stay in the module on a host without
/// it (one answering NOT_FOUND, as a proxy without the function does): the
/// choice is logged once, each signature is counted by who checked it, and
/// both give every token the same answer.
#[test]
fn signatures_go_through_verify_signature_when_the_host_has_it() {
    let config = json!({
        "jwt_providers": [{"name": "main", "issuer": "https://issuer.example",
            "local_jwks": signing::jwks_json()}],
        "rules": [{"require": {"jwt": "main"}}],
        // Every request verifies.
        "token_cache_size": 0
    });
    let claims = json!({"iss": "https://issuer.example", "sub": "alice", "exp": FAR});
    let algs = [
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("ES512", "p521"),
        ("PS256", "rsa"),
        ("EdDSA", "ed"),
        ("HS256", "hs"),
    ];
    let mut tokens = Vec::new();
    for (alg, kid) in algs {
        let valid = signing::token_with(&json!({"alg": alg, "kid": kid}), &claims, alg);
        // One bit of the signature changed (in `r` for ECDSA, which stays
        // a valid scalar): a forgery.
        let (input, signature) = valid.rsplit_once('.').unwrap();
        let mut forged = signature.as_bytes().to_vec();
        forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        tokens.push((alg, valid.clone()));
        tokens.push((alg, format!("{input}.{forged}")));
    }
    let mut answers = Vec::new();
    for host_has_it in [true, false] {
        let mut builder = Plugin::builder(harness_fixtures::AUTH).configuration(config.to_string());
        if !host_has_it {
            builder = builder.foreign_function("verify_signature", |_| {
                Err(proxy_wasm_harness::Status::NotFound)
            });
        }
        let mut vm = builder.build().and_then(|p| p.start()).unwrap();
        let logs: Vec<String> = vm.take_logs().into_iter().map(|l| l.message).collect();
        let choice: Vec<&String> = logs
            .iter()
            .filter(|l| l.contains("JWT signature"))
            .collect();
        assert_eq!(choice.len(), 1, "{logs:?}");
        if host_has_it {
            assert!(
                choice[0].contains("verified by the host's verify_signature"),
                "{choice:?}"
            );
        } else {
            assert!(
                choice[0].contains("in the module") && choice[0].contains("NOT_FOUND"),
                "{choice:?}"
            );
        }
        let statuses: Vec<(&str, u16)> = tokens
            .iter()
            .map(|(alg, token)| {
                let bearer = format!("Bearer {token}");
                (*alg, status(&mut vm, get(&[("authorization", &bearer)])))
            })
            .collect();
        let by_host = counter(&vm, "auth.jwt.signatures.host");
        let by_module = counter(&vm, "auth.jwt.signatures.module");
        if host_has_it {
            // Six algorithms, a valid and a forged token each.
            assert_eq!((by_host, by_module), (12, 6));
        } else {
            assert_eq!((by_host, by_module), (0, 18));
        }
        // An uncached RS256 request crosses once for its signature.
        let mut stream = vm.http_stream();
        let bearer = format!("Bearer {}", tokens[0].1);
        stream
            .send_request_headers(get(&[("authorization", &bearer)]), true)
            .unwrap();
        let costs = stream.finish().unwrap().costs.remove(0);
        assert_eq!(
            costs.host_calls_to("proxy_call_foreign_function"),
            u32::from(host_has_it),
            "{costs}"
        );
        answers.push(statuses);
    }
    assert_eq!(
        answers[0], answers[1],
        "both verifiers give the same answers"
    );
    let expected: Vec<u16> = tokens
        .iter()
        .enumerate()
        .map(|(i, _)| if i % 2 == 0 { 200 } else { 401 })
        .collect();
    let got: Vec<u16> = answers[0].iter().map(|(_, s)| *s).collect();
    assert_eq!(got, expected, "{:?}", answers[0]);
}
