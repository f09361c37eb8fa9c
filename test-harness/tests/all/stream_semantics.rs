//! Envoy's HTTP stream semantics: pauses, buffering, deferred actions,
//! local replies on either path, resets, callback order.

use std::time::Duration;

use proxy_wasm_harness::{ErrorKind, HeaderMap, Progress};

use crate::guest::{self, get, result, u32_at};

/// Records every body callback's size and end_of_stream, and pauses the
/// request headers; a tick continues the stream given in memory slot 0x60.
const PAUSING: &str = r#"
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 10)))
      (i32.const 1))
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32) (param i32) (result i32)
      (i32.store (i32.const 0x60) (local.get $ctx))
      (i32.const 1))
    (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
      (call $result (i32.load (i32.const 0x64)) (local.get $size))
      (call $result (i32.add (i32.load (i32.const 0x64)) (i32.const 1)) (local.get $eos))
      (i32.store (i32.const 0x64) (i32.add (i32.load (i32.const 0x64)) (i32.const 2)))
      (i32.const 0))
    (func (export "proxy_on_tick") (param i32)
      (if (i32.load (i32.const 0x60)) (then
        (drop (call $proxy_set_effective_context (i32.load (i32.const 0x60))))
        (drop (call $proxy_continue_stream (i32.const 0)))
        (i32.store (i32.const 0x60) (i32.const 0)))))"#;

#[test]
fn body_that_arrives_while_headers_are_paused_is_delivered_as_one_buffer() {
    let mut vm = guest::start(PAUSING);
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("abc", false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("defg", true).unwrap(),
        Progress::Paused
    );
    let id = stream.id();
    assert_eq!(
        u32_at(&vm, 0x64),
        0,
        "no body callback while the headers are paused"
    );
    vm.advance_time(Duration::from_millis(10)).unwrap();
    // One callback with all 7 bytes and end_of_stream.
    assert_eq!(
        (result(&vm, 0), result(&vm, 1), u32_at(&vm, 0x64)),
        (7, 1, 2)
    );
    let upstream = vm.stream(id).unwrap().upstream_request().clone();
    assert_eq!(
        (upstream.body.as_slice(), upstream.complete),
        (&b"abcdefg"[..], true)
    );
}

/// Pauses the request headers; its body callback reads a request header,
/// pauses until the end of the body, then writes a header and continues.
const HOLDS_HEADERS_FOR_THE_BODY: &str = r#"
    (func (export "proxy_on_request_headers") (param i32) (param i32) (param i32) (result i32)
      (i32.const 1))
    (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
      (call $result (i32.load (i32.const 0x64)) (local.get $size))
      (i32.store (i32.const 0x64) (i32.add (i32.load (i32.const 0x64)) (i32.const 1)))
      (call $result (i32.const 8)
        (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x200) (i32.const 5)
          (i32.const 0x80) (i32.const 0x84)))
      (if (i32.eqz (local.get $eos)) (then (return (i32.const 1))))
      (call $result (i32.const 9)
        (call $proxy_add_header_map_value (i32.const 0) (i32.const 0x208) (i32.const 6)
          (i32.const 0x210) (i32.const 4)))
      (i32.const 0))
    (data (i32.const 0x200) ":path")
    (data (i32.const 0x208) "x-seen")
    (data (i32.const 0x210) "body")"#;

#[test]
fn with_allow_on_headers_stop_iteration_the_body_reaches_a_filter_that_paused_at_headers() {
    let mut vm = guest::builder(HOLDS_HEADERS_FOR_THE_BODY)
        .allow_on_headers_stop_iteration(true)
        .build()
        .unwrap()
        .start()
        .unwrap();
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("abc", false).unwrap(),
        Progress::Paused
    );
    let id = stream.id();
    assert!(
        vm.stream(id).unwrap().upstream_request().headers.is_none(),
        "the headers wait for the filter"
    );
    let mut stream = vm.stream(id).unwrap();
    assert_eq!(
        stream.send_request_body("defg", true).unwrap(),
        Progress::Continued
    );
    // Two body callbacks (the second with everything buffered), each able
    // to read the held headers; the last one wrote to them.
    assert_eq!(
        [
            result(&vm, 0),
            result(&vm, 1),
            result(&vm, 8),
            result(&vm, 9)
        ],
        [3, 7, 0, 0]
    );
    let upstream = vm.stream(id).unwrap().upstream_request().clone();
    assert_eq!(upstream.headers.unwrap().get("x-seen"), Some("body"));
    assert_eq!(
        (upstream.body.as_slice(), upstream.complete),
        (&b"abcdefg"[..], true)
    );
}

