//! `cargo xtask validate-istio`: WasmPlugin resources checked before they
//! reach a cluster, in three layers (EnvoyFilters in [`envoy_filter`]):
//!
//! 1. the CRD's `openAPIV3Schema` with its CEL rules, as the API server
//!    checks them ([`schema`]; the project's copy of the schema unless
//!    `--crd FILE` names another);
//! 2. what Istio's validating webhook adds (`ValidateWasmPlugin`): the
//!    kinds a `targetRef` may name, a selector without labels;
//! 3. the `pluginConfig` of our filters, by the filter's own configuration
//!    parser compiled natively, so a configuration the filter would refuse
//!    in `on_configure` is refused here with its JSON path.

mod envoy_filter;
pub(crate) mod schema;
mod url;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use schema::{Finding, Severity};

/// The schema the project keeps (see its header).
const KEPT_SCHEMA: &str = include_str!("../../../istio/schema/wasmplugin-v1alpha1.yaml");

/// Filters whose `pluginConfig` this validator understands, by the name a
/// resource's `pluginName` or module file/image carries.
const FILTERS: &[&str] = &["auth", "header-transform", "routing"];

/// `targetRef` kinds Istio's webhook accepts: (group, kind).
const TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// Integers above this lose precision on the way to the filter: Istio
/// carries `pluginConfig` as a protobuf Struct, whose numbers are doubles.
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// One document of a file, and what was found in it.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) file: PathBuf,
    /// 1-based line where the document starts.
    pub(crate) line: usize,
    /// `WasmPlugin/<name>`, or what the document is.
    pub(crate) what: String,
    pub(crate) findings: Vec<Finding>,
}

impl Report {
    pub(crate) fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = format!("{}:{}: {}", self.file.display(), self.line, self.what);
        if self.findings.is_empty() {
            return write!(f, "{at}: valid");
        }
        for (i, finding) in self.findings.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let level = match finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            write!(f, "{at}: {level}: {}", finding.message)?;
        }
        Ok(())
    }
}

