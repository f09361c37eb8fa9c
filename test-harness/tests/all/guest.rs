//! Builds small WAT guests for the conformance tests. Every guest imports
//! all 39 `env.proxy_*` functions of ABI 0.2.1 and the 8 WASI functions the
//! spec names (so instantiating one proves the harness links them), exports
//! a bump allocator that counts its calls, and stores call results at fixed
//! addresses the test reads back.

use proxy_wasm_harness::{Plugin, PluginBuilder, Vm};

/// Where guests write the statuses they observe (`RESULTS + 4 * i`).
pub(crate) const RESULTS: u32 = 0x100;
/// Out-pointers guests pass to the host.
pub(crate) const RET_PTR: u32 = 0x10;
pub(crate) const RET_LEN: u32 = 0x14;
pub(crate) const RET_EXTRA: u32 = 0x18;
/// Number of allocator calls so far.
pub(crate) const ALLOC_COUNT: u32 = 0x80;
/// A pointer no guest memory contains.
pub(crate) const WILD: u32 = 0xFFFF_FFF0;

/// (name, parameter types, returns a status).
const ENV: &[(&str, &str)] = &[
    ("proxy_log", "i32 i32 i32"),
    ("proxy_get_log_level", "i32"),
    ("proxy_get_current_time_nanoseconds", "i32"),
    ("proxy_set_tick_period_milliseconds", "i32"),
    ("proxy_done", ""),
    ("proxy_set_effective_context", "i32"),
    ("proxy_get_buffer_bytes", "i32 i32 i32 i32 i32"),
    ("proxy_get_buffer_status", "i32 i32 i32"),
    ("proxy_set_buffer_bytes", "i32 i32 i32 i32 i32"),
    ("proxy_get_header_map_size", "i32 i32"),
    ("proxy_get_header_map_pairs", "i32 i32 i32"),
    ("proxy_set_header_map_pairs", "i32 i32 i32"),
    ("proxy_get_header_map_value", "i32 i32 i32 i32 i32"),
    ("proxy_add_header_map_value", "i32 i32 i32 i32 i32"),
    ("proxy_replace_header_map_value", "i32 i32 i32 i32 i32"),
    ("proxy_remove_header_map_value", "i32 i32 i32"),
    ("proxy_continue_stream", "i32"),
    ("proxy_close_stream", "i32"),
    ("proxy_get_status", "i32 i32 i32"),
    (
        "proxy_send_local_response",
        "i32 i32 i32 i32 i32 i32 i32 i32",
    ),
    ("proxy_http_call", "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32"),
    (
        "proxy_grpc_call",
        "i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32",
    ),
    ("proxy_grpc_stream", "i32 i32 i32 i32 i32 i32 i32 i32 i32"),
    ("proxy_grpc_send", "i32 i32 i32 i32"),
    ("proxy_grpc_cancel", "i32"),
    ("proxy_grpc_close", "i32"),
    ("proxy_set_shared_data", "i32 i32 i32 i32 i32"),
    ("proxy_get_shared_data", "i32 i32 i32 i32 i32"),
    ("proxy_register_shared_queue", "i32 i32 i32"),
    ("proxy_resolve_shared_queue", "i32 i32 i32 i32 i32"),
    ("proxy_enqueue_shared_queue", "i32 i32 i32"),
    ("proxy_dequeue_shared_queue", "i32 i32 i32"),
    ("proxy_define_metric", "i32 i32 i32 i32"),
    ("proxy_record_metric", "i32 i64"),
    ("proxy_increment_metric", "i32 i64"),
    ("proxy_get_metric", "i32 i32"),
    ("proxy_get_property", "i32 i32 i32 i32"),
    ("proxy_set_property", "i32 i32 i32 i32"),
    ("proxy_call_foreign_function", "i32 i32 i32 i32 i32 i32"),
];

const WASI: &[(&str, &str, bool)] = &[
    ("fd_write", "i32 i32 i32 i32", true),
    ("clock_time_get", "i32 i64 i32", true),
    ("random_get", "i32 i32", true),
    ("environ_sizes_get", "i32 i32", true),
    ("environ_get", "i32 i32", true),
    ("args_sizes_get", "i32 i32", true),
    ("args_get", "i32 i32", true),
    ("proc_exit", "i32", false),
];

/// The full text of a guest module: imports, memory, allocator, the ABI
/// marker (`abi`, e.g. `0_2_1`) and the given functions and data.
pub(crate) fn module(abi: &str, body: &str) -> String {
    let mut wat = String::from("(module\n");
    for (name, params) in ENV {
        wat += &format!(
            "  (import \"env\" \"{name}\" (func ${name} (param {params}) (result i32)))\n"
        );
    }
    for (name, params, result) in WASI {
        let result = if *result { "(result i32)" } else { "" };
        wat += &format!(
            "  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param {params}) {result}))\n"
        );
    }
    wat += &format!(
        r#"  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 0x8000))
  (func (export "proxy_abi_version_{abi}"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (i32.store (i32.const {ALLOC_COUNT}) (i32.add (i32.load (i32.const {ALLOC_COUNT})) (i32.const 1)))
    global.get $heap
    (global.set $heap (i32.add (global.get $heap) (local.get $size))))
  (func $result (param $slot i32) (param $value i32)
    (i32.store (i32.add (i32.const {RESULTS}) (i32.mul (local.get $slot) (i32.const 4))) (local.get $value)))
{body}
)"#
    );
    wat
}

/// A builder for a 0.2.1 guest with `body`.
pub(crate) fn builder(body: &str) -> PluginBuilder {
    Plugin::builder_from_bytes(module("0_2_1", body))
}

/// Starts a 0.2.1 guest with defaults.
pub(crate) fn start(body: &str) -> Vm {
    builder(body)
        .build()
        .expect("guest builds")
        .start()
        .expect("guest starts")
}

/// The status (or any u32) the guest stored in result slot `slot`.
pub(crate) fn result(vm: &Vm, slot: u32) -> u32 {
    u32_at(vm, RESULTS + 4 * slot)
}

pub(crate) fn u32_at(vm: &Vm, addr: u32) -> u32 {
    let at = addr as usize;
    u32::from_le_bytes(vm.guest_memory()[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(vm: &Vm, addr: u32) -> u64 {
    let at = addr as usize;
    u64::from_le_bytes(vm.guest_memory()[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn bytes_at(vm: &Vm, addr: u32, len: u32) -> Vec<u8> {
    vm.guest_memory()[addr as usize..(addr + len) as usize].to_vec()
}

/// The bytes a host call returned through `RET_PTR`/`RET_LEN`.
pub(crate) fn returned(vm: &Vm) -> Vec<u8> {
    bytes_at(vm, u32_at(vm, RET_PTR), u32_at(vm, RET_LEN))
}

/// Request headers most tests send.
pub(crate) fn get(path: &str) -> [(&'static str, String); 3] {
    [
        (":method", "GET".to_owned()),
        (":path", path.to_owned()),
        (":authority", "example.com".to_owned()),
    ]
}
