//! The routing logic, natively: rules, actions and refused configurations.

use filter_proxy::request::TableHost;
use routing::route::route_headers;
use routing::{Config, ReplyKind, Spreader, Taken};

fn config(json: &str) -> Config {
    Config::parse(json.as_bytes()).unwrap_or_else(|p| panic!("{p}"))
}

fn headers(path: &str, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut h = vec![
        (":method".to_owned(), b"GET".to_vec()),
        (":path".to_owned(), path.as_bytes().to_vec()),
        (":authority".to_owned(), b"shop.example.com".to_vec()),
    ];
    h.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    );
    h
}

fn host() -> TableHost {
    TableHost::default()
        .with("source.address", "10.0.0.7:5555")
        .with("xds.route_name", "shop")
}

/// A local reply as (kind, status, headers, body).
type Reply = (ReplyKind, u16, Vec<(String, Vec<u8>)>, String);

/// Routes and returns (taken, reply, the header `name` after routing).
fn run(
    c: &Config,
    path: &str,
    extra: &[(&str, &str)],
    name: &str,
) -> (Taken, Option<Reply>, Option<String>) {
    let (outcome, after) = route_headers(c, headers(path, extra), host(), &mut Spreader::new(1));
    let reply = outcome
        .reply
        .map(|(k, r)| (k, r.status, r.headers, String::from_utf8(r.body).unwrap()));
    (
        outcome.taken,
        reply,
        after.get(name).map(|v| String::from_utf8(v).unwrap()),
    )
}

fn cluster(c: &Config, path: &str, extra: &[(&str, &str)]) -> Option<String> {
    run(c, path, extra, "x-route-cluster").2
}

#[test]
fn the_first_matching_enabled_rule_wins_and_the_default_catches_the_rest() {
    let c = config(
        r#"{"rules": [
            {"name": "off", "disabled": true, "match": {"path": {"prefix": "/"}}, "cluster": "never"},
            {"name": "api", "match": {"path": {"separated_prefix": "/api"}}, "cluster": "api"},
            {"name": "api-too", "match": {"path": {"prefix": "/api"}}, "cluster": "second"}
        ], "default": {"cluster": "web"}}"#,
    );
    assert_eq!(c.rule_names, ["api", "api-too"]);
    assert_eq!(cluster(&c, "/api/x", &[]).as_deref(), Some("api"));
    assert_eq!(cluster(&c, "/apix", &[]).as_deref(), Some("second"));
    assert_eq!(run(&c, "/apix", &[], "").0, Taken::Rule(1));
    assert_eq!(cluster(&c, "/home", &[]).as_deref(), Some("web"));
    assert_eq!(run(&c, "/home", &[], "").0, Taken::Default);
}

#[test]
fn a_client_cannot_choose_the_cluster_or_tag_itself() {
    let c = config(r#"{"rules": [{"match": {"path": {"prefix": "/api"}}, "cluster": "api"}]}"#);
    let forged = [("x-route-cluster", "admin"), ("x-route-tag", "canary")];
    let (taken, _, got) = run(&c, "/other", &forged, "x-route-cluster");
    assert_eq!((taken, got), (Taken::Nothing, None));
    assert_eq!(run(&c, "/other", &forged, "x-route-tag").2, None);
    assert_eq!(cluster(&c, "/api", &forged).as_deref(), Some("api"));
}

#[test]
fn matchers_compose_with_all_any_not_cookies_and_client_ranges() {
    let c = config(
        r#"{"client_ip": {"source": "x-forwarded-for", "trusted_hops": 0}, "rules": [
            {"name": "office", "match": {"client_ip": ["192.168.0.0/16"]}, "cluster": "office"},
            {"name": "beta", "match": {"any": [{"cookies": [{"name": "beta", "exact": "1"}]},
                                                 {"headers": [{"name": "x-beta", "present": true}]}],
                                        "not": {"method": {"exact": "DELETE"}}}, "cluster": "beta"},
            {"name": "users", "match": {"path": {"template": "/users/{id}/orders"}}, "cluster": "orders"}
        ]}"#,
    );
    assert_eq!(
        cluster(&c, "/", &[("x-forwarded-for", "1.2.3.4, 192.168.4.4")]).as_deref(),
        Some("office")
    );
    assert_eq!(
        cluster(&c, "/", &[("x-forwarded-for", "192.168.4.4, 1.2.3.4")]),
        None
    );
    assert_eq!(
        cluster(&c, "/", &[("cookie", "a=b; beta=1")]).as_deref(),
        Some("beta")
    );
    assert_eq!(cluster(&c, "/", &[("x-beta", "")]).as_deref(), Some("beta"));
    assert_eq!(
        cluster(&c, "/users/42/orders", &[]).as_deref(),
        Some("orders")
    );
    assert_eq!(cluster(&c, "/users/42/orders/9", &[]), None);
}

