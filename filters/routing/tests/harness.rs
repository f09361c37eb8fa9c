//! The built module in the harness, through its Rust API: counters, route
//! cache clears, the weighted split over 10,000 requests, stickiness across
//! VMs, and a property test of 10,000 random requests.

use harness_fixtures::random::{header_name, header_value};
use proxy_wasm_harness::{LogLevel, Metric, Plugin, Progress, Vm};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

fn vm_seeded(config: &str, seed: u64) -> Vm {
    Plugin::builder(harness_fixtures::ROUTING)
        .configuration(config)
        .property("xds.route_name", "shop")
        .property("source.address", "10.1.2.3:40000")
        .seed(seed)
        .build()
        .and_then(|p| p.start())
        .expect("the filter starts")
}

fn vm(config: &str) -> Vm {
    vm_seeded(config, 0)
}

fn counter(vm: &Vm, name: &str) -> u64 {
    match vm.metric(name) {
        Some(Metric::Counter(n)) => n,
        other => panic!("{name}: {other:?}"),
    }
}

fn get(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), "shop.example".to_owned()),
    ];
    h.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    h
}

/// The cluster header the upstream request carries (`None`: no choice).
fn cluster_of(vm: &mut Vm, path: &str, extra: &[(&str, &str)]) -> Option<String> {
    let mut stream = vm.http_stream();
    let progress = stream.send_request_headers(get(path, extra), true).unwrap();
    assert_eq!(progress, Progress::Continued);
    stream
        .upstream_request()
        .header("x-route-cluster")
        .map(str::to_owned)
}

#[test]
fn a_refused_configuration_is_one_error_line_with_every_path() {
    let err = Plugin::builder(harness_fixtures::ROUTING)
        .configuration(
            r#"{"rules": [{"match": {"path": {"regex": "("}}, "cluster": "a"}, {"redirect": {"status": 200}}], "extra": 1}"#,
        )
        .build()
        .and_then(|p| p.start())
        .expect_err("the configuration is refused");
    let text = err.to_string();
    assert!(
        text.contains("3 problems: /extra: unknown field `extra`")
            && text.contains("/rules/0/match/path/regex: invalid regex")
            && text.contains("/rules/1/redirect/status: 200 is not a redirect status"),
        "{text}"
    );
}

#[test]
fn counters_count_rules_defaults_and_replies_and_writes_clear_the_route_cache() {
    let mut vm = vm(r#"{
        "rules": [{"name": "api", "match": {"path": {"prefix": "/api"}}, "cluster": "api"},
                  {"name": "old", "match": {"path": {"prefix": "/old"}}, "redirect": {"path": {"set": "/new"}}},
                  {"name": "block", "match": {"path": {"prefix": "/admin"}}, "deny": {}},
                  {"name": "ping", "match": {"path": {"exact": "/ping"}}, "respond": {"body": "pong"}}],
        "scopes": [{"match": {"hosts": ["none.example"]}, "rules": [{"name": "scoped", "cluster": "x"}]}]
    }"#);
    assert!(vm.has_log(LogLevel::Info, "routing: configured with 5 rules"));
    let clears = vm.route_cache_clears();
    assert_eq!(cluster_of(&mut vm, "/api/x", &[]).as_deref(), Some("api"));
    assert!(
        vm.route_cache_clears() > clears,
        "a changed request clears the route cache"
    );
    let clears = vm.route_cache_clears();
    assert_eq!(cluster_of(&mut vm, "/web", &[]), None);
    assert_eq!(
        vm.route_cache_clears(),
        clears,
        "an unchanged request does not"
    );

    for (path, status) in [("/old/x", 301), ("/admin", 403), ("/ping", 200)] {
        let mut stream = vm.http_stream();
        assert_eq!(
            stream.send_request_headers(get(path, &[]), true).unwrap(),
            Progress::Responded
        );
        assert_eq!(stream.local_response().map(|r| r.status), Some(status));
    }
    for (name, want) in [
        ("routing.rule.api", 1),
        ("routing.rule.old", 1),
        ("routing.rule.block", 1),
        ("routing.rule.ping", 1),
        ("routing.rule.scoped", 0),
        ("routing.unmatched", 1),
        ("routing.redirects", 1),
        ("routing.denied", 1),
        ("routing.direct_responses", 1),
        ("routing.errors", 0),
    ] {
        assert_eq!(counter(&vm, name), want, "{name}");
    }
}

