//! `proxy-wasm-harness`: see the library's documentation and the README.

fn main() -> std::process::ExitCode {
    proxy_wasm_harness_cli::run()
}
