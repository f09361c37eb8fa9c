//! HTTP callouts: Envoy's argument checks and tokens, answers from mock
//! upstreams on the virtual clock, failures, and a real filter that
//! fetches, caches in shared data, refreshes on a tick and serves from cache
//! while the upstream fails — all deterministic, no sleeps.

use std::time::Duration;

use proxy_wasm_harness::{
    CallOutcome, HeaderMap, HttpResponse, LogLevel, Plugin, Progress, Runtime, Status, Upstream,
};

use crate::guest::{self, get, result, u32_at};

const OK: u32 = Status::Ok as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const INVALID_MEMORY: u32 = Status::InvalidMemoryAccess as u32;

/// Calls `upstream` with the pairs at 0x500 (`:method`, `:path`,
/// `:authority`) and body "ping"; records the callback's arguments.
const CALLER: &str = r#"(data (i32.const 0x400) "svc")
    (data (i32.const 0x410) "nowhere")
    (data (i32.const 0x420) "ping")
    (data (i32.const 0x500) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\01\00\00\00\0a\00\00\00\03\00\00\00:method\00GET\00:path\00/\00:authority\00svc\00")
    (data (i32.const 0x580) "\01\00\00\00\05\00\00\00\01\00\00\00:path\00/\00")
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 0) (call $proxy_http_call (i32.const 0x400) (i32.const 3) (i32.const 0x500) (i32.const 63)
        (i32.const 0x420) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 0x20)))
      (call $result (i32.const 1) (call $proxy_http_call (i32.const 0x410) (i32.const 7) (i32.const 0x500) (i32.const 63)
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0x24)))
      (call $result (i32.const 2) (call $proxy_http_call (i32.const 0x400) (i32.const 3) (i32.const 0x580) (i32.const 20)
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0x24)))
      (call $result (i32.const 3) (call $proxy_http_call (i32.const 0x400) (i32.const 3) (i32.const 0x500) (i32.const 63)
        (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0xFFFFFFF0)))
      (i32.const 1))
    (func (export "proxy_on_http_call_response") (param i32) (param $token i32) (param $headers i32) (param $body i32) (param $trailers i32)
      (call $result (i32.const 4) (local.get $token))
      (call $result (i32.const 5) (local.get $headers))
      (call $result (i32.const 6) (local.get $body))
      (call $result (i32.const 7) (call $proxy_get_status (i32.const 0x30) (i32.const 0x34) (i32.const 0x38)))
      (call $result (i32.const 8) (call $proxy_get_buffer_bytes (i32.const 4) (i32.const 0) (i32.const 100) (i32.const 0x10) (i32.const 0x14)))
      (call $result (i32.const 9) (i32.add (i32.load (i32.const 0x124)) (i32.const 1))))"#;

fn caller(upstream: Upstream) -> proxy_wasm_harness::Vm {
    guest::builder(CALLER)
        .upstream("svc", upstream)
        .build()
        .unwrap()
        .start()
        .unwrap()
}

#[test]
fn http_call_checks_arguments_and_tags_tokens() {
    let mut vm = caller(Upstream::respond(200, [("x-a", "1")], "pong"));
    let progress = vm
        .http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(
        progress,
        Progress::Paused,
        "the guest paused; the answer does not resume it by itself"
    );
    let statuses: Vec<u32> = (0..4).map(|i| result(&vm, i)).collect();
    assert_eq!(
        statuses,
        [OK, BAD_ARGUMENT, BAD_ARGUMENT, INVALID_MEMORY],
        "unknown upstream; missing :method/:authority; bad token pointer"
    );
    assert_eq!(
        u32_at(&vm, 0x20),
        4,
        "the first HTTP token is 4 (kind 0 in the low bits, step 4)"
    );
    let calls = vm.http_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].upstream, "svc");
    assert_eq!(
        calls[0].header("content-length"),
        Some("4"),
        "Envoy sets it for a body"
    );
    assert_eq!(calls[0].body, b"ping");
    assert_eq!(calls[0].timeout, Some(Duration::from_millis(500)));
    // Delivered right after the dispatching callback returned.
    assert_eq!(
        [
            result(&vm, 4),
            result(&vm, 5),
            result(&vm, 6),
            result(&vm, 7),
            result(&vm, 8)
        ],
        [4, 2, 4, OK, OK]
    );
    assert_eq!(guest::returned(&vm), b"pong");
    assert_eq!(vm.callback_count("proxy_on_http_call_response"), 1);
}

#[test]
fn a_reset_arrives_with_zero_headers_and_a_broken_connection_status() {
    let mut vm = caller(Upstream::reset());
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!((result(&vm, 5), result(&vm, 6), result(&vm, 7)), (0, 0, OK));
    assert_eq!(u32_at(&vm, 0x30), 11, "BrokenConnection");
    assert_eq!(
        guest::bytes_at(&vm, u32_at(&vm, 0x34), u32_at(&vm, 0x38)),
        b"reset"
    );
}

#[test]
fn latency_and_timeouts_follow_the_virtual_clock() {
    let mut vm = caller(
        Upstream::respond(200, HeaderMap::new(), "late").with_latency(Duration::from_millis(200)),
    );
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    vm.advance_time(Duration::from_millis(199)).unwrap();
    assert_eq!(result(&vm, 9), 0, "not yet");
    vm.advance_time(Duration::from_millis(1)).unwrap();
    assert_eq!((result(&vm, 9), result(&vm, 6)), (1, 4));

    // Slower than the call's 500 ms timeout: Envoy's async client answers 504.
    let mut vm = caller(
        Upstream::respond(200, HeaderMap::new(), "too late").with_latency(Duration::from_secs(2)),
    );
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    vm.advance_time(Duration::from_millis(500)).unwrap();
    assert_eq!(result(&vm, 9), 1);
    assert_eq!(guest::returned(&vm), b"upstream request timeout");
    vm.advance_time(Duration::from_secs(5)).unwrap();
    assert_eq!(result(&vm, 9), 1, "answered once");
}

