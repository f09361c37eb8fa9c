//! Conformance: header maps and buffers, with Envoy's availability rules.

use proxy_wasm_harness::{HeaderMap, Progress, Status};

use crate::guest::{self, RET_EXTRA, RET_LEN, RET_PTR, get, result, returned, u32_at};

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const INVALID_MEMORY: u32 = Status::InvalidMemoryAccess as u32;

#[test]
fn header_map_values_add_replace_remove() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "X-Dup")
        (data (i32.const 0x410) "absent")
        (data (i32.const 0x420) "x-new")
        (data (i32.const 0x430) "v1v2")
        (data (i32.const 0x440) "x-gone")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          ;; first value of a repeated header, name matched case-insensitively
          (call $result (i32.const 0) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 5) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x410) (i32.const 6) (i32.const 0x20) (i32.const 0x24)))
          (call $result (i32.const 2) (call $proxy_add_header_map_value (i32.const 0) (i32.const 0x420) (i32.const 5) (i32.const 0x430) (i32.const 2)))
          (call $result (i32.const 3) (call $proxy_replace_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 5) (i32.const 0x432) (i32.const 2)))
          (call $result (i32.const 4) (call $proxy_remove_header_map_value (i32.const 0) (i32.const 0x440) (i32.const 6)))
          (call $result (i32.const 5) (call $proxy_remove_header_map_value (i32.const 0) (i32.const 0x410) (i32.const 6)))
          (call $result (i32.const 6) (call $proxy_get_header_map_value (i32.const 9) (i32.const 0x400) (i32.const 5) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 7) (call $proxy_add_header_map_value (i32.const 0) (i32.const 0xFFFFFFF0) (i32.const 5) (i32.const 0x430) (i32.const 2)))
          (call $result (i32.const 8) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 5) (i32.const 0xFFFFFFF0) (i32.const 0x14)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(
            [
                (":method", "GET"),
                (":path", "/"),
                (":authority", "example.com"),
                ("x-dup", "first"),
                ("x-dup", "second"),
                ("x-gone", "1"),
                ("x-gone", "2"),
            ],
            true,
        )
        .unwrap();
    let sent = stream.upstream_request().headers.clone().unwrap();
    let statuses: Vec<u32> = (0..9).map(|i| result(&vm, i)).collect();
    assert_eq!(
        statuses,
        [
            OK,
            NOT_FOUND,
            OK,
            OK,
            OK,
            OK,
            BAD_ARGUMENT,
            INVALID_MEMORY,
            INVALID_MEMORY
        ]
    );
    assert_eq!(returned(&vm), b"first");
    // replace removes every value and adds one at the end (Envoy's setCopy,
    // measured in Envoy 1.40)
    assert_eq!(
        sent,
        HeaderMap::from([
            (":method", "GET"),
            (":path", "/"),
            (":authority", "example.com"),
            ("x-new", "v1"),
            ("x-dup", "v2")
        ])
    );
}

#[test]
fn header_map_pairs_are_serialized_and_size_is_the_byte_size() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_get_header_map_pairs (i32.const 0) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_get_header_map_size (i32.const 0) (i32.const 0x18)))
          (call $result (i32.const 2) (call $proxy_get_header_map_size (i32.const 2) (i32.const 0x18)))
          (call $result (i32.const 3) (call $proxy_get_header_map_pairs (i32.const 2) (i32.const 0x20) (i32.const 0x24)))
          (i32.const 0))"#,
    );
    vm.http_stream()
        .send_request_headers(
            [
                (":method", "M"),
                (":path", "/"),
                (":authority", "h"),
                ("a", "1"),
                ("b", "22"),
            ],
            true,
        )
        .unwrap();
    // The spec's pairs encoding: the count, each name's and value's size,
    // then each name and value NUL-terminated.
    let mut expected = vec![5, 0, 0, 0];
    for (k, v) in [(7u8, 1u8), (5, 1), (10, 1), (1, 1), (1, 2)] {
        expected.extend_from_slice(&[k, 0, 0, 0, v, 0, 0, 0]);
    }
    for text in [
        ":method",
        "M",
        ":path",
        "/",
        ":authority",
        "h",
        "a",
        "1",
        "b",
        "22",
    ] {
        expected.extend_from_slice(text.as_bytes());
        expected.push(0);
    }
    assert_eq!(result(&vm, 0), OK);
    assert_eq!(returned(&vm), expected);
    // Envoy's byteSize: the names' and values' lengths (24 + 6).
    assert_eq!((result(&vm, 1), u32_at(&vm, RET_EXTRA)), (OK, 30));
    // Response headers are not available while the request headers run:
    // size is BAD_ARGUMENT, pairs read as an empty map.
    assert_eq!(result(&vm, 2), BAD_ARGUMENT);
    assert_eq!(
        (result(&vm, 3), u32_at(&vm, 0x20), u32_at(&vm, 0x24)),
        (OK, 0, 0)
    );
}

