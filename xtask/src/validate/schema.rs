//! A Kubernetes structural schema (a CRD's `openAPIV3Schema`) applied to a
//! document as the API server applies it, with the API server's wording:
//! types and `nullable`, `enum`, string lengths and `pattern`, number
//! bounds, `required`, `maxItems`, `maxProperties`, list maps
//! (`Duplicate value`), unknown fields (as `kubectl apply`'s strict field
//! validation reports them), `x-kubernetes-preserve-unknown-fields`, and the
//! CEL rules (`x-kubernetes-validations`), evaluated by the `cel` crate. A
//! rule it cannot evaluate is reported as unchecked, never silently passed.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use cel::extractors::This;

use regex::Regex;
use serde_json::Value;

use super::url;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Error,
    Warning,
}

/// One finding, located by the API server's field path (`spec.url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) severity: Severity,
    pub(crate) message: String,
}

impl Finding {
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub(crate) fn warning(message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            message: message.into(),
        }
    }
}

/// Checks `value` at `path` against `schema`, appending findings.
pub(crate) fn check(value: &Value, schema: &Value, path: &str, out: &mut Vec<Finding>) {
    let shown = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"] != true
            && let Some(expected) = schema["type"].as_str()
        {
            out.push(Finding::error(format!(
                "{shown} in body must be of type {expected}: \"null\""
            )));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            out.push(Finding::error(format!(
                "{shown} in body must be of type integer or string: \"{}\"",
                type_name(value)
            )));
        }
        return;
    }
    if let Some(expected) = schema["type"].as_str() {
        let fits = match expected {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !fits {
            out.push(Finding::error(format!(
                "{shown} in body must be of type {expected}: \"{}\"",
                type_name(value)
            )));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let list = allowed
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Finding::error(format!(
            "{shown}: Unsupported value: {value}: supported values: {list}"
        )));
    }
    match value {
        Value::String(s) => check_string(s, schema, shown, out),
        Value::Number(n) => check_number(n, schema, shown, out),
        Value::Array(items) => check_array(items, schema, path, out),
        Value::Object(map) => check_object(map, schema, path, out),
        Value::Bool(_) | Value::Null => {}
    }
    for validation in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rule = validation["rule"].as_str().unwrap_or_default();
        let message = validation["message"].as_str().unwrap_or(rule);
        match cel(rule, value) {
            Ok(true) => {}
            Ok(false) => out.push(Finding::error(format!(
                "{shown}: Invalid value: \"{}\": {message}",
                type_name(value)
            ))),
            Err(why) => out.push(Finding::warning(format!(
                "{shown}: CEL rule not checked ({why}): {rule}"
            ))),
        }
    }
}

/// The API server's name for a JSON value's type.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn check_string(s: &str, schema: &Value, path: &str, out: &mut Vec<Finding>) {
    let chars = s.chars().count() as u64;
    if let Some(min) = schema["minLength"].as_u64()
        && chars < min
    {
        out.push(Finding::error(format!(
            "{path} in body should be at least {min} chars long"
        )));
    }
    if let Some(max) = schema["maxLength"].as_u64()
        && chars > max
    {
        out.push(Finding::error(format!(
            "{path}: Too long: may not be more than {max} bytes"
        )));
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        match Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => out.push(Finding::error(format!(
                "{path} in body should match '{pattern}'"
            ))),
            Err(e) => out.push(Finding::warning(format!(
                "{path}: the schema's pattern {pattern:?} does not compile: {e}"
            ))),
        }
    }
}

fn check_number(n: &serde_json::Number, schema: &Value, path: &str, out: &mut Vec<Finding>) {
    let Some(v) = n.as_f64() else { return };
    if let Some(min) = schema["minimum"].as_f64()
        && v < min
    {
        out.push(Finding::error(format!(
            "{path} in body should be greater than or equal to {min}"
        )));
    }
    if let Some(max) = schema["maximum"].as_f64()
        && v > max
    {
        out.push(Finding::error(format!(
            "{path} in body should be less than or equal to {max}"
        )));
    }
    if schema["format"] == "int32" && (v < f64::from(i32::MIN) || v > f64::from(i32::MAX)) {
        out.push(Finding::error(format!(
            "{path} in body must be of type int32: \"{n}\""
        )));
    }
}

