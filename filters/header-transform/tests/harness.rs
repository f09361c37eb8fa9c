//! The built module in the harness, through its Rust API: what only the
//! wasm build shows (host calls, counters, trailers, logs, traps), and a
//! property test of 10,000 random requests.

use harness_fixtures::random::{header_name, header_value};
use proxy_wasm_harness::{LogLevel, Metric, Plugin, Progress, Vm};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

fn vm(config: &str) -> Vm {
    Plugin::builder(harness_fixtures::HEADER_TRANSFORM)
        .configuration(config)
        .property("xds.route_name", "orders")
        .build()
        .and_then(|p| p.start())
        .expect("the filter starts")
}

fn counter(vm: &Vm, name: &str) -> u64 {
    match vm.metric(name) {
        Some(Metric::Counter(n)) => n,
        other => panic!("{name}: {other:?}"),
    }
}

const REQUEST: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/api/items?debug=1"),
    (":authority", "shop.example"),
];

#[test]
fn a_refused_configuration_is_one_error_line_with_every_path() {
    let err = Plugin::builder(harness_fixtures::HEADER_TRANSFORM)
        .configuration(r#"{"rules": [{"request_headers": [{"set": {"name": "X", "value": "%NOPE%"}}]}], "extra": 1}"#)
        .build()
        .and_then(|p| p.start())
        .expect_err("the configuration is refused");
    let text = err.to_string();
    assert!(text.contains("rejected its configuration"), "{text}");
    assert!(
        text.contains("3 problems: /extra: unknown field `extra`")
            && text.contains("/rules/0/request_headers/0/set/name")
            && text.contains("/rules/0/request_headers/0/set/value: bad template"),
        "{text}"
    );
}

#[test]
fn counters_count_applied_rules_preflights_and_replacements() {
    let mut vm = vm(r#"{
        "rules": [{"request_headers": [{"set": {"name": "x-a", "value": "1"}}]},
                  {"when": {"path": {"prefix": "/api"}}, "query": [{"remove": {"name": "debug"}}]}],
        "cors": {"allow_origins": ["https://app.test"]},
        "custom_responses": [{"on_status": ["5xx"], "status": 503, "body": "sorry"}]
    }"#);
    assert!(vm.has_log(LogLevel::Info, "header-transform: configured with 2 rules"));

    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(REQUEST, true).unwrap(),
        Progress::Continued
    );
    assert_eq!(
        stream.upstream_request().header(":path"),
        Some("/api/items")
    );
    assert_eq!(stream.upstream_request().header("x-a"), Some("1"));
    stream
        .send_response_headers([(":status", "502")], true)
        .unwrap();
    let reply = stream.local_response().expect("the 502 is replaced");
    assert_eq!(
        (reply.status, reply.body.as_slice(), reply.details.as_str()),
        (503, &b"sorry"[..], "header_transform_custom_response")
    );
    stream.finish().unwrap();

    let mut preflight = vm.http_stream();
    let progress = preflight
        .send_request_headers(
            [
                (":method", "OPTIONS"),
                (":path", "/"),
                (":authority", "a"),
                ("origin", "https://app.test"),
                ("access-control-request-method", "GET"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(progress, Progress::Responded);
    assert_eq!(preflight.local_response().map(|r| r.status), Some(204));
    preflight.finish().unwrap();

    assert_eq!(counter(&vm, "header_transform.rules_applied"), 2);
    assert_eq!(counter(&vm, "header_transform.responses_replaced"), 1);
    assert_eq!(counter(&vm, "header_transform.cors_preflights"), 1);
    assert_eq!(counter(&vm, "header_transform.errors"), 0);
}

#[test]
fn trailers_are_edited_in_both_directions() {
    let mut vm = vm(
        r#"{"rules": [{"request_trailers": [{"set": {"name": "x-checksum", "value": "%REQ(x-sum)%"}}],
                                   "response_trailers": [{"remove": {"name": "grpc-message"}}, {"add": {"name": "x-done", "value": "1"}}]}]}"#,
    );
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(
            [
                (":method", "POST"),
                (":path", "/"),
                (":authority", "a"),
                ("x-sum", "abc"),
            ],
            false,
        )
        .unwrap();
    stream.send_request_body("data", false).unwrap();
    stream
        .send_request_trailers([("x-checksum", "stale")])
        .unwrap();
    let trailers = stream
        .upstream_request()
        .trailers
        .clone()
        .expect("request trailers forwarded");
    assert_eq!(trailers.get("x-checksum"), Some("abc"));
    stream
        .send_response_headers([(":status", "200")], false)
        .unwrap();
    stream
        .send_response_trailers([("grpc-status", "0"), ("grpc-message", "ok")])
        .unwrap();
    let trailers = stream
        .downstream_response()
        .trailers
        .clone()
        .expect("response trailers forwarded");
    assert_eq!(trailers.get("grpc-status"), Some("0"));
    assert_eq!(trailers.get("grpc-message"), None);
    assert_eq!(trailers.get("x-done"), Some("1"));
    stream.finish().unwrap();
}