/// The WasmPlugin v1alpha1 schema from a CRD file (the document of kind
/// CustomResourceDefinition for `wasmplugins.extensions.istio.io`), or the
/// project's own when `crd` is `None`.
pub(crate) fn load_schema(crd: Option<&Path>) -> Result<Value, String> {
    let Some(path) = crd else {
        return serde_yaml_ng::from_str(KEPT_SCHEMA)
            .map_err(|e| format!("the kept schema does not parse: {e}"));
    };
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for (_, doc) in documents(&text) {
        let Ok(crd) = serde_yaml_ng::from_str::<Value>(doc) else {
            continue;
        };
        if crd["kind"] != "CustomResourceDefinition" || crd["spec"]["names"]["kind"] != "WasmPlugin"
        {
            continue;
        }
        let version = crd["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "v1alpha1");
        if let Some(schema) = version.map(|v| &v["schema"]["openAPIV3Schema"])
            && schema.is_object()
        {
            return Ok(schema.clone());
        }
    }
    Err(format!(
        "{} holds no WasmPlugin CRD with a v1alpha1 openAPIV3Schema",
        path.display()
    ))
}

/// Splits a YAML stream at `---` lines: (first line number, text).
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs.into_iter()
        .filter(|(_, doc)| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Validates every document of `text` (read from `file`).
pub(crate) fn validate_text(file: &Path, text: &str, schema: &Value) -> Vec<Report> {
    documents(text)
        .into_iter()
        .map(|(line, doc)| {
            let mut report = Report {
                file: file.to_path_buf(),
                line,
                what: "document".to_owned(),
                findings: Vec::new(),
            };
            match serde_yaml_ng::from_str::<Value>(doc) {
                Ok(value) => validate_document(&value, schema, &mut report),
                Err(e) => {
                    let at = e
                        .location()
                        .map(|l| format!(" (line {})", line + l.line() - 1))
                        .unwrap_or_default();
                    report
                        .findings
                        .push(Finding::error(format!("not YAML{at}: {e}")));
                }
            }
            report
        })
        .collect()
}

fn validate_document(doc: &Value, schema: &Value, report: &mut Report) {
    let name = doc["metadata"]["name"].as_str().unwrap_or("<unnamed>");
    report.what = format!("WasmPlugin/{name}");
    if doc["kind"] == "EnvoyFilter" && doc["apiVersion"] == envoy_filter::API_VERSION {
        report.what = format!("EnvoyFilter/{name}");
        check_metadata(&doc["metadata"], &mut report.findings);
        envoy_filter::check(doc, &mut report.findings);
        return;
    }
    if doc["apiVersion"] != "extensions.istio.io/v1alpha1" || doc["kind"] != "WasmPlugin" {
        report.what = format!("{}/{name}", doc["kind"].as_str().unwrap_or("<no kind>"));
        report.findings.push(Finding::error(format!(
            "not a WasmPlugin: apiVersion {} kind {} (want extensions.istio.io/v1alpha1 \
             WasmPlugin, or networking.istio.io/v1alpha3 EnvoyFilter)",
            doc["apiVersion"], doc["kind"]
        )));
        return;
    }
    check_metadata(&doc["metadata"], &mut report.findings);
    schema::check(doc, schema, "", &mut report.findings);
    let spec = &doc["spec"];
    if spec.is_object() {
        webhook(spec, &mut report.findings);
        plugin_config(spec, &mut report.findings);
    }
}

/// `metadata.name` as the API server requires it (a DNS-1123 subdomain).
fn check_metadata(metadata: &Value, out: &mut Vec<Finding>) {
    let Some(name) = metadata["name"].as_str() else {
        out.push(Finding::error(
            "metadata.name: Required value: name or generateName is required",
        ));
        return;
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        out.push(Finding::error(format!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist \
             of lower case alphanumeric characters, '-' or '.', and must start and end with an \
             alphanumeric character"
        )));
    }
}

/// What Istio's webhook checks beyond the CRD.
fn webhook(spec: &Value, out: &mut Vec<Finding>) {
    let refs = spec["targetRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| (format!("spec.targetRefs[{i}]"), r))
        .chain(
            spec.get("targetRef")
                .filter(|r| r.is_object())
                .map(|r| ("spec.targetRef".to_owned(), r)),
        );
    for (path, target) in refs {
        let group = target["group"].as_str().unwrap_or_default();
        let kind = target["kind"].as_str().unwrap_or_default();
        if !TARGET_KINDS.contains(&(group, kind)) {
            out.push(Finding::error(format!(
                "{path}: targetRef must be to one of Service (core), ServiceEntry \
                 (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io); \
                 got group {group:?} kind {kind:?}"
            )));
        }
    }
    if spec["selector"].is_object()
        && spec["selector"]["matchLabels"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
    {
        out.push(Finding::warning(
            "spec.selector: a selector with no labels selects every workload in the namespace",
        ));
    }
    if let (Some(url), Some(sha)) = (spec["url"].as_str(), spec["sha256"].as_str())
        && let Some((_, pinned)) = url.split_once("@sha256:")
        && !sha.is_empty()
        && pinned != sha
    {
        out.push(Finding::error(format!(
            "spec.sha256: {sha} differs from the digest the url pins ({pinned}); Istio \
                     would refuse the module"
        )));
    }
}

/// The filter a resource loads, from `pluginName` or the module's name.
fn filter_of(spec: &Value) -> Option<&'static str> {
    let by_name = spec["pluginName"].as_str();
    let by_url = spec["url"].as_str().map(|url| {
        let last = url.rsplit('/').next().unwrap_or(url);
        let last = last.split('@').next().unwrap_or(last);
        let last = last.split(':').next().unwrap_or(last);
        last.strip_suffix(".wasm").unwrap_or(last)
    });
    FILTERS
        .iter()
        .find(|f| by_name == Some(**f) || by_url == Some(**f))
        .copied()
}

fn plugin_config(spec: &Value, out: &mut Vec<Finding>) {
    let config = &spec["pluginConfig"];
    let Some(filter) = filter_of(spec) else {
        if !config.is_null() {
            out.push(Finding::warning(format!(
                "spec.pluginConfig not checked: neither pluginName nor url names one of our \
                 filters ({})",
                FILTERS.join(", ")
            )));
        }
        return;
    };
    if !config.is_object() {
        return; // the schema reported it (or it is absent: the filter's default)
    }
    large_integers(config, "spec.pluginConfig", out);
    let bytes = config.to_string().into_bytes();
    // Whether the configuration holds the headers while it reads the body,
    // which needs Envoy's allow_on_headers_stop_iteration.
    let mut reads_body = None;
    let problems = match filter {
        "auth" => match auth::Config::parse(&bytes) {
            Ok(c) => {
                if c.ext_authz.is_some_and(|e| e.with_request_body.is_some()) {
                    reads_body = Some("ext_authz.with_request_body");
                }
                None
            }
            Err(p) => Some(p),
        },
        "header-transform" => match header_transform::Config::parse(&bytes) {
            Ok(c) => {
                if c.body.is_some() {
                    reads_body = Some("%BODY(...)% values and body conditions");
                }
                None
            }
            Err(p) => Some(p),
        },
        "routing" => match routing::config::Config::parse(&bytes) {
            Ok(c) => {
                if c.body.is_some() {
                    reads_body = Some("rules that read the body");
                }
                None
            }
            Err(p) => Some(p),
        },
        _ => None,
    };
    if let Some(what) = reads_body {
        out.push(Finding::error(format!(
            "spec.pluginConfig: the {filter} filter's {what} hold the request headers until \
             the body is read, which needs Envoy's allow_on_headers_stop_iteration; a \
             WasmPlugin cannot set it, so such requests would hang until their stream times \
             out: deploy it with an EnvoyFilter (istio/envoyfilter/, or the one `proxy-wasm-harness \
             lint --module` prints)"
        )));
    }
    for problem in problems.iter().flat_map(|p| p.list()) {
        out.push(Finding::error(format!(
            "{}: the {filter} filter refuses this configuration: {}",
            field_path(config, &problem.path),
            problem.message
        )));
    }
}

/// A filter's JSON Pointer into `config` as an API field path
/// (`/rules/0/name` → `spec.pluginConfig.rules[0].name`).
fn field_path(config: &Value, pointer: &str) -> String {
    let mut path = "spec.pluginConfig".to_owned();
    let mut at = config;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        match at {
            Value::Array(items) => {
                path.push_str(&format!("[{segment}]"));
                at = segment
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .unwrap_or(&Value::Null);
            }
            _ => {
                path.push('.');
                path.push_str(&segment);
                at = at.get(&segment).unwrap_or(&Value::Null);
            }
        }
    }
    path
}

fn large_integers(value: &Value, path: &str, out: &mut Vec<Finding>) {
    match value {
        Value::Number(n) if n.as_u64().is_some_and(|v| v > MAX_EXACT_INTEGER) => {
            out.push(Finding::warning(format!(
                "{path}: {n} loses precision: Istio passes pluginConfig numbers as doubles \
                 (write it as a string if the filter accepts one)"
            )));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                large_integers(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                large_integers(item, &format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

/// YAML files named by `paths` (directories are searched).
fn yaml_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = fs::read_dir(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .filter_map(|e| Some(e.ok()?.path()))
                .collect();
            entries.sort();
            let nested: Vec<PathBuf> = entries
                .into_iter()
                .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            files.extend(yaml_files(&nested)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Validates every WasmPlugin and EnvoyFilter under `paths`; an error when
/// any is invalid.
/// Skips `schema/` folders (the schema is no resource).
pub(crate) fn validate_paths(paths: &[PathBuf], crd: Option<&Path>) -> Result<usize, String> {
    let schema = load_schema(crd)?;
    let mut errors = 0;
    let mut documents = 0;
    for file in yaml_files(paths)? {
        if file.parent().is_some_and(|p| p.ends_with("schema")) {
            continue;
        }
        let text = fs::read_to_string(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        for report in validate_text(&file, &text, &schema) {
            documents += 1;
            errors += report.errors().count();
            println!("{report}");
        }
    }
    if documents == 0 {
        return Err("no YAML documents found".into());
    }
    if errors > 0 {
        return Err(format!("{errors} error(s) in {documents} document(s)"));
    }
    Ok(documents)
}

/// `cargo xtask validate-istio [--crd FILE] PATH...`
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut crd = None;
    let mut paths = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--crd" => {
                crd = Some(PathBuf::from(args.next().ok_or("--crd needs a CRD file")?));
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}` for validate-istio"));
            }
            path => paths.push(PathBuf::from(path)),
        }
    }
    if paths.is_empty() {
        paths.push(crate::toolchain::root().join("istio"));
    }
    let n = validate_paths(&paths, crd.as_deref())?;
    eprintln!("xtask: {n} WasmPlugin and EnvoyFilter document(s) valid");
    // And what the schema cannot see: fields the Istio (and Envoy) versions
    // lack (`proxy-wasm-harness lint`).
    crate::toolchain::exec(crate::toolchain::harness_cli("lint").args(&paths))
}

#[cfg(test)]
mod tests;