const SPLIT: &str = r#"{"rules": [
    {"name": "sticky", "match": {"headers": [{"name": "x-user", "present": true}]},
     "split": {"targets": [{"cluster": "a", "weight": 70}, {"cluster": "b", "weight": 20}, {"cluster": "c", "weight": 10}],
               "sticky": {"header": "x-user"}}},
    {"name": "random",
     "split": {"targets": [{"cluster": "a", "weight": 70}, {"cluster": "b", "weight": 20}, {"cluster": "c", "weight": 10}]}}
]}"#;

#[test]
fn ten_thousand_requests_split_within_one_point_of_the_weights() {
    for seed in [0, 1, 0xdead_beef] {
        let mut vm = vm_seeded(SPLIT, seed);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            let cluster = cluster_of(&mut vm, "/", &[]).expect("a target");
            counts[usize::from(cluster.as_bytes()[0] - b'a')] += 1;
        }
        for (count, weight) in counts.iter().zip([70.0, 20.0, 10.0]) {
            let share = f64::from(*count) / 100.0;
            assert!(
                (share - weight).abs() <= 1.0,
                "seed {seed}: {share}% where the weight is {weight}% ({counts:?})"
            );
        }
    }
}

#[test]
fn sticky_keys_land_on_the_same_side_in_every_vm_and_spread_by_weight() {
    let mut first = vm_seeded(SPLIT, 1);
    let mut second = vm_seeded(SPLIT, 2);
    let mut counts = [0u32; 3];
    for user in 0..2_000 {
        let user = format!("user-{user}");
        let side = cluster_of(&mut first, "/", &[("x-user", &user)]).expect("a target");
        for vm in [&mut first, &mut second] {
            for _ in 0..2 {
                assert_eq!(
                    cluster_of(vm, "/", &[("x-user", &user)]).as_deref(),
                    Some(side.as_str()),
                    "{user}"
                );
            }
        }
        counts[usize::from(side.as_bytes()[0] - b'a')] += 1;
    }
    // 2,000 keys hashed: shares near the weights (±3 points).
    for (count, weight) in counts.iter().zip([70.0, 20.0, 10.0]) {
        let share = f64::from(*count) / 20.0;
        assert!(
            (share - weight).abs() <= 3.0,
            "{share}% vs {weight}% ({counts:?})"
        );
    }
}

/// Header names the configuration below looks at.
const KNOWN: &[&str] = &[
    "x-user",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-route-cluster",
    "x-target",
    "x-forwarded-host",
    "user-agent",
];

