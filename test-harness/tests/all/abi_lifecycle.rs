//! Conformance: context lifecycle, logging, clocks, timers, properties,
//! foreign functions, statuses of unimplemented calls, start-up rules.

use std::time::Duration;

use proxy_wasm_harness::{ErrorKind, LogLevel, Progress, Status};

use crate::guest::{self, RET_LEN, RET_PTR, WILD, get, result, returned, u32_at, u64_at};

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const INVALID_MEMORY: u32 = Status::InvalidMemoryAccess as u32;

#[test]
fn proxy_log_captures_levels_and_checks_its_arguments() {
    let mut vm = guest::builder(
        r#"(data (i32.const 0x400) "hello warn")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_log (i32.const 3) (i32.const 0x400) (i32.const 10)))
          (call $result (i32.const 1) (call $proxy_log (i32.const 6) (i32.const 0x400) (i32.const 10)))
          (call $result (i32.const 2) (call $proxy_log (i32.const 2) (i32.const 0xFFFFFFF0) (i32.const 10)))
          (call $result (i32.const 3) (call $proxy_log (i32.const 1) (i32.const 0x400) (i32.const 5)))
          (i32.const 1))"#,
    )
    .build()
    .unwrap()
    .start()
    .unwrap();
    assert_eq!(
        [
            result(&vm, 0),
            result(&vm, 1),
            result(&vm, 2),
            result(&vm, 3)
        ],
        [OK, BAD_ARGUMENT, INVALID_MEMORY, OK]
    );
    // Debug is below Envoy's default info level: accepted, not recorded.
    let logs: Vec<_> = vm
        .logs()
        .iter()
        .map(|l| (l.level, l.message.as_str(), l.context_id))
        .collect();
    assert_eq!(logs, [(LogLevel::Warn, "hello warn", 1)]);
    assert_eq!(vm.take_logs().len(), 1);
    assert!(vm.logs().is_empty());
}

#[test]
fn log_level_is_what_the_test_configures() {
    let body = r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_get_log_level (i32.const 0x10)))
          (call $result (i32.const 1) (call $proxy_get_log_level (i32.const 0xFFFFFFF0)))
          (i32.const 1))"#;
    let vm = guest::start(body);
    assert_eq!(
        (result(&vm, 0), u32_at(&vm, RET_PTR), result(&vm, 1)),
        (OK, LogLevel::Info as u32, INVALID_MEMORY)
    );
    let vm = guest::builder(body)
        .log_level(LogLevel::Trace)
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(u32_at(&vm, RET_PTR), 0);
}

#[test]
fn clocks_and_ticks_follow_the_virtual_clock() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_set_tick_period_milliseconds (i32.const 100)))
          (i32.const 1))
        (func (export "proxy_on_tick") (param i32)
          (call $result (i32.const 1) (i32.add (call $guest_ticks) (i32.const 1)))
          (drop (call $proxy_get_current_time_nanoseconds (i32.const 0x20))))
        (func $guest_ticks (result i32) (i32.load (i32.const 0x104)))"#,
    );
    assert_eq!(result(&vm, 0), OK);
    assert_eq!(vm.tick_period(), Some(Duration::from_millis(100)));
    let start = proxy_wasm_harness::DEFAULT_START_TIME_UNIX_SECS * 1_000_000_000;
    vm.advance_time(Duration::from_millis(99)).unwrap();
    assert_eq!(result(&vm, 1), 0, "no tick before the period elapses");
    vm.advance_time(Duration::from_millis(251)).unwrap();
    assert_eq!(result(&vm, 1), 3, "ticks at 100, 200 and 300 ms");
    assert_eq!(
        u64_at(&vm, 0x20),
        start + 300_000_000,
        "time seen in the third tick"
    );
    assert_eq!(
        vm.now(),
        std::time::UNIX_EPOCH + Duration::from_nanos(start + 350_000_000)
    );
}

