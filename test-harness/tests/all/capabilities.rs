//! Envoy's `capability_restriction_config`: what a module needs, derived
//! from its imports and exports, and a restriction enforced as Envoy 1.40
//! enforces it (cpp-host's stubs: a restricted host function answers
//! INTERNAL_FAILURE, a restricted WASI function ENOTCAPABLE, a restricted
//! callback is never looked up).

use proxy_wasm_harness::{ErrorKind, Plugin, Progress, capabilities};

use crate::guest;

const INTERNAL_FAILURE: u32 = 10;
const ENOTCAPABLE: u32 = 76;

#[test]
fn a_restricted_host_function_answers_internal_failure_and_does_nothing() {
    let body = r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (call $result (i32.const 0)
          (call $proxy_get_current_time_nanoseconds (i32.const 0x10)))
        (call $result (i32.const 1) (call $proxy_get_log_level (i32.const 0x14)))
        (call $result (i32.const 2) (call $random_get (i32.const 0x20) (i32.const 8)))
        (call $result (i32.const 3) (call $clock_time_get (i32.const 0) (i64.const 0) (i32.const 0x30)))
        (i32.const 1))"#;
    let vm = guest::builder(body)
        .allowed_capabilities(["proxy_on_vm_start", "proxy_get_log_level", "clock_time_get"])
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(guest::result(&vm, 0), INTERNAL_FAILURE);
    assert_eq!(guest::u32_at(&vm, 0x10), 0, "a stub writes nothing");
    assert_eq!(guest::result(&vm, 1), 0, "an allowed call answers OK");
    assert_eq!(guest::result(&vm, 2), ENOTCAPABLE);
    assert_eq!(guest::result(&vm, 3), 0);
    assert_eq!(
        vm.restricted_calls(),
        ["proxy_get_current_time_nanoseconds", "random_get"]
    );
}

#[test]
fn a_callback_outside_the_restriction_never_runs() {
    let body = r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
          (call $result (i32.const 0) (i32.const 1)) (i32.const 1))
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 1) (i32.const 1)) (i32.const 1))"#;
    let vm = guest::builder(body)
        .allowed_capabilities(["proxy_on_vm_start"])
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(guest::result(&vm, 0), 1);
    assert_eq!(
        guest::result(&vm, 1),
        0,
        "proxy_on_configure was not called"
    );
    assert_eq!(vm.callback_count("proxy_on_configure"), 0);
    assert!(vm.restricted_calls().is_empty());
}

#[test]
fn an_empty_restriction_restricts_nothing() {
    let body = r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (call $result (i32.const 0)
          (call $proxy_get_current_time_nanoseconds (i32.const 0x10)))
        (i32.const 1))"#;
    let vm = guest::builder(body)
        .allowed_capabilities(Vec::<String>::new())
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(guest::result(&vm, 0), 0);
}

#[test]
fn a_module_runs_under_exactly_the_capabilities_derived_from_it() {
    let bytes = std::fs::read(harness_fixtures::SDK_FILTER).unwrap();
    let needed = capabilities::required(&bytes).unwrap();
    for name in [
        "proxy_log",
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_get_header_map_value",
        "fd_write",
    ] {
        assert!(needed.iter().any(|n| n == name), "{name} in {needed:?}");
    }
    assert!(!needed.iter().any(|n| n == "proxy_on_memory_allocate"));
    let plugin = Plugin::builder(harness_fixtures::SDK_FILTER)
        .configuration(r#"{"mode":"test"}"#)
        .allowed_capabilities(needed)
        .build()
        .unwrap();
    let mut vm = plugin.start().unwrap();
    let mut stream = vm.http_stream();
    let progress = stream
        .send_request_headers(
            [
                (":method", "GET"),
                (":path", "/orders/7"),
                (":authority", "shop"),
            ],
            true,
        )
        .unwrap();
    assert_eq!(progress, Progress::Continued);
    assert!(stream.upstream_request().header("x-fixture-seen").is_some());
    stream
        .send_response_headers([(":status", "200")], true)
        .unwrap();
    assert_eq!(
        stream.downstream_response().header("x-fixture-response"),
        Some("200")
    );
    stream.finish().unwrap();
    assert!(
        vm.restricted_calls().is_empty(),
        "{:?}",
        vm.restricted_calls()
    );
}

#[test]
fn bytes_that_are_no_module_are_an_invalid_module() {
    let err = capabilities::required(b"\0asm\x01\0\0\0\x01\xff").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
}
