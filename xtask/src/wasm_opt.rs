//! Binaryen's `wasm-opt`, which shrinks a module rustc already optimised
//! for size by about a fifth. Debian's `binaryen` package, installed when
//! missing and the scripts may (root with apt-get); without it `dist` ships
//! rustc's modules and says so.

use std::path::Path;
use std::process::Command;

use crate::toolchain::{ensure_debian_package, exec};

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

/// Whether `wasm-opt` is available, installing it when possible.
pub(crate) fn ensure() -> bool {
    let found = ensure_debian_package("wasm-opt", "binaryen");
    if !found {
        eprintln!("xtask: WARNING: wasm-opt is unavailable; dist/ gets rustc's modules unshrunk");
    }
    found
}

/// `wasm-opt -Oz` on `input`, written to `output`.
pub(crate) fn shrink(input: &Path, output: &Path) -> Result<(), String> {
    exec(
        Command::new("wasm-opt")
            .args(["-Oz", "--strip-debug", "--strip-producers"])
            .args(FEATURES)
            .arg(input)
            .arg("-o")
            .arg(output),
    )
}