#[test]
fn proxy_done_finishes_a_root_context_that_deferred_its_end() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_done))
          (drop (call $proxy_set_tick_period_milliseconds (i32.const 10)))
          (i32.const 1))
        (func (export "proxy_on_done") (param i32) (result i32) (i32.const 0))
        (func (export "proxy_on_tick") (param i32)
          (call $result (i32.const 1) (call $proxy_done)))
        (func (export "proxy_on_delete") (param $ctx i32)
          (call $result (i32.const 2) (local.get $ctx)))"#,
    );
    assert_eq!(result(&vm, 0), NOT_FOUND, "not pending finalization yet");
    assert!(!vm.shutdown().unwrap(), "on_done answered false");
    assert_eq!(result(&vm, 2), 0, "not deleted yet");
    vm.advance_time(Duration::from_millis(10)).unwrap();
    assert_eq!(result(&vm, 1), OK);
    assert_eq!(
        result(&vm, 2),
        vm.root_context_id(),
        "deleted after proxy_done"
    );
}

#[test]
fn effective_context_must_name_a_live_context() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_set_effective_context (i32.const 999)))
          (call $result (i32.const 1) (call $proxy_set_effective_context (i32.const 1)))
          (call $result (i32.const 2) (call $proxy_set_effective_context (local.get $ctx)))
          (i32.const 0))"#,
    );
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(
        [result(&vm, 0), result(&vm, 1), result(&vm, 2)],
        [BAD_ARGUMENT, OK, OK]
    );
}

#[test]
fn properties_use_envoys_encodings_and_set_values_read_back() {
    let mut vm = guest::builder(
        r#"(data (i32.const 0x400) "plugin_name")
        (data (i32.const 0x410) "source\00port")
        (data (i32.const 0x420) "request\00path")
        (data (i32.const 0x430) "no\00such")
        ;; one segment: Envoy reads filter state back by a path's first
        ;; segment only (a value set under "my.key" does not read back)
        (data (i32.const 0x440) "my_key")
        (data (i32.const 0x450) "value")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_set_property (i32.const 0x440) (i32.const 6) (i32.const 0x450) (i32.const 5)))
          (call $result (i32.const 1) (call $proxy_get_property (i32.const 0x400) (i32.const 11) (i32.const 0x30) (i32.const 0x34)))
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 2) (call $proxy_get_property (i32.const 0x410) (i32.const 11) (i32.const 0x38) (i32.const 0x3c)))
          (call $result (i32.const 3) (call $proxy_get_property (i32.const 0x420) (i32.const 12) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 4) (call $proxy_get_property (i32.const 0x430) (i32.const 7) (i32.const 0x40) (i32.const 0x44)))
          (call $result (i32.const 5) (call $proxy_set_property (i32.const 0x440) (i32.const 6) (i32.const 0x450) (i32.const 5)))
          (call $result (i32.const 6) (call $proxy_get_property (i32.const 0x440) (i32.const 6) (i32.const 0x48) (i32.const 0x4c)))
          (call $result (i32.const 7) (call $proxy_get_property (i32.const 0xFFFFFFF0) (i32.const 6) (i32.const 0x48) (i32.const 0x4c)))
          (i32.const 0))"#,
    )
    .name("my-plugin")
    .build()
    .unwrap()
    .start()
    .unwrap();
    assert_eq!(
        result(&vm, 0),
        NOT_FOUND,
        "the root context has no stream to hold filter state"
    );
    assert_eq!(result(&vm, 1), OK);
    assert_eq!(
        guest::bytes_at(&vm, u32_at(&vm, 0x30), u32_at(&vm, 0x34)),
        b"my-plugin"
    );
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(get("/items?x=1"), true)
        .unwrap();
    assert_eq!(stream.property("my_key").as_deref(), Some(&b"value"[..]));
    assert_eq!(
        [
            result(&vm, 2),
            result(&vm, 3),
            result(&vm, 4),
            result(&vm, 5),
            result(&vm, 6),
            result(&vm, 7)
        ],
        [OK, OK, NOT_FOUND, OK, OK, INVALID_MEMORY]
    );
    assert_eq!(
        guest::bytes_at(&vm, u32_at(&vm, 0x38), u32_at(&vm, 0x3c)),
        40000i64.to_le_bytes(),
        "int64 little-endian"
    );
    assert_eq!(returned(&vm), b"/items?x=1");
    assert_eq!(
        guest::bytes_at(&vm, u32_at(&vm, 0x48), u32_at(&vm, 0x4c)),
        b"value"
    );
}

