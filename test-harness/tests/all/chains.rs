//! Filter chains: several plugins on one stream, with Envoy's filter-manager
//! rules for order, pauses, local replies and resets in the middle of a
//! chain, and filter state shared by the chain's filters.

use std::time::Duration;

use proxy_wasm_harness::{Chain, Progress, Vm};

use crate::guest::{self, get, result, returned};

const CONTINUE: &str = "(i32.const 0)";
/// Pauses; the filter's tick (every 10 ms) continues the stream.
const PAUSE: &str = "(i32.store (i32.const 0x60) (local.get $ctx)) (i32.const 1)";
/// Answers 403 "denied".
const REPLY: &str =
    "(drop (call $proxy_send_local_response (i32.const 403) (i32.const 0) (i32.const 0)
      (i32.const 0x440) (i32.const 6) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1)";
/// Resets the stream.
const RESET: &str = "(drop (call $proxy_close_stream (i32.const 0))) (i32.const 1)";

/// A filter named `tag` (one letter): it appends `x-via: <tag>` to request
/// headers and `x-resp-via: <tag>` to response headers, counts its request
/// headers (slot 0), response headers (slot 1), `proxy_on_log` (slot 2) and
/// stream contexts (slot 3) calls, then does `on_request` /
/// `on_response` (each ends with the action returned).
fn tagger(tag: &str, on_request: &str, on_response: &str) -> Vm {
    guest::start(&format!(
        r#"(data (i32.const 0x400) "x-via")
    (data (i32.const 0x410) "{tag}")
    (data (i32.const 0x420) "x-resp-via")
    (data (i32.const 0x440) "denied")
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
      (drop (call $proxy_set_tick_period_milliseconds (i32.const 10)))
      (i32.const 1))
    (func (export "proxy_on_tick") (param i32)
      (if (i32.load (i32.const 0x60)) (then
        (drop (call $proxy_set_effective_context (i32.load (i32.const 0x60))))
        (drop (call $proxy_continue_stream (i32.const 0)))
        (i32.store (i32.const 0x60) (i32.const 0)))))
    (func (export "proxy_on_context_create") (param $ctx i32) (param $root i32)
      (if (local.get $root) (then
        (call $result (i32.const 3) (i32.add (i32.load (i32.const 0x10C)) (i32.const 1))))))
    (func (export "proxy_on_request_headers") (param $ctx i32) (param i32) (param i32) (result i32)
      (call $result (i32.const 0) (i32.add (i32.load (i32.const 0x100)) (i32.const 1)))
      (drop (call $proxy_add_header_map_value (i32.const 0) (i32.const 0x400) (i32.const 5) (i32.const 0x410) (i32.const 1)))
      {on_request})
    (func (export "proxy_on_response_headers") (param $ctx i32) (param i32) (param i32) (result i32)
      (call $result (i32.const 1) (i32.add (i32.load (i32.const 0x104)) (i32.const 1)))
      (drop (call $proxy_add_header_map_value (i32.const 2) (i32.const 0x420) (i32.const 10) (i32.const 0x410) (i32.const 1)))
      {on_response})
    (func (export "proxy_on_log") (param i32)
      (call $result (i32.const 2) (i32.add (i32.load (i32.const 0x108)) (i32.const 1))))"#
    ))
}

/// (request headers, response headers, on_log, contexts) calls of VM `k`.
fn calls(chain: &Chain, k: usize) -> [u32; 4] {
    let vm = chain.vm(k).unwrap();
    [0, 1, 2, 3].map(|slot| result(vm, slot))
}

fn values<'a>(map: Option<&'a proxy_wasm_harness::HeaderMap>, name: &str) -> Vec<&'a [u8]> {
    map.map(|m| m.get_all(name)).unwrap_or_default()
}

