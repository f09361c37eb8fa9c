//! A VM that failed, as Envoy 1.40 treats it under each `failure_policy`
//! (measured: test-harness/scenarios/failure-policy/ compares the same in
//! a real Envoy).

use std::time::Duration;

use proxy_wasm_harness::{ErrorKind, FailurePolicy, LogLevel, Plugin, Progress, Vm};

fn vm(policy: FailurePolicy) -> Vm {
    Plugin::builder(harness_fixtures::SDK_FILTER)
        .failure_policy(policy)
        .seed(7)
        .build()
        .expect("the fixture filter loads")
        .start()
        .expect("it starts")
}

/// A GET of `/` with `extra` headers.
fn request(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    crate::sdk_filter::request("/", extra)
}

/// Sends a request without a body and returns the status the client got
/// (0: the request went upstream) and whether the upstream got it.
fn status(vm: &mut Vm, extra: &[(&str, &str)]) -> (u32, bool) {
    let mut stream = vm.http_stream();
    let progress = stream
        .send_request_headers(request(extra), true)
        .expect("a failure is the policy's, not the test's error");
    let reply = stream.local_response().map(|r| r.status);
    let upstream = stream.upstream_request().headers.is_some();
    assert_eq!(progress == Progress::Responded, reply.is_some());
    (reply.unwrap_or(0), upstream)
}

const PANIC: &[(&str, &str)] = &[("x-fixture-panic", "1")];

#[test]
fn the_request_that_traps_gets_a_503_under_every_policy() {
    for policy in [
        FailurePolicy::FailClosed,
        FailurePolicy::FailOpen,
        FailurePolicy::FailReload,
    ] {
        let mut vm = vm(policy);
        assert_eq!(status(&mut vm, &[]), (0, true), "{policy:?}");
        let mut stream = vm.http_stream();
        stream.send_request_headers(request(PANIC), true).unwrap();
        let reply = stream.local_response().cloned().expect("a local reply");
        assert_eq!(
            (reply.status, reply.details.as_str(), reply.body.len()),
            (503, "wasm_fail_stream", 0),
            "{policy:?}"
        );
        let exchange = stream.finish().unwrap();
        assert!(!exchange.reset, "{policy:?}");
        assert!(
            exchange.downstream_response.complete,
            "{policy:?} {exchange:?}"
        );
        assert_eq!(exchange.downstream_response.status(), Some(503));
        let failure = vm.failure().expect("the VM failed");
        assert!(failure.contains("fixture panic requested"), "{failure}");
    }
}

#[test]
fn fail_closed_answers_every_later_request_503_and_runs_no_plugin_code() {
    let mut vm = vm(FailurePolicy::FailClosed);
    status(&mut vm, PANIC);
    let before = vm.callback_count("proxy_on_request_headers");
    vm.take_logs();
    for _ in 0..3 {
        assert_eq!(status(&mut vm, &[]), (503, false));
    }
    vm.advance_time(Duration::from_secs(5)).unwrap();
    assert_eq!(status(&mut vm, &[]), (503, false));
    assert_eq!(vm.callback_count("proxy_on_request_headers"), before);
    assert!(vm.logs().is_empty(), "{:?}", vm.logs());
    assert_eq!(vm.reloads(), 0);
}

#[test]
fn fail_open_skips_the_filter_for_later_requests() {
    let mut vm = vm(FailurePolicy::FailOpen);
    status(&mut vm, PANIC);
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(request(&[("x-fixture-deny", "1")]), true)
        .unwrap();
    // Neither the deny nor the header the filter adds: it never ran.
    let sent = stream.upstream_request().clone();
    assert!(sent.complete);
    assert_eq!(sent.header("x-fixture-seen"), None);
    assert_eq!(sent.header("x-fixture-deny"), Some("1"));
}

#[test]
fn fail_reload_starts_a_new_vm_once_the_back_off_since_the_last_load_elapsed() {
    let mut vm = vm(FailurePolicy::FailReload);
    vm.set_property("fixture.kept", "yes");
    status(&mut vm, PANIC);
    // The back-off is drawn in [1 s, 1.5 s) since the VM was loaded.
    vm.advance_time(Duration::from_millis(900)).unwrap();
    assert_eq!(status(&mut vm, &[]), (503, false));
    assert_eq!(vm.reloads(), 0);
    vm.advance_time(Duration::from_millis(700)).unwrap();
    vm.take_logs();
    assert_eq!(status(&mut vm, &[]), (0, true));
    assert_eq!(vm.reloads(), 1);
    assert!(vm.failure().is_none());
    // The new VM started as Envoy starts one, and kept what the test set.
    assert!(vm.has_log(LogLevel::Info, "configured:"));
    assert_eq!(vm.property("fixture.kept").as_deref(), Some(&b"yes"[..]));
    // It is a VM like any other: it fails and reloads again.
    status(&mut vm, PANIC);
    assert_eq!(status(&mut vm, &[]), (503, false));
    vm.advance_time(Duration::from_millis(1500)).unwrap();
    assert_eq!(status(&mut vm, &[]), (0, true));
    assert_eq!(vm.reloads(), 2);
}

#[test]
fn a_base_interval_sets_the_back_off() {
    let mut vm = Plugin::builder(harness_fixtures::SDK_FILTER)
        .failure_policy(FailurePolicy::FailReload)
        .reload_base_interval(Duration::from_millis(100))
        .build()
        .unwrap()
        .start()
        .unwrap();
    status(&mut vm, PANIC);
    vm.advance_time(Duration::from_millis(150)).unwrap();
    assert_eq!(status(&mut vm, &[]), (0, true));
}

// Without a policy a trap stays the test's error: `sdk_filter`'s
// `a_panic_is_a_trap_with_its_message_and_the_vm_is_retired`.

#[test]
fn a_failure_while_the_vm_starts_is_refused_whatever_the_policy() {
    let err = Plugin::builder(harness_fixtures::SDK_FILTER)
        .configuration("trap")
        .failure_policy(FailurePolicy::FailOpen)
        .build()
        .unwrap()
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
}
