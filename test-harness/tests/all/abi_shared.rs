//! Conformance: shared data (cas rules, vm_id scope) and metrics.

use proxy_wasm_harness::{Metric, Runtime, Status};

use crate::guest::{self, RET_EXTRA, get, result, returned, u32_at, u64_at};

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const CAS_MISMATCH: u32 = Status::CasMismatch as u32;

/// A guest that, per request, writes `value` under `key` with the cas from
/// header-less memory slot 0x40 and reads it back.
const SHARED: &str = r#"(data (i32.const 0x400) "key")
    (data (i32.const 0x410) "one")
    (data (i32.const 0x420) "two")
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (call $result (i32.const 0) (call $proxy_get_shared_data (i32.const 0x400) (i32.const 3) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      (call $result (i32.const 1) (call $proxy_set_shared_data (i32.const 0x400) (i32.const 3) (i32.const 0x410) (i32.const 3) (i32.const 0)))
      (call $result (i32.const 2) (call $proxy_get_shared_data (i32.const 0x400) (i32.const 3) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      ;; a write with the current cas succeeds, a stale one is refused
      (call $result (i32.const 3) (call $proxy_set_shared_data (i32.const 0x400) (i32.const 3) (i32.const 0x420) (i32.const 3) (i32.load (i32.const 0x18))))
      (call $result (i32.const 4) (call $proxy_set_shared_data (i32.const 0x400) (i32.const 3) (i32.const 0x410) (i32.const 3) (i32.load (i32.const 0x18))))
      (call $result (i32.const 5) (call $proxy_get_shared_data (i32.const 0x400) (i32.const 3) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      (i32.const 1))"#;

#[test]
fn shared_data_follows_envoys_cas_rules() {
    let vm = guest::start(SHARED);
    let statuses: Vec<u32> = (0..6).map(|i| result(&vm, i)).collect();
    assert_eq!(statuses, [NOT_FOUND, OK, OK, OK, CAS_MISMATCH, OK]);
    assert_eq!(returned(&vm), b"two");
    assert_ne!(u32_at(&vm, RET_EXTRA), 0, "cas values are never 0");
    assert_eq!(vm.shared_data(b"key").as_deref(), Some(&b"two"[..]));
}

#[test]
fn shared_data_is_shared_by_vm_id_and_isolated_otherwise() {
    let runtime = Runtime::new().unwrap();
    let writer = guest::builder(SHARED)
        .runtime(&runtime)
        .vm_id("a")
        .build()
        .unwrap();
    let _first = writer.start().unwrap();
    // A second VM with the same vm_id finds the key already there.
    let second = writer.start().unwrap();
    assert_eq!(result(&second, 0), OK, "visible across VMs with one vm_id");
    let other = guest::builder(SHARED)
        .runtime(&runtime)
        .vm_id("b")
        .build()
        .unwrap()
        .start()
        .unwrap();
    assert_eq!(result(&other, 0), NOT_FOUND, "isolated from another vm_id");
    assert_eq!(
        runtime.shared_data("a", b"key").as_deref(),
        Some(&b"two"[..])
    );
}

#[test]
fn metrics_are_type_tagged_and_follow_envoys_rules() {
    let mut vm = guest::start(
        r#"(data (i32.const 0x400) "requests")
        (data (i32.const 0x410) "inflight")
        (data (i32.const 0x420) "latency")
        (func (export "proxy_on_configure") (param i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_define_metric (i32.const 0) (i32.const 0x400) (i32.const 8) (i32.const 0x20)))
          (call $result (i32.const 1) (call $proxy_define_metric (i32.const 1) (i32.const 0x410) (i32.const 8) (i32.const 0x24)))
          (call $result (i32.const 2) (call $proxy_define_metric (i32.const 2) (i32.const 0x420) (i32.const 7) (i32.const 0x28)))
          (call $result (i32.const 3) (call $proxy_define_metric (i32.const 0) (i32.const 0x400) (i32.const 8) (i32.const 0x2c)))
          (call $result (i32.const 4) (call $proxy_define_metric (i32.const 3) (i32.const 0x400) (i32.const 8) (i32.const 0x2c)))
          (i32.const 1))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 5) (call $proxy_increment_metric (i32.load (i32.const 0x20)) (i64.const 2)))
          (call $result (i32.const 6) (call $proxy_increment_metric (i32.load (i32.const 0x20)) (i64.const -1)))
          (call $result (i32.const 7) (call $proxy_increment_metric (i32.load (i32.const 0x24)) (i64.const -3)))
          (call $result (i32.const 8) (call $proxy_record_metric (i32.load (i32.const 0x28)) (i64.const 17)))
          (call $result (i32.const 9) (call $proxy_record_metric (i32.load (i32.const 0x20)) (i64.const 5)))
          (call $result (i32.const 10) (call $proxy_get_metric (i32.load (i32.const 0x20)) (i32.const 0x30)))
          (call $result (i32.const 11) (call $proxy_get_metric (i32.load (i32.const 0x28)) (i32.const 0x38)))
          (call $result (i32.const 12) (call $proxy_get_metric (i32.const 400) (i32.const 0x38)))
          (call $result (i32.const 13) (call $proxy_increment_metric (i32.load (i32.const 0x28)) (i64.const 1)))
          (i32.const 0))"#,
    );
    let ids: Vec<u32> = [0x20, 0x24, 0x28, 0x2c]
        .iter()
        .map(|a| u32_at(&vm, *a))
        .collect();
    assert_eq!(
        ids,
        [0, 1, 2, 4],
        "low two bits tag the type; ids step by 4"
    );
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    let statuses: Vec<u32> = (0..14).map(|i| result(&vm, i)).collect();
    assert_eq!(
        statuses,
        [
            OK,
            OK,
            OK,
            OK,
            BAD_ARGUMENT,
            OK,
            BAD_ARGUMENT,
            OK,
            OK,
            OK,
            OK,
            BAD_ARGUMENT,
            NOT_FOUND,
            BAD_ARGUMENT
        ]
    );
    assert_eq!(
        u64_at(&vm, 0x30),
        7,
        "2 from increment, 5 from record (adds on a counter)"
    );
    assert_eq!(vm.metric("requests"), Some(Metric::Counter(7)));
    assert_eq!(
        vm.metric("inflight"),
        Some(Metric::Gauge(3u64.wrapping_neg()))
    );
    assert_eq!(vm.metric("latency"), Some(Metric::Histogram(vec![17])));
}