#[test]
fn test_properties_override_defaults() {
    let plugin = guest::builder(
        r#"(data (i32.const 0x400) "xds\00route_name")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_get_property (i32.const 0x400) (i32.const 14) (i32.const 0x10) (i32.const 0x14)))
          (i32.const 0))"#,
    )
    .property("xds.route_name", "checkout")
    .build()
    .unwrap();
    let mut vm = plugin.start().unwrap();
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!((result(&vm, 0), returned(&vm)), (OK, b"checkout".to_vec()));
    vm.set_property("xds.route_name", "cart");
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(returned(&vm), b"cart");
    // A route's name belongs to a stream: the root context does not see it,
    // as in Envoy.
    assert_eq!(vm.property("xds.route_name"), None);
}

#[test]
fn foreign_functions_known_and_unknown() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "clear_route_cache")
        (data (i32.const 0x420) "no_such_function")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_call_foreign_function (i32.const 0x400) (i32.const 17) (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_call_foreign_function (i32.const 0x420) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 2) (call $proxy_call_foreign_function (i32.const 0xFFFFFFF0) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14)))
          (i32.const 0))"#,
    );
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(
        [result(&vm, 0), result(&vm, 1), result(&vm, 2)],
        [OK, NOT_FOUND, INVALID_MEMORY]
    );
    assert_eq!(vm.route_cache_clears(), 1);
}

#[test]
fn get_status_outside_a_callout_is_zero_and_empty() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (i32.store (i32.const 0x20) (i32.const 77))
          (call $result (i32.const 0) (call $proxy_get_status (i32.const 0x20) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_get_status (i32.const 0xFFFFFFF0) (i32.const 0x10) (i32.const 0x14)))
          (i32.const 0))"#,
    );
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(
        (
            result(&vm, 0),
            u32_at(&vm, 0x20),
            u32_at(&vm, RET_LEN),
            result(&vm, 1)
        ),
        (OK, 0, 0, INVALID_MEMORY)
    );
}

#[test]
fn an_unimplemented_host_call_answers_unimplemented_and_fails_the_test() {
    // Envoy's `expr_create` foreign function (CEL, in Envoy builds with the
    // CEL parser) is not emulated: the call must fail the test, not pass
    // silently.
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "expr_create")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_call_foreign_function (i32.const 0x400) (i32.const 11) (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14)))
          (i32.const 0))"#,
    );
    let err = vm
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap_err();
    assert_eq!(result(&vm, 0), Status::Unimplemented as u32);
    assert_eq!(err.kind(), ErrorKind::Harness, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_request_headers"));
    assert!(
        err.problems()[0].contains("expr_create"),
        "{:?}",
        err.problems()
    );
    assert!(
        vm.poisoned().is_none(),
        "the guest itself did nothing wrong"
    );
}

#[test]
fn only_logging_and_wasi_may_run_while_the_module_starts() {
    let ok = guest::builder(
        r#"(data (i32.const 0x400) "starting")
        (func (export "_initialize")
          (drop (call $proxy_log (i32.const 2) (i32.const 0x400) (i32.const 8)))
          (drop (call $random_get (i32.const 0x20) (i32.const 8))))"#,
    )
    .build()
    .unwrap()
    .start()
    .unwrap();
    assert!(ok.has_log(LogLevel::Info, "starting"));

    let err = guest::builder(
        r#"(func (export "_initialize")
          (drop (call $proxy_get_property (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14))))"#,
    )
    .build()
    .unwrap()
    .start()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert_eq!(err.callback(), Some("_initialize"));
    let message = err.trap_message().unwrap_or_default();
    assert!(
        message.contains("proxy_get_property") && message.contains("starting"),
        "{message}"
    );
}

