//! A typed builder for the static Envoy bootstraps our tools need: an
//! admin endpoint, listeners each with one HTTP connection manager (its
//! routes and HTTP filters, the router last), and STATIC clusters with one
//! loopback endpoint each.
//!
//! The builder's types say what a bootstrap holds; the private `wire`
//! structs below say how Envoy spells it (field order kept, so the YAML
//! reads as a person would write it). Everything a caller may need beyond
//! these fields goes through [`HttpFilter::typed`] or [`Route::metadata`]
//! as JSON, in Envoy's own field names.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
const LUA: &str = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// A static bootstrap. The admin endpoint listens on 127.0.0.1, port 0
/// (a free port, read back by [`crate::Envoy`]) unless [`Bootstrap::admin_port`]
/// fixes it.
#[derive(Debug, Clone, Default)]
pub struct Bootstrap {
    admin_port: u16,
    listeners: Vec<Listener>,
    clusters: Vec<Cluster>,
}

impl Bootstrap {
    /// An empty bootstrap: admin on a free port, no listener, no cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// The admin endpoint's port (0: a free one).
    #[must_use]
    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = port;
        self
    }

    /// Adds a listener.
    #[must_use]
    pub fn listener(mut self, listener: Listener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Adds a cluster.
    #[must_use]
    pub fn cluster(mut self, cluster: Cluster) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// The bootstrap as JSON (Envoy reads it from a `.json` or `.yaml` file).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.wire()).unwrap_or_default()
    }

    /// The bootstrap as YAML.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_yaml_ng::to_string(&self.wire()).map_err(|e| format!("cannot write YAML: {e}"))
    }

    fn wire(&self) -> wire::Bootstrap {
        wire::Bootstrap {
            admin: wire::Admin {
                address: wire::address("127.0.0.1", self.admin_port),
            },
            static_resources: wire::Resources {
                listeners: self.listeners.iter().map(Listener::wire).collect(),
                clusters: self.clusters.iter().map(Cluster::wire).collect(),
            },
        }
    }
}

/// A listener on 127.0.0.1 with one HTTP connection manager and one
/// virtual host for every domain. The router filter is appended after
/// the filters added here.
#[derive(Debug, Clone)]
pub struct Listener {
    name: String,
    port: u16,
    stat_prefix: String,
    route_config: String,
    virtual_host: String,
    routes: Vec<Route>,
    filters: Vec<HttpFilter>,
}

impl Listener {
    /// A listener named `name` on a free port, stats under `ingress`.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            route_config: name.clone(),
            virtual_host: name.clone(),
            name,
            port: 0,
            stat_prefix: "ingress".to_owned(),
            routes: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// The port (0: a free one).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The connection manager's stat prefix (`http.<prefix>.*`).
    #[must_use]
    pub fn stat_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stat_prefix = prefix.into();
        self
    }

    /// The route configuration's name.
    #[must_use]
    pub fn route_config(mut self, name: impl Into<String>) -> Self {
        self.route_config = name.into();
        self
    }

    /// The virtual host's name (the `xds.virtual_host_name` property).
    #[must_use]
    pub fn virtual_host(mut self, name: impl Into<String>) -> Self {
        self.virtual_host = name.into();
        self
    }

    /// Adds a route, matched in the order added.
    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds an HTTP filter, run in the order added, before the router.
    #[must_use]
    pub fn filter(mut self, filter: HttpFilter) -> Self {
        self.filters.push(filter);
        self
    }

    fn wire(&self) -> wire::Listener {
        let mut http_filters: Vec<wire::HttpFilter> =
            self.filters.iter().map(|f| f.0.clone()).collect();
        http_filters.push(wire::HttpFilter {
            name: "envoy.filters.http.router".to_owned(),
            typed_config: wire::TypedConfig::Any(json!({"@type": ROUTER})),
        });
        wire::Listener {
            name: self.name.clone(),
            address: wire::address("127.0.0.1", self.port),
            filter_chains: vec![wire::FilterChain {
                filters: vec![wire::NetworkFilter {
                    name: "envoy.filters.network.http_connection_manager",
                    typed_config: wire::Hcm {
                        type_url: HCM,
                        stat_prefix: self.stat_prefix.clone(),
                        route_config: wire::RouteConfig {
                            name: self.route_config.clone(),
                            virtual_hosts: vec![wire::VirtualHost {
                                name: self.virtual_host.clone(),
                                domains: vec!["*"],
                                routes: self.routes.iter().map(Route::wire).collect(),
                            }],
                        },
                        http_filters,
                    },
                }],
            }],
        }
    }
}

