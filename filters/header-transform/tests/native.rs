//! The filter's logic, natively: configuration problems and what each
//! operation does to requests and responses.

use filter_proxy::headers::{Change, HeaderMap};
use filter_proxy::request::{Request, TableHost};
use header_transform::Config;

fn config(json: &str) -> Config {
    match Config::parse(json.as_bytes()) {
        Ok(c) => c,
        Err(p) => panic!("{p}"),
    }
}

fn problems(json: &str) -> Vec<String> {
    match Config::parse(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(p) => p.list().iter().map(|p| p.path.clone()).collect(),
    }
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    HeaderMap::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect(),
    )
}

fn request(path: &str, extra: &[(&str, &str)]) -> Request<TableHost> {
    let mut pairs = vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "api.example.com"),
        (":scheme", "http"),
    ];
    pairs.extend_from_slice(extra);
    let host = TableHost {
        now_nanos: 1_700_000_000_000_000_000,
        ..TableHost::default()
    }
    .with("xds.route_name", "orders")
    .with("source.address", "10.1.2.3:4567");
    Request::new(map(&pairs), host)
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .values(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn rule(ops: &str) -> String {
    format!(r#"{{"rules": [{{"request_headers": [{ops}]}}]}}"#)
}

#[test]
fn the_four_append_actions_behave_as_in_envoy() {
    let cases = [
        ("APPEND_IF_EXISTS_OR_ADD", vec!["a", "new"], vec!["new"]),
        ("ADD_IF_ABSENT", vec!["a"], vec!["new"]),
        ("OVERWRITE_IF_EXISTS_OR_ADD", vec!["new"], vec!["new"]),
        ("OVERWRITE_IF_EXISTS", vec!["new"], vec![]),
    ];
    for (action, when_present, when_absent) in cases {
        let c = config(&rule(&format!(
            r#"{{"add": {{"name": "x-h", "value": "new", "append_action": "{action}"}}}}"#
        )));
        let mut present = request("/", &[("x-h", "a")]);
        c.on_request(&mut present);
        assert_eq!(
            values(&present.headers, "x-h"),
            when_present,
            "{action} present"
        );
        let mut absent = request("/", &[]);
        c.on_request(&mut absent);
        assert_eq!(
            values(&absent.headers, "x-h"),
            when_absent,
            "{action} absent"
        );
    }
}

#[test]
fn set_replaces_every_line_and_empty_values_change_nothing_unless_kept() {
    let c = config(&rule(
        r#"{"set": {"name": "x-h", "value": "v"}},
           {"set": {"name": "x-gone", "value": "%REQ(x-none)%"}},
           {"set": {"name": "x-kept", "value": "%REQ(x-none)%", "keep_empty_value": true}}"#,
    ));
    let mut r = request("/", &[("x-h", "1"), ("x-h", "2"), ("x-gone", "old")]);
    let d = c.on_request(&mut r);
    assert_eq!(values(&r.headers, "x-h"), ["v"]);
    assert_eq!(values(&r.headers, "x-gone"), ["old"]);
    assert_eq!(values(&r.headers, "x-kept"), [""]);
    assert!(
        d.writes.contains(&Change::Remove("x-h".into())),
        "{:?}",
        d.writes
    );
}

#[test]
fn append_concatenates_onto_the_existing_value() {
    let c = config(&rule(
        r#"{"append": {"name": "x-tags", "value": "b"}}, {"append": {"name": "x-new", "value": "n", "separator": "; "}}"#,
    ));
    let mut r = request("/", &[("x-tags", "a")]);
    c.on_request(&mut r);
    assert_eq!(values(&r.headers, "x-tags"), ["a,b"]);
    assert_eq!(values(&r.headers, "x-new"), ["n"]);
}

#[test]
fn removal_by_name_prefix_regex_and_hop_by_hop() {
    let c = config(&rule(
        r#"{"remove": {"name": "x-a"}}, {"remove": {"prefix": "x-internal-"}},
           {"remove": {"regex": "^x-debug-[0-9]+$"}}, {"remove": {"hop_by_hop": true}}"#,
    ));
    let mut r = request(
        "/",
        &[
            ("x-a", "1"),
            ("x-internal-id", "2"),
            ("x-internal-user", "3"),
            ("x-debug-1", "4"),
            ("x-debug-x", "5"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "6"),
            ("te", "trailers"),
            ("keep", "7"),
        ],
    );
    c.on_request(&mut r);
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            ":method",
            ":path",
            ":authority",
            ":scheme",
            "x-debug-x",
            "keep"
        ]
    );
}

