//! Shared queues across VMs, foreign functions, accounting and leak checks.

use proxy_wasm_harness::{Plugin, Runtime, Status};

use crate::guest::{self, get, result, u32_at};

const OK: u32 = Status::Ok as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const EMPTY: u32 = Status::Empty as u32;

/// Registers queue "jobs" at configure; on request headers enqueues "job"
/// onto the queue of vm_id "consumer" (resolved); on queue ready dequeues.
const QUEUES: &str = r#"(data (i32.const 0x400) "jobs")
    (data (i32.const 0x410) "consumer")
    (data (i32.const 0x420) "job-1")
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (call $result (i32.const 0) (call $proxy_register_shared_queue (i32.const 0x400) (i32.const 4) (i32.const 0x20)))
      (call $result (i32.const 1) (call $proxy_dequeue_shared_queue (i32.load (i32.const 0x20)) (i32.const 0x10) (i32.const 0x14)))
      (call $result (i32.const 2) (call $proxy_enqueue_shared_queue (i32.const 999) (i32.const 0x420) (i32.const 5)))
      (call $result (i32.const 3) (call $proxy_resolve_shared_queue (i32.const 0x410) (i32.const 4) (i32.const 0x400) (i32.const 4) (i32.const 0x24)))
      (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 4) (call $proxy_resolve_shared_queue (i32.const 0x410) (i32.const 8) (i32.const 0x400) (i32.const 4) (i32.const 0x24)))
      (call $result (i32.const 5) (call $proxy_enqueue_shared_queue (i32.load (i32.const 0x24)) (i32.const 0x420) (i32.const 5)))
      (i32.const 0))
    (func (export "proxy_on_queue_ready") (param i32) (param $token i32)
      (call $result (i32.const 6) (local.get $token))
      (call $result (i32.const 7) (call $proxy_dequeue_shared_queue (local.get $token) (i32.const 0x10) (i32.const 0x14)))
      (call $result (i32.const 8) (i32.add (i32.load (i32.const 0x120)) (i32.const 1))))"#;

#[test]
fn queues_deliver_to_the_registering_vm_after_the_enqueuing_call() {
    let runtime = Runtime::new().unwrap();
    let consumer = guest::builder(QUEUES)
        .runtime(&runtime)
        .vm_id("consumer")
        .build()
        .unwrap();
    let mut consumer = consumer.start().unwrap();
    let statuses: Vec<u32> = (0..4).map(|i| result(&consumer, i)).collect();
    assert_eq!(statuses, [OK, EMPTY, NOT_FOUND, NOT_FOUND]);
    let token = u32_at(&consumer, 0x20);
    assert_ne!(token, 0, "queue tokens are never 0");

    // A VM of another plugin (another vm_id) resolves and enqueues.
    let mut producer = guest::builder(QUEUES)
        .runtime(&runtime)
        .vm_id("producer")
        .build()
        .unwrap()
        .start()
        .unwrap();
    producer
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!((result(&producer, 4), result(&producer, 5)), (OK, OK));
    assert_eq!(
        result(&producer, 8),
        0,
        "not told: it did not register that queue"
    );
    assert_eq!(
        result(&consumer, 8),
        0,
        "delivered when the consumer's VM next runs"
    );
    consumer.advance_time(std::time::Duration::ZERO).unwrap();
    assert_eq!(
        (
            result(&consumer, 6),
            result(&consumer, 7),
            result(&consumer, 8)
        ),
        (token, OK, 1)
    );
    assert_eq!(guest::returned(&consumer), b"job-1");

    // Enqueuing onto its own queue: told after the callback returns.
    consumer
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(result(&consumer, 8), 2);
}

#[test]
fn registered_foreign_functions_answer_and_unknown_ones_are_not_found() {
    let plugin = guest::builder(
        r#"(data (i32.const 0x400) "reverse")
        (data (i32.const 0x410) "fail")
        (data (i32.const 0x420) "abc")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (call $result (i32.const 0) (call $proxy_call_foreign_function (i32.const 0x400) (i32.const 7) (i32.const 0x420) (i32.const 3) (i32.const 0x10) (i32.const 0x14)))
          (call $result (i32.const 1) (call $proxy_call_foreign_function (i32.const 0x410) (i32.const 4) (i32.const 0x420) (i32.const 3) (i32.const 0x18) (i32.const 0x1c)))
          (i32.const 0))"#,
    )
    .foreign_function("reverse", |args| Ok(args.iter().rev().copied().collect()))
    .foreign_function("fail", |_| Err(Status::SerializationFailure))
    .build()
    .unwrap();
    let mut vm = plugin.start().unwrap();
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(
        (result(&vm, 0), result(&vm, 1)),
        (OK, Status::SerializationFailure as u32)
    );
    assert_eq!(guest::returned(&vm), b"cba");
}

fn run_requests(vm: &mut proxy_wasm_harness::Vm, n: usize) {
    for _ in 0..n {
        let mut stream = vm.http_stream();
        stream.send_request_headers(get("/"), true).unwrap();
        stream
            .send_response_headers([(":status", "200")], true)
            .unwrap();
        stream.finish().unwrap();
    }
}

fn pages_after(plugin: &Plugin, warm_up: usize, requests: usize) -> (u64, u64) {
    let mut vm = plugin.start().unwrap();
    run_requests(&mut vm, warm_up);
    let before = vm.memory_pages();
    run_requests(&mut vm, requests);
    (before, vm.memory_pages())
}

#[test]
fn no_linear_memory_growth_over_ten_thousand_requests_and_a_leak_is_caught() {
    let minimal = Plugin::builder(harness_fixtures::MINIMAL_FILTER)
        .build()
        .unwrap();
    let (before, after) = pages_after(&minimal, 100, 10_000);
    assert_eq!(
        before, after,
        "a filter that frees what it allocates keeps its memory size"
    );

    let leaky = Plugin::builder(harness_fixtures::LEAKY_FILTER)
        .build()
        .unwrap();
    let (before, after) = pages_after(&leaky, 100, 1_000);
    assert!(
        after >= before + 60,
        "4 KiB a request over 1000 requests: {before} -> {after} pages"
    );
}

#[test]
fn callback_counts() {
    let mut vm = Plugin::builder(harness_fixtures::MINIMAL_FILTER)
        .build()
        .unwrap()
        .start()
        .unwrap();
    for _ in 0..3 {
        let mut stream = vm.http_stream();
        stream.send_request_headers(get("/"), true).unwrap();
        stream.finish().unwrap();
    }
    assert_eq!(vm.callback_count("proxy_on_request_headers"), 3);
    assert_eq!(vm.callback_count("proxy_on_response_headers"), 0);
    assert_eq!(vm.callback_count("proxy_on_configure"), 1);
}
