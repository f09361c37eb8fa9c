//! Runs requests through a filter in the harness, for `perf` (see the
//! harness README, "Speed"): a GET with eight typical headers, then a 200
//! response, each on its own stream of one VM.
//!
//! `cargo run --release -p proxy-wasm-benches --example profile -- [--json-body BYTES] MODULE.wasm [CONFIG.json] [REQUESTS] [NAME:VALUE...]`
//! (each `NAME:VALUE` one more request header, an `authorization` say, or
//! a new value for one of the eight: `:path:/svc9/items`).
//! With `--json-body BYTES` each request is instead the POST of the
//! `bench-envoy` body variants (a JSON chat request of that size), with
//! `allow_on_headers_stop_iteration` on, as a body-reading filter runs.

use std::process::ExitCode;
use std::time::Instant;

use proxy_wasm_benches::{REQUEST, chat_body, chat_request};
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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let body = match args.iter().position(|a| a == "--json-body") {
        Some(at) => {
            let size = args
                .get(at + 1)
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or("--json-body needs a size in bytes")?;
            args.drain(at..at + 2);
            Some(size)
        }
        None => None,
    };
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
    let mut headers: Vec<(&str, String)> = match body {
        Some(size) => chat_request(size),
        None => REQUEST.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    };
    for extra in rest.iter().skip(2) {
        // A pseudo-header's name starts with its own colon.
        let at = extra
            .get(1..)
            .and_then(|rest| rest.find(':'))
            .ok_or(format!("`{extra}` is not NAME:VALUE"))?;
        let (name, value) = (&extra[..=at], &extra[at + 2..]);
        let value = value.trim_start().to_owned();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some(line) => line.1 = value,
            None => headers.push((name, value)),
        }
    }
    let runtime = Runtime::new().map_err(|e| e.to_string())?;
    let plugin = Plugin::builder(module)
        .runtime(&runtime)
        .configuration(configuration)
        .allow_on_headers_stop_iteration(body.is_some())
        .build()
        .map_err(|e| e.to_string())?;
    let mut vm = plugin.start().map_err(|e| e.to_string())?;
    let json = body.map(chat_body);
    let started = Instant::now();
    for _ in 0..requests {
        let mut stream = vm.http_stream();
        stream
            .send_request_headers(headers.clone(), json.is_none())
            .map_err(|e| e.to_string())?;
        if let Some(json) = &json {
            stream
                .send_request_body(json, true)
                .map_err(|e| e.to_string())?;
        }
        stream
            .send_response_headers([(":status", "200"), ("server", "envoy")], true)
            .map_err(|e| e.to_string())?;
        stream.finish().map_err(|e| e.to_string())?;
    }
    let each = started.elapsed().as_secs_f64() * 1e6 / f64::from(requests.max(1));
    println!("{requests} requests, {each:.2} µs each");
    Ok(())
}
