//! Conformance: the WASI functions as Envoy answers them.

use proxy_wasm_harness::{LogLevel, Plugin};

use crate::guest::{self, result, u32_at, u64_at};

const SUCCESS: u32 = 0;
const BADF: u32 = 8;
const FAULT: u32 = 21;
const INVAL: u32 = 28;
const NOTSUP: u32 = 58;

#[test]
fn fd_write_logs_stdout_at_info_and_stderr_at_error() {
    let vm = guest::start(
        r#"(data (i32.const 0x400) "to stdout\n")
        (data (i32.const 0x410) "to ")
        (data (i32.const 0x420) "stderr")
        ;; iovecs: one for stdout, two for stderr
        (data (i32.const 0x500) "\00\04\00\00\0a\00\00\00")
        (data (i32.const 0x508) "\10\04\00\00\03\00\00\00\20\04\00\00\06\00\00\00")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $fd_write (i32.const 1) (i32.const 0x500) (i32.const 1) (i32.const 0x20)))
          (call $result (i32.const 1) (call $fd_write (i32.const 2) (i32.const 0x508) (i32.const 2) (i32.const 0x24)))
          (call $result (i32.const 2) (call $fd_write (i32.const 3) (i32.const 0x500) (i32.const 1) (i32.const 0x20)))
          (call $result (i32.const 3) (call $fd_write (i32.const 1) (i32.const 0xFFFFFFF0) (i32.const 1) (i32.const 0x20)))
          (i32.const 1))"#,
    );
    let statuses: Vec<u32> = (0..4).map(|i| result(&vm, i)).collect();
    assert_eq!(statuses, [SUCCESS, SUCCESS, BADF, FAULT]);
    assert_eq!(
        (u32_at(&vm, 0x20), u32_at(&vm, 0x24)),
        (10, 9),
        "bytes written, newline included"
    );
    let logs: Vec<_> = vm
        .logs()
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            (LogLevel::Info, "to stdout"),
            (LogLevel::Error, "to stderr")
        ]
    );
}

const CLOCKS_AND_RANDOM: &str = r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
      (call $result (i32.const 0) (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 0x20)))
      (call $result (i32.const 1) (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 0x28)))
      (call $result (i32.const 2) (call $clock_time_get (i32.const 2) (i64.const 1) (i32.const 0x28)))
      (call $result (i32.const 3) (call $random_get (i32.const 0x40) (i32.const 16)))
      (call $result (i32.const 4) (call $random_get (i32.const 0x1000) (i32.const 65537)))
      (call $result (i32.const 5) (call $random_get (i32.const 0xFFFFFFF0) (i32.const 16)))
      (i32.const 1))"#;

#[test]
fn clocks_are_virtual_and_randomness_is_seeded() {
    let vm = guest::start(CLOCKS_AND_RANDOM);
    let statuses: Vec<u32> = (0..6).map(|i| result(&vm, i)).collect();
    assert_eq!(statuses, [SUCCESS, SUCCESS, NOTSUP, SUCCESS, INVAL, FAULT]);
    assert_eq!(
        u64_at(&vm, 0x20),
        proxy_wasm_harness::DEFAULT_START_TIME_UNIX_SECS * 1_000_000_000
    );
    assert_eq!(u64_at(&vm, 0x28), 0, "monotonic clock starts at zero");
    let random = guest::bytes_at(&vm, 0x40, 16);
    assert_ne!(random, [0; 16]);
    let again = guest::start(CLOCKS_AND_RANDOM);
    assert_eq!(
        guest::bytes_at(&again, 0x40, 16),
        random,
        "same seed, same bytes"
    );
    let reseeded = guest::builder(CLOCKS_AND_RANDOM)
        .seed(7)
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_ne!(guest::bytes_at(&reseeded, 0x40, 16), random);
}

#[test]
fn environment_and_arguments() {
    let vm = guest::builder(
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $environ_sizes_get (i32.const 0x20) (i32.const 0x24)))
          (call $result (i32.const 1) (call $environ_get (i32.const 0x30) (i32.const 0x600)))
          (call $result (i32.const 2) (call $args_sizes_get (i32.const 0x40) (i32.const 0x44)))
          (call $result (i32.const 3) (call $args_get (i32.const 0x40) (i32.const 0x44)))
          (i32.store (i32.const 0x48) (i32.const 99))
          (call $proc_exit (i32.const 3))
          (i32.const 1))"#,
    )
    .env("REGION", "eu")
    .env("TIER", "gold")
    .build()
    .unwrap()
    .start()
    .unwrap();
    let statuses: Vec<u32> = (0..4).map(|i| result(&vm, i)).collect();
    assert_eq!(statuses, [SUCCESS; 4]);
    assert_eq!((u32_at(&vm, 0x20), u32_at(&vm, 0x24)), (2, 20));
    assert_eq!((u32_at(&vm, 0x30), u32_at(&vm, 0x34)), (0x600, 0x600 + 10));
    assert_eq!(guest::bytes_at(&vm, 0x600, 20), b"REGION=eu\0TIER=gold\0");
    assert_eq!((u32_at(&vm, 0x40), u32_at(&vm, 0x44)), (0, 0));
    assert!(
        vm.has_log(LogLevel::Error, "proc_exit(3)"),
        "proc_exit only logs, as in Envoy"
    );
}

#[test]
fn envoys_other_wasi_functions_are_linked_under_both_module_names() {
    let wat = r#"(module
      (import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "sock_send" (func (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "malloc") (param i32) (result i32) (i32.const 0x1000))
      (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (i32.store (i32.const 0x100) (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))
        (i32.store (i32.const 0x104) (call $prestat (i32.const 3) (i32.const 0)))
        (i32.store (i32.const 0x108) (call $read (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
        (i32.const 1)))"#;
    let vm = Plugin::builder_from_bytes(wat)
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(
        [u32_at(&vm, 0x100), u32_at(&vm, 0x104), u32_at(&vm, 0x108)],
        [44, BADF, 52]
    );
}
