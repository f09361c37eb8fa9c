//! The cost report: every crossing a guest makes is counted, in the callback
//! and on the stream that made it, and nothing else is.

use proxy_wasm_harness::{CostModel, Progress};

use crate::guest::{self, get};

/// VM start: one log line. Request headers: two reads (one hit, one miss), one add and one log line;
/// response headers: nothing.
const BODY: &str = r#"(data (i32.const 0x400) ":path")
    (data (i32.const 0x410) "absent")
    (data (i32.const 0x420) "x-newv")
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (drop (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 5) (i32.const 0x10) (i32.const 0x14)))
      (drop (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x410) (i32.const 6) (i32.const 0x10) (i32.const 0x14)))
      (drop (call $proxy_add_header_map_value (i32.const 0) (i32.const 0x420) (i32.const 5) (i32.const 0x425) (i32.const 1)))
      (drop (call $proxy_log (i32.const 2) (i32.const 0x400) (i32.const 5)))
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (i32.const 0))
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
      (drop (call $proxy_log (i32.const 2) (i32.const 0x410) (i32.const 6)))
      (i32.const 1))"#;

#[test]
fn each_host_call_is_counted_once_in_the_callback_that_made_it() {
    let mut vm = guest::start(BODY);
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/items"), true).unwrap(),
        Progress::Continued
    );
    let so_far = stream.costs();
    assert_eq!(so_far.host_call_count(), 4);
    stream
        .send_response_headers([(":status", "200")], true)
        .unwrap();
    let exchange = stream.finish().unwrap();
    assert_eq!(exchange.costs.len(), 1);
    let costs = &exchange.costs[0];
    let request = &costs.callbacks[0];
    assert_eq!(request.callback, "proxy_on_request_headers", "{costs}");
    assert_eq!(request.invocations, 1);
    assert_eq!(
        request.host_calls,
        [
            ("proxy_get_header_map_value", 2),
            ("proxy_add_header_map_value", 1),
            ("proxy_log", 1),
        ]
    );
    // The hit returned "/items" into one allocation; the miss returned nothing.
    assert_eq!(request.bytes_to_guest, 6);
    assert_eq!(request.guest_allocations, 1);
    // Keys and values read: ":path", "absent", "x-new" + "v", the log line.
    assert_eq!(request.bytes_from_guest, 5 + 6 + 5 + 1 + 5);
    let names: Vec<_> = costs.callbacks.iter().map(|c| c.callback).collect();
    assert_eq!(
        names,
        ["proxy_on_request_headers", "proxy_on_response_headers"],
        "the guest exports no other stream callback, so Envoy calls none"
    );
    assert_eq!(costs.host_call_count(), 4);
    assert_eq!(costs.callback_count(), 2);
    assert_eq!(costs.crossings(), 2 + 4 + 1);
}

#[test]
fn streams_are_counted_apart_and_the_root_context_on_its_own() {
    let mut vm = guest::start(BODY);
    let root_before = vm.costs().clone();
    assert_eq!(
        root_before.to_string(),
        "proxy_on_vm_start x1: 1 host call (proxy_log 1), 0 B to the guest, 6 B from it, 0 allocations"
    );
    for _ in 0..3 {
        let mut stream = vm.http_stream();
        stream.send_request_headers(get("/"), true).unwrap();
        let exchange = stream.finish().unwrap();
        assert_eq!(exchange.costs[0].host_call_count(), 4);
    }
    assert_eq!(
        vm.costs(),
        &root_before,
        "streams' calls stay out of the root's"
    );
}

#[test]
fn the_estimate_follows_the_model() {
    let mut vm = guest::start(BODY);
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), true).unwrap();
    let exchange = stream.finish().unwrap();
    let model = CostModel::envoy_1_40();
    let expected = model.callback_ns
        + 2.0 * model.host_call_ns("proxy_get_header_map_value")
        + model.host_call_ns("proxy_add_header_map_value")
        + model.host_call_ns("proxy_log")
        + model.allocation_ns
        + f64::from(6 + 22) * model.byte_ns;
    let estimate = exchange.costs[0].estimate(&model).as_nanos() as f64;
    assert!(
        (estimate - expected).abs() < 1.0,
        "{estimate} vs {expected}"
    );
}

/// The cost probe (`cargo xtask bench-envoy --host-calls` prices each host
/// call with it) makes exactly `repeat` calls of the function it is set to.
#[test]
fn the_cost_probe_makes_the_calls_it_is_configured_for() {
    use proxy_wasm_harness::Plugin;
    for (call, function) in [
        ("get_header", "proxy_get_header_map_value"),
        ("get_headers", "proxy_get_header_map_pairs"),
        ("replace_header", "proxy_replace_header_map_value"),
        ("remove_header", "proxy_remove_header_map_value"),
        ("increment_metric", "proxy_increment_metric"),
        ("get_property", "proxy_get_property"),
        ("clear_route_cache", "proxy_call_foreign_function"),
        ("log_dropped", "proxy_log"),
        ("get_log_level", "proxy_get_log_level"),
        ("current_time", "proxy_get_current_time_nanoseconds"),
    ] {
        let mut vm = Plugin::builder(harness_fixtures::COST_PROBE)
            .configuration(format!(r#"{{"call": "{call}", "repeat": 7}}"#))
            .build()
            .and_then(|p| p.start())
            .unwrap();
        let mut stream = vm.http_stream();
        stream.send_request_headers(get("/"), true).unwrap();
        let costs = stream.finish().unwrap().costs.remove(0);
        assert_eq!(costs.host_calls(), [(function, 7)], "{call}: {costs}");
    }
    let refused = Plugin::builder(harness_fixtures::COST_PROBE)
        .configuration(r#"{"call": "nope"}"#)
        .build()
        .and_then(|p| p.start());
    assert!(refused.is_err(), "an unknown call is refused");
}