#[test]
fn requests_run_first_to_last_and_responses_last_to_first() {
    let mut chain = Chain::new([
        tagger("a", CONTINUE, CONTINUE),
        tagger("b", CONTINUE, CONTINUE),
        tagger("c", CONTINUE, CONTINUE),
    ])
    .unwrap();
    let mut stream = chain.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Continued
    );
    assert_eq!(
        values(stream.upstream_request().headers.as_ref(), "x-via"),
        [b"a", b"b", b"c"]
    );
    stream
        .send_response_headers([(":status", "200")], true)
        .unwrap();
    assert_eq!(
        values(stream.downstream_response().headers.as_ref(), "x-resp-via"),
        [b"c", b"b", b"a"]
    );
    let exchange = stream.finish().unwrap();
    assert!(exchange.upstream_request.complete && exchange.downstream_response.complete);
    for k in 0..3 {
        assert_eq!(calls(&chain, k), [1, 1, 1, 1], "filter {k}");
    }
}

#[test]
fn a_filter_that_pauses_holds_everything_behind_it() {
    let mut chain = Chain::new([
        tagger("a", CONTINUE, CONTINUE),
        tagger("b", PAUSE, CONTINUE),
        tagger("c", CONTINUE, CONTINUE),
    ])
    .unwrap();
    let mut stream = chain.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), false).unwrap(),
        Progress::Paused
    );
    assert_eq!(
        stream.send_request_body("abc", true).unwrap(),
        Progress::Paused
    );
    assert_eq!(stream.upstream_request().headers, None);
    assert_eq!(
        stream.chain_vm(2).map(|vm| result(vm, 3)),
        Some(0),
        "the filter behind the pause has no context yet"
    );
    stream.advance_time(Duration::from_millis(10)).unwrap();
    let upstream = stream.upstream_request().clone();
    assert_eq!(
        values(upstream.headers.as_ref(), "x-via"),
        [b"a", b"b", b"c"]
    );
    assert_eq!(
        (upstream.body.as_slice(), upstream.complete),
        (&b"abc"[..], true)
    );
    let id = stream.id();
    drop(stream);
    let stream = chain.stream(id).expect("still open");
    stream.finish().unwrap();
    assert_eq!(calls(&chain, 2), [1, 0, 1, 1]);
}

#[test]
fn a_local_reply_mid_chain_skips_later_filters_and_runs_earlier_response_paths() {
    let mut chain = Chain::new([
        tagger("a", CONTINUE, CONTINUE),
        tagger("b", REPLY, CONTINUE),
        tagger("c", CONTINUE, CONTINUE),
    ])
    .unwrap();
    let mut stream = chain.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Responded
    );
    assert_eq!(stream.upstream_request().headers, None);
    assert_eq!(stream.local_responder(), Some(1));
    let client = stream.downstream_response().clone();
    assert_eq!(client.status(), Some(403));
    assert_eq!(client.body_text(), "denied");
    // The reply starts at the last filter; `c` never saw the request, so
    // Envoy skips it; `b` and then `a` run their response callbacks.
    assert_eq!(values(client.headers.as_ref(), "x-resp-via"), [b"b", b"a"]);
    // The upstream's response never comes.
    assert_eq!(
        stream
            .send_response_headers([(":status", "200")], true)
            .unwrap(),
        Progress::Responded
    );
    let exchange = stream.finish().unwrap();
    assert_eq!(exchange.local_response.map(|r| r.status), Some(403));
    assert_eq!(calls(&chain, 0), [1, 1, 1, 1]);
    assert_eq!(calls(&chain, 1), [1, 1, 1, 1]);
    assert_eq!(calls(&chain, 2), [0, 0, 0, 0], "no context, no log");
}

#[test]
fn a_local_reply_once_the_upstream_answered_replaces_its_response() {
    let mut chain = Chain::new([
        tagger("a", CONTINUE, CONTINUE),
        tagger("b", CONTINUE, REPLY),
        tagger("c", CONTINUE, CONTINUE),
    ])
    .unwrap();
    let mut stream = chain.http_stream();
    stream.send_request_headers(get("/"), true).unwrap();
    assert_eq!(
        stream
            .send_response_headers([(":status", "200")], false)
            .unwrap(),
        Progress::Responded
    );
    let client = stream.downstream_response().clone();
    assert_eq!((client.status(), client.complete), (Some(403), true));
    assert!(
        values(client.headers.as_ref(), "x-resp-via").is_empty(),
        "sent directly, past the filters"
    );
    stream.finish().unwrap();
    assert_eq!(calls(&chain, 0)[1], 0, "`a` never saw a response");
}

