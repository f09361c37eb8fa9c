//! The scenario file format: a filter chain, host properties, callout
//! upstreams, and steps (a request, the backend's response, expectations).
//! Loading checks everything a run would trip over and names the file and
//! line of each problem.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use proxy_wasm_harness::{FailurePolicy, LogLevel};
use regex::Regex;
use schemars::JsonSchema;
use serde::Deserialize;

/// One scenario file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    /// A title for readers (reports name the file).
    #[serde(default)]
    #[allow(dead_code, reason = "read by people, not by the runner")]
    pub(crate) name: Option<String>,
    /// What the scenario shows, for readers.
    #[serde(default)]
    #[allow(dead_code, reason = "read by people, not by the runner")]
    pub(crate) description: Option<String>,
    /// The filter chain, in order (Envoy's `http_filters` before the router).
    pub(crate) filters: Vec<FilterSpec>,
    /// Host properties by dotted path. Only properties the Envoy runner can
    /// set through its configuration are allowed: `xds.route_name`,
    /// `xds.virtual_host_name`, and route metadata string entries
    /// `xds.route_metadata.filter_metadata.<namespace>.<key>` (neither
    /// dotted).
    #[serde(default)]
    pub(crate) properties: BTreeMap<String, String>,
    /// Backend clusters besides `backend`. When given, a request whose
    /// `cluster_header` names one of them (or `backend`) goes to that
    /// cluster, as an Envoy route with `cluster_header` sends it; any other
    /// value gets Envoy's 503 for an unknown cluster; without the header it
    /// goes to `backend`.
    #[serde(default)]
    pub(crate) clusters: Vec<String>,
    /// The header that picks among `clusters`.
    #[serde(default = "cluster_header")]
    pub(crate) cluster_header: String,
    /// Clusters the filters may call with `proxy_http_call`, by name.
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, UpstreamSpec>,
    /// The chain refuses its configuration (Envoy then refuses to start).
    #[serde(default)]
    pub(crate) expect_rejected: Option<Rejected>,
    /// Requests, in order; they share the filters' VMs (caches, counters).
    #[serde(default)]
    pub(crate) steps: Vec<Step>,
    /// With `--compare`, compare every log line the plugins write (start-up
    /// and each step) between the runners, line by line, not only the lines
    /// `expect.logs` names. For modules whose log is their output, such as
    /// the ABI probe.
    #[serde(default)]
    pub(crate) compare_logs: bool,
    /// With `compare_logs`: log lines matching any of these regular
    /// expressions are left out of the comparison, in both runners. Each is
    /// a known difference that test-harness/DIVERGENCES.md explains.
    #[serde(default)]
    pub(crate) compare_logs_except: Vec<String>,
}

/// A filter of the chain.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterSpec {
    /// The module: a path relative to the scenario file,
    /// `filter:<name>` for the toolkit's filters (`header-transform`,
    /// `routing`, `auth`), or
    /// `fixture:<name>` for the harness's test fixtures (`sdk-filter`,
    /// `cache-filter`, `minimal-filter`).
    pub(crate) wasm: String,
    /// Plugin name (`plugin_name`); defaults to `filter-<index>`.
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Plugin configuration: a string is passed as is, anything else as
    /// JSON text.
    #[serde(default)]
    pub(crate) configuration: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) root_id: Option<String>,
    #[serde(default)]
    pub(crate) vm_id: Option<String>,
    /// VM configuration, as `configuration`.
    #[serde(default)]
    pub(crate) vm_config: Option<serde_json::Value>,
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration`: a pause at
    /// the headers lets the body still reach the filter.
    #[serde(default)]
    pub(crate) allow_on_headers_stop_iteration: bool,
    /// Envoy's `PluginConfig.failure_policy`: what requests get once the
    /// filter's VM has failed (a trap, a callback past its deadline). The
    /// request whose callback failed gets a local 503 under every policy;
    /// later ones: `FAIL_CLOSED` (the default, as Envoy's) a local 503;
    /// `FAIL_OPEN` pass the filter untouched; `FAIL_RELOAD` a new VM once
    /// the reload back-off (1 to 1.5 s since the VM was last loaded) has
    /// elapsed, a 503 until then.
    #[serde(default, deserialize_with = "policy::deserialize")]
    #[schemars(schema_with = "policy::schema")]
    pub(crate) failure_policy: Option<FailurePolicy>,
    /// Envoy's `VmConfig.capability_restriction_config`: only these
    /// capabilities (host functions, WASI functions and `proxy_on_*`
    /// callbacks, by name) are allowed, in both runners; `derived`: exactly
    /// what the module imports and exports (`proxy-wasm-harness
    /// capabilities`). Absent: no restriction.
    #[serde(default)]
    pub(crate) capabilities: Option<Capabilities>,
}

