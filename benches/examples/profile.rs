//! Runs requests through a filter in the harness, for `perf` (see the
//! harness README, "Speed"): a GET with eight typical headers, then a 200
//! response, each on its own stream of one VM.
//!
//! `cargo run --release -p proxy-wasm-benches --example profile -- MODULE.wasm [CONFIG.json] [REQUESTS] [NAME:VALUE...]`
//! (each `NAME:VALUE` one more request header, an `authorization` say).

use std::process::ExitCode;
use std::time::Instant;

use proxy_wasm_benches::REQUEST;
use proxy_wasm_harness::{Plugin, Runtime};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("profile: {problem}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [module, rest @ ..] = args.as_slice() else {
        return Err("usage: profile MODULE.wasm [CONFIG.json] [REQUESTS] [NAME:VALUE...]".into());
    };
    let configuration = match rest.first() {
        Some(path) => std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        None => Vec::new(),
    };
    let requests: u32 = match rest.get(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("`{n}` is not a number of requests"))?,
        None => 100_000,
    };
    let mut headers: Vec<(&str, &str)> = REQUEST.to_vec();
    for extra in rest.iter().skip(2) {
        let (name, value) = extra
            .split_once(':')
            .ok_or(format!("`{extra}` is not NAME:VALUE"))?;
        headers.push((name, value.trim_start()));
    }
    let runtime = Runtime::new().map_err(|e| e.to_string())?;
    let plugin = Plugin::builder(module)
        .runtime(&runtime)
        .configuration(configuration)
        .build()
        .map_err(|e| e.to_string())?;
    let mut vm = plugin.start().map_err(|e| e.to_string())?;
    let started = Instant::now();
    for _ in 0..requests {
        let mut stream = vm.http_stream();
        stream
            .send_request_headers(headers.clone(), true)
            .map_err(|e| e.to_string())?;
        stream
            .send_response_headers([(":status", "200"), ("server", "envoy")], true)
            .map_err(|e| e.to_string())?;
        stream.finish().map_err(|e| e.to_string())?;
    }
    let each = started.elapsed().as_secs_f64() * 1e6 / f64::from(requests.max(1));
    println!("{requests} requests, {each:.2} µs each");
    Ok(())
}