#[test]
fn rename_copy_and_dedupe() {
    let c = config(&rule(
        r#"{"rename": {"from": "x-old", "to": "x-new"}}, {"copy": {"from": "x-src", "to": "x-dst"}},
           {"dedupe": {"name": "x-f", "strategy": "RETAIN_FIRST"}},
           {"dedupe": {"name": "x-l", "strategy": "RETAIN_LAST"}},
           {"dedupe": {"name": "x-u", "strategy": "RETAIN_UNIQUE"}}"#,
    ));
    let mut r = request(
        "/",
        &[
            ("x-old", "o"),
            ("x-new", "stale"),
            ("x-src", "s1"),
            ("x-src", "s2"),
            ("x-f", "1"),
            ("x-f", "2"),
            ("x-l", "1"),
            ("x-l", "2"),
            ("x-u", "a"),
            ("x-u", "b"),
            ("x-u", "a"),
        ],
    );
    c.on_request(&mut r);
    assert!(!r.headers.contains("x-old"));
    assert_eq!(values(&r.headers, "x-new"), ["o"]);
    assert_eq!(values(&r.headers, "x-src"), ["s1", "s2"]);
    assert_eq!(values(&r.headers, "x-dst"), ["s1", "s2"]);
    assert_eq!(values(&r.headers, "x-f"), ["1"]);
    assert_eq!(values(&r.headers, "x-l"), ["2"]);
    assert_eq!(values(&r.headers, "x-u"), ["a", "b"]);
}

#[test]
fn templates_fill_values_from_the_request_and_host() {
    let c = config(&rule(
        r#"{"set": {"name": "x-info", "value": "%REQ(:method)% %PATH% q=%QUERY_PARAM(q)% ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% route=%ROUTE_NAME% 100%%"}},
           {"set": {"name": "x-start", "value": "%START_TIME(%s)%"}}"#,
    ));
    let mut r = request("/search?q=rust", &[]);
    c.on_request(&mut r);
    assert_eq!(
        values(&r.headers, "x-info"),
        ["GET /search q=rust ip=10.1.2.3 route=orders 100%"]
    );
    assert_eq!(values(&r.headers, "x-start"), ["1700000000"]);
}

#[test]
fn every_matching_rule_applies_in_order() {
    let c = config(
        r#"{"rules": [
            {"when": {"path": {"prefix": "/api"}}, "request_headers": [{"add": {"name": "x-trace", "value": "api"}}]},
            {"when": {"method": {"one_of": ["POST"]}}, "request_headers": [{"add": {"name": "x-trace", "value": "post"}}]},
            {"when": {"headers": [{"name": "x-env", "exact": "dev"}]}, "request_headers": [{"add": {"name": "x-trace", "value": "dev"}}]},
            {"request_headers": [{"add": {"name": "x-trace", "value": "always"}}]}
        ]}"#,
    );
    let mut r = request("/api/x", &[("x-env", "dev")]);
    let d = c.on_request(&mut r);
    assert_eq!(values(&r.headers, "x-trace"), ["api", "dev", "always"]);
    assert_eq!(d.rules_applied(), 3);
}

#[test]
fn query_parameters_are_set_added_and_removed() {
    let c = config(
        r#"{"rules": [{"query": [
            {"set": {"name": "v", "value": "2"}},
            {"add": {"name": "who", "value": "%REQ(x-user)%"}},
            {"remove": {"name": "debug"}}
        ]}]}"#,
    );
    let mut r = request(
        "/p?v=1&debug=1&v=3&keep=a%20b",
        &[("x-user", "ada lovelace")],
    );
    let d = c.on_request(&mut r);
    assert_eq!(
        values(&r.headers, ":path"),
        ["/p?v=2&keep=a%20b&who=ada%20lovelace"]
    );
    assert_eq!(
        d.writes,
        vec![Change::Replace(
            ":path".into(),
            b"/p?v=2&keep=a%20b&who=ada%20lovelace".to_vec()
        )]
    );
    let mut r = request("/p?debug=1", &[]);
    let c = config(r#"{"rules": [{"query": [{"remove": {"name": "debug"}}]}]}"#);
    c.on_request(&mut r);
    assert_eq!(values(&r.headers, ":path"), ["/p"]);
}

