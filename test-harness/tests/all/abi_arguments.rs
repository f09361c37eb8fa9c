//! Conformance, table-driven: every host function that takes a guest
//! pointer answers INVALID_MEMORY_ACCESS (WASI: FAULT) for one outside
//! memory, and every one that takes an ABI enum answers BAD_ARGUMENT (WASI
//! clocks: NOTSUP) for an unknown value. None of them panics the host.

use proxy_wasm_harness::Status;

use crate::guest::{self, get, result};

const IMA: u32 = Status::InvalidMemoryAccess as u32;
const BAD: u32 = Status::BadArgument as u32;
const FAULT: u32 = 21;
const NOTSUP: u32 = 58;
/// A pointer no guest memory contains.
const W: &str = "(i32.const 0xFFFFFFF0)";

/// Runs each call from the request-headers callback (request headers, VM
/// configuration and a defined counter are available there) and checks the
/// status it returned.
fn check(cases: &[(&str, u32)]) {
    let calls: String = cases
        .iter()
        .enumerate()
        .map(|(i, (call, _))| format!("(call $result (i32.const {i}) {call})\n"))
        .collect();
    let body = format!(
        r#"(data (i32.const 0x400) "x-a")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (drop (call $proxy_define_metric (i32.const 0) (i32.const 0x400) (i32.const 3) (i32.const 0x40)))
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          {calls}
          (i32.const 0))"#
    );
    let mut vm = guest::builder(&body)
        .vm_configuration("vm-config")
        .build()
        .unwrap()
        .start()
        .unwrap();
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    for (i, (call, expected)) in cases.iter().enumerate() {
        assert_eq!(result(&vm, i as u32), *expected, "{call}");
    }
}

#[test]
fn every_pointer_is_bounds_checked() {
    let p = |s: &str| s.replace('W', W);
    let cases: Vec<(String, u32)> = vec![
        (p("(call $proxy_log (i32.const 2) W (i32.const 4))"), IMA),
        (p("(call $proxy_get_log_level W)"), IMA),
        (p("(call $proxy_get_current_time_nanoseconds W)"), IMA),
        (
            p("(call $proxy_get_buffer_status (i32.const 6) W (i32.const 0x20))"),
            IMA,
        ),
        (
            p(
                "(call $proxy_get_buffer_bytes (i32.const 6) (i32.const 0) (i32.const 9) W (i32.const 0x14))",
            ),
            IMA,
        ),
        (p("(call $proxy_get_header_map_size (i32.const 0) W)"), IMA),
        (
            p("(call $proxy_get_header_map_pairs (i32.const 0) W (i32.const 0x14))"),
            IMA,
        ),
        (
            p("(call $proxy_set_header_map_pairs (i32.const 0) W (i32.const 8))"),
            IMA,
        ),
        (
            p(
                "(call $proxy_get_header_map_value (i32.const 0) W (i32.const 5) (i32.const 0x10) (i32.const 0x14))",
            ),
            IMA,
        ),
        (
            p(
                "(call $proxy_add_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 3) W (i32.const 3))",
            ),
            IMA,
        ),
        (
            p(
                "(call $proxy_replace_header_map_value (i32.const 0) W (i32.const 3) (i32.const 0x400) (i32.const 3))",
            ),
            IMA,
        ),
        (
            p("(call $proxy_remove_header_map_value (i32.const 0) W (i32.const 3))"),
            IMA,
        ),
        (
            p("(call $proxy_get_status W (i32.const 0x10) (i32.const 0x14))"),
            IMA,
        ),
        (
            p(
                "(call $proxy_send_local_response (i32.const 403) W (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1))",
            ),
            IMA,
        ),
        (
            p(
                "(call $proxy_set_shared_data W (i32.const 3) (i32.const 0x400) (i32.const 3) (i32.const 0))",
            ),
            IMA,
        ),
        (
            p(
                "(call $proxy_get_shared_data W (i32.const 3) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18))",
            ),
            IMA,
        ),
        (
            p("(call $proxy_define_metric (i32.const 0) W (i32.const 3) (i32.const 0x20))"),
            IMA,
        ),
        (
            p("(call $proxy_get_metric (i32.load (i32.const 0x40)) W)"),
            IMA,
        ),
        (
            p("(call $proxy_get_property W (i32.const 4) (i32.const 0x10) (i32.const 0x14))"),
            IMA,
        ),
        (
            p("(call $proxy_set_property (i32.const 0x400) (i32.const 3) W (i32.const 3))"),
            IMA,
        ),
        (
            p(
                "(call $proxy_call_foreign_function W (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14))",
            ),
            IMA,
        ),
        (
            p("(call $fd_write (i32.const 1) W (i32.const 1) (i32.const 0x20))"),
            FAULT,
        ),
        (
            p("(call $clock_time_get (i32.const 0) (i64.const 0) W)"),
            FAULT,
        ),
        (p("(call $random_get W (i32.const 8))"), FAULT),
        (p("(call $environ_sizes_get W (i32.const 0x20))"), FAULT),
        (p("(call $args_sizes_get W (i32.const 0x20))"), FAULT),
    ];
    let cases: Vec<(&str, u32)> = cases.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    check(&cases);
}

#[test]
fn every_enum_is_range_checked() {
    check(&[
        (
            "(call $proxy_log (i32.const 6) (i32.const 0x400) (i32.const 3))",
            BAD,
        ),
        (
            "(call $proxy_get_buffer_bytes (i32.const 9) (i32.const 0) (i32.const 9) (i32.const 0x10) (i32.const 0x14))",
            BAD,
        ),
        (
            "(call $proxy_get_buffer_status (i32.const 9) (i32.const 0x10) (i32.const 0x14))",
            BAD,
        ),
        (
            "(call $proxy_set_buffer_bytes (i32.const 9) (i32.const 0) (i32.const 0) (i32.const 0x400) (i32.const 3))",
            BAD,
        ),
        (
            "(call $proxy_get_header_map_size (i32.const 8) (i32.const 0x10))",
            BAD,
        ),
        (
            "(call $proxy_get_header_map_pairs (i32.const 8) (i32.const 0x10) (i32.const 0x14))",
            BAD,
        ),
        (
            "(call $proxy_set_header_map_pairs (i32.const 8) (i32.const 0x400) (i32.const 3))",
            BAD,
        ),
        (
            "(call $proxy_get_header_map_value (i32.const 8) (i32.const 0x400) (i32.const 3) (i32.const 0x10) (i32.const 0x14))",
            BAD,
        ),
        (
            "(call $proxy_add_header_map_value (i32.const 8) (i32.const 0x400) (i32.const 3) (i32.const 0x400) (i32.const 3))",
            BAD,
        ),
        (
            "(call $proxy_replace_header_map_value (i32.const -1) (i32.const 0x400) (i32.const 3) (i32.const 0x400) (i32.const 3))",
            BAD,
        ),
        (
            "(call $proxy_remove_header_map_value (i32.const 8) (i32.const 0x400) (i32.const 3))",
            BAD,
        ),
        ("(call $proxy_continue_stream (i32.const 4))", BAD),
        ("(call $proxy_close_stream (i32.const 4))", BAD),
        (
            "(call $proxy_define_metric (i32.const 3) (i32.const 0x400) (i32.const 3) (i32.const 0x20))",
            BAD,
        ),
        (
            "(call $clock_time_get (i32.const 3) (i64.const 0) (i32.const 0x20))",
            NOTSUP,
        ),
    ]);
}