/// A filter's capability restriction: `derived`, or the allowed names.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "`capabilities`: `derived` or a list of capability names"
)]
pub(crate) enum Capabilities {
    Derived(Derived),
    Listed(Vec<String>),
}

/// `derived`: what the module imports and exports.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Derived {
    Derived,
}

/// An upstream for callouts: a canned answer or a failure.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpstreamSpec {
    #[serde(default = "ok")]
    pub(crate) status: u16,
    /// Name → value, or a list of values sent as repeated lines.
    #[serde(default)]
    pub(crate) headers: HeaderLines,
    #[serde(default)]
    pub(crate) body: String,
    /// Instead of answering: `reset` closes the connection, `timeout` never
    /// answers.
    #[serde(default)]
    pub(crate) failure: Option<Failure>,
    /// A gRPC service (`proxy_grpc_call`): how it answers. The cluster then
    /// speaks HTTP/2; without this it is an HTTP/1.1 service, and a gRPC
    /// call to it fails as it fails in Envoy.
    #[serde(default)]
    pub(crate) grpc: Option<GrpcSpec>,
}

/// A gRPC service's answer to every call.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrpcSpec {
    /// The gRPC status (`grpc-status`); 0 is OK.
    #[serde(default)]
    pub(crate) status: u32,
    /// `grpc-message`.
    #[serde(default)]
    pub(crate) message: String,
    /// The response message, sent when the status is 0.
    #[serde(default)]
    pub(crate) response: String,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Failure {
    Reset,
    Timeout,
}

/// The chain refuses its configuration.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rejected {
    /// A log line (any level) that must contain this text.
    #[serde(default)]
    pub(crate) log_contains: Option<String>,
}

/// One request through the chain.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Step {
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Time that passes before the request, in milliseconds: virtual time
    /// in the harness (ticks and timers fire), a real pause with Envoy.
    #[serde(default)]
    pub(crate) wait_ms: u64,
    /// Upstreams that answer differently from this step on (a rotated key
    /// set, an authorization service that now says no); each must be
    /// declared in the scenario's `upstreams`.
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, UpstreamSpec>,
    #[serde(default)]
    pub(crate) request: RequestSpec,
    /// What the backend answers when the request reaches it.
    #[serde(default)]
    pub(crate) response: ResponseSpec,
    #[serde(default)]
    pub(crate) expect: Expect,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestSpec {
    #[serde(default = "get")]
    pub(crate) method: String,
    #[serde(default = "root")]
    pub(crate) path: String,
    #[serde(default = "authority")]
    pub(crate) authority: String,
    /// Name → value, or a list of values sent as repeated lines.
    #[serde(default)]
    pub(crate) headers: HeaderLines,
    #[serde(default)]
    pub(crate) body: Option<String>,
    /// How the client speaks to Envoy, which decides how the body reaches
    /// the filters: `http1` (one body callback with the bytes, then an empty
    /// one that ends the stream) or `http2` (the last DATA frame ends it).
    #[serde(default)]
    pub(crate) protocol: Protocol,
    /// The body sent in pieces of these sizes (what is left is one more),
    /// with a pause between them: each piece is its own body callback.
    #[serde(default)]
    pub(crate) chunks: Vec<usize>,
}

/// The client's protocol to Envoy.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Protocol {
    #[default]
    Http1,
    Http2,
}

/// Headers to send: name → one value or a list of values (repeated lines).
pub(crate) type HeaderLines = BTreeMap<String, HeaderValues>;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum HeaderValues {
    One(String),
    Many(Vec<String>),
}