#[test]
fn headers_go_to_filter_state_rewritten_defaulted_or_removed() {
    let c = config(
        r#"{"rules": [{"to_filter_state": [
            {"header": "x-tenant", "property": "tenant", "regex_rewrite": {"pattern": "^t-(.*)$", "substitution": "\\1"}, "remove_header": true},
            {"header": "x-plan", "property": "plan", "on_missing": "free"},
            {"header": "x-none", "property": "none"}
        ]}]}"#,
    );
    let mut r = request("/", &[("x-tenant", "t-acme")]);
    let d = c.on_request(&mut r);
    assert_eq!(
        d.filter_state,
        vec![
            ("tenant".to_owned(), b"acme".to_vec()),
            ("plan".to_owned(), b"free".to_vec())
        ]
    );
    assert!(!r.headers.contains("x-tenant"));
}

#[test]
fn scopes_replace_the_global_rules_for_their_routes() {
    let c = config(
        r#"{"rules": [{"request_headers": [{"set": {"name": "x-scope", "value": "global"}}]}],
            "scopes": [
              {"match": {"routes": ["payments"]}, "rules": [{"request_headers": [{"set": {"name": "x-scope", "value": "payments"}}]}]},
              {"match": {"routes": ["orders"], "path_prefixes": ["/v2"]}, "rules": [{"request_headers": [{"set": {"name": "x-scope", "value": "orders-v2"}}]}]}
            ]}"#,
    );
    for (path, want) in [("/v2/x", "orders-v2"), ("/v1/x", "global")] {
        let mut r = request(path, &[]);
        c.on_request(&mut r);
        assert_eq!(values(&r.headers, "x-scope"), [want], "{path}");
    }
}

#[test]
fn response_operations_follow_the_request_decision() {
    let c = config(
        r#"{"rules": [
            {"when": {"path": {"prefix": "/api"}}, "response_headers": [
                {"set": {"name": "x-served-for", "value": "%REQ(x-user)% %RESPONSE_CODE%"}},
                {"remove": {"name": "server"}}]},
            {"when": {"path": {"prefix": "/web"}}, "response_headers": [{"set": {"name": "x-web", "value": "1"}}]}
        ]}"#,
    );
    let mut r = request("/api/x", &[("x-user", "ada")]);
    let d = c.on_request(&mut r);
    let mut response = map(&[(":status", "200"), ("server", "envoy")]);
    let out = c.on_response(&d, &r, &mut response);
    assert!(out.replace.is_none());
    assert_eq!(values(&response, "x-served-for"), ["ada 200"]);
    assert!(!response.contains("server") && !response.contains("x-web"));
}

#[test]
fn cors_preflights_are_answered_and_actual_responses_get_headers() {
    let c = config(
        r#"{"cors": {"allow_origins": ["https://app.example.com"], "allow_origin_patterns": ["https://*.example.org"],
                      "allow_methods": ["GET", "POST"], "allow_headers": ["content-type"], "expose_headers": ["x-id"],
                      "allow_credentials": true, "max_age": 600}}"#,
    );
    let mut pre = request(
        "/",
        &[
            ("origin", "https://a.example.org"),
            ("access-control-request-method", "POST"),
        ],
    );
    pre.headers.set(":method", b"OPTIONS");
    let d = c.on_request(&mut pre);
    let reply = d.reply.as_ref().expect("preflight answered");
    assert_eq!(reply.status, 204);
    let get = |n: &str| {
        reply
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(
        get("access-control-allow-origin").as_deref(),
        Some("https://a.example.org")
    );
    assert_eq!(
        get("access-control-allow-methods").as_deref(),
        Some("GET, POST")
    );
    assert_eq!(get("access-control-max-age").as_deref(), Some("600"));
    assert_eq!(
        get("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(get("vary").as_deref(), Some("Origin"));

    let mut actual = request("/", &[("origin", "https://app.example.com")]);
    let d = c.on_request(&mut actual);
    assert!(d.reply.is_none());
    let mut response = map(&[(":status", "200"), ("vary", "Accept-Encoding")]);
    c.on_response(&d, &actual, &mut response);
    assert_eq!(
        values(&response, "access-control-allow-origin"),
        ["https://app.example.com"]
    );
    assert_eq!(values(&response, "access-control-expose-headers"), ["x-id"]);
    assert_eq!(values(&response, "vary"), ["Accept-Encoding, Origin"]);

    for origin in ["https://evil.example.com", "https://example.org"] {
        let mut other = request(
            "/",
            &[("origin", origin), ("access-control-request-method", "GET")],
        );
        other.headers.set(":method", b"OPTIONS");
        let d = c.on_request(&mut other);
        assert!(
            d.reply.is_none(),
            "{origin} is not allowed: the preflight goes upstream"
        );
        let mut response = map(&[(":status", "200")]);
        c.on_response(&d, &other, &mut response);
        assert!(!response.contains("access-control-allow-origin"));
    }
}

#[test]
fn custom_responses_replace_matching_statuses() {
    let c = config(
        r#"{"custom_responses": [
            {"on_status": ["404"], "status": 404, "headers": {"content-type": "application/json"}, "body": "{\"error\": \"not found\", \"path\": \"%PATH%\"}"},
            {"on_status": ["5xx"], "status": 503, "body": "upstream said %RESPONSE_CODE%"}
        ]}"#,
    );
    let mut r = request("/missing", &[]);
    let d = c.on_request(&mut r);
    for (status, want_status, want_body) in [
        (
            "404",
            Some(404),
            r#"{"error": "not found", "path": "/missing"}"#,
        ),
        ("502", Some(503), "upstream said 502"),
        ("200", None, ""),
    ] {
        let mut response = map(&[(":status", status)]);
        let out = c.on_response(&d, &r, &mut response);
        assert_eq!(
            out.replace.as_ref().map(|x| x.status),
            want_status,
            "{status}"
        );
        if let Some(reply) = out.replace {
            assert_eq!(String::from_utf8(reply.body).unwrap(), want_body);
        }
    }
}