#[test]
fn ten_thousand_random_requests_never_trap() {
    // Every matcher, action and rewrite kind, so random input reaches them.
    let config = r#"{
      "client_ip": {"source": "x-forwarded-for", "trusted_hops": 1},
      "rules": [
        {"name": "ip", "match": {"client_ip": ["10.0.0.0/8", "2001:db8::/32"], "cookies": [{"name": "a", "present": true}]}, "cluster": "ip"},
        {"name": "tpl", "match": {"path": {"template": "/u/{id}/{rest=**}"}},
         "rewrite": {"path": {"template": {"match": "/u/{id}/{rest=**}", "to": "/users/{id}/{rest}"}},
                     "host": {"from_path": {"pattern": "^/u/([a-z]+)", "substitution": "\\1.internal"}},
                     "query": [{"set": {"name": "id", "value": "%REQ(x-user):8%"}}, {"remove": {"name": "a"}}]}},
        {"name": "redir", "match": {"any": [{"path": {"separated_prefix": "/old"}}, {"url": {"regex": "[?&]r="}}]},
         "redirect": {"scheme": "https", "path": {"regex": {"pattern": "^/old(/.*)?$", "substitution": "/new\\1"}}, "status": 308}},
        {"name": "deny", "match": {"headers": [{"name": "user-agent", "contains": "bot", "ignore_case": true}]}, "deny": {}},
        {"name": "echo", "match": {"path": {"prefix": "/echo"}}, "respond": {"headers": {"x-echo": "%REQ(x-user)%"}, "body": "%PATH% %QUERY_PARAM(q)%"}},
        {"name": "host", "match": {"not": {"hosts": ["*.example", "api.*"]}}, "rewrite": {"host": {"from_header": "x-target"}}},
        {"name": "split", "split": {"targets": [{"cluster": "a", "weight": 3}, {"cluster": "b", "weight": 1, "tag": "t"}], "sticky": {"cookie": "uid"}}}
      ],
      "scopes": [{"match": {"hosts": ["*.scoped"]}, "default": {"split": {"targets": [{"cluster": "s", "weight": 1}], "sticky": {"client_ip": true}}}}]
    }"#;
    let mut vm = vm(config);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let prefixes: [&[u8]; 6] = [b"/u/", b"/old", b"/echo", b"/", b"/old/", b""];
    for i in 0..10_000u32 {
        let mut path = prefixes[i as usize % prefixes.len()].to_vec();
        let mut tail = header_value(&mut rng);
        tail.truncate(300);
        path.extend(tail);
        let authority = if i % 7 == 0 {
            b"a.scoped".to_vec()
        } else {
            header_value(&mut rng)
        };
        let mut request: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b":method".to_vec(), b"GET".to_vec()),
            (b":path".to_vec(), path),
            (b":authority".to_vec(), authority),
        ];
        for _ in 0..rng.next_u32() % 12 {
            let name = header_name(&mut rng, KNOWN);
            for _ in 0..1 + rng.next_u32() % 3 {
                request.push((name.clone().into_bytes(), header_value(&mut rng)));
            }
        }
        let mut stream = vm.http_stream();
        let progress = stream
            .send_request_headers(request.clone(), true)
            .unwrap_or_else(|e| panic!("request {i} trapped: {e}\n{request:?}"));
        if progress == Progress::Continued {
            stream
                .send_response_headers([(":status", "200")], true)
                .unwrap_or_else(|e| panic!("response {i} trapped: {e}"));
        }
        stream
            .finish()
            .unwrap_or_else(|e| panic!("stream {i} failed: {e}"));
    }
    assert!(vm.poisoned().is_none());
    assert_eq!(counter(&vm, "routing.errors"), 0);
}