#[test]
fn without_allow_on_headers_stop_iteration_the_same_filter_sees_no_body_and_waits() {
    let mut vm = guest::start(HOLDS_HEADERS_FOR_THE_BODY);
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    assert_eq!(
        stream.send_request_body("abcdefg", true).unwrap(),
        Progress::Paused
    );
    assert!(stream.upstream_request().headers.is_none());
    assert_eq!(u32_at(&vm, 0x64), 0, "no body callback");
}

#[test]
fn a_body_paused_from_its_callback_is_redelivered_with_the_total_size() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
          (call $result (i32.load (i32.const 0x64)) (local.get $size))
          (i32.store (i32.const 0x64) (i32.add (i32.load (i32.const 0x64)) (i32.const 1)))
          (i32.sub (i32.const 1) (local.get $eos)))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    assert_eq!(
        stream.send_request_body("ab", false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("cde", false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("f", true).unwrap(),
        Progress::Continued
    );
    assert_eq!(stream.upstream_request().body, b"abcdef");
    assert_eq!([result(&vm, 0), result(&vm, 1), result(&vm, 2)], [2, 5, 6]);
}

#[test]
fn continue_called_in_the_callback_that_pauses_takes_effect_after_it_returns() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_continue_stream (i32.const 0)))
          (call $result (i32.const 1) (call $proxy_continue_stream (i32.const 7)))
          (i32.const 1))"#,
    );
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Continued
    );
    assert!(stream.upstream_request().complete);
    assert_eq!(
        (result(&vm, 0), result(&vm, 1)),
        (0, 2),
        "OK, then BAD_ARGUMENT for an unknown stream type"
    );
}

/// Sends a local reply from the request headers but returns CONTINUE; the
/// reply still stops the request. The response headers callback adds a
/// header and counts its calls.
const REPLYING: &str = r#"(data (i32.const 0x400) "nope")
    (data (i32.const 0x410) "\01\00\00\00\05\00\00\00\01\00\00\00x-why\00z\00")
    (data (i32.const 0x430) "x-seen")
    (data (i32.const 0x440) "reply_details")
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 0) (call $proxy_send_local_response (i32.const 429) (i32.const 0x440) (i32.const 13)
        (i32.const 0x400) (i32.const 4) (i32.const 0x410) (i32.const 20) (i32.const -1)))
      (i32.const 0))
    (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 1) (i32.add (i32.load (i32.const 0x104)) (i32.const 1)))
      (drop (call $proxy_add_header_map_value (i32.const 2) (i32.const 0x430) (i32.const 6) (i32.const 0x430) (i32.const 1)))
      (i32.const 0))"#;

#[test]
fn a_local_reply_is_deferred_and_stops_the_request_whatever_the_callback_returns() {
    let mut vm = guest::start(REPLYING);
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Responded
    );
    assert_eq!(stream.upstream_request().headers, None);
    let client = stream.downstream_response().clone();
    let reply = stream.local_response().unwrap().clone();
    assert_eq!(
        (reply.status, reply.details.as_str(), reply.grpc_status),
        (429, "reply_details", None)
    );
    assert_eq!(reply.headers, HeaderMap::from([("x-why", "z")]));
    assert_eq!(
        client.headers,
        Some(HeaderMap::from([
            (":status", "429"),
            ("x-why", "z"),
            ("content-length", "4"),
            ("content-type", "text/plain"),
            ("x-seen", "x"),
        ]))
    );
    assert_eq!(
        (client.body_text().as_str(), client.complete),
        ("nope", true)
    );
    assert_eq!(
        result(&vm, 1),
        1,
        "the response path ran once, on the local reply"
    );
}

#[test]
fn a_local_reply_from_the_response_path_replaces_the_upstream_response_directly() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "upstream failed")
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (i32.add (i32.load (i32.const 0x100)) (i32.const 1)))
          (drop (call $proxy_send_local_response (i32.const 502) (i32.const 0) (i32.const 0)
            (i32.const 0x400) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), true).unwrap();
    assert_eq!(
        stream
            .send_response_headers([(":status", "500")], false)
            .unwrap(),
        Progress::Responded
    );
    assert_eq!(
        stream.send_response_body("ignored", true).unwrap(),
        Progress::Responded
    );
    let client = stream.downstream_response().clone();
    assert_eq!(client.status(), Some(502));
    assert_eq!(client.body_text(), "upstream failed");
    assert_eq!(result(&vm, 0), 1, "not run again on the local reply");
}