/// A route matching a path prefix (and, optionally, a header's presence).
#[derive(Debug, Clone)]
pub struct Route {
    name: Option<String>,
    prefix: String,
    header_present: Option<String>,
    action: Action,
    timeout: Option<String>,
    metadata: Option<Value>,
}

#[derive(Debug, Clone)]
enum Action {
    Cluster(String),
    ClusterHeader(String),
    Direct { status: u16, body: String },
}

impl Route {
    /// Requests whose path starts with `prefix` go to `cluster`.
    pub fn to_cluster(prefix: impl Into<String>, cluster: impl Into<String>) -> Self {
        Self::with(prefix, Action::Cluster(cluster.into()))
    }

    /// Requests with `header` go to the cluster it names (Envoy routes
    /// again after a filter sets it and clears the route cache).
    pub fn by_cluster_header(header: impl Into<String>) -> Self {
        let header = header.into();
        let mut route = Self::with("/", Action::ClusterHeader(header.clone()));
        route.header_present = Some(header);
        route
    }

    /// Requests whose path starts with `prefix` get `status` and `body`
    /// from Envoy itself.
    pub fn direct(prefix: impl Into<String>, status: u16, body: impl Into<String>) -> Self {
        Self::with(
            prefix,
            Action::Direct {
                status,
                body: body.into(),
            },
        )
    }

    fn with(prefix: impl Into<String>, action: Action) -> Self {
        Self {
            name: None,
            prefix: prefix.into(),
            header_present: None,
            action,
            timeout: None,
            metadata: None,
        }
    }

    /// The route's name (the `xds.route_name` property).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The upstream timeout, as Envoy spells a duration (`"15s"`).
    #[must_use]
    pub fn timeout(mut self, timeout: impl Into<String>) -> Self {
        self.timeout = Some(timeout.into());
        self
    }

    /// The route's `metadata.filter_metadata` (`{namespace: {key: value}}`).
    #[must_use]
    pub fn metadata(mut self, filter_metadata: Value) -> Self {
        self.metadata = Some(filter_metadata);
        self
    }

    fn wire(&self) -> wire::Route {
        let headers = self
            .header_present
            .iter()
            .map(|name| json!({"name": name, "present_match": true}))
            .collect();
        let (route, direct_response) = match &self.action {
            Action::Cluster(cluster) => (
                Some(wire::RouteAction {
                    cluster: Some(cluster.clone()),
                    cluster_header: None,
                    timeout: self.timeout.clone(),
                }),
                None,
            ),
            Action::ClusterHeader(header) => (
                Some(wire::RouteAction {
                    cluster: None,
                    cluster_header: Some(header.clone()),
                    timeout: self.timeout.clone(),
                }),
                None,
            ),
            Action::Direct { status, body } => (
                None,
                Some(json!({"status": status, "body": {"inline_string": body}})),
            ),
        };
        wire::Route {
            name: self.name.clone(),
            r#match: wire::Match {
                prefix: self.prefix.clone(),
                headers,
            },
            route,
            direct_response,
            metadata: self
                .metadata
                .as_ref()
                .map(|m| json!({"filter_metadata": m})),
        }
    }
}

/// An HTTP filter of the connection manager's chain.
#[derive(Debug, Clone)]
pub struct HttpFilter(wire::HttpFilter);

impl HttpFilter {
    /// A proxy-wasm filter (Envoy's `envoy.filters.http.wasm`).
    pub fn wasm(filter: WasmFilter) -> Self {
        Self(wire::HttpFilter {
            name: filter.filter_name.clone(),
            typed_config: wire::TypedConfig::Wasm(Box::new(filter.wire())),
        })
    }

    /// A Lua filter running `code` (its `default_source_code`).
    pub fn lua(code: impl Into<String>) -> Self {
        Self::typed(
            "envoy.filters.http.lua",
            LUA,
            json!({"default_source_code": {"inline_string": code.into()}}),
        )
    }

    /// The filter as Envoy's JSON mapping spells it (`name`,
    /// `typed_config`): what an Istio `EnvoyFilter` patch inserts.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }

    /// A filter from its JSON (`name` and a `typed_config` with `@type`), as
    /// an `EnvoyFilter` patch or a bootstrap holds it; `None` without them.
    pub fn from_value(value: &Value) -> Option<Self> {
        let name = value["name"].as_str()?;
        let typed_config = value["typed_config"].clone();
        typed_config["@type"].as_str()?;
        Some(Self(wire::HttpFilter {
            name: name.to_owned(),
            typed_config: wire::TypedConfig::Any(typed_config),
        }))
    }