/// What the bench-envoy routing job costs per request, in crossings: a
/// change that adds a host call or a callback fails here before it shows in
/// Envoy (docs/performance.md, "Host calls in Envoy").
#[test]
fn the_routing_job_makes_exactly_these_host_calls() {
    let rules: Vec<String> = (0..10)
        .map(|i| {
            let cluster = if i % 2 == 0 { "blue" } else { "green" };
            format!(r#"{{"match": {{"path": {{"prefix": "/svc{i}/"}}}}, "cluster": "{cluster}"}}"#)
        })
        .collect();
    let mut vm = vm(&format!(r#"{{"rules": [{}]}}"#, rules.join(",")));
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(get("/svc9/items", &[]), true)
        .unwrap();
    stream
        .send_response_headers([(":status", "200")], false)
        .unwrap();
    stream.send_response_body("ok", true).unwrap();
    let exchange = stream.finish().unwrap();
    assert_eq!(
        exchange.upstream_request.header("x-route-cluster"),
        Some("green")
    );
    let costs = &exchange.costs[0];
    let callbacks: Vec<_> = costs.callbacks.iter().map(|c| c.callback).collect();
    assert_eq!(
        callbacks,
        [
            "proxy_on_context_create",
            "proxy_on_request_headers",
            "proxy_on_delete"
        ],
        "no response, body, log or done callback: {costs}"
    );
    assert_eq!(
        costs.host_calls(),
        [
            ("proxy_get_header_map_pairs", 1),
            ("proxy_increment_metric", 1),
            // Envoy clears the route cache on this write (ABI 0.2.1): no
            // `clear_route_cache` call unless configured.
            ("proxy_replace_header_map_value", 1),
        ],
        "{costs}"
    );
}

/// `clear_route_cache: true` adds the explicit clear after a change, for
/// hosts that do not clear on a write; nothing when nothing changed.
#[test]
fn clear_route_cache_calls_the_foreign_function_only_when_asked() {
    let rules = r#""rules": [{"match": {"path": {"prefix": "/api"}}, "cluster": "api"}]"#;
    for (extra, explicit) in [("", 0), (r#", "clear_route_cache": true"#, 1)] {
        let mut vm = vm(&format!("{{{rules}{extra}}}"));
        for (path, changed) in [("/api/x", true), ("/web", false)] {
            let mut stream = vm.http_stream();
            stream.send_request_headers(get(path, &[]), true).unwrap();
            let costs = stream.finish().unwrap().costs.remove(0);
            let expected = if changed { explicit } else { 0 };
            assert_eq!(
                costs.host_calls_to("proxy_call_foreign_function"),
                expected,
                "{extra} {path}: {costs}"
            );
        }
    }
}

const BODY_ROUTING: &str = r#"{
  "body": {"max_bytes": 2048},
  "rules": [
    {"name": "blocked", "match": {"body": [{"pointer": "/model", "prefix": "banned"}]}, "deny": {}},
    {"name": "typed", "match": {"body": [{"pointer": "/n", "exact": "2"}, {"pointer": "/a/0/b", "present": true}]}, "cluster": "typed"},
    {"name": "by-model", "cluster_from": {"body": "/model", "clusters": {"gpt-x": "llm-a", "claude-y": "llm-b"}, "default": "llm-c"}}
  ]
}"#;

fn post(content_type: &str) -> Vec<(String, String)> {
    let mut h = get("/v1/chat", &[("content-type", content_type)]);
    if let Some((_, method)) = h.iter_mut().find(|(k, _)| k == ":method") {
        *method = "POST".to_owned();
    }
    h
}

/// Random JSON, near-JSON and non-JSON bodies, in random pieces over both
/// codecs' framings, some past the limit: the module never traps, each
/// request ends forwarded with its body and content-length untouched, or
/// answered, and the chosen cluster is the one the body names.
#[test]
fn random_bodies_in_random_pieces_never_trap_nor_change_the_body() {
    use proxy_wasm_harness::envoy::{Codec, body_frames};
    let mut vm = Plugin::builder(harness_fixtures::ROUTING)
        .configuration(BODY_ROUTING)
        .allow_on_headers_stop_iteration(true)
        .build()
        .and_then(|p| p.start())
        .expect("the filter starts");
    let mut rng = ChaCha8Rng::seed_from_u64(0xb0d7);
    let models = ["gpt-x", "claude-y", "banned-1", "other", "gpt\\u002dx", ""];
    let (mut routed, mut answered) = (0, 0);
    for i in 0..5_000u32 {
        let model = models[rng.next_u32() as usize % models.len()];
        let pad = "p".repeat(rng.next_u32() as usize % 3000);
        let body = match rng.next_u32() % 6 {
            0 => format!(r#"{{"model":"{model}","pad":"{pad}"}}"#),
            1 => format!(r#"{{"n":2,"a":[{{"b":null}}],"model":"{model}"}}"#),
            2 => format!(r#"{{"model":"{model}","model":"gpt-x"}}"#),
            3 => format!(r#"{{"model":"{model}""#),
            4 => String::from_utf8_lossy(&header_value(&mut rng)).into_owned(),
            _ => format!(r#"[{{"model":"{model}"}}, 1e400]"#),
        };
        let codec = if i % 2 == 0 {
            Codec::Http1
        } else {
            Codec::Http2
        };
        let cuts: Vec<usize> = (0..rng.next_u32() % 6)
            .map(|_| 1 + rng.next_u32() as usize % 700)
            .collect();
        let mut headers = post("application/json");
        headers.push(("content-length".to_owned(), body.len().to_string()));
        let mut stream = vm.http_stream();
        let mut progress = stream
            .send_request_headers(headers, false)
            .unwrap_or_else(|e| panic!("request {i} trapped at its headers: {e}"));
        assert_eq!(progress, Progress::Paused, "request {i} waits for its body");
        for (piece, end) in body_frames(body.as_bytes(), &cuts, codec) {
            progress = stream
                .send_request_body(piece, end)
                .unwrap_or_else(|e| panic!("request {i} trapped in its body: {e}\n{body}"));
            if progress == Progress::Responded {
                break;
            }
        }
        let upstream = stream.upstream_request();
        match progress {
            Progress::Responded => answered += 1,
            _ => {
                routed += 1;
                assert_eq!(
                    upstream.body_text(),
                    body,
                    "request {i}: the body is passed on whole"
                );
                assert_eq!(upstream.content_length_mismatch(), None, "request {i}");
                let want = if body.len() > 2048 {
                    "llm-c"
                } else if body.starts_with(r#"{"n":2"#) {
                    "typed"
                } else if body.starts_with(r#"{"model":"gpt-x","pad""#)
                    || body.starts_with(r#"{"model":"gpt\u002dx","pad""#)
                {
                    "llm-a"
                } else if body.starts_with(r#"{"model":"claude-y","pad""#) {
                    "llm-b"
                } else {
                    "llm-c"
                };
                assert_eq!(
                    upstream.header("x-route-cluster"),
                    Some(want),
                    "request {i}: {body}"
                );
            }
        }
        stream
            .finish()
            .unwrap_or_else(|e| panic!("stream {i} failed: {e}"));
    }
    assert!(vm.poisoned().is_none());
    assert!(
        routed > 1000 && answered > 100,
        "{routed} routed, {answered} answered"
    );
    assert_eq!(counter(&vm, "routing.errors"), 0);
}

/// What routing one 1 KiB JSON body costs, in crossings: the pieces' body
/// callbacks, then one body read, one header write and one counter.
#[test]
fn the_body_routing_job_makes_exactly_these_host_calls() {
    let mut vm = Plugin::builder(harness_fixtures::ROUTING)
        .configuration(BODY_ROUTING)
        .allow_on_headers_stop_iteration(true)
        .build()
        .and_then(|p| p.start())
        .expect("the filter starts");
    let body = format!(r#"{{"model":"claude-y","pad":"{}"}}"#, "p".repeat(990));
    let mut stream = vm.http_stream();
    assert_eq!(
        stream
            .send_request_headers(post("application/json"), false)
            .unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body(&body[..512], false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body(&body[512..], true).unwrap(),
        Progress::Continued
    );
    let exchange = stream.finish().unwrap();
    assert_eq!(
        exchange.upstream_request.header("x-route-cluster"),
        Some("llm-b")
    );
    let costs = &exchange.costs[0];
    let callbacks: Vec<_> = costs.callbacks.iter().map(|c| c.callback).collect();
    assert_eq!(
        callbacks,
        [
            "proxy_on_context_create",
            "proxy_on_request_headers",
            "proxy_on_request_body",
            "proxy_on_delete"
        ],
        "{costs}"
    );
    assert_eq!(
        costs.callbacks.iter().map(|c| c.invocations).sum::<u32>(),
        5,
        "two body callbacks, one per piece: {costs}"
    );
    assert_eq!(
        costs.host_calls(),
        [
            ("proxy_get_header_map_pairs", 1),
            ("proxy_get_buffer_bytes", 1),
            ("proxy_increment_metric", 1),
            ("proxy_replace_header_map_value", 1),
        ],
        "{costs}"
    );
}
