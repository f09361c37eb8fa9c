//! `cargo xtask bench-envoy --host-calls`: what each proxy-wasm host call
//! costs in a real Envoy 1.40 (V8), measured side by side in one run.
//!
//! Every variant loads the cost probe (`test-harness/fixtures/cost-probe`),
//! which makes one host call [`REPEAT`] times in each request's headers
//! callback; `cost-none` makes none. One call's cost is then
//! (1/rps − 1/rps<sub>cost-none</sub>) / REPEAT at one worker, and
//! `cost-none` against the filter-less front is what a filter that does
//! nothing costs a request: its stream context and its callbacks. Writes
//! the section of `docs/performance.md` between its `host-calls` markers;
//! `CostModel::envoy_1_40` in the harness carries these figures.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use harness_envoy::HttpFilter;
use serde_json::json;

use crate::bench_envoy::{Variant, median, wasm_filter};
use crate::toolchain::root;

/// Calls per request in each variant: enough that one call's cost stands
/// well above a run's noise (a few µs per request).
pub(crate) const REPEAT: u32 = 200;

const MARK_START: &str = "<!-- host-calls:start -->";
const MARK_END: &str = "<!-- host-calls:end -->";

/// (variant, the probe's `call`, the ABI function it makes).
const CALLS: &[(&str, &str, &str)] = &[
    (
        "cost-get_header",
        "get_header",
        "proxy_get_header_map_value",
    ),
    (
        "cost-get_headers",
        "get_headers",
        "proxy_get_header_map_pairs",
    ),
    (
        "cost-replace_header",
        "replace_header",
        "proxy_replace_header_map_value",
    ),
    (
        "cost-remove_header",
        "remove_header",
        "proxy_remove_header_map_value",
    ),
    (
        "cost-increment_metric",
        "increment_metric",
        "proxy_increment_metric",
    ),
    ("cost-get_property", "get_property", "proxy_get_property"),
    (
        "cost-clear_route_cache",
        "clear_route_cache",
        "proxy_call_foreign_function",
    ),
    ("cost-log_dropped", "log_dropped", "proxy_log"),
    ("cost-get_log_level", "get_log_level", "proxy_get_log_level"),
    (
        "cost-current_time",
        "current_time",
        "proxy_get_current_time_nanoseconds",
    ),
];

/// Probes on one stream in the `-x20` variants.
const CHAIN: u32 = 20;

/// Stream callbacks the SDK exports that a GET through the bench pays
/// for besides `proxy_on_request_headers` (the backend answers with a
/// body): response headers, response body, log, done.
const EXTRA_CALLBACKS: u32 = 4;

/// The filter-less front, the probe doing nothing (with every callback the
/// SDK exports, and with only its request-headers callback), then one per
/// call.
pub(crate) fn variants(work: &Path) -> Result<Vec<Variant>, String> {
    let probe = PathBuf::from(harness_fixtures::COST_PROBE);
    let bytes = fs::read(&probe).map_err(|e| format!("cannot read {}: {e}", probe.display()))?;
    let pruned =
        harness_fixtures::callbacks::keep_only(&bytes, &["proxy_on_request_headers".to_owned()])?;
    let pruned_path = work.join("cost-probe-request-headers-only.wasm");
    fs::write(&pruned_path, pruned)
        .map_err(|e| format!("cannot write {}: {e}", pruned_path.display()))?;
    let mut out = vec![
        Variant::new("none", "baseline", Vec::new()),
        Variant::new(
            "cost-none",
            "host-calls",
            vec![wasm_filter("probe", &probe, &json!({"call": "none"}))],
        ),
        Variant::new(
            "cost-none-pruned",
            "host-calls",
            vec![wasm_filter("probe", &pruned_path, &json!({"call": "none"}))],
        ),
    ];
    // Twenty probes on one stream: a callback's cost, and a stream
    // context's, stand well above the noise only when multiplied.
    let chain = |path: &Path| -> Vec<HttpFilter> {
        (0..CHAIN)
            .map(|i| wasm_filter(&format!("probe{i}"), path, &json!({"call": "none"})))
            .collect()
    };
    out.push(Variant::new("cost-none-x20", "host-calls", chain(&probe)));
    out.push(Variant::new(
        "cost-none-pruned-x20",
        "host-calls",
        chain(&pruned_path),
    ));
    for (name, call, _) in CALLS {
        out.push(Variant::new(
            name,
            "host-calls",
            vec![wasm_filter(
                "probe",
                &probe,
                &json!({"call": call, "repeat": REPEAT}),
            )],
        ));
    }
    Ok(out)
}