fn check_array(items: &[Value], schema: &Value, path: &str, out: &mut Vec<Finding>) {
    if let Some(max) = schema["maxItems"].as_u64()
        && items.len() as u64 > max
    {
        out.push(Finding::error(format!(
            "{path}: Too many: {}: must have at most {max} items",
            items.len()
        )));
    }
    for (i, item) in items.iter().enumerate() {
        check(item, &schema["items"], &format!("{path}[{i}]"), out);
    }
    if schema["x-kubernetes-list-type"] == "map" {
        let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let key: Vec<String> = keys.iter().map(|k| item[*k].to_string()).collect();
            if keys.iter().all(|k| !item[*k].is_null()) && !seen.insert(key.clone()) {
                let shown = keys
                    .iter()
                    .zip(&key)
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Finding::error(format!(
                    "{path}[{i}]: Duplicate value: map[string]interface {{}}{{{shown}}}"
                )));
            }
        }
    }
}

fn check_object(
    map: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    out: &mut Vec<Finding>,
) {
    let member = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap_or_default();
        if !map.contains_key(key) {
            out.push(Finding::error(format!("{}: Required value", member(key))));
        }
    }
    if let Some(max) = schema["maxProperties"].as_u64()
        && map.len() as u64 > max
    {
        out.push(Finding::error(format!(
            "{path}: Too many: {}: must have at most {max} items",
            map.len()
        )));
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    for (key, value) in map {
        if let Some(property) = schema["properties"].get(key) {
            check(value, property, &member(key), out);
        } else if schema["additionalProperties"].is_object() {
            check(value, &schema["additionalProperties"], &member(key), out);
        } else if !preserve && (path.is_empty() && is_object_meta(key)) {
            // apiVersion, kind and metadata are the API server's own.
        } else if !preserve {
            out.push(Finding::error(format!("unknown field \"{}\"", member(key))));
        }
    }
}

fn is_object_meta(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind" | "metadata")
}