#[test]
fn weighted_splits_follow_their_weights_and_sticky_keys_stick() {
    let c = config(
        r#"{"rules": [{"name": "canary", "split": {
            "targets": [{"cluster": "stable", "weight": 90}, {"cluster": "canary", "weight": 10, "tag": "canary"}],
            "sticky": {"header": "x-user"}}}]}"#,
    );
    let mut spreader = Spreader::new(7);
    let mut canary = 0;
    for _ in 0..100_000 {
        let (_, after) = route_headers(&c, headers("/", &[]), host(), &mut spreader);
        if after.get("x-route-cluster").as_deref() == Some(b"canary") {
            assert_eq!(after.get("x-route-tag").as_deref(), Some(&b"canary"[..]));
            canary += 1;
        }
    }
    let share = f64::from(canary) / 1000.0;
    assert!((share - 10.0).abs() < 0.5, "canary share {share}%");
    for user in ["alice", "bob", "carol", "dave"] {
        let first = route_headers(&c, headers("/", &[("x-user", user)]), host(), &mut spreader)
            .1
            .get("x-route-cluster");
        for _ in 0..20 {
            let again = route_headers(&c, headers("/", &[("x-user", user)]), host(), &mut spreader)
                .1
                .get("x-route-cluster");
            assert_eq!(again, first, "{user}");
        }
    }
}

#[test]
fn rewrites_change_path_query_and_host_keeping_the_original_host() {
    let c = config(
        r#"{"rules": [{"match": {"path": {"prefix": "/shop/"}}, "cluster": "shop", "rewrite": {
            "path": {"prefix": {"from": "/shop/", "to": "/"}},
            "query": [{"set": {"name": "src", "value": "edge"}}, {"remove": {"name": "debug"}}],
            "host": {"from_header": "x-tenant-host"}}},
          {"match": {"path": {"prefix": "/t/"}}, "rewrite": {
            "host": {"from_path": {"pattern": "^/t/([a-z]+)/", "substitution": "\\1.internal"}},
            "path": {"regex": {"pattern": "^/t/[a-z]+/", "substitution": "/"}}}}]}"#,
    );
    let (_, after) = route_headers(
        &c,
        headers(
            "/shop/items?debug=1&page=2",
            &[("x-tenant-host", "acme.internal")],
        ),
        host(),
        &mut Spreader::new(1),
    );
    assert_eq!(
        after.get(":path").as_deref(),
        Some(&b"/items?page=2&src=edge"[..])
    );
    assert_eq!(
        after.get(":authority").as_deref(),
        Some(&b"acme.internal"[..])
    );
    assert_eq!(
        after.get("x-forwarded-host").as_deref(),
        Some(&b"shop.example.com"[..])
    );
    let (_, after) = route_headers(
        &c,
        headers("/t/blue/x?y=1", &[]),
        host(),
        &mut Spreader::new(1),
    );
    assert_eq!(after.get(":path").as_deref(), Some(&b"/x?y=1"[..]));
    assert_eq!(
        after.get(":authority").as_deref(),
        Some(&b"blue.internal"[..])
    );
}

