//! gRPC callouts: unary calls and streams against mock gRPC upstreams, with
//! Envoy's tokens, statuses and callback sequence.

use std::time::Duration;

use proxy_wasm_harness::{GrpcReply, GrpcUpstream, HeaderMap, Status};

use crate::guest::{self, get, result, returned, u32_at};

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const PARSE_FAILURE: u32 = Status::ParseFailure as u32;

/// Opens a unary call (slot 0), a call to an unknown cluster (1), a stream
/// (2) and sends on it (3), sends on the unary token (4) and an unknown one
/// (5), cancels an unknown one (6). Callbacks count into slots 7-10 and keep
/// the last message and close status.
const GUEST: &str = r#"(data (i32.const 0x400) "grpc")
    (data (i32.const 0x410) "svc.Echo")
    (data (i32.const 0x420) "Say")
    (data (i32.const 0x430) "hello")
    (data (i32.const 0x440) "nowhere")
    (func $bump (param $slot i32)
      (call $result (local.get $slot) (i32.add (i32.load (i32.add (i32.const 0x100) (i32.mul (local.get $slot) (i32.const 4)))) (i32.const 1))))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 0) (call $proxy_grpc_call (i32.const 0x400) (i32.const 4) (i32.const 0x410) (i32.const 8) (i32.const 0x420) (i32.const 3)
        (i32.const 0) (i32.const 0) (i32.const 0x430) (i32.const 5) (i32.const 1000) (i32.const 0x20)))
      (call $result (i32.const 1) (call $proxy_grpc_call (i32.const 0x440) (i32.const 7) (i32.const 0x410) (i32.const 8) (i32.const 0x420) (i32.const 3)
        (i32.const 0) (i32.const 0) (i32.const 0x430) (i32.const 5) (i32.const 1000) (i32.const 0x28)))
      (call $result (i32.const 2) (call $proxy_grpc_stream (i32.const 0x400) (i32.const 4) (i32.const 0x410) (i32.const 8) (i32.const 0x420) (i32.const 3)
        (i32.const 0) (i32.const 0) (i32.const 0x24)))
      (call $result (i32.const 3) (call $proxy_grpc_send (i32.load (i32.const 0x24)) (i32.const 0x430) (i32.const 5) (i32.const 1)))
      (call $result (i32.const 4) (call $proxy_grpc_send (i32.load (i32.const 0x20)) (i32.const 0x430) (i32.const 5) (i32.const 0)))
      (call $result (i32.const 5) (call $proxy_grpc_send (i32.const 999) (i32.const 0x430) (i32.const 5) (i32.const 0)))
      (call $result (i32.const 6) (call $proxy_grpc_cancel (i32.const 999)))
      (i32.const 0))
    (func (export "proxy_on_grpc_receive_initial_metadata") (param i32 i32) (param $n i32)
      (call $bump (i32.const 7))
      (call $result (i32.const 11) (call $proxy_get_header_map_size (i32.const 4) (i32.const 0x50))))
    (func (export "proxy_on_grpc_receive") (param i32) (param $token i32) (param $size i32)
      (call $bump (i32.const 8))
      (call $result (i32.const 12) (local.get $token))
      (drop (call $proxy_get_buffer_bytes (i32.const 5) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14))))
    (func (export "proxy_on_grpc_receive_trailing_metadata") (param i32 i32) (param $n i32)
      (call $bump (i32.const 9))
      (call $result (i32.const 13) (local.get $n)))
    (func (export "proxy_on_grpc_close") (param i32) (param $token i32) (param $code i32)
      (call $bump (i32.const 10))
      (call $result (i32.const 14) (local.get $code))
      (call $result (i32.const 15) (local.get $token))
      (drop (call $proxy_get_status (i32.const 0x30) (i32.const 0x34) (i32.const 0x38))))"#;

fn run(upstream: GrpcUpstream) -> proxy_wasm_harness::Vm {
    let mut vm = guest::builder(GUEST)
        .grpc_upstream("grpc", upstream)
        .build()
        .unwrap()
        .start()
        .unwrap();
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    vm
}