#[test]
fn clear_route_cache_adds_one_explicit_clear_after_request_changes() {
    // Route-cache clears for a request that the rule changes and one it
    // leaves alone, with and without the option.
    let clears = |option: bool| {
        let mut vm = vm(&format!(
            r#"{{"clear_route_cache": {option}, "rules": [{{"when": {{"path": {{"prefix": "/api"}}}}, "request_headers": [{{"set": {{"name": "x-pool", "value": "blue"}}}}]}}]}}"#
        ));
        let mut counts = Vec::new();
        for path in ["/api/x", "/web"] {
            let before = vm.route_cache_clears();
            let mut stream = vm.http_stream();
            stream
                .send_request_headers(
                    [(":method", "GET"), (":path", path), (":authority", "a")],
                    true,
                )
                .unwrap();
            stream.finish().unwrap();
            counts.push(vm.route_cache_clears() - before);
        }
        counts
    };
    let (without, with) = (clears(false), clears(true));
    // ABI 0.2.1: the header write itself clears the cache (Envoy's rule for
    // such modules); the option adds the explicit call; an untouched request
    // clears nothing either way.
    assert!(without[0] >= 1, "{without:?}");
    assert_eq!(with[0], without[0] + 1);
    assert_eq!((without[1], with[1]), (0, 0));
}

/// Header names the configuration below looks at.
const KNOWN: &[&str] = &[
    "x-h",
    "x-user",
    "origin",
    "x-tenant",
    "connection",
    "x-internal-id",
    "x-debug-1",
    "x-old",
    "x-multi",
    "access-control-request-method",
];

fn random_path(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut path = b"/".to_vec();
    let mut tail = header_value(rng);
    tail.truncate(200);
    path.extend(tail);
    if rng.next_u32().is_multiple_of(2) {
        path.extend_from_slice(b"?debug=1&a=%ff&&=x&q");
    }
    path
}