#[test]
fn redirects_build_their_location_from_config_and_request() {
    let c = config(
        r#"{"rules": [
            {"match": {"path": {"prefix": "/old/"}}, "redirect": {"path": {"prefix": {"from": "/old/", "to": "/new/"}}, "status": 308}},
            {"match": {"headers": [{"name": "x-forwarded-proto", "exact": "http"}]}, "redirect": {"scheme": "https", "strip_query": true}},
            {"match": {"path": {"exact": "/moved"}}, "redirect": {"host": "www.example.org", "port": 8443, "path": {"set": "/here"}}}
        ]}"#,
    );
    let location = |path: &str, extra: &[(&str, &str)]| {
        let (taken, reply, _) = run(&c, path, extra, "");
        let (kind, status, headers, body) = reply.unwrap();
        assert!(matches!(taken, Taken::Rule(_)));
        assert_eq!((kind, body.as_str()), (ReplyKind::Redirect, ""));
        (status, String::from_utf8(headers[0].1.clone()).unwrap())
    };
    assert_eq!(
        location("/old/a?x=1", &[]),
        (308, "http://shop.example.com/new/a?x=1".into())
    );
    assert_eq!(
        location("/a?x=1", &[("x-forwarded-proto", "http")]),
        (301, "https://shop.example.com/a".into())
    );
    assert_eq!(
        location("/moved?q", &[]),
        (301, "http://www.example.org:8443/here?q".into())
    );
}

#[test]
fn direct_responses_and_denials_answer_locally() {
    let c = config(
        r#"{"rules": [
            {"match": {"path": {"exact": "/health"}}, "respond": {"status": 200, "json": {"ok": true}}},
            {"match": {"path": {"exact": "/hello"}}, "respond": {"headers": {"x-route": "%ROUTE_NAME%"}, "body": "hi %REQ(x-name)%"}},
            {"match": {"url": {"contains": "../", "ignore_case": true}}, "deny": {}}
        ]}"#,
    );
    let (_, reply, _) = run(&c, "/health", &[], "");
    let (kind, status, headers, body) = reply.unwrap();
    assert_eq!(
        (kind, status, body.as_str()),
        (ReplyKind::Direct, 200, r#"{"ok":true}"#)
    );
    assert_eq!(
        headers,
        [("content-type".to_owned(), b"application/json".to_vec())]
    );
    let (_, reply, _) = run(&c, "/hello", &[("x-name", "ann")], "");
    let (_, _, headers, body) = reply.unwrap();
    assert_eq!(
        (headers[0].1.as_slice(), body.as_str()),
        (&b"shop"[..], "hi ann")
    );
    let (_, reply, _) = run(&c, "/a/../etc", &[], "");
    let (kind, status, _, body) = reply.unwrap();
    assert_eq!(
        (kind, status, body.as_str()),
        (ReplyKind::Denied, 403, "access denied\n")
    );
}

#[test]
fn scopes_select_their_own_rules() {
    let c = config(
        r#"{"rules": [{"cluster": "global"}],
            "scopes": [{"match": {"routes": ["admin"]}, "rules": [{"name": "admin-only", "cluster": "admin"}]},
                       {"match": {"hosts": ["shop.*"]}, "default": {"cluster": "shop"}}]}"#,
    );
    assert_eq!(c.rule_names, ["rule-0", "admin-only"]);
    assert_eq!(cluster(&c, "/", &[]).as_deref(), Some("shop"));
}

