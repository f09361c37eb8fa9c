//! Istio `EnvoyFilter` resources (networking.istio.io/v1alpha3): the
//! project's structural schema of the resource (`istio/schema/
//! envoyfilter-v1alpha3.yaml`, written from Istio's API reference, since
//! the project keeps no copy of Istio's CRD), and what Istio says about a
//! patch beyond its shape. The patch values are Envoy configuration: the
//! wasm filters ours insert are checked by `envoy --mode validate`
//! (`cargo xtask test`), not here.

use std::sync::LazyLock;

use serde_json::Value;

use super::schema::{self, Finding};

pub(super) const API_VERSION: &str = "networking.istio.io/v1alpha3";

static SCHEMA: LazyLock<Result<Value, String>> = LazyLock::new(|| {
    serde_yaml_ng::from_str(include_str!(
        "../../../istio/schema/envoyfilter-v1alpha3.yaml"
    ))
    .map_err(|e| format!("the kept EnvoyFilter schema does not parse: {e}"))
});

/// Operations whose result depends on what is already there (Istio's
/// analyzer IST0151 names them).
const RELATIVE: &[&str] = &[
    "MERGE",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "REPLACE",
];

/// Operations that put the patch's `value` into the configuration.
const INSERTING: &[&str] = &[
    "ADD",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
];

/// Checks one EnvoyFilter document.
pub(super) fn check(doc: &Value, out: &mut Vec<Finding>) {
    match &*SCHEMA {
        Ok(schema) => schema::check(doc, schema, "", out),
        Err(e) => out.push(Finding::error(e.clone())),
    }
    let spec = &doc["spec"];
    if spec["workloadSelector"].is_object() && spec["targetRefs"].is_array() {
        out.push(Finding::error(
            "spec: only one of targetRefs or workloadSelector can be set",
        ));
    }
    if spec["workloadSelector"].is_object()
        && spec["workloadSelector"]["labels"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
    {
        out.push(Finding::warning(
            "spec.workloadSelector: a selector with no labels selects every workload in the \
             namespace",
        ));
    }
    let patches = spec["configPatches"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    if patches.is_empty() {
        out.push(Finding::warning(
            "spec.configPatches: no patch: the resource changes nothing",
        ));
    }
    let prioritized = spec["priority"].as_i64().is_some_and(|p| p != 0);
    for (i, patch) in patches.iter().enumerate() {
        let path = format!("spec.configPatches[{i}]");
        let operation = patch["patch"]["operation"].as_str().unwrap_or("INVALID");
        if operation == "INVALID" {
            out.push(Finding::error(format!(
                "{path}.patch.operation: missing or INVALID: Istio applies no such patch"
            )));
        }
        if patch["applyTo"].as_str().unwrap_or("INVALID") == "INVALID" {
            out.push(Finding::error(format!(
                "{path}.applyTo: missing or INVALID: Istio applies no such patch"
            )));
        }
        if RELATIVE.contains(&operation) && !prioritized {
            out.push(Finding::warning(format!(
                "{path}.patch.operation: {operation} is relative to what other EnvoyFilters \
                 left, and without a priority their order is their creation time (Istio \
                 analyzer IST0151): set spec.priority"
            )));
        }
        let value = &patch["patch"]["value"];
        if INSERTING.contains(&operation) && !value.is_object() {
            out.push(Finding::error(format!(
                "{path}.patch.value: {operation} needs a value to insert"
            )));
        }
        if patch["applyTo"] == "HTTP_FILTER" && INSERTING.contains(&operation) {
            if value["name"].as_str().is_none_or(str::is_empty) {
                out.push(Finding::error(format!(
                    "{path}.patch.value.name: an HTTP filter needs a name"
                )));
            }
            if value["typed_config"]["@type"].as_str().is_none()
                && value["typedConfig"]["@type"].as_str().is_none()
            {
                out.push(Finding::error(format!(
                    "{path}.patch.value.typed_config: an HTTP filter needs a typed_config with \
                     its @type"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(text: &str) -> Vec<String> {
        let doc: Value = serde_yaml_ng::from_str(text).expect("test YAML");
        let mut out = Vec::new();
        check(&doc, &mut out);
        out.into_iter().map(|f| f.message).collect()
    }

    const GOOD: &str = "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: auth-wasm, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  priority: 10
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: auth
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config: {vm_config: {runtime: envoy.wasm.runtime.v8}}
";

    #[test]
    fn the_generated_shape_passes() {
        assert_eq!(findings(GOOD), Vec::<String>::new());
    }

    #[test]
    fn enums_unknown_fields_and_a_missing_filter_name_are_refused() {
        let bad = GOOD
            .replace("context: GATEWAY", "context: INGRESS")
            .replace("operation: INSERT_BEFORE", "operation: INSERT_BEFOR")
            .replace("  priority: 10\n", "  priorty: 10\n");
        let found = findings(&bad);
        let has = |needle: &str| found.iter().any(|f| f.contains(needle));
        assert!(has("spec.configPatches[0].match.context"), "{found:#?}");
        assert!(has("spec.configPatches[0].patch.operation"), "{found:#?}");
        assert!(has("priorty"), "{found:#?}");
        let nameless = findings(&GOOD.replace("        name: auth\n", ""));
        assert_eq!(
            nameless,
            ["spec.configPatches[0].patch.value.name: an HTTP filter needs a name"]
        );
    }

    #[test]
    fn a_relative_patch_without_priority_and_two_selectors_are_named() {
        let text = GOOD.replace(
            "  priority: 10\n",
            "  targetRefs: [{kind: Gateway, name: gw}]\n",
        );
        let found = findings(&text);
        assert!(found.iter().any(|f| f.contains("IST0151")), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|f| f.contains("only one of targetRefs or workloadSelector")),
            "{found:#?}"
        );
    }
}