#[test]
fn set_header_map_pairs_replaces_the_map_and_malformed_pairs_clear_it() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "\01\00\00\00\01\00\00\00\02\00\00\00X\00yz\00")
        (data (i32.const 0x420) "\05\00\00\00")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_set_header_map_pairs (i32.const 0) (i32.const 0x400) (i32.const 17)))
          (i32.const 0))
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 1) (call $proxy_set_header_map_pairs (i32.const 2) (i32.const 0x420) (i32.const 4)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(
            [
                (":method", "GET"),
                (":path", "/"),
                (":authority", "example.com"),
                ("old", "1"),
            ],
            true,
        )
        .unwrap();
    stream
        .send_response_headers([(":status", "200")], true)
        .unwrap();
    assert_eq!(
        stream.upstream_request().headers,
        Some(HeaderMap::from([("x", "yz")]))
    );
    assert_eq!(stream.downstream_response().headers, Some(HeaderMap::new()));
    assert_eq!((result(&vm, 0), result(&vm, 1)), (OK, OK));
}

#[test]
fn maps_are_only_writable_in_their_own_phase() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "x-late")
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_add_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 6) (i32.const 0x400) (i32.const 6)))
          (call $result (i32.const 1) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 6) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 2) (call $proxy_add_header_map_value (i32.const 1) (i32.const 0x400) (i32.const 6) (i32.const 0x400) (i32.const 6)))
          (i32.const 0))
        (func (export "proxy_on_log") (param i32)
          (call $result (i32.const 3) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 6) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 4) (call $proxy_add_header_map_value (i32.const 2) (i32.const 0x400) (i32.const 6) (i32.const 0x400) (i32.const 6)))
          (call $result (i32.const 5) (call $proxy_get_header_map_size (i32.const 1) (i32.const 0x18))))"#,
    );
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(
            [
                (":method", "GET"),
                (":path", "/"),
                (":authority", "example.com"),
                ("x-late", "from-client"),
            ],
            true,
        )
        .unwrap();
    stream
        .send_response_headers([(":status", "200")], true)
        .unwrap();
    stream.finish().unwrap();
    let statuses: Vec<u32> = (0..6).map(|i| result(&vm, i)).collect();
    // In the log phase every map's values read, the headers refuse writes,
    // and the size of trailers that never existed is BAD_ARGUMENT (Envoy
    // answers size from the stream's mutable maps).
    assert_eq!(
        statuses,
        [
            BAD_ARGUMENT,
            BAD_ARGUMENT,
            BAD_ARGUMENT,
            OK,
            BAD_ARGUMENT,
            BAD_ARGUMENT
        ]
    );
    assert_eq!(returned(&vm), b"from-client");
}

#[test]
fn trailers_stay_reachable_after_they_went_on_and_late_writes_reach_nobody() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "x-checksum")
        (data (i32.const 0x410) "x-late")
        (func (export "proxy_on_request_body") (param i32) (param i32) (param $eos i32) (result i32)
          (if (local.get $eos) (then
            (call $result (i32.const 0) (call $proxy_add_header_map_value (i32.const 1) (i32.const 0x400) (i32.const 10) (i32.const 0x400) (i32.const 1)))))
          (i32.const 0))
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 1) (call $proxy_get_header_map_value (i32.const 1) (i32.const 0x400) (i32.const 10) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 2) (call $proxy_add_header_map_value (i32.const 1) (i32.const 0x410) (i32.const 6) (i32.const 0x410) (i32.const 1)))
          (call $result (i32.const 3) (call $proxy_get_header_map_size (i32.const 1) (i32.const 0x18)))
          (call $result (i32.const 4) (call $proxy_get_header_map_size (i32.const 3) (i32.const 0x18)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    stream.send_request_body("abc", true).unwrap();
    stream
        .send_response_headers([(":status", "200")], true)
        .unwrap();
    let upstream_trailers = stream.upstream_request().trailers.clone();
    stream.finish().unwrap();
    // Measured in Envoy 1.40: the trailers created at the end of the body
    // stay readable and writable from the response callbacks; what is
    // written then reaches nobody.
    let statuses: Vec<u32> = (0..5).map(|i| result(&vm, i)).collect();
    assert_eq!(statuses, [OK, OK, OK, OK, BAD_ARGUMENT]);
    assert_eq!(returned(&vm), b"x");
    assert_eq!(u32_at(&vm, RET_EXTRA), 11 + 7);
    assert_eq!(
        upstream_trailers,
        Some(HeaderMap::from([("x-checksum", "x")]))
    );
}

#[test]
fn trailers_added_at_the_end_of_the_body_reach_the_upstream() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "x-checksum")
        (func (export "proxy_on_request_body") (param i32) (param i32) (param $eos i32) (result i32)
          (if (local.get $eos) (then
            (call $result (i32.const 0) (call $proxy_add_header_map_value (i32.const 1) (i32.const 0x400) (i32.const 10) (i32.const 0x400) (i32.const 1)))))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    stream.send_request_body("abc", true).unwrap();
    let sent = stream.upstream_request().clone();
    assert_eq!(result(&vm, 0), OK);
    assert_eq!(sent.trailers, Some(HeaderMap::from([("x-checksum", "x")])));
    assert!(sent.complete);
}