#[test]
fn start_up_runs_initialize_then_main_and_creates_the_root_first() {
    let vm = guest::builder(
        r#"(func (export "_initialize") (call $result (i32.const 0) (i32.const 1)))
        (func (export "main") (param i32 i32) (result i32)
          (call $result (i32.const 1) (i32.add (call $load0) (i32.const 1))) (i32.const 0))
        (func $load0 (result i32) (i32.load (i32.const 0x100)))
        (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
          (call $result (i32.const 2) (local.get $ctx))
          (call $result (i32.const 3) (local.get $parent)))
        (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
          (call $result (i32.const 4) (local.get $root))
          (call $result (i32.const 5) (local.get $size))
          (i32.const 1))
        (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
          (call $result (i32.const 6) (local.get $size))
          (i32.const 1))"#,
    )
    .vm_configuration("vm-config")
    .configuration("{\"a\":1}")
    .build()
    .unwrap()
    .start()
    .unwrap();
    let seen: Vec<u32> = (0..7).map(|i| result(&vm, i)).collect();
    assert_eq!(seen, [1, 2, 1, 0, 1, 9, 7]);
}

#[test]
fn configuration_rejected_carries_the_plugins_logs() {
    let err = guest::builder(
        r#"(data (i32.const 0x400) "field `x`: expected a number")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $proxy_log (i32.const 4) (i32.const 0x400) (i32.const 29)))
          (i32.const 0))"#,
    )
    .build()
    .unwrap()
    .start()
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::ConfigurationRejected, "{text}");
    assert!(
        text.contains("rejected its configuration")
            && text.contains("field `x`: expected a number"),
        "{text}"
    );
}

#[test]
fn abi_0_1_0_headers_callbacks_have_no_end_of_stream_and_missing_headers_are_empty() {
    let mut vm = proxy_wasm_harness::Plugin::builder_from_bytes(guest::module(
        "0_1_0",
        r#"(data (i32.const 0x400) "absent")
        (func (export "proxy_on_request_headers") (param i32) (param $n i32) (result i32)
          (call $result (i32.const 0) (local.get $n))
          (call $result (i32.const 1) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 6) (i32.const 0x10) (i32.const 0x14)))
          (i32.const 0))"#,
    ))
    .build()
    .unwrap()
    .start()
    .unwrap();
    assert_eq!(vm.abi_version(), proxy_wasm_harness::AbiVersion::V0_1_0);
    let progress = vm
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(progress, Progress::Continued);
    assert_eq!(
        (result(&vm, 0), result(&vm, 1), u32_at(&vm, RET_LEN)),
        (3, OK, 0)
    );
}

#[test]
fn empty_values_come_back_as_null_without_allocating() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "x-empty")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (i32.store (i32.const 0x10) (i32.const 55))
          (call $result (i32.const 0) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 7) (i32.const 0x10) (i32.const 0x14)))
          (i32.const 0))"#,
    );
    let before = u32_at(&vm, guest::ALLOC_COUNT);
    vm.http_stream()
        .send_request_headers(
            [
                (":method", "GET"),
                (":path", "/"),
                (":authority", "example.com"),
                ("x-empty", ""),
            ],
            true,
        )
        .unwrap();
    assert_eq!(
        (result(&vm, 0), u32_at(&vm, RET_PTR), u32_at(&vm, RET_LEN)),
        (OK, 0, 0)
    );
    assert_eq!(u32_at(&vm, guest::ALLOC_COUNT), before);
    let _ = WILD;
}
