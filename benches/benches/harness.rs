//! Harness overhead: VM start, one full request lifecycle of a minimal
//! header filter, and the cost of a host call.
//!
//! `cargo bench -p proxy-wasm-benches --bench harness`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use proxy_wasm_harness::{Plugin, Runtime};

const REQUEST: [(&str, &str); 4] = [
    (":method", "GET"),
    (":path", "/bench"),
    (":authority", "bench.local"),
    (":scheme", "http"),
];

fn minimal(runtime: &Runtime) -> Plugin {
    Plugin::builder(harness_fixtures::MINIMAL_FILTER)
        .runtime(runtime)
        .configuration("{}")
        .build()
        .expect("minimal fixture loads")
}

/// Instantiate + `_initialize` + root context + vm_start + configure.
fn vm_start(c: &mut Criterion) {
    let mut group = c.benchmark_group("vm_start");
    let on_demand = minimal(&Runtime::new().unwrap());
    group.bench_function("minimal/on_demand", |b| {
        b.iter(|| black_box(on_demand.start().unwrap()))
    });
    let pooled = minimal(&Runtime::with_pooling(16).unwrap());
    group.bench_function("minimal/pooling", |b| {
        b.iter(|| black_box(pooled.start().unwrap()))
    });
    group.finish();
}

/// Context create, request headers, response headers, log, done, delete.
fn lifecycle(c: &mut Criterion) {
    let plugin = minimal(&Runtime::new().unwrap());
    let mut vm = plugin.start().unwrap();
    c.bench_function("lifecycle/minimal", |b| {
        b.iter(|| {
            let mut stream = vm.http_stream();
            stream.send_request_headers(REQUEST, true).unwrap();
            stream
                .send_response_headers([(":status", "200")], true)
                .unwrap();
            black_box(stream.finish().unwrap())
        })
    });
}

/// A guest that makes 1000 host calls from one callback; the per-call cost
/// is the time divided by 1000.
fn host_calls(c: &mut Criterion) {
    let guest = |call: &str| {
        format!(
            r#"(module
          (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
          (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          (global $heap (mut i32) (i32.const 0x1000))
          (data (i32.const 0x400) ":path")
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
            ;; reuse one region: the guest never frees
            (i32.const 0x1000))
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (local $i i32)
            (loop $again
              {call}
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
            (i32.const 0)))"#
        )
    };
    let mut group = c.benchmark_group("host_call_x1000");
    for (name, call) in [
        ("get_current_time", "(drop (call $time (i32.const 0x10)))"),
        (
            "get_header_map_value",
            "(drop (call $get (i32.const 0) (i32.const 0x400) (i32.const 5) (i32.const 0x10) (i32.const 0x14)))",
        ),
    ] {
        let plugin = Plugin::builder_from_bytes(guest(call)).build().unwrap();
        let mut vm = plugin.start().unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut stream = vm.http_stream();
                stream.send_request_headers(REQUEST, true).unwrap();
                black_box(stream.finish().unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, vm_start, lifecycle, host_calls);
criterion_main!(benches);