impl FilterSpec {
    /// The harness plugin for this filter, the `index`th of its chain, set up
    /// as Envoy's PluginConfig and VmConfig set it up (name, root and VM ids,
    /// both configurations, `allow_on_headers_stop_iteration`), with the
    /// chain's host `properties`. One conversion for the scenario runner and
    /// `serve`.
    pub(crate) fn plugin_builder(
        &self,
        module: &Path,
        index: usize,
        runtime: &proxy_wasm_harness::Runtime,
        properties: &BTreeMap<String, String>,
    ) -> Result<proxy_wasm_harness::PluginBuilder, String> {
        let mut builder = proxy_wasm_harness::Plugin::builder(module)
            .runtime(runtime)
            .name(self.plugin_name(index))
            .root_id(self.root_id.clone().unwrap_or_default())
            .vm_id(self.vm_id.clone().unwrap_or_default())
            .configuration(text(self.configuration.as_ref()))
            .vm_configuration(text(self.vm_config.as_ref()))
            .allow_on_headers_stop_iteration(self.allow_on_headers_stop_iteration)
            .allowed_capabilities(self.allowed_capabilities(module)?);
        // Only a policy the file sets: `serve` has its own answer to a trap
        // (a 500, then new VMs) unless one is set.
        if let Some(policy) = self.failure_policy {
            builder = builder.failure_policy(policy);
        }
        for (path, value) in properties {
            builder = builder.property(path, value.as_bytes().to_vec());
        }
        Ok(builder)
    }

    /// The failure policy: as set, else Envoy's default (FAIL_CLOSED).
    pub(crate) fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy.unwrap_or(FailurePolicy::FailClosed)
    }

    /// The capabilities the plugin is restricted to (empty: none).
    pub(crate) fn allowed_capabilities(&self, module: &Path) -> Result<Vec<String>, String> {
        match &self.capabilities {
            None => Ok(Vec::new()),
            Some(Capabilities::Listed(names)) => Ok(names.clone()),
            Some(Capabilities::Derived(Derived::Derived)) => {
                let bytes =
                    std::fs::read(module).map_err(|e| format!("{}: {e}", module.display()))?;
                proxy_wasm_harness::capabilities::required(&bytes)
                    .map_err(|e| format!("{}: {e}", module.display()))
            }
        }
    }

    /// The plugin's name: as given, or `filter-<index>`.
    pub(crate) fn plugin_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("filter-{index}"))
    }
}