#[test]
fn trailers_are_edited_by_matched_rules() {
    let c = config(
        r#"{"rules": [{"request_trailers": [{"set": {"name": "x-checksum", "value": "ok"}}],
                       "response_trailers": [{"remove": {"name": "grpc-message"}}]}]}"#,
    );
    let mut r = request("/", &[]);
    let d = c.on_request(&mut r);
    assert!(c.uses_trailers());
    let mut trailers = map(&[("x-checksum", "bad")]);
    let writes = c.on_request_trailers(&d, &r, &mut trailers);
    assert_eq!(
        writes,
        vec![Change::Replace("x-checksum".into(), b"ok".to_vec())]
    );
    let mut trailers = map(&[("grpc-status", "0"), ("grpc-message", "x")]);
    let writes = c.on_response_trailers(&d, &r, &mut trailers);
    assert_eq!(writes, vec![Change::Remove("grpc-message".into())]);
}

#[test]
fn nothing_matched_means_nothing_written() {
    let c = config(
        r#"{"rules": [{"when": {"path": {"exact": "/x"}}, "request_headers": [{"set": {"name": "a", "value": "b"}}]}]}"#,
    );
    let mut r = request("/y", &[]);
    let d = c.on_request(&mut r);
    assert!(d.writes.is_empty());
    assert_eq!(d.rules_applied(), 0);
}

#[test]
fn bad_configurations_report_every_problem_with_its_path() {
    let cases: &[(&str, &[&str])] = &[
        ("", &[""]),
        ("[]", &[""]),
        (r#"{"rulez": []}"#, &["/rulez"]),
        (
            r#"{"rules": [{"request_headers": [{"sett": {}}]}]}"#,
            &["/rules/0/request_headers/0/sett"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": "X-Up", "value": "v"}}]}]}"#,
            &["/rules/0/request_headers/0/set/name"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": "x", "value": "%NOPE%"}}]}]}"#,
            &["/rules/0/request_headers/0/set/value"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"add": {"name": "x", "value": "v", "append_action": "APPEND"}}]}]}"#,
            &["/rules/0/request_headers/0/add/append_action"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"remove": {"regex": "("}}]}]}"#,
            &["/rules/0/request_headers/0/remove/regex"],
        ),
        (
            r#"{"rules": [{"when": {"path": {"regex": "["}}}]}"#,
            &["/rules/0/when/path/regex"],
        ),
        (
            r#"{"rules": [{"when": {"headers": [{"exact": "x"}]}}]}"#,
            &["/rules/0/when/headers/0"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": ":path", "value": "/"}}]}]}"#,
            &["/rules/0/request_headers/0/set/name"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": "x", "value": "%RESP(y)%"}}]}]}"#,
            &["/rules/0/request_headers/0/set/value"],
        ),
        (
            r#"{"custom_responses": [{"on_status": ["6xx"], "status": 99}]}"#,
            &[
                "/custom_responses/0/on_status/0",
                "/custom_responses/0/status",
            ],
        ),
        (r#"{"cors": {"allow_methods": ["GET"]}}"#, &["/cors"]),
        (
            r#"{"scopes": [{"match": {}, "rules": []}]}"#,
            &["/scopes/0/match"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"dedupe": {"name": "x", "strategy": "KEEP"}}]}]}"#,
            &["/rules/0/request_headers/0/dedupe/strategy"],
        ),
        (r#"{"clear_route_cache": "yes"}"#, &["/clear_route_cache"]),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": "a b", "value": "v"}}, {"rename": {"from": "x", "to": "x"}}]},
                          {"to_filter_state": [{"header": "x", "property": ""}]}]}"#,
            &[
                "/rules/0/request_headers/0/set/name",
                "/rules/0/request_headers/1/rename/to",
                "/rules/1/to_filter_state/0/property",
            ],
        ),
    ];
    for (json, want) in cases {
        assert_eq!(problems(json), *want, "{json}");
    }
}

