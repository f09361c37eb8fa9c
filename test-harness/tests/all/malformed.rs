//! Broken modules and misbehaving guests each get a clear error, never a
//! host panic or a hang.

use std::time::Duration;

use proxy_wasm_harness::{Error, ErrorKind, Plugin};

use crate::guest::{self, get};

const MARKER_AND_MALLOC: &str = r#"(func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 0x1000))"#;

fn build(wat: &str) -> Error {
    Plugin::builder_from_bytes(wat).build().unwrap_err()
}

#[test]
fn bad_magic_is_not_a_module() {
    let err = Plugin::builder_from_bytes(vec![0x00, 0x61, 0x73, 0x6e, 1, 0, 0, 0])
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidModule, "{err}");
    assert!(err.to_string().contains("magic"), "{err}");
}

#[test]
fn a_missing_file_names_the_path() {
    let err = Plugin::load("/no/such/filter.wasm", "{}").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("/no/such/filter.wasm"), "{err}");
}

#[test]
fn a_module_without_memory_is_refused() {
    let err = build(&format!("(module {MARKER_AND_MALLOC})"));
    assert_eq!(err.kind(), ErrorKind::MissingMemory, "{err}");
}

#[test]
fn a_module_without_an_abi_version_is_refused_as_envoy_does() {
    let err = build(
        r#"(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#,
    );
    assert_eq!(err.kind(), ErrorKind::MissingAbiVersion, "{err}");
    assert!(
        err.to_string()
            .contains("Missing or unknown Proxy-Wasm ABI version")
    );
}

#[test]
fn a_module_without_an_allocator_is_refused() {
    let err =
        build(r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#);
    assert_eq!(err.kind(), ErrorKind::MissingAllocator, "{err}");
}

#[test]
fn an_import_no_host_provides_fails_to_link() {
    let err = build(&format!(
        r#"(module (import "env" "proxy_frobnicate" (func (param i32) (result i32)))
           (memory (export "memory") 1) {MARKER_AND_MALLOC})"#
    ));
    assert_eq!(err.kind(), ErrorKind::Link, "{err}");
    assert!(err.to_string().contains("proxy_frobnicate"), "{err}");
}

#[test]
fn a_callback_with_the_wrong_signature_is_refused() {
    let err = build(&format!(
        r#"(module (memory (export "memory") 1) {MARKER_AND_MALLOC}
           (func (export "proxy_on_request_headers") (param i32) (result i32) (i32.const 0)))"#
    ));
    let text = err.to_string();
    assert_eq!(err.kind(), ErrorKind::BadExport, "{text}");
    assert!(
        text.contains("proxy_on_request_headers") && text.contains("(i32, i32, i32) -> (i32)"),
        "{text}"
    );
}

#[test]
fn a_trap_in_initialize_is_reported_with_the_callback() {
    let err = Plugin::builder_from_bytes(format!(
        r#"(module (memory (export "memory") 1) {MARKER_AND_MALLOC}
           (func (export "_initialize") unreachable))"#
    ))
    .build()
    .unwrap()
    .start()
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert_eq!(err.callback(), Some("_initialize"));
    assert!(
        err.trap_message()
            .unwrap_or_default()
            .contains("unreachable"),
        "{err}"
    );
}

#[test]
fn an_endless_loop_is_interrupted_and_the_vm_retired() {
    let mut vm = guest::builder(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (loop $forever (br $forever))
          (i32.const 0))"#,
    )
    .callback_deadline(Duration::from_millis(100))
    .build()
    .unwrap()
    .start()
    .unwrap();
    let err = vm
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap_err();
    assert!(
        err.kind() == ErrorKind::Timeout && err.callback() == Some("proxy_on_request_headers"),
        "{err}"
    );
    assert!(err.to_string().contains("endless loop"), "{err}");
    let again = vm
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Poisoned, "{again}");
}

#[test]
fn memory_growth_past_the_limit_fails_cleanly() {
    let mut vm = guest::builder(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          ;; ask for 64 MiB more, and trap when refused, as an allocator would
          (if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1)) (then unreachable))
          (i32.const 0))"#,
    )
    .memory_limit(32 << 20)
    .build()
    .unwrap()
    .start()
    .unwrap();
    let err = vm
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");
    assert_eq!(err.memory(), Some(((1024 + 2) * 65536, 32 << 20)));
}

#[test]
fn wild_pointers_from_the_allocator_are_refused_not_followed() {
    // An allocator that answers an address outside memory.
    let mut vm = Plugin::builder_from_bytes(
        r#"(module
          (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0x7FFFFFF0))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (i32.store (i32.const 0x100) (call $pairs (i32.const 0) (i32.const 0x10) (i32.const 0x14)))
            (i32.const 0)))"#,
    )
    .build()
    .unwrap()
    .start()
    .unwrap();
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(
        guest::u32_at(&vm, 0x100),
        proxy_wasm_harness::Status::InvalidMemoryAccess as u32
    );
}