/// The table: per request for `none`/`cost-none`, per call for the others.
pub(crate) fn report(
    variants: &[Variant],
    rps: &[Vec<f64>],
    seconds: u64,
    rounds: usize,
    machine: &str,
    envoy_version: &str,
) -> Result<(), String> {
    let us = |name: &str| -> Option<f64> {
        let i = variants.iter().position(|v| v.name == name)?;
        Some(1e6 / median(&rps[i]))
    };
    let (Some(none), Some(probe), Some(pruned), Some(chain), Some(chain_pruned)) = (
        us("none"),
        us("cost-none"),
        us("cost-none-pruned"),
        us("cost-none-x20"),
        us("cost-none-pruned-x20"),
    ) else {
        return Err("the run lacks one of the `none` and `cost-none*` variants".into());
    };
    let callback = (chain - chain_pruned) / f64::from(CHAIN * EXTRA_CALLBACKS);
    let context = (chain_pruned - none) / f64::from(CHAIN);
    let mut md = format!(
        "\n#### Measured: `cargo xtask bench-envoy --host-calls --seconds {seconds} --rounds {rounds}`\n\n\
         {machine}; {envoy_version}; one front Envoy per variant (`--concurrency 1`), the cost probe \
         making one host call {REPEAT} times in each request's headers callback, `wrk -t1 -c16`, \
         variants interleaved round by round, medians. One call = (1/rps − 1/rps<sub>cost-none</sub>) / {REPEAT}.\n\n\
         | What | ABI function | µs in Envoy |\n|---|---|---|\n\
         | a request through a filter that does nothing (stream context, its callbacks), over no filter | — | {:.2} |\n\
         | the same filter exporting only `proxy_on_request_headers` (context create, request headers, delete) | — | {:.2} |\n\
         | one stream callback that does nothing: (cost-none-x20 − cost-none-pruned-x20) / ({CHAIN} × {EXTRA_CALLBACKS}) | — | {callback:.3} |\n\
         | one filter's stream with only its request-headers callback: (cost-none-pruned-x20 − none) / {CHAIN} | — | {context:.3} |\n",
        probe - none,
        pruned - none,
    );
    let mut json_rows = Vec::new();
    for (name, call, function) in CALLS {
        let Some(total) = us(name) else { continue };
        let per_call = (total - probe) / f64::from(REPEAT);
        let _ = writeln!(md, "| `{call}` | `{function}` | {per_call:.3} |");
        json_rows.push(json!({"call": call, "function": function, "us": per_call}));
    }
    let json = json!({"none_us": none, "cost_none_us": probe, "cost_none_pruned_us": pruned,
        "callback_us": callback, "pruned_stream_us": context, "calls": json_rows});
    let work = root().join("target/bench-envoy");
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    fs::write(work.join("host-calls.json"), json.to_string())
        .map_err(|e| format!("cannot write host-calls.json: {e}"))?;
    let doc = root().join("docs/performance.md");
    let text =
        fs::read_to_string(&doc).map_err(|e| format!("cannot read {}: {e}", doc.display()))?;
    let section = format!("{MARK_START}\n{md}\n{MARK_END}");
    let text = match (text.find(MARK_START), text.find(MARK_END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &text[..a], &text[b + MARK_END.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    fs::write(&doc, text).map_err(|e| format!("cannot write {}: {e}", doc.display()))?;
    print!("{md}");
    Ok(())
}
