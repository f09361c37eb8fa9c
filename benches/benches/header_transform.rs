//! The header-transform filter's cost per request: in the harness (the wasm
//! module, every host call included) and natively (the same logic without
//! wasm), for a 1-rule and a 10-rule configuration, plus the bare
//! minimal-filter lifecycle as the host's floor, all measured in one run.
//!
//! `cargo bench -p proxy-wasm-benches --bench header_transform`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use filter_proxy::headers::HeaderMap;
use filter_proxy::request::{Request, TableHost};
use header_transform::Config;
use proxy_wasm_benches::REQUEST;
use proxy_wasm_harness::{Plugin, Runtime};

const ONE_RULE: &str =
    r#"{"rules": [{"request_headers": [{"set": {"name": "x-env", "value": "prod"}}]}]}"#;

/// Ten rules of the kinds users write: conditions on path, method, host and
/// headers; templated sets, removals, a rename, a query edit, response
/// headers.
const TEN_RULES: &str = r#"{"rules": [
  {"request_headers": [{"set": {"name": "x-request-start", "value": "%START_TIME(%s)%"}}]},
  {"request_headers": [{"remove": {"prefix": "x-internal-"}}]},
  {"when": {"path": {"prefix": "/api/"}}, "request_headers": [{"set": {"name": "x-api", "value": "%REQ(:method)% %PATH%"}}]},
  {"when": {"method": {"one_of": ["POST", "PUT"]}}, "request_headers": [{"set": {"name": "x-write", "value": "1"}}]},
  {"when": {"host": {"suffix": ".example.com"}}, "request_headers": [{"add": {"name": "x-tenant", "value": "example", "append_action": "ADD_IF_ABSENT"}}]},
  {"when": {"headers": [{"name": "x-user", "present": true}]}, "request_headers": [{"copy": {"from": "x-user", "to": "x-forwarded-user"}}]},
  {"when": {"path": {"regex": "^/api/orders/[0-9]+$"}}, "request_headers": [{"set": {"name": "x-order-route", "value": "%ROUTE_NAME%"}}]},
  {"query": [{"remove": {"name": "debug"}}]},
  {"request_headers": [{"rename": {"from": "user-agent", "to": "x-client-agent"}}]},
  {"response_headers": [{"remove": {"name": "server"}}, {"set": {"name": "x-content-type-options", "value": "nosniff"}}]}
]}"#;

fn in_harness(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("header_transform/harness");
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
                .send_response_headers([(":status", "200"), ("server", "envoy")], true)
                .unwrap();
            black_box(stream.finish().unwrap())
        })
    });
    for (name, config) in [("1_rule", ONE_RULE), ("10_rules", TEN_RULES)] {
        let plugin = Plugin::builder(harness_fixtures::HEADER_TRANSFORM)
            .runtime(&runtime)
            .configuration(config)
            .property("xds.route_name", "orders")
            .build()
            .unwrap();
        let mut vm = plugin.start().unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut stream = vm.http_stream();
                stream.send_request_headers(REQUEST, true).unwrap();
                stream
                    .send_response_headers([(":status", "200"), ("server", "envoy")], true)
                    .unwrap();
                black_box(stream.finish().unwrap())
            })
        });
    }
    group.finish();
}

fn natively(c: &mut Criterion) {
    let mut group = c.benchmark_group("header_transform/native");
    let host = TableHost::default().with("xds.route_name", "orders");
    let headers = HeaderMap::new(
        REQUEST
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect(),
    );
    let response = HeaderMap::new(vec![
        (":status".into(), b"200".to_vec()),
        ("server".into(), b"envoy".to_vec()),
    ]);
    for (name, config) in [("1_rule", ONE_RULE), ("10_rules", TEN_RULES)] {
        let config = Config::parse(config.as_bytes()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut request = Request::new(headers.clone(), host.clone());
                let decision = config.on_request(&mut request);
                let mut response = response.clone();
                black_box(config.on_response(&decision, &request, &mut response))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, in_harness, natively);
criterion_main!(benches);