/// Evaluates a CEL rule with `self` bound to `value`, as the API server
/// does: the `cel` crate's standard library, plus the Kubernetes URL
/// library's `isURL`, `url` and `getScheme` (Go's `url.ParseRequestURI`,
/// modelled in `url.rs`). `Err` when the rule does not compile, uses a
/// function neither provides, or does not give a boolean.
fn cel(rule: &str, value: &Value) -> Result<bool, String> {
    static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));
    let program = ENV.compile(rule).map_err(|e| e.to_string())?;
    let mut context = cel::Context::with_env(Arc::clone(&ENV));
    context
        .add_variable("self", value)
        .map_err(|e| e.to_string())?;
    let declared = [
        context.add_function("isURL", |raw: Arc<String>| {
            url::parse_request_uri(&raw).is_some()
        }),
        context.add_function(
            "url",
            |ftx: &cel::FunctionContext, raw: Arc<String>| -> cel::ResolveResult {
                match url::parse_request_uri(&raw) {
                    Some(_) => Ok(cel::Value::String(raw)),
                    None => ftx.error(format!("URL parse error: {raw}")).into(),
                }
            },
        ),
        context.add_function("getScheme", |This(raw): This<Arc<String>>| {
            url::parse_request_uri(&raw).unwrap_or_default()
        }),
    ];
    for declared in declared {
        declared.map_err(|e| e.to_string())?;
    }
    match program.execute(&context).map_err(|e| e.to_string())? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("the rule gives {other:?}, not a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(value: Value, schema: Value) -> Vec<String> {
        let mut out = Vec::new();
        check(&value, &schema, "spec", &mut out);
        out.into_iter().map(|f| f.message).collect()
    }

    #[test]
    fn each_keyword_reports_with_the_api_servers_wording() {
        let schema = json!({
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "sha256": {"type": "string", "pattern": "(^$|^[a-f0-9]{64}$)"},
                "phase": {"type": "string", "enum": ["AUTHN", "AUTHZ"]},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "priority": {"type": "integer", "nullable": true, "format": "int32"},
                "refs": {"type": "array", "maxItems": 1, "items": {"type": "string"}},
            },
        });
        assert_eq!(
            errors(json!({}), schema.clone()),
            ["spec.url: Required value"]
        );
        assert_eq!(
            errors(
                json!({"url": "", "sha256": "X", "phase": "STATS", "port": 0,
                       "priority": null, "refs": ["a", "b"], "extra": 1}),
                schema.clone()
            ),
            [
                "unknown field \"spec.extra\"",
                "spec.phase: Unsupported value: \"STATS\": supported values: \"AUTHN\", \"AUTHZ\"",
                "spec.port in body should be greater than or equal to 1",
                "spec.refs: Too many: 2: must have at most 1 items",
                "spec.sha256 in body should match '(^$|^[a-f0-9]{64}$)'",
                "spec.url in body should be at least 1 chars long",
            ]
        );
        assert_eq!(
            errors(json!({"url": null, "priority": 4_000_000_000_u64}), schema),
            [
                "spec.priority in body must be of type int32: \"4000000000\"",
                "spec.url in body must be of type string: \"null\"",
            ]
        );
    }

    #[test]
    fn list_maps_refuse_duplicate_keys() {
        let schema = json!({"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        assert_eq!(
            errors(json!([{"name": "a"}, {"name": "b"}, {"name": "a"}]), schema),
            ["spec[2]: Duplicate value: map[string]interface {}{\"name\":\"a\"}"]
        );
    }

    #[test]
    fn any_cel_rule_is_evaluated_not_only_the_crds_own() {
        // Not among the rules of today's CRDs: a newer CRD's rule is checked.
        let schema = json!({"type": "object",
            "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "x-kubernetes-validations": [{
                "rule": "self.name.startsWith('x') && self.tags.exists(t, t == 'a')",
                "message": "needs an x name and tag a"}]});
        assert!(errors(json!({"name": "xy", "tags": ["b", "a"]}), schema.clone()).is_empty());
        assert_eq!(
            errors(json!({"name": "y", "tags": ["a"]}), schema),
            ["spec: Invalid value: \"object\": needs an x name and tag a"]
        );
    }

    #[test]
    fn the_url_library_follows_gos_request_uri_parser() {
        let rule = r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"#;
        let schema = json!({"type": "string", "x-kubernetes-validations": [{"rule": rule, "message": "bad url"}]});
        for good in [
            "oci://registry.example/filters/auth:v1",
            "oci://localhost:5000/proxy-wasm-toolkit/auth:0.1.0",
            "file:///opt/filters/openid.wasm",
            "https://example.com/f.wasm?x=%zz",
            "http://test",
            "test",
            "registry.example/filters/auth@sha256:abc",
            "/a/path",
            "http://[::1]:8080/x",
        ] {
            assert!(errors(json!(good), schema.clone()).is_empty(), "{good}");
        }
        for bad in [
            "fake://example.com",
            "#%blah$#@",
            "ftp://example.com/f.wasm",
            "http://exa%mple.com/",
            "oci://registry/%zz",
            "mailto:someone@example.com",
        ] {
            assert_eq!(errors(json!(bad), schema.clone()).len(), 1, "{bad}");
        }
    }

    #[test]
    fn a_rule_that_cannot_be_evaluated_is_reported_not_passed() {
        for rule in ["self.quantity() > 1", "self +", "self"] {
            let schema = json!({"type": "string",
                "x-kubernetes-validations": [{"rule": rule, "message": "m"}]});
            let mut out = Vec::new();
            check(&json!("y"), &schema, "spec", &mut out);
            assert_eq!(out.len(), 1, "{rule}");
            assert_eq!(out[0].severity, Severity::Warning);
            assert!(out[0].message.contains("not checked"), "{:?}", out[0]);
        }
    }

    #[test]
    fn preserved_unknown_fields_are_not_checked() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert!(errors(json!({"anything": [1, {"x": null}]}), schema).is_empty());
    }
}