    /// Any other filter: its name, its config's type URL and the config's
    /// other fields (as Envoy's JSON mapping of the proto spells them).
    pub fn typed(name: impl Into<String>, type_url: &str, config: Value) -> Self {
        let mut typed_config = json!({"@type": type_url});
        if let (Some(out), Value::Object(fields)) = (typed_config.as_object_mut(), config) {
            out.extend(fields);
        }
        Self(wire::HttpFilter {
            name: name.into(),
            typed_config: wire::TypedConfig::Any(typed_config),
        })
    }
}

/// A proxy-wasm plugin in Envoy's `Wasm` filter: its `PluginConfig` and
/// the `VmConfig` that loads `module` into V8.
#[derive(Debug, Clone)]
pub struct WasmFilter {
    filter_name: String,
    plugin_name: String,
    root_id: String,
    vm_id: String,
    module: PathBuf,
    configuration: Option<String>,
    vm_configuration: Option<String>,
    failure_policy: Option<String>,
    allow_on_headers_stop_iteration: Option<bool>,
    allowed_capabilities: Vec<String>,
}

impl WasmFilter {
    /// The plugin `name` (also the filter's name in the chain) loading
    /// `module`; root id and VM id empty, no configuration.
    pub fn new(name: impl Into<String>, module: impl Into<PathBuf>) -> Self {
        let name = name.into();
        Self {
            filter_name: name.clone(),
            plugin_name: name,
            root_id: String::new(),
            vm_id: String::new(),
            module: module.into(),
            configuration: None,
            vm_configuration: None,
            failure_policy: None,
            allow_on_headers_stop_iteration: None,
            allowed_capabilities: Vec::new(),
        }
    }

    /// The filter's name in the chain, when it differs from the plugin's.
    #[must_use]
    pub fn filter_name(mut self, name: impl Into<String>) -> Self {
        self.filter_name = name.into();
        self
    }

    /// The root context id (`root_id`).
    #[must_use]
    pub fn root_id(mut self, id: impl Into<String>) -> Self {
        self.root_id = id.into();
        self
    }

    /// The VM id (`vm_config.vm_id`): plugins with the same id and module
    /// share a VM.
    #[must_use]
    pub fn vm_id(mut self, id: impl Into<String>) -> Self {
        self.vm_id = id.into();
        self
    }

    /// The plugin configuration (`proxy_on_configure`'s buffer).
    #[must_use]
    pub fn configuration(mut self, text: impl Into<String>) -> Self {
        self.configuration = Some(text.into());
        self
    }

    /// The VM configuration (`proxy_on_vm_start`'s buffer).
    #[must_use]
    pub fn vm_configuration(mut self, text: impl Into<String>) -> Self {
        self.vm_configuration = Some(text.into());
        self
    }

    /// `failure_policy` (`FAIL_CLOSED`, `FAIL_OPEN`, `FAIL_RELOAD`).
    #[must_use]
    pub fn failure_policy(mut self, policy: impl Into<String>) -> Self {
        self.failure_policy = Some(policy.into());
        self
    }

    /// `allow_on_headers_stop_iteration`.
    #[must_use]
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.allow_on_headers_stop_iteration = Some(allow);
        self
    }

    /// `vm_config.capability_restriction_config.allowed_capabilities`: only
    /// these host functions, WASI functions and callbacks (empty: no
    /// restriction, the field left out). Envoy 1.40 reads it from VmConfig
    /// and deprecates the PluginConfig field of the same name.
    #[must_use]
    pub fn allowed_capabilities<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_capabilities = names.into_iter().map(Into::into).collect();
        self
    }

    fn wire(&self) -> wire::Wasm {
        let string_value = |text: &String| wire::StringValue {
            type_url: STRING_VALUE,
            value: text.clone(),
        };
        wire::Wasm {
            type_url: WASM,
            config: wire::PluginConfig {
                name: self.plugin_name.clone(),
                root_id: self.root_id.clone(),
                failure_policy: self.failure_policy.clone(),
                allow_on_headers_stop_iteration: self.allow_on_headers_stop_iteration,
                configuration: self.configuration.as_ref().map(string_value),
                vm_config: wire::VmConfig {
                    vm_id: self.vm_id.clone(),
                    runtime: "envoy.wasm.runtime.v8",
                    configuration: self.vm_configuration.as_ref().map(string_value),
                    code: json!({"local": {"filename": self.module.display().to_string()}}),
                    capability_restriction_config: (!self.allowed_capabilities.is_empty())
                        .then(|| capability_restriction(&self.allowed_capabilities)),
                },
            },
        }
    }
}