/// Which configurations write without reading the maps: unconditional
/// `set`s of literal values and `remove`s of names only; anything that
/// depends on the request, or `minimal_writes`, reads.
#[test]
fn only_request_independent_configurations_have_fixed_writes() {
    let fixed = |json: &str| Config::parse(json.as_bytes()).unwrap().fixed;
    let job = fixed(
        r#"{"rules": [{"request_headers": [{"set": {"name": "x-a", "value": "1"}}, {"remove": {"name": "x-b"}}],
                       "response_headers": [{"remove": {"name": "server"}}]},
                      {"response_headers": [{"set": {"name": "x-c", "value": "", "keep_empty_value": true}}]}]}"#,
    )
    .expect("fixed writes");
    assert_eq!(
        job.request,
        [
            Change::Replace("x-a".into(), b"1".to_vec()),
            Change::Remove("x-b".into())
        ]
    );
    assert_eq!(
        job.response,
        [
            Change::Remove("server".into()),
            Change::Replace("x-c".into(), Vec::new())
        ]
    );
    assert_eq!(job.rules, 2);
    for reads in [
        r#"{"rules": [{"request_headers": [{"set": {"name": "x-a", "value": "1"}}]}], "minimal_writes": true}"#,
        r#"{"rules": [{"when": {"path": {"prefix": "/api"}}, "request_headers": [{"set": {"name": "x-a", "value": "1"}}]}]}"#,
        r#"{"rules": [{"request_headers": [{"set": {"name": "x-a", "value": "%PATH%"}}]}]}"#,
        r#"{"rules": [{"request_headers": [{"add": {"name": "x-a", "value": "1"}}]}]}"#,
        r#"{"rules": [{"request_headers": [{"set": {"name": "x-a", "value": ""}}]}]}"#,
        r#"{"rules": [{"request_headers": [{"remove": {"prefix": "x-"}}]}]}"#,
        r#"{"rules": [{"request_headers": [{"rename": {"from": "x-a", "to": "x-b"}}]}]}"#,
        r#"{"rules": [{"query": [{"remove": {"name": "debug"}}]}]}"#,
        r#"{"rules": [{"response_trailers": [{"remove": {"name": "x-a"}}]}]}"#,
        r#"{"rules": [], "cors": {"allow_origins": ["https://a.example"]}}"#,
        r#"{"rules": [], "custom_responses": [{"on_status": ["404"], "body": "gone"}]}"#,
        r#"{"scopes": [{"match": {"routes": ["r"]}, "rules": []}]}"#,
    ] {
        assert!(fixed(reads).is_none(), "{reads}");
    }
}

#[test]
fn body_values_and_conditions_make_requests_wait_and_read_their_fields() {
    let c = config(
        r#"{"rules": [{"when": {"body": [{"pointer": "/tier", "exact": "gold"}]},
                       "request_headers": [{"set": {"name": "x-model", "value": "%BODY(/model)%"}}]}]}"#,
    );
    let policy = c
        .body
        .as_ref()
        .expect("a body reader gets the default policy");
    let mut r = request("/v1/chat", &[("content-type", "application/json")]);
    assert!(!policy.waits(&r, false), "a GET does not wait");
    r.headers.set(":method", b"POST");
    assert!(policy.waits(&r, false));
    assert!(!policy.waits(&r, true), "no body, no wait");
    r.set_body(Box::new(filter_common::body::JsonBody::parse(
        br#"{"tier": "gold", "model": "gpt-x"}"#,
    )));
    let decision = c.on_request(&mut r);
    assert_eq!(decision.rules_applied(), 1);
    assert_eq!(values(&r.headers, "x-model"), ["gpt-x"]);
    for (json, paths) in [
        (r#"{"rules": [], "body": {}}"#, vec!["/body"]),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": "x", "value": "%BODY(model)%"}}]}]}"#,
            vec!["/rules/0/request_headers/0/set/value"],
        ),
        (
            r#"{"rules": [{"request_headers": [{"set": {"name": "x", "value": "%BODY(/m)%"}}]}], "body": {"over_limit": "drop"}}"#,
            vec!["/body/over_limit"],
        ),
    ] {
        assert_eq!(problems(json), paths, "{json}");
    }
    assert!(
        config(r#"{"rules": [{"request_headers": [{"set": {"name": "x", "value": "1"}}]}]}"#)
            .body
            .is_none()
    );
}