#[test]
fn close_stream_resets_it() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_close_stream (i32.const 0)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), false).unwrap(),
        Progress::Reset
    );
    assert!(stream.is_reset());
    assert!(stream.finish().unwrap().reset);
}

#[test]
fn callbacks_run_in_envoys_order() {
    let mut vm = guest::start(
        r#"(global $seq (mut i32) (i32.const 0))
        (func $mark (param $slot i32)
          (global.set $seq (i32.add (global.get $seq) (i32.const 1)))
          (call $result (local.get $slot) (global.get $seq)))
        (func (export "proxy_on_context_create") (param i32) (param $parent i32)
          (if (local.get $parent) (then (call $mark (i32.const 0)))))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (call $mark (i32.const 1)) (i32.const 0))
        (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (call $mark (i32.const 2)) (i32.const 0))
        (func (export "proxy_on_request_trailers") (param i32 i32) (result i32) (call $mark (i32.const 3)) (i32.const 0))
        (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (call $mark (i32.const 4)) (i32.const 0))
        (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (call $mark (i32.const 5)) (i32.const 0))
        (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) (call $mark (i32.const 6)) (i32.const 0))
        (func (export "proxy_on_log") (param i32) (call $mark (i32.const 7)))
        (func (export "proxy_on_done") (param i32) (result i32) (call $mark (i32.const 8)) (i32.const 1))
        (func (export "proxy_on_delete") (param i32) (call $mark (i32.const 9)))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), false).unwrap();
    stream.send_request_body("b", false).unwrap();
    stream.send_request_trailers([("x-t", "1")]).unwrap();
    stream
        .send_response_headers([(":status", "200")], false)
        .unwrap();
    stream.send_response_body("r", false).unwrap();
    stream
        .send_response_trailers([("grpc-status", "0")])
        .unwrap();
    let exchange = stream.finish().unwrap();
    assert_eq!(
        exchange.upstream_request.trailers,
        Some(HeaderMap::from([("x-t", "1")]))
    );
    assert!(exchange.downstream_response.complete);
    let order: Vec<u32> = (0..10).map(|i| result(&vm, i)).collect();
    assert_eq!(order, (1..=10).collect::<Vec<_>>());
}

#[test]
fn streams_interleave_on_one_vm() {
    let mut vm = guest::start("");
    let mut first = vm.http_stream();
    let a = first.id();
    first.send_request_headers(get("/a"), false).unwrap();
    let mut second = vm.http_stream();
    let b = second.id();
    second.send_request_headers(get("/b"), true).unwrap();
    second.finish().unwrap();
    let mut first = vm.stream(a).unwrap();
    first.send_request_body("late", true).unwrap();
    assert_eq!(first.upstream_request().body, b"late");
    assert_ne!(a, b);
    assert!(vm.stream(b).is_none(), "finished streams are gone");
}

#[test]
fn http_order_is_enforced() {
    let mut vm = guest::start("");
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_body("x", false).map_err(|e| e.kind()),
        Err(ErrorKind::InvalidState)
    );
    stream.send_request_headers(get("/"), true).unwrap();
    assert_eq!(
        stream
            .send_request_headers(get("/"), true)
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(ErrorKind::InvalidState)
    );
    assert_eq!(
        stream
            .send_request_body("x", true)
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(ErrorKind::InvalidState)
    );
}

#[test]
fn a_body_changed_under_a_stale_content_length_is_flagged() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "longer body")
        (func (export "proxy_on_request_body") (param i32) (param $size i32) (param i32) (result i32)
          (drop (call $proxy_set_buffer_bytes (i32.const 0) (i32.const 0) (local.get $size) (i32.const 0x400) (i32.const 11)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(
            [
                (":method", "POST"),
                (":path", "/"),
                (":authority", "example.com"),
                ("content-length", "5"),
            ],
            false,
        )
        .unwrap();
    stream.send_request_body("short", true).unwrap();
    assert_eq!(
        stream.upstream_request().content_length_mismatch(),
        Some((5, 11))
    );
}