#[test]
fn ten_thousand_random_requests_never_trap() {
    // Every operation and template kind, conditions of every kind, CORS and
    // replacements, so random input reaches all of them.
    let config = r#"{
      "rules": [
        {"request_headers": [
           {"set": {"name": "x-info", "value": "%REQ(:method)% %PATH% %QUERY_PARAM(q)% %REQ(x-user?x-h):16% %START_TIME% %ROUTE_NAME% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}},
           {"add": {"name": "x-h", "value": "%REQ(x-h)%", "append_action": "ADD_IF_ABSENT"}},
           {"append": {"name": "x-multi", "value": "%REQ(x-user)%"}},
           {"remove": {"prefix": "x-internal-"}}, {"remove": {"regex": "^x-debug-[0-9]+$"}}, {"remove": {"hop_by_hop": true}},
           {"rename": {"from": "x-old", "to": "x-new"}}, {"copy": {"from": "x-h", "to": "x-h-copy"}},
           {"dedupe": {"name": "x-multi", "strategy": "RETAIN_UNIQUE"}}],
         "query": [{"set": {"name": "q", "value": "%REQ(x-user)%"}}, {"remove": {"name": "debug"}}, {"add": {"name": "t", "value": "%REQ(x-tenant)%"}}],
         "to_filter_state": [{"header": "x-tenant", "property": "tenant", "regex_rewrite": {"pattern": "^t-(.*)$", "substitution": "\\1"}}],
         "response_headers": [{"set": {"name": "x-status", "value": "%RESPONSE_CODE% %RESP(x-h)%"}}, {"dedupe": {"name": "x-h", "strategy": "RETAIN_LAST"}}]},
        {"when": {"host": {"regex": "^[a-z]+$"}, "headers": [{"name": "x-h", "contains": "a", "ignore_case": true}], "query": [{"name": "q", "present": true}]},
         "request_headers": [{"set": {"name": "x-matched", "value": "1"}}]}
      ],
      "cors": {"allow_origin_patterns": ["https://*.test"], "allow_methods": ["GET"], "allow_credentials": true},
      "custom_responses": [{"on_status": ["5xx"], "status": 503, "body": "%PATH% %RESPONSE_CODE%"}],
      "scopes": [{"match": {"hosts": ["*.scoped"]}, "rules": [{"request_headers": [{"remove": {"regex": "."}}]}]}]
    }"#;
    let mut vm = vm(config);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    for i in 0..10_000u32 {
        let mut request: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (
                b":method".to_vec(),
                if rng.next_u32() % 5 == 0 {
                    b"OPTIONS".to_vec()
                } else {
                    b"GET".to_vec()
                },
            ),
            (b":path".to_vec(), random_path(&mut rng)),
            (
                b":authority".to_vec(),
                if i % 7 == 0 {
                    b"a.scoped".to_vec()
                } else {
                    header_value(&mut rng)
                },
            ),
        ];
        let count = rng.next_u32() % 12;
        for _ in 0..count {
            let name = header_name(&mut rng, KNOWN);
            let repeats = 1 + rng.next_u32() % 3;
            for _ in 0..repeats {
                request.push((name.clone().into_bytes(), header_value(&mut rng)));
            }
        }
        if i % 3 == 0 {
            request.push((b"origin".to_vec(), b"https://x.test".to_vec()));
        }
        let mut stream = vm.http_stream();
        let progress = stream
            .send_request_headers(request.clone(), true)
            .unwrap_or_else(|e| panic!("request {i} trapped: {e}\n{request:?}"));
        if progress == Progress::Continued {
            let status = [200, 404, 502][i as usize % 3].to_string();
            let mut response = vec![(b":status".to_vec(), status.into_bytes())];
            for _ in 0..rng.next_u32() % 6 {
                response.push((
                    header_name(&mut rng, KNOWN).into_bytes(),
                    header_value(&mut rng),
                ));
            }
            stream
                .send_response_headers(response, true)
                .unwrap_or_else(|e| panic!("response {i} trapped: {e}"));
        }
        stream
            .finish()
            .unwrap_or_else(|e| panic!("stream {i} failed: {e}"));
    }
    assert!(vm.poisoned().is_none());
    assert_eq!(counter(&vm, "header_transform.errors"), 0);
}

/// What the bench-envoy header job costs per request, in crossings: a
/// change that adds a host call or a callback fails here before it shows in
/// Envoy (docs/performance.md, "Host calls in Envoy").
#[test]
fn the_header_job_makes_exactly_these_host_calls() {
    const JOB: &str = r#"{"rules": [{"name": "job",
        "request_headers": [{"set": {"name": "x-edge", "value": "bench"}},
                            {"remove": {"name": "x-internal-debug"}}],
        "response_headers": [{"set": {"name": "x-content-type-options", "value": "nosniff"}},
                             {"remove": {"name": "x-powered-by"}}]}]"#;
    // The job's writes are the same for every request: made without
    // reading the maps. With `minimal_writes` each map is read once and
    // only what changes is written.
    for (config, host_calls) in [
        (
            format!("{JOB}}}"),
            vec![
                ("proxy_replace_header_map_value", 2),
                ("proxy_remove_header_map_value", 2),
                ("proxy_increment_metric", 1),
            ],
        ),
        (
            format!(r#"{JOB}, "minimal_writes": true}}"#),
            vec![
                ("proxy_get_header_map_pairs", 2),
                ("proxy_replace_header_map_value", 2),
                ("proxy_remove_header_map_value", 2),
                ("proxy_increment_metric", 1),
            ],
        ),
    ] {
        let mut vm = vm(&config);
        let mut stream = vm.http_stream();
        let mut request = REQUEST.to_vec();
        request.push(("x-internal-debug", "1"));
        stream.send_request_headers(request, true).unwrap();
        stream
            .send_response_headers([(":status", "200"), ("x-powered-by", "php")], false)
            .unwrap();
        stream.send_response_body("ok", true).unwrap();
        let exchange = stream.finish().unwrap();
        assert_eq!(exchange.upstream_request.header("x-edge"), Some("bench"));
        assert_eq!(exchange.upstream_request.header("x-internal-debug"), None);
        assert_eq!(
            exchange
                .downstream_response
                .header("x-content-type-options"),
            Some("nosniff")
        );
        assert_eq!(exchange.downstream_response.header("x-powered-by"), None);
        let costs = &exchange.costs[0];
        let callbacks: Vec<_> = costs.callbacks.iter().map(|c| c.callback).collect();
        // The response body's callback is the price of body edits: the
        // module exports it, so Envoy crosses for each piece of a response
        // body whether or not a rule edits it (it returns at once).
        assert_eq!(
            callbacks,
            [
                "proxy_on_context_create",
                "proxy_on_request_headers",
                "proxy_on_response_headers",
                "proxy_on_response_body",
                "proxy_on_delete",
            ],
            "no body, log or done callback: {costs}"
        );
        // The rule's counter, once per request it applies to.
        assert_eq!(costs.host_calls(), host_calls, "{config}: {costs}");
        assert_eq!(
            vm.metric("header_transform.rules_applied"),
            Some(proxy_wasm_harness::Metric::Counter(1))
        );
    }
}

