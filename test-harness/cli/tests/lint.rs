//! `proxy-wasm-harness lint`'s Envoy 1.40 rules against the real Envoy 1.40:
//! each configuration the lint calls an error is one Envoy refuses (`envoy
//! --mode validate`), with the words the lint quotes; the configuration it
//! passes, Envoy loads; and where it warns of a deprecated field, Envoy logs
//! the deprecation.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness_envoy::{Bootstrap, HttpFilter, Listener, Route, WasmFilter};
use serde_json::{Value, json};

fn envoy() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match harness_envoy::binary::find(None, &root) {
        Ok(binary) => Some(binary),
        Err(e) => {
            eprintln!(
                "SKIPPED: no Envoy to check the lint against ({e}); `cargo xtask test` installs it"
            );
            None
        }
    }
}

/// A bootstrap with the minimal fixture as a fail-closed, restricted wasm
/// filter, as YAML.
fn base() -> String {
    let filter = WasmFilter::new("p", harness_fixtures::MINIMAL_FILTER)
        .failure_policy("FAIL_CLOSED")
        .allowed_capabilities(
            proxy_wasm_harness::capabilities::required(
                &std::fs::read(harness_fixtures::MINIMAL_FILTER).unwrap(),
            )
            .unwrap(),
        );
    Bootstrap::new()
        .listener(
            Listener::new("l")
                .route(Route::direct("/", 200, "ok"))
                .filter(HttpFilter::wasm(filter)),
        )
        .to_yaml()
        .unwrap()
}

/// Runs `lint` on `yaml` for Envoy 1.40; the rules it reported (and its
/// exit status).
fn lint(dir: &Path, name: &str, yaml: &str) -> (Vec<String>, bool) {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy-wasm-harness"))
        .args(["lint", "--envoy", "1.40"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rules = text
        .lines()
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect();
    (rules, out.status.success())
}

/// `envoy --mode validate` on `yaml`: Ok with Envoy's log, or Err with it.
fn validate(envoy: &Path, dir: &Path, name: &str, yaml: &str) -> Result<String, String> {
    let file = dir.join(format!("{name}.envoy.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(envoy)
        .current_dir(dir)
        .args(["--mode", "validate", "--log-level", "warn", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(log)
    } else {
        Err(log)
    }
}

/// The base with its wasm `PluginConfig` edited by `edit`.
fn edited(base: &str, edit: impl FnOnce(&mut Value)) -> String {
    fn plugin_config(value: &mut Value) -> Option<&mut Value> {
        if value.get("vm_config").is_some() {
            return Some(value);
        }
        match value {
            Value::Object(map) => map.values_mut().find_map(plugin_config),
            Value::Array(items) => items.iter_mut().find_map(plugin_config),
            _ => None,
        }
    }
    let mut value: Value = serde_yaml_ng::from_str(base).unwrap();
    edit(plugin_config(&mut value).expect("a wasm PluginConfig"));
    serde_yaml_ng::to_string(&value).unwrap()
}

#[test]
fn every_error_the_lint_reports_for_1_40_is_a_configuration_envoy_1_40_refuses() {
    let Some(envoy) = envoy() else { return };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lint-vs-envoy");
    std::fs::create_dir_all(&dir).unwrap();
    let base = base();
    let (rules, ok) = lint(&dir, "base", &base);
    assert!(rules.is_empty() && ok, "{rules:?}");
    let log = validate(&envoy, &dir, "base", &base).expect("Envoy loads the base");
    assert!(!log.contains("deprecated option"), "{log}");

    type Edit = fn(&mut Value);
    let cases: [(&str, Edit, &str); 5] = [
        (
            "envoy-fail-open-and-failure-policy",
            |c| c["fail_open"] = json!(true),
            "only one of fail_open or failure_policy can be set",
        ),
        (
            "envoy-failure-policy-value",
            |c| c["failure_policy"] = json!("FAIL_CLOSE"),
            "unknown enum value",
        ),
        (
            "envoy-runtime",
            |c| c["vm_config"]["runtime"] = json!("envoy.wasm.runtime.wasmtime"),
            "Unable to create Wasm plugin",
        ),
        (
            "envoy-environment-key-twice",
            |c| {
                c["vm_config"]["environment_variables"] =
                    json!({"host_env_keys": ["HOME"], "key_values": {"HOME": "x"}});
            },
            "Key HOME is duplicated",
        ),
        (
            "envoy-remote-code-sha256",
            |c| {
                c["vm_config"]["code"] = json!({"remote": {"http_uri": {
                    "uri": "http://127.0.0.1:1/p.wasm", "cluster": "c", "timeout": "1s"}}});
            },
            "Proto constraint validation failed",
        ),
    ];
    for (rule, edit, envoy_says) in cases {
        let yaml = edited(&base, edit);
        let (rules, ok) = lint(&dir, rule, &yaml);
        assert_eq!(rules, [rule], "{rule}");
        assert!(!ok, "{rule}: an error fails the lint");
        let refused = validate(&envoy, &dir, rule, &yaml).expect_err(rule);
        assert!(refused.contains(envoy_says), "{rule}: {refused}");
    }
}

#[test]
fn the_deprecations_the_lint_warns_of_are_the_ones_envoy_1_40_logs() {
    let Some(envoy) = envoy() else { return };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lint-deprecations");
    std::fs::create_dir_all(&dir).unwrap();
    // fail_open instead of failure_policy, and the restriction in
    // PluginConfig instead of vm_config.
    let moved = edited(&base(), |c| {
        let config = c.as_object_mut().unwrap();
        config.remove("failure_policy");
        config.insert("fail_open".into(), json!(true));
        let restriction = c["vm_config"]
            .as_object_mut()
            .unwrap()
            .remove("capability_restriction_config")
            .unwrap();
        c["capability_restriction_config"] = restriction;
    });
    let (rules, ok) = lint(&dir, "deprecated", &moved);
    assert_eq!(
        rules,
        [
            "envoy-fail-open-deprecated",
            "envoy-capability-restriction-place"
        ]
    );
    assert!(ok, "warnings alone pass");
    let log = validate(&envoy, &dir, "deprecated", &moved).expect("Envoy loads it");
    for field in [
        "PluginConfig.fail_open",
        "PluginConfig.capability_restriction_config",
    ] {
        assert!(
            log.contains(&format!(
                "Using deprecated option 'envoy.extensions.wasm.v3.{field}'"
            )),
            "{field}: {log}"
        );
    }
}
