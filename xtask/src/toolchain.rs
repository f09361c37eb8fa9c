//! Running cargo and making sure the toolchain has what the project needs.

use std::path::PathBuf;
use std::process::Command;

pub(crate) const WASM_TARGET: &str = "wasm32-wasip1";
/// The target filters of the proxy-wasm Rust SDK's 0.1 line were built for
/// (the harness's tests build one, as its users did).
pub(crate) const LEGACY_WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The workspace root (xtask lives one level below it).
pub(crate) fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

/// `cargo` as the one running this task.
pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// `proxy-wasm-harness COMMAND`, built and run by cargo from the root.
pub(crate) fn harness_cli(command: &str) -> Command {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "proxy-wasm-harness-cli",
        "--",
        command,
    ]);
    cmd
}

/// Runs a command, failing with its command line when it fails.
pub(crate) fn exec(cmd: &mut Command) -> Result<(), String> {
    let line = format!("{cmd:?}");
    eprintln!("xtask: running {line}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {line}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{line} failed ({status})"))
    }
}

/// Installs the wasm targets with rustup when the toolchain lacks them.
pub(crate) fn ensure_wasm_target() -> Result<(), String> {
    let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    for target in [WASM_TARGET, LEGACY_WASM_TARGET] {
        if !sysroot.join("lib/rustlib").join(target).is_dir() {
            eprintln!("xtask: the {target} target is missing; installing it with rustup");
            exec(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    Ok(())
}

/// Whether `cargo <subcommand> --version` works.
pub(crate) fn has_cargo_subcommand(subcommand: &str) -> bool {
    cargo()
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Whether `program` runs, installing Debian's `package` for it when it
/// does not and the scripts may (root, with apt-get).
pub(crate) fn ensure_debian_package(program: &str, package: &str) -> bool {
    if runs(program) {
        return true;
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if is_root && runs("apt-get") {
        eprintln!("xtask: installing Debian's {package} for {program}");
        let install = || {
            exec(
                Command::new("apt-get")
                    .args(["install", "-y", "-q", "--no-install-recommends", package])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
        };
        if install().is_err() {
            let _ = exec(Command::new("apt-get").args(["update", "-q"]));
            let _ = install();
        }
    }
    runs(program)
}

/// Whether `program` can be started (some, like wrk, exit non-zero on
/// `--version`).
fn runs(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}
