//! Network filters: the TCP callbacks, buffering of paused data, resuming
//! and closing from the filter, with Envoy's answers.

use std::time::Duration;

use proxy_wasm_harness::{PeerType, Progress, Status};

use crate::guest::{self, result};

/// Holds client bytes until at least 6 arrived, then prefixes them with
/// ">"; a tick resumes a connection paused by `x`-prefixed data; upstream
/// data "bye" closes the connection; close callbacks record the peer.
const NETWORK_FILTER: &str = r#"(data (i32.const 0x400) ">")
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 10)))
      (i32.const 1))
    (func (export "proxy_on_new_connection") (param $ctx i32) (result i32)
      (call $result (i32.const 0) (local.get $ctx))
      (i32.const 0))
    (func (export "proxy_on_downstream_data") (param $ctx i32) (param $size i32) (param $eos i32) (result i32)
      (call $result (i32.const 1) (local.get $size))
      (drop (call $proxy_get_buffer_bytes (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 0x10) (i32.const 0x14)))
      (if (i32.eq (i32.load8_u (i32.load (i32.const 0x10))) (i32.const 120)) (then
        (i32.store (i32.const 0x60) (local.get $ctx))
        (return (i32.const 1))))
      (if (i32.lt_u (local.get $size) (i32.const 6)) (then (return (i32.const 1))))
      (call $result (i32.const 2) (call $proxy_set_buffer_bytes (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 0x400) (i32.const 1)))
      (i32.const 0))
    (func (export "proxy_on_upstream_data") (param i32) (param $size i32) (param i32) (result i32)
      (if (i32.eq (local.get $size) (i32.const 3)) (then
        (call $result (i32.const 3) (call $proxy_close_stream (i32.const 3)))))
      (i32.const 0))
    (func (export "proxy_on_tick") (param i32)
      (if (i32.load (i32.const 0x60)) (then
        (drop (call $proxy_set_effective_context (i32.load (i32.const 0x60))))
        (call $result (i32.const 4) (call $proxy_continue_stream (i32.const 2)))
        (call $result (i32.const 5) (call $proxy_continue_stream (i32.const 3)))
        (i32.store (i32.const 0x60) (i32.const 0)))))
    (func (export "proxy_on_downstream_connection_close") (param i32) (param $peer i32)
      (call $result (i32.const 6) (local.get $peer)))
    (func (export "proxy_on_upstream_connection_close") (param i32) (param $peer i32)
      (call $result (i32.const 7) (local.get $peer)))
    (func (export "proxy_on_delete") (param i32)
      (call $result (i32.const 8) (i32.add (i32.load (i32.const 0x120)) (i32.const 1))))"#;

#[test]
fn paused_client_bytes_are_buffered_and_delivered_whole() {
    let mut vm = guest::start(NETWORK_FILTER);
    let mut connection = vm.tcp_connection().unwrap();
    let id = connection.id();
    assert_eq!(
        connection.send_downstream("abc", false).unwrap(),
        Progress::Paused
    );
    assert!(connection.upstream_received().is_empty());
    assert_eq!(
        connection.send_downstream("defg", false).unwrap(),
        Progress::Continued
    );
    assert_eq!(connection.upstream_received(), b">abcdefg");
    assert_eq!(
        connection.send_upstream("hello", false).unwrap(),
        Progress::Continued
    );
    assert_eq!(connection.client_received(), b"hello");
    connection.close_downstream(PeerType::Remote).unwrap();
    let exchange = connection.finish().unwrap();
    assert_eq!(exchange.to_upstream, b">abcdefg");
    assert_eq!(
        [
            result(&vm, 0),
            result(&vm, 1),
            result(&vm, 2),
            result(&vm, 6),
            result(&vm, 8)
        ],
        [id, 7, Status::Ok as u32, 2, 1]
    );
}

#[test]
fn the_filter_resumes_reading_later_and_upstream_resume_is_envoys_unimplemented() {
    let mut vm = guest::start(NETWORK_FILTER);
    let mut connection = vm.tcp_connection().unwrap();
    assert_eq!(
        connection.send_downstream("xyz1234", false).unwrap(),
        Progress::Paused
    );
    assert!(connection.upstream_received().is_empty());
    connection
        .vm()
        .advance_time(Duration::from_millis(10))
        .unwrap();
    assert_eq!(
        connection.upstream_received(),
        b"xyz1234",
        "resumed from the tick"
    );
    assert_eq!(
        [result(&vm, 4), result(&vm, 5)],
        [Status::Ok as u32, Status::Unimplemented as u32]
    );
    let mut connection = vm.tcp_connection().unwrap();
    assert_eq!(
        connection.send_downstream("short", true).unwrap(),
        Progress::Paused
    );
}

#[test]
fn the_filter_closes_the_connection() {
    let mut vm = guest::start(NETWORK_FILTER);
    let mut connection = vm.tcp_connection().unwrap();
    assert_eq!(
        connection.send_upstream("bye", false).unwrap(),
        Progress::Reset
    );
    assert!(connection.closed_by_filter());
    assert_eq!(
        connection.send_downstream("more!!", false).unwrap(),
        Progress::Reset
    );
    connection.close_upstream(PeerType::Local).unwrap();
    assert_eq!((result(&vm, 3), result(&vm, 7)), (Status::Ok as u32, 1));
}
