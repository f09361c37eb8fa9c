//! The routing filter's cost per request: in the harness (the wasm module,
//! every host call included) and natively, with 1 rule and with 100 rules
//! where the request takes the last one (every match expression evaluated:
//! the worst case), all measured in one run.
//!
//! Routing by a JSON body field (`cluster_from`, the `bench-envoy` body job)
//! is measured at 1 KiB and 64 KiB: the whole request in the harness, and
//! the body's parse natively.
//!
//! `cargo bench -p proxy-wasm-benches --bench routing`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use filter_common::body::JsonBody;
use filter_proxy::request::TableHost;
use proxy_wasm_benches::{chat_body, chat_request};
use proxy_wasm_harness::{Plugin, Runtime};
use routing::route::route_headers;
use routing::{Config, Spreader};

const REQUEST: [(&str, &str); 8] = [
    (":method", "GET"),
    (":path", "/api/orders/42?page=2"),
    (":authority", "shop.example.com"),
    (":scheme", "http"),
    ("user-agent", "bench/1.0"),
    ("x-user", "ada"),
    ("cookie", "session=abc; theme=dark"),
    ("accept", "application/json"),
];

const ONE_RULE: &str =
    r#"{"rules": [{"match": {"path": {"separated_prefix": "/api"}}, "cluster": "api"}]}"#;

/// 99 rules of the kinds users write that miss the request (paths,
/// templates, regexes, hosts, headers, cookies, client ranges, composed),
/// then a sticky split it takes.
fn hundred_rules() -> String {
    let misses = [
        r#"{"path": {"separated_prefix": "/v{i}"}}"#,
        r#"{"path": {"template": "/users/{id}/r{i}/**"}}"#,
        r#"{"path": {"regex": "^/api/items/{i}[0-9]+$"}}"#,
        r#"{"hosts": ["*.tenant{i}.example", "t{i}.*"]}"#,
        r#"{"headers": [{"name": "x-env", "exact": "e{i}"}]}"#,
        r#"{"cookies": [{"name": "beta{i}", "present": true}]}"#,
        r#"{"client_ip": ["192.168.{i}.0/24"]}"#,
        r#"{"any": [{"method": {"exact": "PATCH"}}, {"query": [{"name": "v", "exact": "{i}"}]}]}"#,
        r#"{"path": {"prefix": "/api/"}, "not": {"headers": [{"name": "x-user", "present": true}]}}"#,
    ];
    rule_set(
        &misses,
        99,
        r#"{"name": "last", "match": {"path": {"separated_prefix": "/api"}},
            "split": {"targets": [{"cluster": "stable", "weight": 9}, {"cluster": "canary", "weight": 1}],
                      "sticky": {"header": "x-user"}}}"#,
    )
}

/// `count` rules cycling through `misses` (`{i}` is the rule's index), then
/// `last`.
fn rule_set(misses: &[&str], count: usize, last: &str) -> String {
    let mut rules: Vec<String> = (0..count)
        .map(|i| {
            let matcher = misses[i % misses.len()].replace("{i}", &i.to_string());
            format!(r#"{{"name": "r{i}", "match": {matcher}, "cluster": "c{i}"}}"#)
        })
        .collect();
    rules.push(last.to_owned());
    format!(r#"{{"rules": [{}]}}"#, rules.join(","))
}

/// 20 rules whose regexes miss (path, header and host regexes, one
/// case-insensitive), then a regex rule the request takes with a
/// `regex_rewrite` of its path: what regexes cost per request.
fn regex_rules() -> String {
    let misses = [
        r#"{"path": {"regex": "^/api/items/{i}[0-9]+$"}}"#,
        r#"{"headers": [{"name": "user-agent", "regex": "^(curl|wget)/{i}\\.[0-9]+"}]}"#,
        r#"{"headers": [{"name": "accept", "regex": "text/(html|plain){i}", "ignore_case": true}]}"#,
        r#"{"path": {"regex": "^/(v[0-9]+)/users/{i}/[^/]+$"}}"#,
    ];
    rule_set(
        &misses,
        20,
        r#"{"name": "last", "match": {"path": {"regex": "^/api/([a-z]+)/([0-9]+)"}},
            "cluster": "api",
            "rewrite": {"path": {"regex": {"pattern": "^/api/([a-z]+)/([0-9]+)", "substitution": "/v2/\\1/id/\\2"}}}}"#,
    )
}

/// The `bench-envoy` body-routing configuration.
const BODY_ROUTING: &str = r#"{"rules": [{"name": "by-model", "cluster_from": {
    "body": "/model", "clusters": {"gpt-x": "blue", "claude-y": "green"}, "default": "blue"}}],
    "body": {"max_bytes": 131072}}"#;

const BODY_SIZES: [(&str, usize); 2] = [("body_1k", 1024), ("body_64k", 65_536)];

fn in_harness(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("routing/harness");
    let minimal = Plugin::builder(harness_fixtures::MINIMAL_FILTER)
        .runtime(&runtime)
        .build()
        .unwrap();
    let mut vm = minimal.start().unwrap();
    group.bench_function("minimal_filter_floor", |b| {
        b.iter(|| {
            let mut stream = vm.http_stream();
            stream.send_request_headers(REQUEST, true).unwrap();
            stream
                .send_response_headers([(":status", "200")], true)
                .unwrap();
            black_box(stream.finish().unwrap())
        })
    });
    for (name, config) in [
        ("1_rule", ONE_RULE.to_owned()),
        ("100_rules", hundred_rules()),
        ("regex_rules", regex_rules()),
    ] {
        let plugin = Plugin::builder(harness_fixtures::ROUTING)
            .runtime(&runtime)
            .configuration(config)
            .property("source.address", "10.0.0.1:5000")
            .build()
            .unwrap();
        let mut vm = plugin.start().unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut stream = vm.http_stream();
                stream.send_request_headers(REQUEST, true).unwrap();
                stream
                    .send_response_headers([(":status", "200")], true)
                    .unwrap();
                black_box(stream.finish().unwrap())
            })
        });
    }
    let plugin = Plugin::builder(harness_fixtures::ROUTING)
        .runtime(&runtime)
        .configuration(BODY_ROUTING)
        .allow_on_headers_stop_iteration(true)
        .build()
        .unwrap();
    let mut vm = plugin.start().unwrap();
    for (name, size) in BODY_SIZES {
        let body = chat_body(size);
        let headers = chat_request(size);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut stream = vm.http_stream();
                stream.send_request_headers(headers.clone(), false).unwrap();
                stream.send_request_body(&body, true).unwrap();
                stream
                    .send_response_headers([(":status", "200")], true)
                    .unwrap();
                black_box(stream.finish().unwrap())
            })
        });
    }
    group.finish();
}

fn natively(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing/native");
    let host = TableHost::default().with("source.address", "10.0.0.1:5000");
    let headers: Vec<(String, Vec<u8>)> = REQUEST
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect();
    let mut spreader = Spreader::new(0);
    for (name, config) in [
        ("1_rule", ONE_RULE.to_owned()),
        ("100_rules", hundred_rules()),
        ("regex_rules", regex_rules()),
    ] {
        let config = Config::parse(config.as_bytes()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(route_headers(
                    &config,
                    headers.clone(),
                    host.clone(),
                    &mut spreader,
                ))
            })
        });
    }
    for (name, size) in BODY_SIZES {
        let body = chat_body(size);
        group.bench_function(format!("parse_{name}"), |b| {
            b.iter(|| black_box(JsonBody::parse(black_box(body.as_bytes()))))
        });
    }
    group.finish();
}

criterion_group!(benches, in_harness, natively);
criterion_main!(benches);