#[test]
fn bad_configurations_are_refused_with_every_path() {
    let cases: &[(&str, &[&str])] = &[
        ("{}", &[""]),
        (r#"{"rules": [{}]}"#, &["/rules/0"]),
        (
            r#"{"rules": [{"cluster": "a", "redirect": {}}]}"#,
            &["/rules/0"],
        ),
        (
            r#"{"rules": [{"cluster": "a", "split": {"targets": []}}]}"#,
            &["/rules/0/split"],
        ),
        (
            r#"{"rules": [{"split": {"targets": [{"cluster": "a", "weight": 0}]}}]}"#,
            &["/rules/0/split/targets"],
        ),
        (
            r#"{"rules": [{"split": {"targets": [{"weight": 1}]}}]}"#,
            &["/rules/0/split/targets/0"],
        ),
        (
            r#"{"rules": [{"split": {"targets": [{"cluster": "a", "weight": 1}], "sticky": {"client_ip": 1}}}]}"#,
            &["/rules/0/split/sticky/client_ip"],
        ),
        (
            r#"{"rules": [{"name": "a b", "cluster": "x"}]}"#,
            &["/rules/0/name"],
        ),
        (
            r#"{"rules": [{"name": "a", "cluster": "x"}, {"name": "a", "cluster": "y"}]}"#,
            &["/rules/1/name"],
        ),
        (
            r#"{"rules": [{"redirect": {"status": 200}}]}"#,
            &["/rules/0/redirect/status"],
        ),
        (
            r#"{"rules": [{"redirect": {"host": "a:80"}}]}"#,
            &["/rules/0/redirect/host"],
        ),
        (
            r#"{"rules": [{"respond": {"status": 700}}]}"#,
            &["/rules/0/respond/status"],
        ),
        (
            r#"{"rules": [{"respond": {"body": "", "json": 1}}]}"#,
            &["/rules/0/respond/json"],
        ),
        (r#"{"rules": [{"rewrite": {}}]}"#, &["/rules/0/rewrite"]),
        (
            r#"{"rules": [{"cluster": "has space"}]}"#,
            &["/rules/0/cluster"],
        ),
        (
            r#"{"rules": [{"match": {"client_ip": ["10.0.0.0/40"]}, "cluster": "a"}]}"#,
            &["/rules/0/match/client_ip/0"],
        ),
        (
            r#"{"cluster_header": "X-C", "default": {"cluster": "a"}}"#,
            &["/cluster_header"],
        ),
        (
            r#"{"client_ip": {"source": "peer", "trusted_hops": 1}, "default": {"cluster": "a"}}"#,
            &["/client_ip/trusted_hops"],
        ),
        (r#"{"scopes": [{"rules": []}]}"#, &["/scopes/0"]),
        (r#"{"default": {"cluster": "a"}, "extra": 1}"#, &["/extra"]),
        (
            r#"{"default": {"cluster": "a"}, "body": {"max_bytes": 10}}"#,
            &["/body"],
        ),
        (
            r#"{"rules": [{"cluster_from": {"body": "model", "clusters": {"a": "has space"}}}]}"#,
            &[
                "/rules/0/cluster_from/body",
                "/rules/0/cluster_from/clusters/a",
            ],
        ),
        (
            r#"{"rules": [{"cluster_from": {"body": "/m", "clusters": {}}, "cluster": "x"}]}"#,
            &["/rules/0/cluster_from"],
        ),
        (
            r#"{"rules": [{"cluster_from": {"body": "/m"}}]}"#,
            &["/rules/0/cluster_from"],
        ),
        (
            r#"{"rules": [{"match": {"body": [{"pointer": "/m", "present": true}]}, "cluster": "a"}],
                "body": {"max_bytes": 0, "over_limit": "drop", "not_json": "fail",
                         "content_types": ["application/json; charset=utf-8"],
                         "when": {"body": [{"pointer": "/m", "present": true}]}}}"#,
            &[
                "/body/when",
                "/body/content_types/0",
                "/body/max_bytes",
                "/body/over_limit",
                "/body/not_json",
            ],
        ),
    ];
    for (json, paths) in cases {
        let err = Config::parse(json.as_bytes()).expect_err(json);
        let got: Vec<&str> = err.list().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(got, *paths, "{json}: {err}");
    }
}

fn with_body(
    c: &Config,
    method: &str,
    content_type: Option<&str>,
    body: &str,
) -> (bool, Option<String>) {
    use filter_proxy::headers::HeaderMap;
    use filter_proxy::request::Request;
    let mut h = headers("/v1/chat", &[]);
    h[0].1 = method.as_bytes().to_vec();
    if let Some(t) = content_type {
        h.push(("content-type".to_owned(), t.as_bytes().to_vec()));
    }
    let mut request = Request::new(HeaderMap::new(h), host());
    let waits = c.body.as_ref().is_some_and(|p| p.waits(&request, false));
    request.set_body(Box::new(filter_common::body::JsonBody::parse_fields(
        body.as_bytes(),
        &c.body_fields,
    )));
    c.route(&mut request, &mut Spreader::new(1));
    let cluster = request
        .headers
        .get("x-route-cluster")
        .map(|v| String::from_utf8(v).unwrap());
    (waits, cluster)
}

/// The body is parsed into the fields the configuration reads, so a place
/// that reads one and is missed here would see nothing.
#[test]
fn every_place_that_reads_the_body_names_its_field() {
    let c = config(
        r#"{"rules": [
              {"match": {"body": [{"pointer": "/when", "present": true}]}, "cluster_from": {"body": "/cluster", "clusters": {"a": "b"}}},
              {"match": {"path": {"prefix": "/q"}}, "cluster": "q", "rewrite": {
                  "query": [{"set": {"name": "m", "value": "%BODY(/query)%"}}]}},
              {"match": {"path": {"prefix": "/r"}}, "respond": {"headers": {"x-m": "%BODY(/reply_header)%"}, "body": "%BODY(/reply_body)%"}}],
            "default": {"respond": {"body": "%BODY(/default)%"}},
            "scopes": [{"match": {"routes": ["s"]}, "rules": [{"match": {"not": {"any": [{"body": [{"pointer": "/scope/0", "absent": true}]}]}}, "cluster": "s"}]}]}"#,
    );
    let want: filter_common::body::Selection = [
        "/when",
        "/cluster",
        "/query",
        "/reply_header",
        "/reply_body",
        "/default",
        "/scope/0",
    ]
    .into_iter()
    .collect();
    assert_eq!(c.body_fields, want);
    assert!(
        config(r#"{"rules": [{"cluster": "a"}]}"#)
            .body_fields
            .is_empty()
    );
}

#[test]
fn bodies_route_by_their_fields_and_only_configured_requests_wait() {
    let c = config(
        r#"{"rules": [
              {"match": {"body": [{"pointer": "/tenant", "one_of": ["acme"]}]}, "cluster": "acme"},
              {"cluster_from": {"body": "/model", "clusters": {"gpt-x": "llm-a"}, "default": "llm-c"}}]}"#,
    );
    let policy = c
        .body
        .as_ref()
        .expect("a body rule gives the default policy");
    assert_eq!(
        policy.max_bytes,
        filter_common::body::DEFAULT_MAX_BODY_BYTES
    );
    let json = Some("application/json");
    assert_eq!(
        with_body(&c, "POST", json, r#"{"model":"gpt-x"}"#),
        (true, Some("llm-a".into()))
    );
    assert_eq!(
        with_body(&c, "PUT", json, r#"{"tenant":"acme","model":"gpt-x"}"#),
        (true, Some("acme".into()))
    );
    assert_eq!(
        with_body(&c, "PATCH", json, r#"{"model":"nope"}"#),
        (true, Some("llm-c".into()))
    );
    assert_eq!(
        with_body(&c, "POST", json, "not json"),
        (true, Some("llm-c".into()))
    );
    assert!(!with_body(&c, "GET", json, "{}").0);
    assert!(!with_body(&c, "POST", Some("text/plain"), "{}").0);
    assert!(!with_body(&c, "POST", None, "{}").0);
    assert!(with_body(&c, "POST", Some("application/problem+json"), "{}").0);
    assert!(!with_body(&c, "POST", Some("text/x+json"), "{}").0);
    assert!(config(r#"{"default": {"cluster": "a"}}"#).body.is_none());
}