#[test]
fn a_local_reply_after_response_headers_went_out_resets_the_stream() {
    let mut vm = guest::start(
        r#"(func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
          (drop (call $proxy_send_local_response (i32.const 500) (i32.const 0) (i32.const 0)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
          (i32.const 0))"#,
    );
    let mut stream = vm.http_stream();
    stream.send_request_headers(get("/"), true).unwrap();
    stream
        .send_response_headers([(":status", "200")], false)
        .unwrap();
    assert_eq!(stream.downstream_response().status(), Some(200));
    assert_eq!(
        stream.send_response_body("partial", false).unwrap(),
        Progress::Reset
    );
    let exchange = stream.finish().unwrap();
    assert!(exchange.reset);
    assert!(!exchange.downstream_response.complete);
}

#[test]
fn a_reset_mid_chain_resets_every_filter() {
    let mut chain = Chain::new([
        tagger("a", CONTINUE, CONTINUE),
        tagger("b", RESET, CONTINUE),
        tagger("c", CONTINUE, CONTINUE),
    ])
    .unwrap();
    let mut stream = chain.http_stream();
    assert_eq!(
        stream.send_request_headers(get("/"), true).unwrap(),
        Progress::Reset
    );
    assert_eq!(stream.upstream_request().headers, None);
    let exchange = stream.finish().unwrap();
    assert!(exchange.reset);
    // Envoy still logs the stream in the filters that saw it.
    assert_eq!(calls(&chain, 0)[2], 1);
    assert_eq!(calls(&chain, 2), [0, 0, 0, 0]);
}

/// Sets property `shared_k` = "v1" on its request headers (one segment:
/// Envoy reads filter state back by a path's first segment only).
const SETTER: &str = r#"(data (i32.const 0x480) "shared_k")
    (data (i32.const 0x490) "v1")
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 0) (call $proxy_set_property (i32.const 0x480) (i32.const 8) (i32.const 0x490) (i32.const 2)))
      (i32.const 0))"#;

/// Reads property `shared_k` on its request headers; in `proxy_on_log`
/// reads request header `x-late`, which only a later filter adds.
const READER: &str = r#"(data (i32.const 0x480) "shared_k")
    (data (i32.const 0x4a0) "x-late")
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $result (i32.const 1) (call $proxy_get_property (i32.const 0x480) (i32.const 8) (i32.const 0x10) (i32.const 0x14)))
      (i32.const 0))
    (func (export "proxy_on_log") (param i32)
      (call $result (i32.const 2) (call $proxy_get_header_map_value (i32.const 0) (i32.const 0x4a0) (i32.const 6) (i32.const 0x18) (i32.const 0x1c))))"#;

#[test]
fn filter_state_and_header_maps_are_shared_along_the_chain() {
    let late = tagger_adding_x_late();
    let mut chain = Chain::new([
        guest::start(READER),
        guest::start(SETTER),
        guest::start(READER),
        late,
    ])
    .unwrap();
    let mut stream = chain.http_stream();
    stream.send_request_headers(get("/"), true).unwrap();
    assert_eq!(stream.property("shared_k"), Some(b"v1".to_vec()));
    stream.finish().unwrap();
    let first = chain.vm(0).unwrap();
    assert_eq!(result(first, 1), 1, "not set yet when the first filter ran");
    let third = chain.vm(2).unwrap();
    assert_eq!(result(third, 1), 0, "set by the filter before it");
    assert_eq!(returned(third), b"v1");
    assert_eq!(
        result(first, 2),
        0,
        "in the log phase the first filter sees the header the last one added"
    );
}

fn tagger_adding_x_late() -> Vm {
    guest::start(
        r#"(data (i32.const 0x4a0) "x-late")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
          (drop (call $proxy_add_header_map_value (i32.const 0) (i32.const 0x4a0) (i32.const 6) (i32.const 0x4a0) (i32.const 1)))
          (i32.const 0))"#,
    )
}

#[test]
fn a_chain_needs_a_vm() {
    assert!(Chain::new(Vec::<Vm>::new()).is_err());
}
