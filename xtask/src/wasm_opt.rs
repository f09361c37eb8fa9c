//! Binaryen's `wasm-opt`, which shrinks a module rustc already optimised
//! for size by about a fifth.
//!
//! Which build: npm's `binaryen` package (binaryen compiled to wasm, run by
//! Node), pinned and installed under `target/binaryen` on first use. Debian's
//! `binaryen` is release 108 (2022), whose modules come out 2-3 % larger
//! (routing: 207.5 kB against 201.5 kB). Without Node and npm `dist` ships
//! rustc's modules and says so.

use std::path::PathBuf;
use std::process::Command;

use crate::toolchain::{exec, root};

/// The pinned release (npm's version numbers are binaryen's).
const BINARYEN: &str = "binaryen@132.0.0";

/// The WebAssembly features rustc enables by default for `wasm32-wasip1`
/// (the release profile strips the section that would say so); wasm-opt
/// may use these and no others, so it adds nothing V8 or wasmtime lacks.
const FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// The installed `wasm-opt` script (run with `node`).
fn script() -> PathBuf {
    root().join("target/binaryen/node_modules/binaryen/bin/wasm-opt")
}

/// Whether `wasm-opt` is available, installing it when possible.
pub(crate) fn ensure() -> bool {
    let script = script();
    if !script.is_file() {
        eprintln!("xtask: installing {BINARYEN} from npm into target/binaryen");
        let installed = exec(
            Command::new("npm")
                .args([
                    "install",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                ])
                .arg(root().join("target/binaryen"))
                .arg(BINARYEN),
        );
        if let Err(e) = installed {
            eprintln!("xtask: {e}");
        }
    }
    let found = script.is_file();
    if !found {
        eprintln!(
            "xtask: WARNING: {BINARYEN} (wasm-opt) could not be installed with npm; dist/ gets rustc's modules unshrunk"
        );
    }
    found
}

/// `wasm-opt` on `input`, written to `output`: first merge functions that
/// differ only in constants (generic instantiations; -1 %), then `-Oz`, then
/// GUFA's whole-module constant and type flow and `-Oz` again (-0.5 %).
pub(crate) fn shrink(input: &std::path::Path, output: &std::path::Path) -> Result<(), String> {
    exec(
        Command::new("node")
            .arg(script())
            .args(["--merge-similar-functions", "-Oz", "--gufa", "-Oz"])
            .args(["--strip-debug", "--strip-producers"])
            .args(FEATURES)
            .arg(input)
            .arg("-o")
            .arg(output),
    )
}
