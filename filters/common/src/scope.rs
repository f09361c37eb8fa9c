//! Per-route scoping inside the plugin. Neither Envoy nor Istio hands a wasm
//! filter per-route configuration, so a filter's configuration carries
//! scopes: the first scope whose `match` fits the request supplies the
//! policy, else the top-level (global) one.

use crate::value::Value;

use crate::config::{Fields, Problems, join};
use crate::matcher::HostPattern;
use filter_proxy::request::{Host, Request};

/// A route metadata entry (`filter_metadata.<namespace>.<key>`), present or
/// equal to `value`.
#[derive(Debug, Clone)]
struct MetadataMatch {
    namespace: String,
    key: String,
    value: Option<String>,
}

/// Which requests a scope covers. Every given criterion must hold (AND);
/// within one, any listed entry may (OR):
///
/// - `routes` / `route_prefixes`: `xds.route_name` equal to / starting with;
/// - `virtual_hosts`: `xds.virtual_host_name` equal to;
/// - `hosts`: `:authority` without port, `*.example.com` (suffix),
///   `api.*` (prefix) or exact, case-insensitive;
/// - `path_prefixes`: the path (without query) starting with;
/// - `route_metadata`: `[{namespace, key, value?}]`, each present (or equal).
#[derive(Debug)]
pub struct ScopeMatch {
    routes: Vec<String>,
    route_prefixes: Vec<String>,
    virtual_hosts: Vec<String>,
    hosts: Vec<HostPattern>,
    path_prefixes: Vec<String>,
    route_metadata: Vec<MetadataMatch>,
}

impl ScopeMatch {
    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Self {
        const KNOWN: &[&str] = &[
            "routes",
            "route_prefixes",
            "virtual_hosts",
            "hosts",
            "path_prefixes",
            "route_metadata",
        ];
        let mut scope = ScopeMatch {
            routes: Vec::new(),
            route_prefixes: Vec::new(),
            virtual_hosts: Vec::new(),
            hosts: Vec::new(),
            path_prefixes: Vec::new(),
            route_metadata: Vec::new(),
        };
        let Some(f) = Fields::new(value, at, KNOWN, problems) else {
            return scope;
        };
        let owned = |list: Vec<&str>| list.into_iter().map(str::to_owned).collect::<Vec<_>>();
        scope.routes = owned(f.strings("routes", problems));
        scope.route_prefixes = owned(f.strings("route_prefixes", problems));
        scope.virtual_hosts = owned(f.strings("virtual_hosts", problems));
        for (i, h) in f.strings("hosts", problems).into_iter().enumerate() {
            if let Some(pattern) = HostPattern::decode(h, &join(&f.at("hosts"), &i), problems) {
                scope.hosts.push(pattern);
            }
        }
        for (i, p) in f.strings("path_prefixes", problems).into_iter().enumerate() {
            if !p.starts_with('/') {
                problems.push(
                    &join(&f.at("path_prefixes"), &i),
                    format!("`{p}`: a path prefix starts with `/`"),
                );
            }
            scope.path_prefixes.push(p.to_owned());
        }
        let metadata_at = f.at("route_metadata");
        for (i, m) in f.list("route_metadata", problems).iter().enumerate() {
            let Some(m) = Fields::new(
                m,
                &join(&metadata_at, &i),
                &["namespace", "key", "value"],
                problems,
            ) else {
                continue;
            };
            let namespace = m.required_string("namespace", problems);
            let key = m.required_string("key", problems);
            let value = m.string("value", problems).map(str::to_owned);
            if let (Some(namespace), Some(key)) = (namespace, key) {
                scope.route_metadata.push(MetadataMatch {
                    namespace: namespace.to_owned(),
                    key: key.to_owned(),
                    value,
                });
            }
        }
        let empty = scope.routes.is_empty()
            && scope.route_prefixes.is_empty()
            && scope.virtual_hosts.is_empty()
            && scope.hosts.is_empty()
            && scope.path_prefixes.is_empty()
            && scope.route_metadata.is_empty();
        if empty {
            problems.push(
                at,
                format!(
                    "a scope's match needs at least one of {}",
                    crate::config::quoted_list(KNOWN)
                ),
            );
        }
        scope
    }

