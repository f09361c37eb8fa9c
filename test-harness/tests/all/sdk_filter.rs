//! A stock proxy-wasm 0.2.5 Rust filter (the fixture), tested through the
//! Rust API with plain state assertions, as users test theirs.

use std::sync::OnceLock;
use std::time::Duration;

use proxy_wasm_harness::{ErrorKind, LogLevel, Plugin, Progress};

fn plugin() -> &'static Plugin {
    static PLUGIN: OnceLock<Plugin> = OnceLock::new();
    PLUGIN.get_or_init(|| {
        Plugin::builder(harness_fixtures::SDK_FILTER)
            .configuration(r#"{"mode":"test"}"#)
            .vm_configuration("vm-1")
            .property("xds.route_name", "orders")
            .build()
            .expect("the fixture filter loads")
    })
}

pub(crate) fn request(path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), "shop.example".to_owned()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    headers
}

#[test]
fn headers_logs_and_properties_of_a_plain_request() {
    let mut vm = plugin().start().unwrap();
    assert!(vm.has_log(LogLevel::Info, "vm_start: vm-1"));
    assert!(vm.has_log(LogLevel::Info, r#"configured: {"mode":"test"}"#));
    assert_eq!(vm.tick_period(), Some(Duration::from_secs(1)));

    let mut stream = vm.http_stream();
    let id = stream.id();
    assert_eq!(
        stream
            .send_request_headers(request("/orders/7", &[]), true)
            .unwrap(),
        Progress::Continued
    );
    let upstream = stream.upstream_request();
    assert_eq!(
        upstream.header("x-fixture-seen"),
        Some(id.to_string().as_str())
    );
    assert_eq!(upstream.header("x-route-name"), Some("orders"));
    assert!(upstream.complete);
    assert_eq!(
        stream.property("fixture.path").as_deref(),
        Some(&b"/orders/7"[..])
    );

    assert_eq!(
        stream
            .send_response_headers([(":status", "200")], true)
            .unwrap(),
        Progress::Continued
    );
    assert_eq!(
        stream.downstream_response().header("x-fixture-response"),
        Some("200")
    );
    let exchange = stream.finish().unwrap();
    assert_eq!(exchange.downstream_response.status(), Some(200));
    assert!(vm.has_log(LogLevel::Info, "request GET /orders/7"));
    assert!(
        vm.has_log(LogLevel::Info, "done 200 orders"),
        "{:?}",
        vm.logs()
    );
}

#[test]
fn a_local_reply_skips_the_upstream_and_runs_the_response_path() {
    let mut vm = plugin().start().unwrap();
    let mut stream = vm.http_stream();
    let progress = stream
        .send_request_headers(request("/admin", &[("x-fixture-deny", "1")]), false)
        .unwrap();
    assert_eq!(progress, Progress::Responded);
    assert_eq!(
        stream.upstream_request().headers,
        None,
        "nothing reached the upstream"
    );
    // The request body still arriving is dropped, and a late upstream
    // response is ignored.
    assert_eq!(
        stream.send_request_body("ignored", true).unwrap(),
        Progress::Responded
    );
    assert_eq!(
        stream
            .send_response_headers([(":status", "200")], true)
            .unwrap(),
        Progress::Responded
    );

    let reply = stream.local_response().unwrap().clone();
    assert_eq!(
        (reply.status, reply.body.as_slice(), reply.grpc_status),
        (403, &b"denied"[..], None)
    );
    let client = stream.downstream_response();
    assert_eq!(client.status(), Some(403));
    assert_eq!(client.header("x-denied-by"), Some("fixture"));
    assert_eq!(client.header("content-length"), Some("6"));
    assert_eq!(
        client.header("x-fixture-response"),
        Some("403"),
        "the response callback ran on the local reply"
    );
    assert_eq!(client.body_text(), "denied");
    assert!(client.complete);
}

#[test]
fn a_paused_request_moves_on_only_when_the_filter_continues_it() {
    let mut vm = plugin().start().unwrap();
    let mut stream = vm.http_stream();
    let id = stream.id();
    assert_eq!(
        stream
            .send_request_headers(request("/slow", &[("x-fixture-pause", "1")]), false)
            .unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("part", true).unwrap(),
        Progress::Paused
    );
    assert_eq!(stream.upstream_request().headers, None);
    // The fixture resumes paused streams from its 1 s tick, through
    // proxy_set_effective_context + proxy_continue_stream.
    vm.advance_time(Duration::from_millis(999)).unwrap();
    assert_eq!(vm.stream(id).unwrap().upstream_request().headers, None);
    vm.advance_time(Duration::from_millis(1)).unwrap();
    let stream = vm.stream(id).unwrap();
    let upstream = stream.upstream_request();
    assert_eq!(upstream.header(":path"), Some("/slow"));
    assert_eq!(upstream.body, b"part");
    assert!(upstream.complete);
}

#[test]
fn a_body_paused_in_its_callback_is_buffered_then_rewritten() {
    let mut vm = plugin().start().unwrap();
    let mut stream = vm.http_stream();
    let headers = request(
        "/upload",
        &[("x-fixture-upper", "1"), ("content-length", "11")],
    );
    stream.send_request_headers(headers, false).unwrap();
    assert_eq!(
        stream.send_request_body("hello ", false).unwrap(),
        Progress::Paused
    );
    assert!(
        stream.upstream_request().body.is_empty(),
        "buffered at the filter"
    );
    assert_eq!(
        stream.send_request_body("world", true).unwrap(),
        Progress::Continued
    );
    let upstream = stream.upstream_request();
    assert_eq!(upstream.body, b"HELLO WORLD");
    assert_eq!(
        upstream.header("content-length"),
        None,
        "the filter dropped it before changing the body"
    );
    assert_eq!(upstream.content_length_mismatch(), None);
}

#[test]
fn removing_a_header_the_client_sent() {
    let mut vm = plugin().start().unwrap();
    let mut stream = vm.http_stream();
    stream
        .send_request_headers(
            request(
                "/",
                &[
                    ("x-fixture-remove", "authorization"),
                    ("authorization", "secret"),
                ],
            ),
            true,
        )
        .unwrap();
    assert_eq!(stream.upstream_request().header("authorization"), None);
}

#[test]
fn a_rejected_configuration_fails_start_with_the_plugins_log() {
    let err = Plugin::load(harness_fixtures::SDK_FILTER, "reject")
        .unwrap()
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConfigurationRejected, "{err}");
    assert!(
        err.to_string().contains("rejecting configuration: reject"),
        "{err}"
    );
}

#[test]
fn a_panic_is_a_trap_with_its_message_and_the_vm_is_retired() {
    let mut vm = plugin().start().unwrap();
    let err = vm
        .http_stream()
        .send_request_headers(request("/", &[("x-fixture-panic", "1")]), true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_request_headers"));
    assert!(
        err.panic_message()
            .unwrap_or_default()
            .contains("fixture panic requested"),
        "{err}"
    );
    let again = vm
        .http_stream()
        .send_request_headers(request("/", &[]), true)
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Poisoned, "{again}");
    // Another VM of the same plugin is unaffected.
    let mut fresh = plugin().start().unwrap();
    assert_eq!(
        fresh
            .http_stream()
            .send_request_headers(request("/", &[]), true)
            .unwrap(),
        Progress::Continued
    );
}

#[test]
fn a_non_utf8_header_value_crashes_the_sdk_getter_as_it_would_in_envoy() {
    let mut vm = plugin().start().unwrap();
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":path", b"/\xff\xfe"),
        (b":authority", b"shop.example"),
    ];
    let err = vm
        .http_stream()
        .send_request_headers(headers, true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap, "{err}");
    assert!(err.to_string().to_lowercase().contains("utf"), "{err}");
}