/// A configuration with fixed writes (made without reading the maps) leaves
/// every request and response exactly as reading first and writing only
/// what changed does (`minimal_writes`): 500 random requests and responses,
/// with and without the headers the rules touch, repeated or not (compared
/// as HTTP compares header blocks: each name's lines in order).
#[test]
fn fixed_writes_end_where_minimal_writes_end() {
    let rules = r#""rules": [
        {"request_headers": [{"set": {"name": "x-edge", "value": "bench"}},
                             {"remove": {"name": "x-drop"}},
                             {"set": {"name": "x-again", "value": "1"}},
                             {"remove": {"name": "x-again"}}],
         "response_headers": [{"remove": {"name": "server"}},
                              {"set": {"name": "x-frame-options", "value": "DENY"}}]},
        {"request_headers": [{"set": {"name": "x-edge", "value": "second"}},
                             {"set": {"name": "x-empty", "value": "", "keep_empty_value": true}}]}]"#;
    let mut fixed = vm(&format!("{{{rules}}}"));
    let mut minimal = vm(&format!(r#"{{{rules}, "minimal_writes": true}}"#));
    let known = [
        "x-edge",
        "x-drop",
        "x-again",
        "x-empty",
        "server",
        "x-frame-options",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for i in 0..500 {
        let mut request: Vec<(String, Vec<u8>)> = REQUEST
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect();
        let mut response = vec![(":status".to_owned(), b"200".to_vec())];
        for _ in 0..rng.next_u32() % 8 {
            request.push((header_name(&mut rng, &known), header_value(&mut rng)));
            response.push((header_name(&mut rng, &known), header_value(&mut rng)));
        }
        if i % 3 == 0 {
            // Already as the rules leave it.
            request.push(("x-edge".into(), b"second".to_vec()));
            response.push(("x-frame-options".into(), b"DENY".to_vec()));
        }
        let mut ends = Vec::new();
        for vm in [&mut fixed, &mut minimal] {
            let mut stream = vm.http_stream();
            stream.send_request_headers(request.clone(), true).unwrap();
            stream
                .send_response_headers(response.clone(), true)
                .unwrap();
            let exchange = stream.finish().unwrap();
            ends.push((
                fields(exchange.upstream_request.headers.as_ref()),
                fields(exchange.downstream_response.headers.as_ref()),
            ));
        }
        assert!(
            ends[0] == ends[1],
            "request {i}: the two ways end differently:\n{:?}\n{:?}",
            ends[0],
            ends[1]
        );
        let (upstream, _) = &ends[0];
        assert_eq!(
            upstream.get(b"x-edge".as_slice()),
            Some(&vec![b"second".to_vec()]),
            "request {i}"
        );
    }
}

/// Each field's lines in order, by name: what HTTP makes of a header block
/// (RFC 9110 §5.3: the order of different names carries no meaning).
fn fields(
    headers: Option<&proxy_wasm_harness::HeaderMap>,
) -> std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut fields = std::collections::BTreeMap::<Vec<u8>, Vec<Vec<u8>>>::new();
    for (name, value) in headers.into_iter().flat_map(|h| h.iter()) {
        fields
            .entry(name.to_vec())
            .or_default()
            .push(value.to_vec());
    }
    fields
}

/// Random JSON, near-JSON and non-JSON bodies, in random pieces over both
/// framings, both ways, through `%BODY%` values and body edits: no trap,
/// and every body that left the filter whole has the `content-length` it
/// was sent with corrected to its length.
#[test]
fn random_bodies_both_ways_never_trap_nor_leave_a_stale_content_length() {
    use proxy_wasm_harness::envoy::{Codec, body_frames};
    let mut vm = Plugin::builder(harness_fixtures::HEADER_TRANSFORM)
        .configuration(
            r#"{"rules": [{"request_headers": [{"set": {"name": "x-model", "value": "%BODY(/model)%"}}],
                           "request_body": [{"set": {"pointer": "/model", "value": "m2"}}, {"remove": {"pointer": "/pad"}}],
                           "response_body": [{"set": {"pointer": "/by", "template": "%BODY(/model)%"}}]}],
                "body": {"max_bytes": 2048}}"#,
        )
        .allow_on_headers_stop_iteration(true)
        .build()
        .and_then(|p| p.start())
        .expect("the filter starts");
    let mut rng = ChaCha8Rng::seed_from_u64(0xed17);
    let mut edited = 0;
    for i in 0..3_000u32 {
        let mut body = || {
            let pad = "p".repeat(rng.next_u32() as usize % 2500);
            match rng.next_u32() % 5 {
                0 => format!(r#"{{"model":"a\u0001","pad":"{pad}"}}"#),
                1 => format!(r#"{{"model":"a","pad":"{pad}","model":"b"}}"#),
                2 => String::from_utf8_lossy(&header_value(&mut rng)).into_owned(),
                3 => format!(r#"[{{"pad":"{pad}"}}]"#),
                _ => format!(r#"{{"model":"gpt-x","pad":"{pad}","n":[1,2]}}"#),
            }
        };
        let (request_body, response_body) = (body(), body());
        let cuts: Vec<usize> = (0..rng.next_u32() % 5)
            .map(|_| 1 + rng.next_u32() as usize % 900)
            .collect();
        let codec = if i % 2 == 0 {
            Codec::Http1
        } else {
            Codec::Http2
        };
        let mut stream = vm.http_stream();
        let headers = [
            (":method", "POST".to_owned()),
            (":path", "/v1/chat".to_owned()),
            (":authority", "shop.example".to_owned()),
            ("content-type", "application/json".to_owned()),
            ("content-length", request_body.len().to_string()),
        ];
        let mut progress = stream
            .send_request_headers(headers, false)
            .unwrap_or_else(|e| panic!("request {i} trapped: {e}"));
        for (piece, end) in body_frames(request_body.as_bytes(), &cuts, codec) {
            progress = stream
                .send_request_body(piece, end)
                .unwrap_or_else(|e| panic!("request {i} trapped in its body: {e}"));
            if progress == Progress::Responded {
                break;
            }
        }
        if progress == Progress::Responded {
            stream.finish().unwrap();
            continue;
        }
        let upstream = stream.upstream_request();
        assert_eq!(
            upstream.content_length_mismatch(),
            None,
            "request {i}: {request_body}"
        );
        if upstream.body_text() != request_body {
            edited += 1;
        }
        stream
            .send_response_headers(
                [
                    (":status", "200".to_owned()),
                    ("content-type", "application/json".to_owned()),
                    ("content-length", response_body.len().to_string()),
                ],
                false,
            )
            .unwrap_or_else(|e| panic!("response {i} trapped: {e}"));
        for (piece, end) in body_frames(response_body.as_bytes(), &cuts, codec) {
            stream
                .send_response_body(piece, end)
                .unwrap_or_else(|e| panic!("response {i} trapped in its body: {e}"));
        }
        let exchange = stream
            .finish()
            .unwrap_or_else(|e| panic!("stream {i} failed: {e}"));
        assert_eq!(
            exchange.downstream_response.content_length_mismatch(),
            None,
            "response {i}: {response_body}"
        );
    }
    assert!(vm.poisoned().is_none());
    assert!(edited > 300, "{edited} request bodies edited");
    assert_eq!(counter(&vm, "header_transform.errors"), 0);
}
