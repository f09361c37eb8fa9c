//! The workspace as `cargo metadata` describes it, and the rule its crates'
//! dependencies follow (ARCHITECTURE.md): the filters use the harness only
//! to test, and the harness depends on no filter, so it knows a user's
//! filter and ours alike.

use std::path::Path;

use serde_json::Value;

use crate::toolchain::{cargo, root};

/// The harness packages: the library and its CLI.
const HARNESS: &[&str] = &[
    "proxy-wasm-harness",
    "proxy-wasm-harness-cli",
    "harness-envoy",
];

/// `cargo metadata --no-deps` of the workspace.
pub(crate) fn metadata() -> Result<Value, String> {
    let output = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed bad JSON: {e}"))
}

/// Every dependency that breaks the rule, in words.
pub(crate) fn dependency_problems(metadata: &Value) -> Vec<String> {
    let filters_dir = root().join("filters");
    let packages: &[Value] = metadata["packages"].as_array().map_or(&[], Vec::as_slice);
    let name = |p: &Value| p["name"].as_str().unwrap_or_default().to_owned();
    let filter_packages: Vec<String> = packages
        .iter()
        .filter(|p| {
            Path::new(p["manifest_path"].as_str().unwrap_or_default()).starts_with(&filters_dir)
        })
        .map(name)
        .collect();
    let mut problems = Vec::new();
    for package in packages {
        let this = name(package);
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let used = dep["name"].as_str().unwrap_or_default();
            let for_tests = dep["kind"].as_str() == Some("dev");
            if filter_packages.contains(&this) && HARNESS.contains(&used) && !for_tests {
                problems.push(format!(
                    "filter crate `{this}` depends on `{used}` outside [dev-dependencies]: a filter uses the harness only to test"
                ));
            }
            if HARNESS.contains(&this.as_str()) && filter_packages.iter().any(|f| f == used) {
                problems.push(format!(
                    "`{this}` depends on the filter crate `{used}`: the harness must know no particular filter"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn package(name: &str, dir: &str, deps: &[(&str, Option<&str>)]) -> Value {
        json!({
            "name": name,
            "manifest_path": root().join(dir).join("Cargo.toml"),
            "dependencies": deps.iter().map(|(n, kind)| json!({"name": n, "kind": kind})).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn crates_depend_only_downward() {
        let problems = dependency_problems(&metadata().expect("cargo metadata"));
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn a_filter_using_the_harness_outside_its_tests_is_named() {
        let metadata = json!({"packages": [
            package("routing", "filters/routing", &[("proxy-wasm-harness", None)]),
            package("auth", "filters/auth", &[("proxy-wasm-harness", Some("dev"))]),
        ]});
        assert_eq!(
            dependency_problems(&metadata),
            [
                "filter crate `routing` depends on `proxy-wasm-harness` outside [dev-dependencies]: a filter uses the harness only to test"
            ]
        );
    }

    #[test]
    fn the_harness_depending_on_a_filter_is_named() {
        let metadata = json!({"packages": [
            package("filter-common", "filters/common", &[]),
            package("proxy-wasm-harness", "test-harness", &[("filter-common", Some("dev"))]),
        ]});
        assert_eq!(
            dependency_problems(&metadata),
            [
                "`proxy-wasm-harness` depends on the filter crate `filter-common`: the harness must know no particular filter"
            ]
        );
    }
}