/// Envoy's `CapabilityRestrictionConfig` allowing exactly `names` (each
/// mapped to an empty `SanitizationConfig`, which Envoy ignores).
pub fn capability_restriction(names: &[String]) -> Value {
    let allowed: serde_json::Map<String, Value> =
        names.iter().map(|name| (name.clone(), json!({}))).collect();
    json!({"allowed_capabilities": allowed})
}

/// A STATIC cluster with one endpoint.
#[derive(Debug, Clone)]
pub struct Cluster {
    name: String,
    address: SocketAddr,
    http2: bool,
}

impl Cluster {
    /// `name`, its one endpoint at `address`, HTTP/1.1 upstream.
    pub fn new(name: impl Into<String>, address: SocketAddr) -> Self {
        Self {
            name: name.into(),
            address,
            http2: false,
        }
    }

    /// The upstream speaks HTTP/2 with prior knowledge (as gRPC needs).
    #[must_use]
    pub fn http2(mut self) -> Self {
        self.http2 = true;
        self
    }

    fn wire(&self) -> wire::Cluster {
        let endpoint =
            json!({"address": wire::address(&self.address.ip().to_string(), self.address.port())});
        wire::Cluster {
            name: self.name.clone(),
            r#type: "STATIC",
            connect_timeout: "1s",
            load_assignment: json!({
                "cluster_name": self.name,
                "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
            }),
            typed_extension_protocol_options: self.http2.then(|| {
                json!({HTTP_OPTIONS: {
                    "@type": format!("type.googleapis.com/{HTTP_OPTIONS}"),
                    "explicit_http_config": {"http2_protocol_options": {}},
                }})
            }),
        }
    }
}

/// Envoy's field names and order, for serde.
mod wire {
    use serde::Serialize;
    use serde_json::{Value, json};

    pub(super) fn address(ip: &str, port: u16) -> Value {
        json!({"socket_address": {"address": ip, "port_value": port}})
    }

    #[derive(Serialize)]
    pub(super) struct Bootstrap {
        pub(super) admin: Admin,
        pub(super) static_resources: Resources,
    }

    #[derive(Serialize)]
    pub(super) struct Admin {
        pub(super) address: Value,
    }

    #[derive(Serialize)]
    pub(super) struct Resources {
        pub(super) listeners: Vec<Listener>,
        pub(super) clusters: Vec<Cluster>,
    }

    #[derive(Serialize)]
    pub(super) struct Listener {
        pub(super) name: String,
        pub(super) address: Value,
        pub(super) filter_chains: Vec<FilterChain>,
    }

    #[derive(Serialize)]
    pub(super) struct FilterChain {
        pub(super) filters: Vec<NetworkFilter>,
    }

    #[derive(Serialize)]
    pub(super) struct NetworkFilter {
        pub(super) name: &'static str,
        pub(super) typed_config: Hcm,
    }

    #[derive(Serialize)]
    pub(super) struct Hcm {
        #[serde(rename = "@type")]
        pub(super) type_url: &'static str,
        pub(super) stat_prefix: String,
        pub(super) route_config: RouteConfig,
        pub(super) http_filters: Vec<HttpFilter>,
    }

    #[derive(Serialize)]
    pub(super) struct RouteConfig {
        pub(super) name: String,
        pub(super) virtual_hosts: Vec<VirtualHost>,
    }

    #[derive(Serialize)]
    pub(super) struct VirtualHost {
        pub(super) name: String,
        pub(super) domains: Vec<&'static str>,
        pub(super) routes: Vec<Route>,
    }