#[test]
fn handlers_see_the_call() {
    let upstream = Upstream::handler(|call| {
        CallOutcome::Respond(HttpResponse::new(
            200,
            HeaderMap::new(),
            format!("echo {}", call.header(":path").unwrap_or("?")),
        ))
    });
    let mut vm = caller(upstream);
    vm.http_stream()
        .send_request_headers(get("/"), true)
        .unwrap();
    assert_eq!(guest::returned(&vm), b"echo /");
}

fn cache_plugin(runtime: &Runtime, upstream: Upstream) -> Plugin {
    Plugin::builder(harness_fixtures::CACHE_FILTER)
        .runtime(runtime)
        .vm_id("cache")
        .upstream("docs", upstream)
        .build()
        .unwrap()
}

fn x_doc(vm: &mut proxy_wasm_harness::Vm) -> (Progress, Option<String>) {
    let mut stream = vm.http_stream();
    let progress = stream.send_request_headers(get("/api"), true).unwrap();
    let doc = stream.upstream_request().header("x-doc").map(str::to_owned);
    (progress, doc)
}

#[test]
fn fetch_cache_refresh_and_serve_stale_while_the_upstream_fails() {
    let runtime = Runtime::new().unwrap();
    let plugin = cache_plugin(&runtime, Upstream::respond(200, HeaderMap::new(), "v1"));
    let mut vm = plugin.start().unwrap();

    // The first request waits for the fetch, which completes at once.
    assert_eq!(x_doc(&mut vm), (Progress::Continued, Some("v1".into())));
    assert_eq!(vm.http_calls().len(), 1);
    assert!(vm.has_log(LogLevel::Info, "cached 2 bytes"));
    assert_eq!(
        x_doc(&mut vm),
        (Progress::Continued, Some("v1".into())),
        "served from cache"
    );
    assert_eq!(vm.http_calls().len(), 1);

    // The refresh fails: the cached document keeps being served.
    vm.set_upstream("docs", Upstream::reset());
    vm.advance_time(Duration::from_secs(60)).unwrap();
    assert_eq!(vm.http_calls().len(), 2);
    assert!(
        vm.has_log(LogLevel::Warn, "fetch failed: 11 reset"),
        "{:?}",
        vm.logs()
    );
    assert_eq!(x_doc(&mut vm).1.as_deref(), Some("v1"));

    vm.set_upstream("docs", Upstream::unresponsive());
    vm.advance_time(Duration::from_secs(61)).unwrap();
    assert!(
        vm.has_log(LogLevel::Warn, "fetch failed: status 504"),
        "{:?}",
        vm.logs()
    );
    assert_eq!(x_doc(&mut vm).1.as_deref(), Some("v1"));

    // A slow successful refresh replaces it when it lands.
    vm.set_upstream(
        "docs",
        Upstream::respond(200, HeaderMap::new(), "v2").with_latency(Duration::from_millis(300)),
    );
    vm.advance_time(Duration::from_secs(59)).unwrap();
    assert_eq!(x_doc(&mut vm).1.as_deref(), Some("v1"));
    vm.advance_time(Duration::from_millis(300)).unwrap();
    assert_eq!(x_doc(&mut vm).1.as_deref(), Some("v2"));
    assert_eq!(
        runtime.shared_data("cache", b"doc").as_deref(),
        Some(&b"v2"[..])
    );

    // Another worker VM of the plugin uses the shared cache: no fetch.
    let mut worker = plugin.start().unwrap();
    assert_eq!(x_doc(&mut worker), (Progress::Continued, Some("v2".into())));
    assert!(worker.http_calls().is_empty());
}

#[test]
fn a_request_waiting_for_a_failed_first_fetch_gets_a_503() {
    let mut vm = cache_plugin(&Runtime::new().unwrap(), Upstream::reset())
        .start()
        .unwrap();
    let mut stream = vm.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Responded
    );
    assert_eq!(stream.downstream_response().status(), Some(503));
    assert_eq!(stream.upstream_request().headers, None);
}

#[test]
fn a_deferred_call_waits_for_the_driver_and_is_answered_once() {
    let runtime = Runtime::new().unwrap();
    let mut vm = cache_plugin(&runtime, Upstream::deferred())
        .start()
        .unwrap();
    let mut stream = vm.http_stream();
    let id = stream.id();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Paused
    );
    // Virtual time alone never answers a deferred call (no 504 either).
    vm.advance_time(Duration::from_secs(30)).unwrap();
    let token = vm.http_calls()[0].token;
    assert_eq!(vm.stream(id).unwrap().upstream_request().headers, None);

    let answer = CallOutcome::Respond(HttpResponse::new(200, HeaderMap::new(), "live"));
    vm.answer_http_call(token, answer.clone()).unwrap();
    let stream = vm.stream(id).unwrap();
    assert_eq!(stream.upstream_request().header("x-doc"), Some("live"));
    assert!(stream.upstream_request().complete);

    let again = vm.answer_http_call(token, answer).unwrap_err();
    assert!(
        again.to_string().contains("no deferred HTTP call"),
        "{again}"
    );
    let unknown = vm.answer_http_call(999, CallOutcome::Reset).unwrap_err();
    assert!(unknown.to_string().contains("token 999"), "{unknown}");
}

#[test]
fn a_vm_started_at_a_given_time_reads_that_clock() {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let vm = cache_plugin(&Runtime::new().unwrap(), Upstream::reset())
        .start_at(at)
        .unwrap();
    assert_eq!(vm.now(), at);
}
