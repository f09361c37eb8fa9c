//! Istio's `EnvoyFilter` (networking.istio.io/v1alpha3) that inserts one
//! wasm HTTP filter on a gateway: the way to run a proxy-wasm plugin under
//! Istio with what a `WasmPlugin` cannot carry (istiod writes PluginConfig
//! without `capability_restriction_config` or
//! `allow_on_headers_stop_iteration`).
//!
//! The patch is `HTTP_FILTER` / `INSERT_BEFORE` the router in the `GATEWAY`
//! context, so the plugin runs after Istio's own filters (authentication,
//! authorization, stats) and just before routing. Resources applied together
//! run in ascending `priority` (each lands just before the router), which is
//! how a chain keeps its order. The filter value is exactly the
//! [`HttpFilter`] a bootstrap would hold, so the same value is what
//! `envoy --mode validate` checks.

use serde_json::{Value, json};

use crate::HttpFilter;

/// An `EnvoyFilter` with one wasm HTTP filter before the router.
#[derive(Debug, Clone)]
pub struct EnvoyFilter {
    name: String,
    namespace: String,
    selector: Value,
    priority: i32,
    filter: HttpFilter,
}

impl EnvoyFilter {
    /// `name` in `namespace`, inserting `filter`; selects Istio's default
    /// ingress gateway (`istio: ingressgateway`) at priority 0 until told.
    pub fn new(name: impl Into<String>, namespace: impl Into<String>, filter: HttpFilter) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            selector: json!({"labels": {"istio": "ingressgateway"}}),
            priority: 0,
            filter,
        }
    }

    /// The workloads it applies to (`workloadSelector.labels`).
    #[must_use]
    pub fn labels(mut self, labels: Value) -> Self {
        self.selector = json!({ "labels": labels });
        self
    }

    /// `priority`: resources apply in ascending order. Set, so that the
    /// relative `INSERT_BEFORE` has a defined order (Istio's analyzer
    /// IST0151 warns about a relative patch without one).
    #[must_use]
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// The resource, as Kubernetes reads it (render as YAML or JSON).
    pub fn to_value(&self) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "workloadSelector": self.selector,
                "priority": self.priority,
                "configPatches": [{
                    "applyTo": "HTTP_FILTER",
                    "match": {
                        "context": "GATEWAY",
                        "listener": {"filterChain": {"filter": {
                            "name": "envoy.filters.network.http_connection_manager",
                            "subFilter": {"name": "envoy.filters.http.router"},
                        }}},
                    },
                    "patch": {"operation": "INSERT_BEFORE", "value": self.filter.to_value()},
                }],
            },
        })
    }
}

/// The HTTP filters an `EnvoyFilter` document inserts (each patch's
/// `value` with `applyTo: HTTP_FILTER`), as bootstrap filters: to check
/// them with `envoy --mode validate`.
pub fn http_filters(resource: &Value) -> Vec<HttpFilter> {
    resource["spec"]["configPatches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|patch| patch["applyTo"] == "HTTP_FILTER")
        .filter_map(|patch| HttpFilter::from_value(&patch["patch"]["value"]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WasmFilter;

    #[test]
    fn the_patch_holds_the_filter_a_bootstrap_would_and_reads_back() {
        let filter = HttpFilter::wasm(
            WasmFilter::new("auth", "/var/local/lib/wasm-filters/auth.wasm")
                .root_id("auth")
                .allow_on_headers_stop_iteration(true)
                .allowed_capabilities(["proxy_log"]),
        );
        let resource = EnvoyFilter::new("auth-wasm", "istio-system", filter.clone())
            .priority(10)
            .to_value();
        let patch = &resource["spec"]["configPatches"][0];
        assert_eq!(patch["patch"]["operation"], "INSERT_BEFORE");
        assert_eq!(
            patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
            "envoy.filters.http.router"
        );
        let config = &patch["patch"]["value"]["typed_config"]["config"];
        assert_eq!(config["allow_on_headers_stop_iteration"], true);
        assert!(
            config["vm_config"]["capability_restriction_config"]["allowed_capabilities"]
                .get("proxy_log")
                .is_some()
        );
        let back = http_filters(&resource);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].to_value(), filter.to_value());
    }
}
