//! The foreign functions Envoy registers: filter state, property
//! declarations, zlib compression.

use proxy_wasm_harness::Status;

use crate::guest::{self, get, result, returned};

/// Bytes as a WAT data string.
fn wat(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A protobuf message of string fields 1..n.
fn strings(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, value) in fields.iter().enumerate() {
        out.push(((i as u8 + 1) << 3) | 2);
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Guest code calling foreign function `name` (stored at 0x400) with the
/// `len` bytes at `args`, status into result `slot`, results at 0x10/0x14.
fn call(slot: u32, name_len: usize, args: u32, len: usize) -> String {
    format!(
        "(call $result (i32.const {slot}) (call $proxy_call_foreign_function (i32.const 0x400) (i32.const {name_len}) (i32.const {args}) (i32.const {len}) (i32.const 0x10) (i32.const 0x14)))"
    )
}

#[test]
fn set_envoy_filter_state_stores_objects_for_known_keys() {
    let ok = strings(&["envoy.tcp_proxy.cluster", "backend"]);
    let unknown = strings(&["no.such.factory", "x"]);
    let bad_port = strings(&["envoy.upstream.dynamic_port", "http"]);
    let custom = strings(&["acme.route", "blue"]);
    let truncated = [0x0a, 0x05, b'a'];
    let name = "set_envoy_filter_state";
    let body = format!(
        r#"(data (i32.const 0x400) "{name}")
        (data (i32.const 0x500) "{}")
        (data (i32.const 0x600) "{}")
        (data (i32.const 0x700) "{}")
        (data (i32.const 0x800) "{}")
        (data (i32.const 0x900) "{}")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          {}
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          {} {} {} {} {}
          (i32.const 0))"#,
        wat(&ok),
        wat(&unknown),
        wat(&bad_port),
        wat(&custom),
        wat(&truncated),
        call(5, name.len(), 0x500, ok.len()),
        call(0, name.len(), 0x500, ok.len()),
        call(1, name.len(), 0x600, unknown.len()),
        call(2, name.len(), 0x700, bad_port.len()),
        call(3, name.len(), 0x800, custom.len()),
        call(4, name.len(), 0x900, truncated.len()),
    );
    let mut vm = guest::builder(&body)
        .filter_state_key("acme.route")
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(
        result(&vm, 5),
        Status::NotFound as u32,
        "no stream on the root context"
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), true).unwrap();
    assert_eq!(
        stream.filter_state("envoy.tcp_proxy.cluster"),
        Some(b"backend".to_vec())
    );
    assert_eq!(stream.filter_state("acme.route"), Some(b"blue".to_vec()));
    assert_eq!(stream.filter_state("no.such.factory"), None);
    stream.finish().unwrap();
    assert_eq!(
        [0, 1, 2, 3, 4].map(|s| result(&vm, s)),
        [
            Status::Ok as u32,
            Status::NotFound as u32,
            Status::BadArgument as u32,
            Status::Ok as u32,
            Status::BadArgument as u32,
        ]
    );
}

#[test]
fn a_declared_read_only_property_is_set_once_per_stream() {
    // name = "acme.flag", readonly = true
    let mut declaration = strings(&["acme.flag"]);
    declaration.extend_from_slice(&[0x10, 0x01]);
    let name = "declare_property";
    let body = format!(
        r#"(data (i32.const 0x400) "{name}")
        (data (i32.const 0x500) "{}")
        (data (i32.const 0x600) "acme\00flag")
        (data (i32.const 0x610) "acme\00other")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          {} {}
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 2) (call $proxy_set_property (i32.const 0x600) (i32.const 9) (i32.const 0x400) (i32.const 1)))
          (call $result (i32.const 3) (call $proxy_set_property (i32.const 0x600) (i32.const 9) (i32.const 0x401) (i32.const 1)))
          (call $result (i32.const 4) (call $proxy_set_property (i32.const 0x610) (i32.const 10) (i32.const 0x400) (i32.const 1)))
          (call $result (i32.const 5) (call $proxy_set_property (i32.const 0x610) (i32.const 10) (i32.const 0x401) (i32.const 1)))
          (i32.const 0))"#,
        wat(&declaration),
        call(0, name.len(), 0x500, declaration.len()),
        call(1, name.len(), 0x500, declaration.len()),
    );
    let mut vm = guest::start(&body);
    for _ in 0..2 {
        let mut stream = vm.http_stream();
        stream.send_request_headers(get("/"), true).unwrap();
        assert_eq!(stream.property("acme.flag"), Some(b"d".to_vec()));
        assert_eq!(stream.property("acme.other"), Some(b"e".to_vec()));
        stream.finish().unwrap();
        assert_eq!(
            [0, 1, 2, 3, 4, 5].map(|s| result(&vm, s)),
            [
                Status::Ok as u32,
                Status::BadArgument as u32,
                Status::Ok as u32,
                Status::BadArgument as u32,
                Status::Ok as u32,
                Status::Ok as u32,
            ],
            "declared once; set once per stream; undeclared ones any time"
        );
    }
}

#[test]
fn compress_and_uncompress_round_trip_zlib() {
    let text = "hello hello hello hello hello";
    let body = format!(
        r#"(data (i32.const 0x400) "compress")
        (data (i32.const 0x408) "uncompress")
        (data (i32.const 0x500) "{text}")
        (data (i32.const 0x600) "not zlib")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_call_foreign_function (i32.const 0x400) (i32.const 8) (i32.const 0x500) (i32.const {len}) (i32.const 0x10) (i32.const 0x14)))
          (i32.store (i32.const 0x70) (i32.load (i32.const 0x10)))
          (i32.store (i32.const 0x74) (i32.load (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_call_foreign_function (i32.const 0x408) (i32.const 10) (i32.load (i32.const 0x70)) (i32.load (i32.const 0x74)) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 2) (call $proxy_call_foreign_function (i32.const 0x408) (i32.const 10) (i32.const 0x600) (i32.const 8) (i32.const 0x18) (i32.const 0x1c)))
          (i32.const 1))"#,
        len = text.len(),
    );
    let vm = guest::start(&body);
    assert_eq!(
        [0, 1, 2].map(|s| result(&vm, s)),
        [
            Status::Ok as u32,
            Status::Ok as u32,
            Status::SerializationFailure as u32
        ]
    );
    assert_eq!(returned(&vm), text.as_bytes());
    let compressed_len = crate::guest::u32_at(&vm, 0x74) as usize;
    let compressed_at = crate::guest::u32_at(&vm, 0x70) as usize;
    let compressed = &vm.guest_memory()[compressed_at..compressed_at + compressed_len];
    assert_eq!(compressed[0], 0x78, "a zlib stream");
    assert!(compressed_len < text.len());
}