#[test]
fn an_endless_loop_in_a_real_filter_is_interrupted() {
    let plugin = Plugin::builder(harness_fixtures::SDK_FILTER)
        .callback_deadline(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut vm = plugin.start().unwrap();
    let err = vm
        .http_stream()
        .send_request_headers(request("/", &[("x-fixture-loop", "1")]), true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}

#[test]
fn a_huge_allocation_hits_the_memory_limit() {
    let plugin = Plugin::builder(harness_fixtures::SDK_FILTER)
        .memory_limit(64 << 20)
        .build()
        .unwrap();
    let mut vm = plugin.start().unwrap();
    let err = vm
        .http_stream()
        .send_request_headers(request("/", &[("x-fixture-alloc", "200000000")]), true)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");
    assert_eq!(err.memory().map(|(_, limit)| limit), Some(64 << 20));
    assert!(
        err.panic_message()
            .unwrap_or_default()
            .contains("memory allocation"),
        "{err}"
    );
}

#[test]
fn vms_of_one_plugin_run_in_parallel_and_stay_independent() {
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut vm = plugin().start().unwrap();
                for i in 0..50 {
                    let mut stream = vm.http_stream();
                    assert_eq!(stream.id(), 2 + i, "context ids are per VM");
                    let path = format!("/t{t}/r{i}");
                    stream
                        .send_request_headers(request(&path, &[]), true)
                        .unwrap();
                    assert_eq!(stream.property("fixture.path"), Some(path.into_bytes()));
                    stream
                        .send_response_headers([(":status", "204")], true)
                        .unwrap();
                    stream.finish().unwrap();
                }
                vm.logs().len()
            })
        })
        .collect();
    for thread in threads {
        // vm_start + configured, then request + done per stream
        assert_eq!(thread.join().unwrap(), 2 + 2 * 50);
    }
}