#[test]
fn buffers_read_in_ranges_and_edit_as_envoy_does() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "<>")
        (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
          (call $result (i32.const 0) (local.get $size))
          (call $result (i32.const 1) (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 2) (i32.const 3) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 2) (call $proxy_get_buffer_status (i32.const 0) (i32.const 0x18) (i32.const 0x1c)))
          ;; prepend "<", append ">", then an edit in the middle (refused)
          (call $result (i32.const 3) (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0x400) (i32.const 1)))
          (call $result (i32.const 4) (call $proxy_set_buffer_bytes (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 0x401) (i32.const 1)))
          (call $result (i32.const 5) (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 2) (i32.const 1) (i32.const 0x400) (i32.const 1)))
          (call $result (i32.const 6) (call $proxy_get_buffer_bytes (i32.const 1) (i32.const 0) (i32.const 10) (i32.const 0x20) (i32.const 0x24)))
          (call $result (i32.const 7) (call $proxy_get_buffer_bytes (i32.const 12) (i32.const 0) (i32.const 10) (i32.const 0x20) (i32.const 0x24)))
          (call $result (i32.const 8) (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0xFFFFFFF0) (i32.const 4)))
          (call $result (i32.const 9) (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 100) (i32.const 10) (i32.const 0x20) (i32.const 0x24)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    stream.send_request_body("hello", true).unwrap();
    let body = stream.upstream_request().body.clone();
    let statuses: Vec<u32> = (0..10).map(|i| result(&vm, i)).collect();
    assert_eq!(
        statuses,
        [
            5,
            OK,
            OK,
            OK,
            OK,
            BAD_ARGUMENT,
            // the response body outside its callback: empty, OK (Envoy 1.40)
            OK,
            BAD_ARGUMENT,
            INVALID_MEMORY,
            OK
        ]
    );
    assert_eq!(returned(&vm), b"llo");
    assert_eq!(u32_at(&vm, RET_EXTRA), 5);
    // An empty answer writes pointer 0 and size 0 (the last call read past
    // the end).
    assert_eq!((u32_at(&vm, 0x20), u32_at(&vm, 0x24)), (0, 0));
    assert_eq!(body, b"<hello>");
}

#[test]
fn replacing_the_whole_body_and_the_configuration_buffers() {
    let mut vm = guest::builder(
        r#"(data (i32.const 0x400) "REPLACED")
        (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
          (call $result (i32.const 0) (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_get_buffer_bytes (i32.const 6) (i32.const 0) (i32.const -1) (i32.const 0x20) (i32.const 0x24)))
          (call $result (i32.const 2) (call $proxy_set_buffer_bytes (i32.const 7) (i32.const 0) (i32.const 0) (i32.const 0x400) (i32.const 1)))
          (i32.const 1))
        (func (export "proxy_on_request_body") (param i32) (param $size i32) (param i32) (result i32)
          (call $result (i32.const 3) (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (local.get $size) (i32.const 0x400) (i32.const 8)))
          (call $result (i32.const 4) (call $proxy_get_buffer_bytes (i32.const 7) (i32.const 0) (i32.const -1) (i32.const 0x30) (i32.const 0x34)))
          (i32.const 0))"#,
    )
    .configuration("plugin-config")
    .vm_configuration("vm-config")
    .build()
    .unwrap()
    .start()
    .unwrap();
    assert_eq!(
        (result(&vm, 0), result(&vm, 1), result(&vm, 2)),
        (OK, OK, BAD_ARGUMENT)
    );
    assert_eq!(returned(&vm), b"plugin-config");
    assert_eq!(
        guest::bytes_at(&vm, u32_at(&vm, 0x20), u32_at(&vm, 0x24)),
        b"vm-config"
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    assert_eq!(
        stream.send_request_body("some body", true).unwrap(),
        Progress::Continued
    );
    assert_eq!(stream.upstream_request().body, b"REPLACED");
    assert_eq!(
        (result(&vm, 3), result(&vm, 4)),
        (OK, NOT_FOUND),
        "plugin configuration only during on_configure"
    );
    let _ = RET_LEN;
    let _ = RET_PTR;
}