/// The request body is parsed into the fields the configuration reads, so a
/// place that reads one and is missed here would see nothing.
#[test]
fn every_place_that_reads_the_request_body_names_its_field() {
    let c = config(
        r#"{"rules": [{"when": {"body": [{"pointer": "/when", "present": true}]},
                       "request_headers": [{"set": {"name": "x-a", "value": "%BODY(/req)%"}}],
                       "response_headers": [{"append": {"name": "x-b", "value": "%BODY(/resp)%"}}],
                       "request_trailers": [{"set": {"name": "x-c", "value": "%BODY(/req_trailer)%"}}],
                       "response_trailers": [{"set": {"name": "x-d", "value": "%BODY(/resp_trailer)%"}}],
                       "query": [{"set": {"name": "m", "value": "%BODY(/query)%"}}],
                       "response_body": [{"set": {"pointer": "/echo", "template": "%BODY(/resp_body)%"}}]}],
            "custom_responses": [{"on_status": ["404"], "headers": {"x-e": "%BODY(/custom_header)%"}, "body": "%BODY(/custom_body)%"}],
            "scopes": [{"match": {"routes": ["s"]}, "rules": [{"request_headers": [{"set": {"name": "x-s", "value": "%BODY(/scope)%"}}]}]}]}"#,
    );
    let want: filter_common::body::Selection = [
        "/when",
        "/req",
        "/resp",
        "/req_trailer",
        "/resp_trailer",
        "/query",
        "/resp_body",
        "/custom_header",
        "/custom_body",
        "/scope",
    ]
    .into_iter()
    .collect();
    assert_eq!(c.request_body_fields, want);
    let edits = config(
        r#"{"rules": [{"request_headers": [{"set": {"name": "x-a", "value": "%BODY(/req)%"}}],
                       "request_body": [{"remove": {"pointer": "/secret"}}]}]}"#,
    );
    let whole: filter_common::body::Selection = [""].into_iter().collect();
    assert_eq!(
        edits.request_body_fields, whole,
        "an edit reads the whole body"
    );
}

#[test]
fn body_edits_apply_for_matched_rules_and_response_edits_alone_hold_no_request() {
    let c = config(
        r#"{"rules": [{"when": {"path": {"prefix": "/v1"}},
                       "response_body": [{"set": {"pointer": "/v", "value": 1}}]}]}"#,
    );
    assert!(c.body.is_some(), "response edits take the body policy");
    assert!(c.request_body_fields.is_empty(), "but hold no request");
    let mut r = request("/v1/x", &[]);
    let decision = c.on_request(&mut r);
    assert!(c.edits_response_body(&decision) && !c.edits_request_body(&decision));
    let mut doc = filter_common::value::parse(br#"{"a": 0}"#).unwrap();
    assert!(c.edit_response_body(&decision, &r, &map(&[]), &mut doc));
    assert_eq!(doc.to_string(), r#"{"a":0,"v":1}"#);
    let other = c.on_request(&mut request("/v2/x", &[]));
    assert!(!c.edits_response_body(&other));
    for (json, paths) in [
        (
            r#"{"rules": [{"request_body": [{"set": {"pointer": "/a"}}, {"remove": {"pointer": "a"}}]}]}"#,
            vec![
                "/rules/0/request_body/0/set",
                "/rules/0/request_body/1/remove/pointer",
            ],
        ),
        (
            r#"{"rules": [{"response_body": [{"set": {"pointer": "/a", "template": "%BODY(x)%"}}]}]}"#,
            vec!["/rules/0/response_body/0/set/template"],
        ),
    ] {
        assert_eq!(problems(json), paths, "{json}");
    }
}