/// Configuration bytes: a string as is, anything else as JSON text.
pub(crate) fn text(value: Option<&serde_json::Value>) -> String {
    match value {
        None => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Where an Envoy route with `cluster_header` sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteTo<'a> {
    /// No such header: the route's default.
    Default,
    /// The cluster the header names.
    Cluster(&'a str),
    /// The header names no cluster: Envoy's router answers 503.
    NoCluster,
}

/// Where the `cluster_header` value `named` routes, `exists` saying which
/// clusters there are. One rule for the scenario runner and `serve`.
pub(crate) fn route_by_header(named: Option<&str>, exists: impl Fn(&str) -> bool) -> RouteTo<'_> {
    match named {
        None => RouteTo::Default,
        Some(name) if exists(name) => RouteTo::Cluster(name),
        Some(_) => RouteTo::NoCluster,
    }
}

pub(crate) fn lines(headers: &HeaderLines) -> impl Iterator<Item = (&str, &str)> {
    headers.iter().flat_map(|(name, values)| {
        let values: Vec<&str> = match values {
            HeaderValues::One(v) => vec![v.as_str()],
            HeaderValues::Many(list) => list.iter().map(String::as_str).collect(),
        };
        values.into_iter().map(move |v| (name.as_str(), v))
    })
}

impl Default for RequestSpec {
    fn default() -> Self {
        Self {
            method: get(),
            path: root(),
            authority: authority(),
            headers: BTreeMap::new(),
            body: None,
            protocol: Protocol::Http1,
            chunks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseSpec {
    #[serde(default = "ok")]
    pub(crate) status: u16,
    /// Name → value, or a list of values sent as repeated lines.
    #[serde(default)]
    pub(crate) headers: HeaderLines,
    #[serde(default)]
    pub(crate) body: String,
    /// The backend sends its body in pieces of these sizes, with a pause
    /// between them: each piece is its own body callback.
    #[serde(default)]
    pub(crate) chunks: Vec<usize>,
}

impl Default for ResponseSpec {
    fn default() -> Self {
        Self {
            status: ok(),
            headers: BTreeMap::new(),
            body: String::new(),
            chunks: Vec::new(),
        }
    }
}

/// What must be true after the step.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Expect {
    /// What the backend received.
    #[serde(default)]
    pub(crate) backend: Option<BackendExpect>,
    /// What the client received.
    #[serde(default)]
    pub(crate) client: Option<ClientExpect>,
    /// Log lines written during the step.
    #[serde(default)]
    pub(crate) logs: Vec<LogExpect>,
    /// Callouts made during the step, in order (all of them).
    #[serde(default)]
    pub(crate) http_calls: Option<Vec<CallExpect>>,
    /// The filter changes a body's size and leaves its `content-length`
    /// stale, and the scenario shows what the peer then reads. Otherwise a
    /// stale `content-length` fails the step (Envoy does not fix it: the
    /// peer reads the declared length and the rest spoils the connection).
    #[serde(default)]
    pub(crate) stale_content_length: bool,
    /// A filter's VM fails during the step (a trap; in the harness also a
    /// callback past its deadline), and the scenario shows what the failure
    /// policy then does. Otherwise a VM failure fails the step.
    #[serde(default)]
    pub(crate) vm_failure: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackendExpect {
    /// Whether the request reached the backend (default: true).
    #[serde(default)]
    pub(crate) reached: Option<bool>,
    /// The cluster that received it: `backend` or one of `clusters`.
    #[serde(default)]
    pub(crate) cluster: Option<String>,
    #[serde(default)]
    pub(crate) method: Option<String>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) headers: HeaderExpect,
    #[serde(default)]
    pub(crate) body: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientExpect {
    /// The stream is reset: the client gets no complete response.
    #[serde(default)]
    pub(crate) reset: bool,
    #[serde(default)]
    pub(crate) status: Option<u16>,
    #[serde(default)]
    pub(crate) headers: HeaderExpect,
    #[serde(default)]
    pub(crate) body: Option<String>,
    #[serde(default)]
    pub(crate) body_contains: Option<String>,
}

/// Header checks; names are case-insensitive. A repeated header is checked
/// as its lines joined with `, ` (RFC 9110 §5.3).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderExpect {
    #[serde(default)]
    pub(crate) present: Vec<String>,
    #[serde(default)]
    pub(crate) absent: Vec<String>,
    /// Name → exact value.
    #[serde(default)]
    pub(crate) equal: BTreeMap<String, String>,
    /// Name → regular expression the value must match. With `--compare`,
    /// a header named only here is compared by whether it matches.
    #[serde(default)]
    pub(crate) matches: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogExpect {
    /// `trace`, `debug`, `info`, `warn`, `error` or `critical`; any when absent.
    #[serde(default, deserialize_with = "level::deserialize")]
    #[schemars(schema_with = "level::schema")]
    pub(crate) level: Option<LogLevel>,
    pub(crate) contains: String,
    /// The line must not appear.
    #[serde(default)]
    pub(crate) absent: bool,
}

/// A filter's failure policy in a scenario: the harness's
/// [`FailurePolicy`] by Envoy's name.
mod policy {
    use proxy_wasm_harness::FailurePolicy;
    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<FailurePolicy>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|name| name.parse().map_err(serde::de::Error::custom))
            .transpose()
    }

    pub(super) fn schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = FailurePolicy::ALL.iter().map(|p| p.name()).collect();
        json_schema!({"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]})
    }
}

/// A log line's level in a scenario: the harness's [`LogLevel`] by name.
mod level {
    use proxy_wasm_harness::LogLevel;
    use schemars::{Schema, SchemaGenerator, json_schema};
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<LogLevel>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|name| name.parse().map_err(serde::de::Error::custom))
            .transpose()
    }

    pub(super) fn schema(_: &mut SchemaGenerator) -> Schema {
        let names: Vec<&str> = LogLevel::ALL.iter().map(|l| l.name()).collect();
        json_schema!({"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]})
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallExpect {
    pub(crate) upstream: String,
    #[serde(default)]
    pub(crate) method: Option<String>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// The exact body the call carried (empty: none).
    #[serde(default)]
    pub(crate) body: Option<String>,
}

fn ok() -> u16 {
    200
}
fn get() -> String {
    "GET".into()
}
fn root() -> String {
    "/".into()
}
fn authority() -> String {
    "example.com".into()
}
fn cluster_header() -> String {
    "x-route-cluster".into()
}

/// The longest `wait_ms` of a step.
pub(crate) const MAX_WAIT_MS: u64 = 10_000;

/// The cluster every scenario has.
pub(crate) const BACKEND: &str = "backend";

/// Properties the Envoy runner can express in its configuration, besides
/// route metadata entries (`ROUTE_METADATA_PREFIX<namespace>.<key>`).
pub(crate) const SETTABLE_PROPERTIES: &[&str] = &["xds.route_name", "xds.virtual_host_name"];

/// Route metadata properties: a namespace and a key follow, neither dotted.
pub(crate) const ROUTE_METADATA_PREFIX: &str = "xds.route_metadata.filter_metadata.";

/// `(namespace, key)` of a route metadata property.
pub(crate) fn route_metadata_entry(property: &str) -> Option<(&str, &str)> {
    let (namespace, key) = property
        .strip_prefix(ROUTE_METADATA_PREFIX)?
        .split_once('.')?;
    (!namespace.is_empty() && !key.is_empty() && !key.contains('.')).then_some((namespace, key))
}

/// A loaded, checked scenario.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The scenario file.
    pub(crate) file: PathBuf,
    pub(crate) scenario: Scenario,
    /// Each filter's module path.
    pub(crate) modules: Vec<PathBuf>,
}

/// The folder under `work` where a scenario's runs keep their files (Envoy's
/// bootstrap and log, each runner's plugin log), named after the file's
/// whole path so that two files of the same name never share one.
pub(crate) fn work_dir(work: &Path, loaded: &Loaded) -> PathBuf {
    let path = loaded.file.with_extension("");
    let name: String = path
        .to_string_lossy()
        .trim_start_matches(['.', '/'])
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    work.join(name)
}

/// A problem with a scenario file: where and what.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub(crate) file: PathBuf,
    pub(crate) line: Option<usize>,
    pub(crate) message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Reads and checks a scenario file.
pub(crate) fn load(file: &Path) -> Result<Loaded, LoadError> {
    let fail = |line: Option<usize>, message: String| LoadError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let (text, scenario): (String, Scenario) = read_yaml(file)?;
    // Semantic problems: the line is that of the offending text.
    let at = |needle: &str| locate(&text, needle);
    let modules = chain_modules(file, &text, &scenario.filters)?;
    for name in scenario.properties.keys() {
        if !SETTABLE_PROPERTIES.contains(&name.as_str()) && route_metadata_entry(name).is_none() {
            return Err(fail(
                at(name),
                format!(
                    "property `{name}` cannot be set in Envoy's configuration; settable: {}, {ROUTE_METADATA_PREFIX}<namespace>.<key>",
                    SETTABLE_PROPERTIES.join(", ")
                ),
            ));
        }
    }
    for (i, name) in scenario.clusters.iter().enumerate() {
        let taken = name == BACKEND
            || scenario.clusters.get(..i).is_some_and(|c| c.contains(name))
            || scenario.upstreams.contains_key(name);
        if taken || name.is_empty() {
            return Err(fail(
                at(name),
                format!("cluster `{name}` is empty, `backend`, repeated, or an upstream's name"),
            ));
        }
    }
    for pattern in &scenario.compare_logs_except {
        Regex::new(pattern).map_err(|e| {
            fail(
                at(pattern),
                format!("invalid regular expression `{pattern}`: {e}"),
            )
        })?;
    }
    for step in &scenario.steps {
        if let Some(cluster) = step
            .expect
            .backend
            .as_ref()
            .and_then(|b| b.cluster.as_ref())
            && cluster != BACKEND
            && !scenario.clusters.contains(cluster)
        {
            return Err(fail(
                at(cluster),
                format!(
                    "expect.backend.cluster names `{cluster}`, which `clusters` does not declare"
                ),
            ));
        }
        let checks = [
            step.expect.backend.as_ref().map(|b| &b.headers),
            step.expect.client.as_ref().map(|c| &c.headers),
        ];
        for pattern in checks
            .into_iter()
            .flatten()
            .flat_map(|h| h.matches.values())
        {
            Regex::new(pattern).map_err(|e| {
                fail(
                    at(pattern),
                    format!("invalid regular expression `{pattern}`: {e}"),
                )
            })?;
        }
        if step.wait_ms > MAX_WAIT_MS {
            return Err(fail(
                at("wait_ms"),
                format!("wait_ms is at most {MAX_WAIT_MS} (a scenario is a test, not a soak)"),
            ));
        }
        for name in step.upstreams.keys() {
            if !scenario.upstreams.contains_key(name) {
                return Err(fail(
                    at(name),
                    format!("step upstream `{name}` is not declared in the scenario's `upstreams`"),
                ));
            }
        }
        for call in step.expect.http_calls.iter().flatten() {
            if !scenario.upstreams.contains_key(&call.upstream) {
                return Err(fail(
                    at(&call.upstream),
                    format!(
                        "http_calls names upstream `{}`, which `upstreams` does not declare",
                        call.upstream
                    ),
                ));
            }
        }
    }
    if scenario.expect_rejected.is_some() && !scenario.steps.is_empty() {
        return Err(fail(
            at("expect_rejected"),
            "a scenario that expects the configuration to be rejected has no steps".into(),
        ));
    }
    Ok(Loaded {
        file: file.to_path_buf(),
        scenario,
        modules,
    })
}

/// Reads a YAML file and parses it into `T`; an error names the line and
/// the problem.
pub(crate) fn read_yaml<T: serde::de::DeserializeOwned>(
    file: &Path,
) -> Result<(String, T), LoadError> {
    let text = std::fs::read_to_string(file).map_err(|e| LoadError {
        file: file.to_path_buf(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    let value = parse_yaml(file, &text)?;
    Ok((text, value))
}

/// Each filter's module path, for a chain that must name at least one; a
/// problem names the line of the offending text.
pub(crate) fn chain_modules(
    file: &Path,
    text: &str,
    filters: &[FilterSpec],
) -> Result<Vec<PathBuf>, LoadError> {
    let fail = |needle: &str, message: String| LoadError {
        file: file.to_path_buf(),
        line: locate(text, needle),
        message,
    };
    if filters.is_empty() {
        return Err(fail(
            "filters",
            "`filters` is empty: name at least one".into(),
        ));
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    filters
        .iter()
        .map(|filter| {
            resolve_wasm(dir, &filter.wasm).map_err(|message| fail(&filter.wasm, message))
        })
        .collect()
}

fn parse_yaml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, LoadError> {
    serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        // The message carries "at line N column M" too; keep only the problem.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_owned();
        LoadError {
            file: file.to_path_buf(),
            line,
            message,
        }
    })
}

/// `filter:<name>`, `fixture:<name>` or a path relative to the scenario's
/// folder.
fn resolve_wasm(dir: &Path, wasm: &str) -> Result<PathBuf, String> {
    if let Some(name) = wasm.strip_prefix("filter:") {
        let path = match name {
            "header-transform" => harness_fixtures::HEADER_TRANSFORM,
            "routing" => harness_fixtures::ROUTING,
            "auth" => harness_fixtures::AUTH,
            other => {
                return Err(format!(
                    "unknown filter `{other}`: header-transform, routing, auth"
                ));
            }
        };
        return Ok(PathBuf::from(path));
    }
    if let Some(name) = wasm.strip_prefix("fixture:") {
        let path = match name {
            "sdk-filter" => harness_fixtures::SDK_FILTER,
            "cache-filter" => harness_fixtures::CACHE_FILTER,
            "minimal-filter" => harness_fixtures::MINIMAL_FILTER,
            "abi-probe" => harness_fixtures::ABI_PROBE,
            "abi-probe-0.2.0" => harness_fixtures::ABI_PROBE_0_2_0,
            "abi-probe-0.1.0" => harness_fixtures::ABI_PROBE_0_1_0,
            "sdk-0.1-filter" => harness_fixtures::SDK_0_1_FILTER,
            "as-filter" => harness_fixtures::AS_FILTER,
            other => {
                return Err(format!(
                    "unknown fixture `{other}`: sdk-filter, cache-filter, minimal-filter, \
                     abi-probe, abi-probe-0.2.0, abi-probe-0.1.0, sdk-0.1-filter or as-filter"
                ));
            }
        };
        return Ok(PathBuf::from(path));
    }
    let path = dir.join(wasm);
    if !path.is_file() {
        return Err(format!("wasm module `{}` does not exist", path.display()));
    }
    Ok(path)
}

/// The 1-based line of the first occurrence of `needle`, if any.
pub(crate) fn locate(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Scenario files under the given files and folders (`.yaml`, `.yml`),
/// sorted.
pub(crate) fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    Ok(files)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("scenario-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn error(name: &str, text: &str) -> String {
        load(&write(name, text)).unwrap_err().to_string()
    }

    #[test]
    fn bad_files_name_the_file_line_and_problem() {
        let e = error("bad-yaml.yaml", "filters:\n  - wasm: [unclosed\n");
        assert!(
            e.contains("bad-yaml.yaml:2:") || e.contains("bad-yaml.yaml:3:"),
            "{e}"
        );
        let e = error(
            "unknown.yaml",
            "filters:\n  - wasm: fixture:sdk-filter\nstepz: []\n",
        );
        assert!(
            e.contains("unknown.yaml:3:") && e.contains("unknown field `stepz`"),
            "{e}"
        );
        let e = error("missing.yaml", "filters:\n  - wasm: nowhere.wasm\n");
        assert!(
            e.contains("missing.yaml:2:") && e.contains("does not exist"),
            "{e}"
        );
        let e = error(
            "regex.yaml",
            "filters:\n  - wasm: fixture:sdk-filter\nsteps:\n  - expect:\n      client:\n        headers:\n          matches: {x-a: \"(\"}\n",
        );
        assert!(
            e.contains("regex.yaml:7:") && e.contains("invalid regular expression"),
            "{e}"
        );
        let e = error(
            "caps.yaml",
            "filters:\n  - wasm: fixture:sdk-filter\n    capabilities: derive\n",
        );
        assert!(
            e.contains("caps.yaml:2:") && e.contains("`derived` or a list of capability names"),
            "{e}"
        );
        let loaded = load(&write(
            "caps-ok.yaml",
            "filters:\n  - wasm: fixture:sdk-filter\n    capabilities: derived\n  - wasm: fixture:sdk-filter\n    capabilities: [proxy_log]\n",
        ))
        .unwrap();
        let modules = &loaded.modules;
        let derived = loaded.scenario.filters[0]
            .allowed_capabilities(&modules[0])
            .unwrap();
        assert!(
            derived.iter().any(|c| c == "proxy_on_request_headers"),
            "{derived:?}"
        );
        assert_eq!(
            loaded.scenario.filters[1]
                .allowed_capabilities(&modules[1])
                .unwrap(),
            ["proxy_log"]
        );
        let e = error(
            "prop.yaml",
            "filters:\n  - wasm: fixture:sdk-filter\nproperties:\n  source.address: x\n",
        );
        assert!(
            e.contains("prop.yaml:4:") && e.contains("cannot be set"),
            "{e}"
        );
    }

    #[test]
    fn the_committed_schema_is_current() {
        let schema = serde_json::to_string_pretty(&schemars::schema_for!(Scenario)).unwrap();
        let committed = include_str!("../../scenario.schema.json");
        assert_eq!(
            committed.trim(),
            schema.trim(),
            "regenerate with `cargo run -p proxy-wasm-harness-cli -- schema > test-harness/scenario.schema.json`"
        );
    }
}
