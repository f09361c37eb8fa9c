use std::path::PathBuf;

use super::*;
use crate::toolchain::root;

/// Istio's reference data beside the repository (`../shared/reference/istio`),
/// or `None` with a loud note when this checkout has none.
fn reference(file: &str) -> Option<PathBuf> {
    let path = root()
        .parent()
        .map(|p| p.join("shared/reference/istio").join(file))?;
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIPPED: {} is absent; this test needs Istio's reference data",
            path.display()
        );
        None
    }
}

fn kept() -> Value {
    load_schema(None).unwrap()
}

fn reports(text: &str, schema: &Value) -> Vec<Report> {
    validate_text(Path::new("test.yaml"), text, schema)
}

fn without_descriptions(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "description")
                .map(|(k, v)| (k.clone(), without_descriptions(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_descriptions).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_kept_schema_is_istios_without_descriptions() {
    let Some(crd) = reference("wasmplugin-crd.yaml") else {
        return;
    };
    let istio = load_schema(Some(&crd)).unwrap();
    assert_eq!(without_descriptions(&istio), kept());
}

/// Each of Istio's invalid fixtures is refused with the API server's
/// message (the fixture's `_err`), each valid one accepted; with the kept
/// schema and with the CRD file itself.
#[test]
fn istios_fixtures_get_istios_verdicts() {
    let (Some(valid), Some(invalid), Some(crd)) = (
        reference("testdata/wasm-valid.yaml"),
        reference("testdata/wasm-invalid.yaml"),
        reference("wasmplugin-crd.yaml"),
    ) else {
        return;
    };
    for schema in [kept(), load_schema(Some(&crd)).unwrap()] {
        let text = fs::read_to_string(&valid).unwrap();
        let valid_reports = reports(&text, &schema);
        assert_eq!(valid_reports.len(), 4);
        for report in &valid_reports {
            assert_eq!(report.errors().count(), 0, "{report}");
        }
        let text = fs::read_to_string(&invalid).unwrap();
        let mut refused = 0;
        for (line, doc) in documents(&text) {
            let mut value: Value = serde_yaml_ng::from_str(doc).unwrap();
            let expected = value["_err"].as_str().unwrap().to_owned();
            // `_err` is the fixture's, not the resource's.
            value.as_object_mut().unwrap().remove("_err");
            let doc = serde_yaml_ng::to_string(&value).unwrap();
            let report = &reports(&doc, &schema)[0];
            assert!(
                report.errors().any(|f| f.message.contains(&expected)),
                "fixture at line {line}: want {expected:?}, got\n{report}"
            );
            refused += 1;
        }
        assert_eq!(refused, 15);
    }
}

const GOOD: &str = "\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: auth, namespace: istio-system}
spec:
  url: oci://localhost:5000/proxy-wasm-toolkit/auth:0.1.0
  phase: AUTHN
  pluginConfig:
    consumers: [{name: ci, api_keys: [k_2f9c1d7e8a4b4c0f]}]
    api_key: {sources: [{header: x-api-key}]}
    rules: [{name: all, require: api_key}]
";

#[test]
fn a_plugin_config_our_filter_refuses_is_reported_by_field_path() {
    let good = &reports(GOOD, &kept())[0];
    assert_eq!(good.errors().count(), 0, "{good}");
    let bad = GOOD
        .replace("{name: ci,", "{name: ci, colour: red,")
        .replace("header: x-api-key", "header: 42");
    let report = &reports(&bad, &kept())[0];
    let messages: Vec<&str> = report.errors().map(|f| f.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("spec.pluginConfig.consumers[0].colour: the auth filter")),
        "{report}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("spec.pluginConfig.api_key.sources[0].header: the auth filter")),
        "{report}"
    );
}

#[test]
fn the_filter_is_known_by_plugin_name_or_by_module_name() {
    let spec = |v: &str| serde_yaml_ng::from_str::<Value>(v).unwrap();
    assert_eq!(
        filter_of(&spec("url: file:///x/routing.wasm")),
        Some("routing")
    );
    assert_eq!(
        filter_of(&spec("url: oci://r/a/header-transform@sha256:00")),
        Some("header-transform")
    );
    assert_eq!(
        filter_of(&spec("{url: oci://r/x:1, pluginName: auth}")),
        Some("auth")
    );
    assert_eq!(filter_of(&spec("url: oci://r/someone-elses:1")), None);
}

#[test]
fn webhook_rules_refuse_unknown_target_kinds_and_a_mismatched_digest() {
    let doc = "\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: x}
spec:
  url: oci://r/x@sha256:aaaa
  sha256: 0000000000000000000000000000000000000000000000000000000000000000
  targetRefs:
  - {group: gateway.networking.k8s.io, kind: Gateway, name: ingress}
  - {group: apps, kind: Deployment, name: web}
";
    let report = &reports(doc, &kept())[0];
    let messages: Vec<&str> = report.errors().map(|f| f.message.as_str()).collect();
    assert_eq!(messages.len(), 2, "{report}");
    assert!(messages[0].starts_with("spec.targetRefs[1]: targetRef must be"));
    assert!(messages[1].contains("differs from the digest the url pins"));
    let both = doc.replace(
        "  targetRefs:",
        "  selector: {matchLabels: {app: web}}\n  targetRefs:",
    );
    let report = &reports(&both, &kept())[0];
    assert!(
        report.errors().any(|f| f
            .message
            .contains("only one of targetRefs or selector can be set")),
        "{report}"
    );
}

#[test]
fn broken_yaml_and_other_kinds_are_named_with_their_line() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: [x}
";
    let out = reports(text, &kept());
    assert_eq!(out.len(), 2);
    assert!(
        out[0]
            .to_string()
            .contains("test.yaml:1: ConfigMap/c: error: not a WasmPlugin")
    );
    let second = out[1].to_string();
    assert!(
        second.starts_with("test.yaml:5: document: error: not YAML (line 7)"),
        "{second}"
    );
}

#[test]
fn integers_that_a_double_cannot_hold_are_flagged() {
    let doc = GOOD.replace("phase: AUTHN", "phase: AUTHN\n  priority: 3");
    let doc = doc.replace(
        "    api_key:",
        "    token_cache_size: 9007199254740993\n    api_key:",
    );
    let report = &reports(&doc, &kept())[0];
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.severity == Severity::Warning
                && f.message.contains(
                    "spec.pluginConfig.token_cache_size: 9007199254740993 loses precision"
                )),
        "{report}"
    );
}

#[test]
fn a_plugin_config_that_reads_the_body_needs_an_envoy_filter() {
    let plugin = |config: &str| {
        format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
             metadata: {{name: r, namespace: istio-system}}\n\
             spec: {{url: 'file:///m/routing.wasm', pluginName: routing, pluginConfig: {config}}}\n"
        )
    };
    let body =
        plugin(r#"{"rules": [{"cluster_from": {"body": "/model", "clusters": {"a": "b"}}}]}"#);
    let errors: Vec<String> = reports(&body, &kept())
        .iter()
        .flat_map(|r| r.errors().map(|f| f.message.clone()).collect::<Vec<_>>())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("allow_on_headers_stop_iteration"),
        "{errors:#?}"
    );
    let headers_only = plugin(r#"{"default": {"cluster": "b"}}"#);
    assert_eq!(
        reports(&headers_only, &kept())
            .iter()
            .map(|r| r.errors().count())
            .sum::<usize>(),
        0
    );
}