#[test]
fn unary_and_stream_tokens_and_argument_checks() {
    let vm = run(GrpcUpstream::reply(GrpcReply::message("hi")));
    let statuses: Vec<u32> = (0..7).map(|i| result(&vm, i)).collect();
    assert_eq!(
        statuses,
        [
            OK,
            PARSE_FAILURE,
            OK,
            OK,
            BAD_ARGUMENT,
            NOT_FOUND,
            NOT_FOUND
        ]
    );
    assert_eq!(
        (u32_at(&vm, 0x20), u32_at(&vm, 0x24)),
        (5, 6),
        "call tokens have kind 1, stream tokens kind 2"
    );
    let calls = vm.grpc_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (calls[0].service.as_str(), calls[0].method.as_str()),
        ("svc.Echo", "Say")
    );
    assert_eq!(calls[0].messages, vec![b"hello".to_vec()]);
    assert_eq!(calls[0].timeout, Some(Duration::from_secs(1)));
    assert!(calls[1].streaming && calls[1].closed);
}

#[test]
fn a_unary_success_is_one_receive_and_no_close() {
    let vm = run(GrpcUpstream::handler(|call| {
        if call.streaming {
            GrpcReply::default()
        } else {
            GrpcReply::message("hi there")
        }
    }));
    assert_eq!(
        (result(&vm, 8), result(&vm, 10), result(&vm, 12)),
        (1, 0, 5)
    );
    assert_eq!(returned(&vm), b"hi there");
}

#[test]
fn a_unary_failure_is_a_close_with_status_and_message() {
    let vm = run(GrpcUpstream::handler(|call| {
        if call.streaming {
            GrpcReply::default()
        } else {
            GrpcReply::status(14, "unavailable")
        }
    }));
    assert_eq!(
        (result(&vm, 8), result(&vm, 10), result(&vm, 14)),
        (0, 1, 14)
    );
    assert_eq!(
        guest::bytes_at(&vm, u32_at(&vm, 0x34), u32_at(&vm, 0x38)),
        b"unavailable"
    );
}

#[test]
fn a_unary_call_past_its_timeout_closes_with_deadline_exceeded() {
    let mut vm = run(GrpcUpstream::handler(|call| {
        if call.streaming {
            GrpcReply::default()
        } else {
            GrpcReply::message("slow")
        }
    })
    .with_latency(Duration::from_secs(5)));
    assert_eq!(result(&vm, 10), 0);
    vm.advance_time(Duration::from_secs(1)).unwrap();
    assert_eq!(
        (result(&vm, 8), result(&vm, 10), result(&vm, 14)),
        (0, 1, 4)
    );
}

#[test]
fn a_stream_delivers_metadata_messages_trailers_then_close() {
    let vm = run(GrpcUpstream::handler(|call| {
        if !call.streaming {
            return GrpcReply::status(12, "unimplemented");
        }
        GrpcReply::message(format!("got {}", call.messages.len()))
            .with_initial_metadata(HeaderMap::from([("x-stream", "1")]))
            .with_trailing_metadata(HeaderMap::from([("grpc-status", "0"), ("x-end", "1")]))
            .then_close(0, "")
    }));
    // The unary call closed with 12; the stream: metadata, message,
    // trailers, close — in that order and once each.
    assert_eq!(
        [
            result(&vm, 7),
            result(&vm, 8),
            result(&vm, 9),
            result(&vm, 10)
        ],
        [1, 1, 1, 2]
    );
    assert_eq!(
        result(&vm, 11),
        OK,
        "initial metadata readable in its callback"
    );
    assert_eq!(
        (result(&vm, 12), result(&vm, 13), result(&vm, 15)),
        (6, 2, 6)
    );
    assert_eq!(returned(&vm), b"got 1");
}

#[test]
fn a_cancelled_call_delivers_nothing() {
    let mut vm = guest::builder(
        r#"(data (i32.const 0x400) "grpc")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_grpc_call (i32.const 0x400) (i32.const 4) (i32.const 0x400) (i32.const 1) (i32.const 0x400) (i32.const 1)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0x20)))
          (call $result (i32.const 0) (call $proxy_grpc_cancel (i32.load (i32.const 0x20))))
          (call $result (i32.const 1) (call $proxy_grpc_close (i32.load (i32.const 0x20))))
          (i32.const 0))
        (func (export "proxy_on_grpc_receive") (param i32 i32 i32) (call $result (i32.const 2) (i32.const 1)))"#,
    )
    .grpc_upstream("grpc", GrpcUpstream::reply(GrpcReply::message("x")).with_latency(Duration::from_millis(10)))
    .build()
    .unwrap()
    .start()
    .unwrap();
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    vm.advance_time(Duration::from_secs(1)).unwrap();
    assert_eq!(
        [result(&vm, 0), result(&vm, 1), result(&vm, 2)],
        [OK, NOT_FOUND, 0]
    );
}