    pub fn matches<H: Host>(&self, request: &Request<H>) -> bool {
        let route = request.route_name();
        let route_ok = (self.routes.is_empty() && self.route_prefixes.is_empty())
            || route.is_some_and(|r| {
                self.routes.iter().any(|x| x.as_bytes() == r)
                    || self
                        .route_prefixes
                        .iter()
                        .any(|p| r.starts_with(p.as_bytes()))
            });
        route_ok
            && (self.virtual_hosts.is_empty()
                || request
                    .virtual_host()
                    .is_some_and(|v| self.virtual_hosts.iter().any(|x| x.as_bytes() == v)))
            && (self.hosts.is_empty() || {
                let host = request.authority_host();
                self.hosts.iter().any(|p| p.matches(host))
            })
            && (self.path_prefixes.is_empty()
                || self
                    .path_prefixes
                    .iter()
                    .any(|p| request.path().starts_with(p.as_bytes())))
            && self.route_metadata.iter().all(|m| {
                request
                    .route_metadata(&m.namespace, &m.key)
                    .is_some_and(|v| m.value.as_ref().is_none_or(|want| want.as_bytes() == v))
            })
    }
}

/// The index of the first scope whose match fits `request` (`None`: the
/// global policy applies).
pub fn first_match<T, H: Host>(scopes: &[(ScopeMatch, T)], request: &Request<H>) -> Option<usize> {
    scopes.iter().position(|(m, _)| m.matches(request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_proxy::headers::HeaderMap;
    use filter_proxy::request::TableHost;

    fn compile(json: &str) -> Result<ScopeMatch, Problems> {
        let spec: Value = crate::value::parse(json.as_bytes()).unwrap();
        let mut p = Problems::default();
        let m = ScopeMatch::decode(&spec, "/scopes/0/match", &mut p);
        p.into_result(m)
    }

    fn request(authority: &str, path: &str, host: TableHost) -> Request<TableHost> {
        Request::new(
            HeaderMap::new(vec![
                (":authority".into(), authority.as_bytes().to_vec()),
                (":path".into(), path.as_bytes().to_vec()),
            ]),
            host,
        )
    }

    #[test]
    fn scopes_select_by_route_host_path_and_metadata() {
        let host = TableHost::default()
            .with("xds.route_name", "api-v2")
            .with("xds.virtual_host_name", "public")
            .with("xds.route_metadata.filter_metadata.acme.tier", "gold");
        let r = request("API.example.com:443", "/v2/items?x=1", host);
        for (json, want) in [
            (r#"{"routes": ["api-v2"]}"#, true),
            (r#"{"routes": ["api"]}"#, false),
            (r#"{"route_prefixes": ["api-"]}"#, true),
            (r#"{"virtual_hosts": ["public"]}"#, true),
            (r#"{"hosts": ["*.example.com"]}"#, true),
            (r#"{"hosts": ["api.*"]}"#, true),
            (r#"{"hosts": ["api.example.com"]}"#, true),
            (r#"{"hosts": ["web.example.com"]}"#, false),
            (r#"{"path_prefixes": ["/v2/"]}"#, true),
            (r#"{"path_prefixes": ["/v1/"]}"#, false),
            (
                r#"{"route_metadata": [{"namespace": "acme", "key": "tier"}]}"#,
                true,
            ),
            (
                r#"{"route_metadata": [{"namespace": "acme", "key": "tier", "value": "gold"}]}"#,
                true,
            ),
            (
                r#"{"route_metadata": [{"namespace": "acme", "key": "tier", "value": "free"}]}"#,
                false,
            ),
            (r#"{"routes": ["api-v2"], "hosts": ["web.*"]}"#, false),
        ] {
            assert_eq!(compile(json).unwrap().matches(&r), want, "{json}");
        }
    }

    #[test]
    fn the_first_matching_scope_wins() {
        let r = request("a", "/x", TableHost::default().with("xds.route_name", "r"));
        let scopes = vec![
            (compile(r#"{"routes": ["other"]}"#).unwrap(), 1),
            (compile(r#"{"routes": ["r"]}"#).unwrap(), 2),
            (compile(r#"{"path_prefixes": ["/"]}"#).unwrap(), 3),
        ];
        assert_eq!(first_match(&scopes, &r), Some(1));
        assert_eq!(first_match(&scopes[..1], &r), None);
    }

    #[test]
    fn bad_scope_matches_are_reported() {
        let err = compile("{}").unwrap_err();
        assert_eq!(err.list()[0].path, "/scopes/0/match");
        let err = compile(r#"{"hosts": ["a*b"], "path_prefixes": ["v1"]}"#).unwrap_err();
        let paths: Vec<_> = err.list().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/scopes/0/match/hosts/0", "/scopes/0/match/path_prefixes/0"]
        );
    }
}