    #[derive(Serialize)]
    pub(super) struct Route {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) name: Option<String>,
        pub(super) r#match: Match,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) route: Option<RouteAction>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) direct_response: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) metadata: Option<Value>,
    }

    #[derive(Serialize)]
    pub(super) struct Match {
        pub(super) prefix: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub(super) headers: Vec<Value>,
    }

    #[derive(Serialize)]
    pub(super) struct RouteAction {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) cluster: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) cluster_header: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) timeout: Option<String>,
    }

    #[derive(Serialize, Clone, Debug)]
    pub(super) struct HttpFilter {
        pub(super) name: String,
        pub(super) typed_config: TypedConfig,
    }

    /// The wasm filter's config in its proto's field order; any other
    /// filter's as given.
    #[derive(Serialize, Clone, Debug)]
    #[serde(untagged)]
    pub(super) enum TypedConfig {
        Wasm(Box<Wasm>),
        Any(Value),
    }

    #[derive(Serialize, Clone, Debug)]
    pub(super) struct Wasm {
        #[serde(rename = "@type")]
        pub(super) type_url: &'static str,
        pub(super) config: PluginConfig,
    }

    #[derive(Serialize, Clone, Debug)]
    pub(super) struct PluginConfig {
        pub(super) name: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        pub(super) root_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) failure_policy: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) allow_on_headers_stop_iteration: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) configuration: Option<StringValue>,
        pub(super) vm_config: VmConfig,
    }

    #[derive(Serialize, Clone, Debug)]
    pub(super) struct VmConfig {
        #[serde(skip_serializing_if = "String::is_empty")]
        pub(super) vm_id: String,
        pub(super) runtime: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) configuration: Option<StringValue>,
        pub(super) code: Value,
        /// Envoy 1.40's place for it: the PluginConfig field of the same
        /// name is deprecated there (Envoy logs "Using deprecated option").
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) capability_restriction_config: Option<Value>,
    }

    #[derive(Serialize, Clone, Debug)]
    pub(super) struct StringValue {
        #[serde(rename = "@type")]
        pub(super) type_url: &'static str,
        pub(super) value: String,
    }

    #[derive(Serialize)]
    pub(super) struct Cluster {
        pub(super) name: String,
        pub(super) r#type: &'static str,
        pub(super) connect_timeout: &'static str,
        pub(super) load_assignment: Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub(super) typed_extension_protocol_options: Option<Value>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bootstrap: &Bootstrap) -> Value {
        let yaml = bootstrap.to_yaml().expect("yaml");
        serde_yaml_ng::from_str(&yaml).expect("reads back")
    }

    #[test]
    fn a_wasm_filter_runs_before_the_router_with_its_plugin_and_vm_config() {
        let bootstrap = Bootstrap::new().listener(
            Listener::new("ingress")
                .route(Route::to_cluster("/", "backend"))
                .filter(HttpFilter::wasm(
                    WasmFilter::new("auth", "/dist/auth.wasm")
                        .root_id("auth")
                        .configuration("{\"rules\":[]}")
                        .failure_policy("FAIL_CLOSED"),
                )),
        );
        let value = parsed(&bootstrap);
        let hcm = &value["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let filters = hcm["http_filters"].as_array().expect("filters");
        assert_eq!(filters.len(), 2);
        assert_eq!(filters[1]["name"], "envoy.filters.http.router");
        let config = &filters[0]["typed_config"]["config"];
        assert_eq!(filters[0]["typed_config"]["@type"], WASM);
        assert_eq!(config["root_id"], "auth");
        assert_eq!(config["failure_policy"], "FAIL_CLOSED");
        assert_eq!(config["configuration"]["value"], "{\"rules\":[]}");
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"],
            "/dist/auth.wasm"
        );
        // Proto defaults are left out, as Envoy would print them.
        assert!(config.get("vm_id").is_none() && config["vm_config"].get("vm_id").is_none());
        assert_eq!(value["admin"]["address"]["socket_address"]["port_value"], 0);
    }

    #[test]
    fn routes_keep_their_order_and_say_where_they_go() {
        let listener = Listener::new("l")
            .route(Route::by_cluster_header("x-route-cluster").timeout("15s"))
            .route(Route::direct("/", 200, "ok").named("fallback"));
        let value = parsed(&Bootstrap::new().listener(listener));
        let routes = &value["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(
            routes[0]["match"]["headers"][0],
            json!({"name": "x-route-cluster", "present_match": true})
        );
        assert_eq!(
            routes[0]["route"],
            json!({"cluster_header": "x-route-cluster", "timeout": "15s"})
        );
        assert_eq!(routes[1]["name"], "fallback");
        assert_eq!(
            routes[1]["direct_response"],
            json!({"status": 200, "body": {"inline_string": "ok"}})
        );
    }

    #[test]
    fn an_http2_cluster_says_so_in_its_protocol_options() {
        let addr: SocketAddr = "127.0.0.1:9000".parse().expect("addr");
        let value = parsed(&Bootstrap::new().cluster(Cluster::new("grpc", addr).http2()));
        let cluster = &value["static_resources"]["clusters"][0];
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            9000
        );
        assert!(
            cluster["typed_extension_protocol_options"][HTTP_OPTIONS]["explicit_http_config"]
                .get("http2_protocol_options")
                .is_some()
        );
    }

    #[test]
    fn the_json_and_yaml_forms_say_the_same() {
        let bootstrap = Bootstrap::new()
            .admin_port(9901)
            .listener(Listener::new("l").filter(HttpFilter::lua("function x() end")));
        let from_json: Value = serde_json::from_str(&bootstrap.to_json()).expect("json");
        assert_eq!(from_json, parsed(&bootstrap));
    }
}
