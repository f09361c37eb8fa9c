//! `cargo xtask bench-envoy`: our filters in a real Envoy against Envoy's
//! own filters doing the same job, side by side in one run.
//!
//! One backend Envoy answers every request directly; one front Envoy per
//! variant (`--concurrency 1`, so every variant has one worker) forwards to
//! it through the filter under test. `wrk -t1 -c16` drives each front in
//! turn, round after round (variants interleaved, so drift of a noisy
//! machine hits all of them alike), after a warm-up. Reported: medians over
//! the rounds of requests/s and of wrk's p50 and p99 latency, ratios to the
//! filter-less baseline and to the native equivalent, and the added cost
//! per request (1/rps − 1/rps_baseline, at one worker). Because wrk, the
//! backend and the front share the machine's cores, req/s also moves with
//! how they are scheduled; so each round also reads the front Envoy's own
//! CPU time (the sum of its threads' `/proc/PID/task/*/schedstat` run time)
//! and divides it by the requests wrk completed: CPU µs per request, whose
//! difference to the baseline's is the filter's CPU cost with the other
//! processes taken out. With `--profile`, `perf record -e cpu-clock`
//! samples the front during each round and the CPU per request is split by
//! where it ran: Envoy's own code, the kernel, libc, and code V8 or LuaJIT
//! generated (`[JIT]`: the wasm module's compiled code and V8's call
//! wrappers). Memory: each front
//! Envoy's heap (`/memory`) after the runs, next to the baseline's, and
//! each module's linear memory in the harness after 10,000 requests.
//!
//! Writes `target/bench-envoy/results.json`, `docs/bench-envoy.svg` and the
//! section of `docs/performance.md` between its `bench-envoy` markers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness_envoy::{Bootstrap, Cluster, Envoy, HttpFilter, Listener, Options, Route, WasmFilter};
use plotters::prelude::*;
use proxy_wasm_benches::chat_body;
use serde_json::{Value, json};

use crate::envoy::ensure_envoy;
use crate::toolchain::{cargo, ensure_debian_package, root};

/// Every request: a path the last of ten routing rules matches, a header
/// the header jobs remove, and a token the auth variants verify.
const PATH: &str = "/svc9/items";
const MARK_START: &str = "<!-- bench-envoy:start -->";
const MARK_END: &str = "<!-- bench-envoy:end -->";

/// One front Envoy's filter chain.
#[derive(Clone)]
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    group: &'static str,
    /// What it is measured against (its native equivalent), by name.
    native: Option<&'static str>,
    /// The filters before the router.
    filters: Vec<HttpFilter>,
    /// Routes before the default one (to the backend).
    routes: Vec<Route>,
    /// A wasm filter's module and configuration, to count its crossings
    /// in the harness for the same request.
    harness: Option<(PathBuf, Value)>,
    /// The size of the JSON body each request POSTs (`None`: a GET).
    body: Option<usize>,
    /// The variant its added cost is measured from: `none`, or the
    /// filterless variant with the same body.
    baseline: &'static str,
}

impl Variant {
    /// A variant with no native equivalent and the default route.
    pub(crate) fn new(name: &'static str, group: &'static str, filters: Vec<HttpFilter>) -> Self {
        Self {
            name,
            group,
            native: None,
            filters,
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        }
    }
}

/// The measurements of one variant.
#[derive(Debug, Default, Clone)]
struct Measured {
    rps: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
    /// The front Envoy's CPU time per completed request, per round (µs).
    cpu_us: Vec<f64>,
    /// With `--profile`: per round, each code region's share of the
    /// front's CPU samples (region → fraction).
    profile: Vec<BTreeMap<String, f64>>,
    heap_bytes: Option<u64>,
    /// From spawning Envoy to its admin `/ready` answering 200 (listeners
    /// initialised, every wasm module compiled and its VMs configured).
    start_ms: f64,
    /// A wasm variant's crossings per request, counted in the harness and
    /// priced with `CostModel::envoy_1_40` (µs).
    crossings_us: Option<f64>,
}

impl Measured {
    /// With `--profile`: the median over the rounds of each code region's
    /// CPU µs per request (its share of the samples × the round's CPU).
    fn cpu_by_region(&self) -> BTreeMap<String, f64> {
        let mut rounds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for (shares, cpu) in self.profile.iter().zip(&self.cpu_us) {
            for (region, share) in shares {
                rounds.entry(region.clone()).or_default().push(share * cpu);
            }
        }
        rounds.into_iter().map(|(r, v)| (r, median(&v))).collect()
    }
}

/// The code regions of a profile, in the order the reports show them.
const REGIONS: [&str; 5] = ["envoy", "kernel", "libc", "JIT", "other"];

/// A profile table: each variant's CPU µs per request by code region.
fn profile_table(variants: &[Variant], results: &[Measured]) -> String {
    if results.iter().all(|r| r.profile.is_empty()) {
        return String::new();
    }
    let mut s = String::from(
        "\nWhere the front's CPU goes (`--profile`: `perf record -e cpu-clock` during each round; \
         µs per request, medians): `envoy` is Envoy's own code (its HTTP path, the proxy-wasm \
         host, V8's runtime, Lua), `JIT` the code V8 or LuaJIT generated (a wasm module's \
         compiled functions and V8's call wrappers), `kernel` the sockets.\n\n\
         | Variant | envoy | kernel | libc | JIT | other | total |\n|---|---|---|---|---|---|---|\n",
    );
    for (v, r) in variants.iter().zip(results) {
        let regions = r.cpu_by_region();
        let cell = |name: &str| {
            regions
                .get(name)
                .map_or("0.0".into(), |x| format!("{x:.1}"))
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {:.1} |",
            v.name,
            cell(REGIONS[0]),
            cell(REGIONS[1]),
            cell(REGIONS[2]),
            cell(REGIONS[3]),
            cell(REGIONS[4]),
            regions.values().sum::<f64>()
        );
    }
    s
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 10u64;
    let mut rounds = 3usize;
    let mut only: Option<Vec<String>> = None;
    let mut host_calls = false;
    let mut profile = false;
    let mut before: Option<PathBuf> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{what} needs a number"))
        };
        match arg.as_str() {
            "--seconds" => seconds = number("--seconds")?,
            "--rounds" => rounds = usize::try_from(number("--rounds")?).unwrap_or(3),
            "--host-calls" => host_calls = true,
            "--profile" => profile = true,
            "--before" => {
                before = Some(PathBuf::from(
                    args.next().ok_or("--before needs a folder of modules")?,
                ));
            }
            "--only" => {
                let names = args.next().ok_or("--only needs variant names")?;
                only = Some(names.split(',').map(str::to_owned).collect());
            }
            other => return Err(format!("unknown option `{other}` for bench-envoy")),
        }
    }
    let envoy = ensure_envoy()?;
    if !ensure_debian_package("wrk", "wrk") {
        return Err("`wrk` is missing and could not be installed (Debian package wrk)".into());
    }
    if profile && !ensure_debian_package("perf", "linux-perf") {
        return Err("--profile needs `perf` (Debian package linux-perf)".into());
    }
    if !root().join("dist/auth.wasm").is_file() {
        crate::dist::run(&[])?;
    }
    let work = root().join("target/bench-envoy");
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let (jwks, token) = jwt_material()?;
    if host_calls {
        let variants = crate::host_calls::variants(&work)?;
        let results = measure(&envoy, &work, &variants, seconds, rounds, &token, false)?;
        let rps: Vec<Vec<f64>> = results.into_iter().map(|r| r.rps).collect();
        return crate::host_calls::report(
            &variants,
            &rps,
            seconds,
            rounds,
            &machine(),
            &envoy_version(&envoy),
        );
    }
    let mut variants = variants(&jwks, &work)?;
    if let Some(dir) = &before {
        variants.extend(twins(&variants, dir)?);
    }
    if let Some(names) = &only {
        if let Some(unknown) = names
            .iter()
            .find(|n| !variants.iter().any(|v| v.name == *n))
        {
            let known: Vec<&str> = variants.iter().map(|v| v.name).collect();
            return Err(format!(
                "--only: no variant `{unknown}` (variants: {})",
                known.join(", ")
            ));
        }
        variants.retain(|v| names.iter().any(|n| n == v.name));
    }

    let mut results = measure(&envoy, &work, &variants, seconds, rounds, &token, profile)?;
    for (v, r) in variants.iter().zip(results.iter_mut()) {
        if let Some((module, config)) = &v.harness {
            r.crossings_us = Some(crossing_estimate(module, config, &token)?);
        }
    }
    if only.is_some() {
        // A subset is for trying a change: medians printed, the committed
        // report left alone.
        let subset = Report {
            variants: &variants,
            results: &results,
            harness_pages: &[],
            seconds,
            rounds,
            envoy_version: String::new(),
            machine: String::new(),
        };
        let micros = |v: Option<f64>| v.map_or("—".to_owned(), |a| format!("{a:.1}"));
        for (v, r) in variants.iter().zip(&results) {
            println!(
                "{:<24} {:>9.0} req/s  added {:>6} µs  cpu {:>6.1} µs/req  added cpu {:>6} µs  crossings est. {:>5} µs  p50 {:>7.0} µs  p99 {:>7.0} µs  start {:>5.0} ms",
                v.name,
                median(&r.rps),
                micros(subset.added_us(v.name)),
                median(&r.cpu_us),
                micros(subset.added_cpu_us(v.name)),
                micros(r.crossings_us),
                median(&r.p50_us),
                median(&r.p99_us),
                r.start_ms
            );
        }
        print!("{}", profile_table(&variants, &results));
        return Ok(());
    }

    let harness_pages = harness_memory(&token)?;
    let envoy_version = envoy_version(&envoy);
    let report = Report {
        variants: &variants,
        results: &results,
        harness_pages: &harness_pages,
        seconds,
        rounds,
        envoy_version,
        machine: machine(),
    };
    fs::write(work.join("results.json"), report.json().to_string())
        .map_err(|e| format!("cannot write results.json: {e}"))?;
    fs::write(root().join("docs/bench-envoy.svg"), report.svg()?)
        .map_err(|e| format!("cannot write docs/bench-envoy.svg: {e}"))?;
    let doc = root().join("docs/performance.md");
    let text =
        fs::read_to_string(&doc).map_err(|e| format!("cannot read {}: {e}", doc.display()))?;
    let section = format!("{MARK_START}\n{}{MARK_END}", report.markdown());
    let text = match (text.find(MARK_START), text.find(MARK_END)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &text[..a], &text[b + MARK_END.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    fs::write(&doc, text).map_err(|e| format!("cannot write {}: {e}", doc.display()))?;
    print!("{}", report.markdown());
    Ok(())
}

/// Starts the backend and one front Envoy per variant, checks each answers
/// 200, then drives them with wrk round after round (variants interleaved);
/// each front's heap is read at the end.
fn measure(
    envoy: &Path,
    work: &Path,
    variants: &[Variant],
    seconds: u64,
    rounds: usize,
    token: &str,
    profile: bool,
) -> Result<Vec<Measured>, String> {
    let mut results = vec![Measured::default(); variants.len()];
    let mut fronts = Vec::new();
    let (backend, _) = start_envoy(envoy, work, "backend", &backend_config())?;
    let backend_addr = listener(&backend)?;
    // One at a time, so each start is timed on an otherwise idle machine.
    for (i, v) in variants.iter().enumerate() {
        let (front, started) = start_envoy(envoy, work, v.name, &front_config(v, backend_addr))?;
        results[i].start_ms = started.as_secs_f64() * 1e3;
        let addr = listener(&front)?;
        fronts.push((front, addr));
    }
    // Every front answers 200 through its filter before anything is timed.
    for (v, (_, addr)) in variants.iter().zip(&fronts) {
        let status = get(*addr, PATH, token)?;
        if status != 200 {
            return Err(format!("{}: a request got {status}, not 200", v.name));
        }
    }
    // Variants that POST a body do it from a wrk script.
    let mut scripts = Vec::new();
    for v in variants {
        scripts.push(match v.body {
            Some(size) => {
                let file = work.join(format!("{}.lua", v.name));
                let script = format!(
                    "wrk.method = \"POST\"\nwrk.headers[\"content-type\"] = \"application/json\"\nwrk.body = '{}'\n",
                    chat_body(size)
                );
                fs::write(&file, script)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                Some(file)
            }
            None => None,
        });
    }
    eprintln!("xtask: warm-up, then {rounds} round(s) of {seconds} s per variant");
    for ((_, addr), script) in fronts.iter().zip(&scripts) {
        wrk(*addr, 2, token, script.as_deref())?;
    }
    for round in 1..=rounds {
        for (i, v) in variants.iter().enumerate() {
            let (front, addr) = &fronts[i];
            let pid = front.pid();
            let cpu_before = cpu_ns(pid);
            let samples = work.join(format!("{}.perf", v.name));
            let perf = profile
                .then(|| sample_cpu(pid, seconds, &samples))
                .transpose()?;
            let run = wrk(*addr, seconds, token, scripts[i].as_deref())?;
            if let Some(perf) = perf {
                results[i].profile.push(cpu_shares(perf, &samples)?);
            }
            let (rps, p50, p99) = (run.rps, run.p50_us, run.p99_us);
            let cpu = match (cpu_before, cpu_ns(pid)) {
                (Some(a), Some(b)) if run.requests > 0 => {
                    b.saturating_sub(a) as f64 / 1e3 / run.requests as f64
                }
                _ => return Err(format!("{}: cannot read its CPU time", v.name)),
            };
            eprintln!(
                "xtask: round {round} {:<22} {rps:>9.0} req/s  cpu {cpu:>6.1} µs/req  p50 {p50:>7.0} µs  p99 {p99:>7.0} µs",
                v.name
            );
            results[i].cpu_us.push(cpu);
            results[i].rps.push(rps);
            results[i].p50_us.push(p50);
            results[i].p99_us.push(p99);
        }
    }
    for (r, (front, _)) in results.iter_mut().zip(&fronts) {
        r.heap_bytes = heap(front);
    }
    // A body variant with a filter did its job: the bench body names the
    // model that goes to `green`.
    for (v, (front, _)) in variants.iter().zip(&fronts) {
        if v.body.is_some() && v.name != v.baseline {
            let routed = green_requests(front);
            if routed.is_none_or(|n| n == 0) {
                return Err(format!(
                    "{}: no request reached cluster green ({routed:?}): the filter did not route by the body",
                    v.name
                ));
            }
        }
    }
    drop(fronts);
    drop(backend);
    Ok(results)
}

/// Starts sampling process `pid`'s CPU for `seconds` into `file`.
fn sample_cpu(pid: u32, seconds: u64, file: &Path) -> Result<Child, String> {
    Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "1000", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(file)
        .args(["--", "sleep"])
        .arg(seconds.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run perf: {e}"))
}

/// Waits for `perf`, then each code region's share of the samples in
/// `file` (`perf report --sort dso`).
fn cpu_shares(mut perf: Child, file: &Path) -> Result<BTreeMap<String, f64>, String> {
    perf.wait().map_err(|e| format!("perf record: {e}"))?;
    let out = Command::new("perf")
        .args(["report", "--stdio", "-n", "--sort", "dso", "-i"])
        .arg(file)
        .output()
        .map_err(|e| format!("cannot run perf report: {e}"))?;
    let shares = parse_dso_report(&String::from_utf8_lossy(&out.stdout));
    if shares.is_empty() {
        return Err(format!("perf recorded no samples in {}", file.display()));
    }
    Ok(shares)
}

/// `perf report -n --sort dso` lines (`  53.85%  4074  envoy`) as region →
/// fraction of all samples, the region named as the docs name it.
fn parse_dso_report(text: &str) -> BTreeMap<String, f64> {
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (Some(_percent), Some(samples), Some(dso)) = (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let Ok(samples) = samples.parse::<f64>() else {
            continue;
        };
        let region = match dso {
            "envoy" => "envoy",
            "[kernel.kallsyms]" => "kernel",
            "[JIT]" => "JIT",
            d if d.starts_with("libc.") => "libc",
            _ => "other",
        };
        *counts.entry(region.to_owned()).or_default() += samples;
    }
    let total: f64 = counts.values().sum();
    counts.values_mut().for_each(|c| *c /= total);
    counts
}

/// CPU time (ns) every thread of process `pid` has run so far: the first
/// field of each `/proc/PID/task/TID/schedstat` (nanoseconds, unlike
/// `/proc/PID/stat`'s 10 ms ticks).
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        // A thread that exits between the listing and the read is skipped.
        if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
            total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// What the auth crate's `mint` example prints for `args` (its fixed test
/// keys: `jwks`, or `token ALG CLAIMS [KID] [HEADER]`).
pub(crate) fn mint(args: &[&str]) -> Result<String, String> {
    let out = cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "auth",
            "--example",
            "mint",
            "--",
        ])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run the mint example: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The auth example's fixed test keys: the RS256 public key set and a token
/// valid for a day.
fn jwt_material() -> Result<(String, String), String> {
    let now = now();
    let jwks = mint(&["jwks"])?;
    let claims = json!({"iss": "bench", "aud": "bench", "sub": "alice", "exp": now + 86_400});
    let token = mint(&["token", "RS256", &claims.to_string(), "rsa"])?;
    Ok((jwks, token))
}

/// Our filter `name` loading `module` with `configuration`, failing closed.
pub(crate) fn wasm_filter(name: &str, module: &Path, configuration: &Value) -> HttpFilter {
    HttpFilter::wasm(
        WasmFilter::new(name, module)
            .failure_policy("FAIL_CLOSED")
            .configuration(configuration.to_string()),
    )
}

/// Envoy's `jwt_authn` with one provider `bench` (issuer and audience
/// `bench`) required on every path, its token cache on or off.
pub(crate) fn jwt_authn_filter(jwks: &str, cache: bool) -> HttpFilter {
    let mut provider = json!({
        "issuer": "bench",
        "audiences": ["bench"],
        "local_jwks": {"inline_string": jwks},
    });
    if cache {
        provider["jwt_cache_config"] = json!({"jwt_cache_size": 100});
    }
    HttpFilter::typed(
        "envoy.filters.http.jwt_authn",
        "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        json!({
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        }),
    )
}

/// Envoy's `header_mutation` doing the header job.
fn header_mutation_filter() -> HttpFilter {
    let overwrite = |key: &str, value: &str| json!({"append": {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}});
    HttpFilter::typed(
        "envoy.filters.http.header_mutation",
        "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
        json!({"mutations": {
            "request_mutations": [overwrite("x-edge", "bench"), {"remove": "x-internal-debug"}],
            "response_mutations": [overwrite("x-content-type-options", "nosniff"), {"remove": "x-powered-by"}],
        }}),
    )
}

/// The job of the header filters: overwrite one request header, remove
/// another, set a response header and remove one.
const HEADER_JOB_LUA: &str = r#"function envoy_on_request(handle)
  handle:headers():replace("x-edge", "bench")
  handle:headers():remove("x-internal-debug")
end
function envoy_on_response(handle)
  handle:headers():replace("x-content-type-options", "nosniff")
  handle:headers():remove("x-powered-by")
end"#;

/// The body-routing job in Lua: buffer the body, find `"model"` with a
/// pattern (Envoy's Lua has no JSON parser, so it neither parses the body
/// nor sees escapes or a member named twice, as our filter does), map it
/// to a cluster and re-route.
const BODY_ROUTING_LUA: &str = r#"local clusters = {["gpt-x"] = "blue", ["claude-y"] = "green"}
function envoy_on_request(handle)
  local content_type = handle:headers():get("content-type")
  if content_type == nil or string.find(content_type, "application/json", 1, true) == nil then
    return
  end
  local body = handle:body()
  if body == nil then
    return
  end
  local model = string.match(body:getBytes(0, body:length()), '"model"%s*:%s*"([^"]*)"')
  handle:headers():replace("x-route-cluster", clusters[model] or "blue")
  handle:clearRouteCache()
end"#;

/// Ten prefixes, each to a cluster, as a rule set for all routing variants.
fn prefixes() -> Vec<(String, &'static str)> {
    (0..10)
        .map(|i| {
            (
                format!("/svc{i}/"),
                if i % 2 == 0 { "blue" } else { "green" },
            )
        })
        .collect()
}

fn variants(jwks: &str, work: &Path) -> Result<Vec<Variant>, String> {
    let dist = root().join("dist");
    let header_config = json!({"rules": [{
        "name": "job",
        "request_headers": [
            {"set": {"name": "x-edge", "value": "bench"}},
            {"remove": {"name": "x-internal-debug"}},
        ],
        "response_headers": [
            {"set": {"name": "x-content-type-options", "value": "nosniff"}},
            {"remove": {"name": "x-powered-by"}},
        ],
    }]});
    let auth_config = |cache: usize| auth_bench_config(jwks, cache);
    let routing_config = json!({
        "cluster_header": "x-route-cluster",
        "rules": prefixes().iter().enumerate().map(|(i, (prefix, cluster))| json!({
            "name": format!("r{i}"),
            "match": {"path": {"prefix": prefix}},
            "cluster": cluster,
        })).collect::<Vec<_>>(),
    });
    let lua_routing = {
        let table: String = prefixes()
            .iter()
            .map(|(p, c)| format!("  {{\"{p}\", \"{c}\"}},\n"))
            .collect();
        format!(
            "local rules = {{\n{table}}}
function envoy_on_request(handle)
  local path = handle:headers():get(\":path\")
  for _, rule in ipairs(rules) do
    if string.sub(path, 1, #rule[1]) == rule[1] then
      handle:headers():replace(\"x-route-cluster\", rule[2])
      handle:clearRouteCache()
      return
    end
  end
end"
        )
    };
    let static_routes: Vec<Route> = prefixes()
        .iter()
        .map(|(p, c)| Route::to_cluster(p, *c))
        .collect();
    let header_routes = vec![Route::by_cluster_header("x-route-cluster")];
    let minimal = PathBuf::from(harness_fixtures::MINIMAL_FILTER);
    let harnessed = [
        ("wasm-minimal", minimal.clone(), json!({})),
        (
            "header-transform",
            dist.join("header-transform.wasm"),
            header_config.clone(),
        ),
        ("auth-jwt", dist.join("auth.wasm"), auth_config(1024)),
        ("auth-jwt-nocache", dist.join("auth.wasm"), auth_config(0)),
        ("routing", dist.join("routing.wasm"), routing_config.clone()),
    ];
    let mut list = vec![
        Variant {
            name: "none",
            group: "baseline",
            native: None,
            filters: Vec::new(),
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "wasm-minimal",
            group: "headers",
            native: None,
            filters: vec![wasm_filter("minimal", &minimal, &json!({}))],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "header-transform",
            group: "headers",
            native: Some("header_mutation"),
            filters: vec![wasm_filter(
                "header-transform",
                &dist.join("header-transform.wasm"),
                &header_config,
            )],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "lua-headers",
            group: "headers",
            native: Some("header_mutation"),
            filters: vec![HttpFilter::lua(HEADER_JOB_LUA)],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "header_mutation",
            group: "headers",
            native: None,
            filters: vec![header_mutation_filter()],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "auth-jwt",
            group: "auth",
            native: Some("jwt_authn"),
            filters: vec![wasm_filter(
                "auth",
                &dist.join("auth.wasm"),
                &auth_config(1024),
            )],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "jwt_authn",
            group: "auth",
            native: None,
            filters: vec![jwt_authn_filter(jwks, true)],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "auth-jwt-nocache",
            group: "auth",
            native: Some("jwt_authn-nocache"),
            filters: vec![wasm_filter(
                "auth",
                &dist.join("auth.wasm"),
                &auth_config(0),
            )],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "jwt_authn-nocache",
            group: "auth",
            native: None,
            filters: vec![jwt_authn_filter(jwks, false)],
            routes: Vec::new(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "routing",
            group: "routing",
            native: Some("static-routes"),
            filters: vec![wasm_filter(
                "routing",
                &dist.join("routing.wasm"),
                &routing_config,
            )],
            routes: header_routes.clone(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "lua-routing",
            group: "routing",
            native: Some("static-routes"),
            filters: vec![HttpFilter::lua(lua_routing)],
            routes: header_routes.clone(),
            harness: None,
            body: None,
            baseline: "none",
        },
        Variant {
            name: "static-routes",
            group: "routing",
            native: None,
            filters: Vec::new(),
            routes: static_routes,
            harness: None,
            body: None,
            baseline: "none",
        },
    ];
    // Each job's proxy-wasm floor beside our filter doing it.
    let header_probe = job_probe(work, "header-transform")?;
    let routing_probe = job_probe(work, "routing")?;
    let auth_probe = job_probe(work, "auth")?;
    for (after, floor) in [
        (
            "auth-jwt",
            Variant::new(
                "wasm-floor-auth",
                "auth",
                vec![floor_filter(&auth_probe, auth_floor_job())],
            ),
        ),
        (
            "header-transform",
            Variant::new(
                "wasm-floor-headers",
                "headers",
                vec![floor_filter(&header_probe, header_floor_job())],
            ),
        ),
        (
            "routing",
            Variant {
                routes: header_routes,
                ..Variant::new(
                    "wasm-floor-routing",
                    "routing",
                    vec![floor_filter(&routing_probe, routing_floor_job())],
                )
            },
        ),
    ] {
        let at = list
            .iter()
            .position(|v| v.name == after)
            .map_or(list.len(), |i| i + 1);
        list.insert(at, floor);
    }
    // Routing by a JSON body field, at two body sizes: our filter (which
    // parses the body as JSON) against Lua doing the job with a pattern
    // over the buffered body, and the job's floor, each from the same body
    // POSTed without a filter.
    for (size, [none, ours, lua, floor]) in [
        (
            1024,
            [
                "none-body-1k",
                "body-routing-1k",
                "lua-body-routing-1k",
                "wasm-floor-body-1k",
            ],
        ),
        (
            65_536,
            [
                "none-body-64k",
                "body-routing-64k",
                "lua-body-routing-64k",
                "wasm-floor-body-64k",
            ],
        ),
    ] {
        let group = if size == 1024 {
            "body 1 KiB"
        } else {
            "body 64 KiB"
        };
        let body_variant = |name, filters, routes| Variant {
            name,
            group,
            native: None,
            filters,
            routes,
            harness: None,
            body: Some(size),
            baseline: none,
        };
        list.push(body_variant(none, Vec::new(), Vec::new()));
        list.push(body_variant(
            ours,
            vec![body_routing_filter(&dist.join("routing.wasm"))],
            vec![Route::by_cluster_header("x-route-cluster")],
        ));
        list.push(body_variant(
            lua,
            vec![HttpFilter::lua(BODY_ROUTING_LUA)],
            vec![Route::by_cluster_header("x-route-cluster")],
        ));
        list.push(body_variant(
            floor,
            vec![floor_filter(&routing_probe, body_floor_job())],
            vec![Route::by_cluster_header("x-route-cluster")],
        ));
    }
    for (name, module, config) in harnessed {
        if let Some(v) = list.iter_mut().find(|v| v.name == name) {
            v.harness = Some((module, config));
        }
    }
    Ok(list)
}

/// The auth filter's configuration for the JWT job: provider `bench` with
/// the local key set `jwks`, required on every path, a token cache of
/// `cache` entries (0: every request verifies).
fn auth_bench_config(jwks: &str, cache: usize) -> Value {
    json!({
        "jwt_providers": [{"name": "bench", "issuer": "bench", "audiences": ["bench"],
                           "local_jwks": serde_json::from_str::<Value>(jwks).unwrap_or_default()}],
        "rules": [{"name": "all", "require": {"jwt": "bench"}}],
        "token_cache_size": cache,
    })
}

/// The routing filter's configuration for the body job: `cluster_from`
/// `/model` to a cluster.
fn body_routing_config() -> Value {
    json!({
        "rules": [{"name": "by-model", "cluster_from": {
            "body": "/model",
            "clusters": {"gpt-x": "blue", "claude-y": "green"},
            "default": "blue",
        }}],
        "body": {"max_bytes": 131_072},
    })
}

/// Our routing filter (`module`) doing the body job, the headers held for
/// the body.
fn body_routing_filter(module: &Path) -> HttpFilter {
    HttpFilter::wasm(
        WasmFilter::new("routing", module)
            .failure_policy("FAIL_CLOSED")
            .allow_on_headers_stop_iteration(true)
            .configuration(body_routing_config().to_string()),
    )
}

/// A job's proxy-wasm floor: the cost probe (`test-harness/fixtures/
/// cost-probe`) making exactly the host calls our filter makes for the
/// bench request, in its order (a test compares them), and nothing else.
/// The header job: header-transform's fixed writes and its rule counter.
fn header_floor_job() -> Value {
    json!({
        "request_headers": ["replace:x-edge:bench", "remove:x-internal-debug", "increment_metric"],
        "response_headers": ["replace:x-content-type-options:nosniff", "remove:x-powered-by"],
    })
}

/// The routing job: the request headers read, the rule's counter, the
/// cluster header written.
fn routing_floor_job() -> Value {
    json!({"request_headers": ["get_headers", "increment_metric", "replace:x-route-cluster:green"]})
}

/// The JWT job with a cached token: the request headers read, the time,
/// the method's and the allowed counters, the identity header written and
/// the token removed.
fn auth_floor_job() -> Value {
    json!({"request_headers": [
        "get_headers", "current_time", "increment_metric", "increment_metric",
        "replace:x-auth-identity:bench:alice", "remove:authorization",
    ]})
}

/// The body-routing job: the headers read and held, the whole body read
/// at its end, the rule's counter, the cluster header written.
fn body_floor_job() -> Value {
    json!({
        "request_headers": ["get_headers", "hold"],
        "request_body": ["get_body", "increment_metric", "replace:x-route-cluster:green"],
    })
}

/// The cost probe doing `job`, held for bodies as our filters are.
fn floor_filter(probe: &Path, job: Value) -> HttpFilter {
    HttpFilter::wasm(
        WasmFilter::new("probe", probe)
            .failure_policy("FAIL_CLOSED")
            .allow_on_headers_stop_iteration(true)
            .configuration(json!({"job": job}).to_string()),
    )
}

/// The cost probe exporting only the callbacks of filter `package` (its
/// manifest's list), written into `work`.
fn job_probe(work: &Path, package: &str) -> Result<PathBuf, String> {
    let filter = crate::filters::discover()?
        .into_iter()
        .find(|f| f.package == package)
        .ok_or(format!("no filter {package} under filters/"))?;
    let callbacks = filter.callbacks.ok_or(format!(
        "the {package} filter's manifest names no callbacks"
    ))?;
    let probe = PathBuf::from(harness_fixtures::COST_PROBE);
    let bytes = fs::read(&probe).map_err(|e| format!("cannot read {}: {e}", probe.display()))?;
    let pruned = harness_fixtures::callbacks::keep_only(&bytes, &callbacks)?;
    let path = work.join(format!("cost-probe-{package}-callbacks.wasm"));
    fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    fs::write(&path, pruned).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// What one bench request costs a wasm variant in crossings, priced with
/// the harness's Envoy 1.40 cost model (µs): the request the fronts get
/// (`GET PATH` with the token and the header the jobs remove), a 200 with
/// a body, then the stream's end; for a cached token, the second request.
fn crossing_estimate(module: &Path, config: &Value, token: &str) -> Result<f64, String> {
    use proxy_wasm_harness::{CostModel, Plugin, Progress};
    let plugin = Plugin::builder(module)
        .configuration(config.to_string())
        .build()
        .map_err(|e| e.to_string())?;
    let mut vm = plugin.start().map_err(|e| e.to_string())?;
    let bearer = format!("Bearer {token}");
    let mut last = None;
    for _ in 0..2 {
        let mut stream = vm.http_stream();
        let headers = proxy_wasm_harness::envoy::request_headers(
            proxy_wasm_harness::envoy::Codec::Http1,
            "GET",
            PATH,
            "bench",
            [
                ("authorization", bearer.as_str()),
                ("x-internal-debug", "1"),
            ],
            "bench-request",
        );
        let progress = stream
            .send_request_headers(headers, true)
            .map_err(|e| e.to_string())?;
        if progress == Progress::Continued {
            stream
                .send_response_headers([(":status", "200"), ("content-length", "2")], false)
                .map_err(|e| e.to_string())?;
            stream
                .send_response_body("ok", true)
                .map_err(|e| e.to_string())?;
        }
        last = Some(stream.finish().map_err(|e| e.to_string())?);
    }
    let costs = last.map(|e| e.costs).unwrap_or_default();
    let model = CostModel::envoy_1_40();
    Ok(costs
        .iter()
        .map(|c| c.estimate(&model).as_secs_f64() * 1e6)
        .sum())
}

/// With `--before DIR`: each variant of our filters again, loading its
/// module from `DIR` (a `dist/` of another commit or another build profile)
/// and named `<variant>-before`, so before and after run side by side.
fn twins(variants: &[Variant], dir: &Path) -> Result<Vec<Variant>, String> {
    let dir = fs::canonicalize(dir).map_err(|e| format!("--before {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for v in variants {
        let name = match v.name {
            "header-transform" => "header-transform-before",
            "routing" => "routing-before",
            "auth-jwt" => "auth-jwt-before",
            "auth-jwt-nocache" => "auth-jwt-nocache-before",
            "body-routing-1k" => "body-routing-1k-before",
            "body-routing-64k" => "body-routing-64k-before",
            _ => continue,
        };
        // The body variants are our routing filter holding the headers;
        // the others carry their module and configuration for the harness.
        let (filters, harness) = match &v.harness {
            None => (vec![body_routing_filter(&dir.join("routing.wasm"))], None),
            Some((module, config)) => {
                let (Some(file), Some(stem)) = (module.file_name(), module.file_stem()) else {
                    continue;
                };
                let module = dir.join(file);
                let filter = wasm_filter(&stem.to_string_lossy(), &module, config);
                (vec![filter], Some((module, config.clone())))
            }
        };
        out.push(Variant {
            name,
            filters,
            harness,
            ..v.clone()
        });
    }
    Ok(out)
}

/// The backend: answers every request itself, 200 `ok`.
fn backend_config() -> Bootstrap {
    // The buffer filter reads a request's whole body before the direct
    // response: an HTTP/1.1 response sent before the request ended makes
    // Envoy close the connection, so every POST of the body variants
    // would cost the front a new upstream connection.
    Bootstrap::new().listener(
        Listener::new(LISTENER)
            .stat_prefix("bench")
            .filter(HttpFilter::typed(
                "envoy.filters.http.buffer",
                "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                json!({"max_request_bytes": 1_048_576}),
            ))
            .route(Route::direct("/", 200, "ok")),
    )
}

/// A front: the variant's filters and routes, then the default route to
/// the backend; every cluster a route names points at the backend.
fn front_config(v: &Variant, backend: SocketAddr) -> Bootstrap {
    let mut listener = Listener::new(LISTENER).stat_prefix("bench");
    for filter in &v.filters {
        listener = listener.filter(filter.clone());
    }
    for route in &v.routes {
        listener = listener.route(route.clone());
    }
    let mut bootstrap =
        Bootstrap::new().listener(listener.route(Route::to_cluster("/", "backend")));
    for name in ["backend", "blue", "green"] {
        bootstrap = bootstrap.cluster(Cluster::new(name, backend));
    }
    bootstrap
}

/// The bench's listener, in every Envoy it starts.
pub(crate) const LISTENER: &str = "bench";

/// Starts Envoy on `bootstrap` (one worker, warnings only), its files in
/// `work/<name>.*`; returns it once ready, with the time that took.
pub(crate) fn start_envoy(
    envoy: &Path,
    work: &Path,
    name: &str,
    bootstrap: &Bootstrap,
) -> Result<(Envoy, Duration), String> {
    let spawned = Instant::now();
    let mut process = Envoy::start(envoy, work, name, bootstrap, &Options::default())?;
    harness_envoy::block_on(process.ready(Duration::from_secs(30)))?
        .map_err(|e| format!("envoy for {name}: {e}"))?;
    Ok((process, spawned.elapsed()))
}

/// The address of `envoy`'s [`LISTENER`].
pub(crate) fn listener(envoy: &Envoy) -> Result<SocketAddr, String> {
    harness_envoy::block_on(envoy.listener(LISTENER))?
}

/// Status of one request to the front at `addr`.
fn get(addr: SocketAddr, path: &str, token: &str) -> Result<u16, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let authorization = format!("Bearer {token}");
    loop {
        let answer = harness_envoy::block_on(harness_envoy::get(
            addr,
            path,
            &[("authorization", authorization.as_str())],
        ))?;
        match answer {
            // 503 while the listener's clusters warm up.
            Ok(r) if r.status != 503 || Instant::now() > deadline => return Ok(r.status),
            Err(e) if Instant::now() > deadline => return Err(format!("no answer: {e}")),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// What one wrk run measured.
#[derive(Debug, PartialEq)]
struct WrkRun {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Requests completed in the run.
    requests: u64,
}

/// One wrk run against `addr`; with `script`, its requests are the
/// script's (a POST with a body).
fn wrk(
    addr: SocketAddr,
    seconds: u64,
    token: &str,
    script: Option<&Path>,
) -> Result<WrkRun, String> {
    let mut command = Command::new("wrk");
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let out = command
        .args(["-t1", "-c16", "--latency"])
        .arg(format!("-d{seconds}s"))
        .arg("-H")
        .arg(format!("authorization: Bearer {token}"))
        .arg("-H")
        .arg("x-internal-debug: 1")
        .arg(format!("http://{addr}{PATH}"))
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        return Err(format!("{addr}: wrk saw failures: {}", line.trim()));
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<WrkRun> {
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let micros = |v: &str| -> Option<f64> {
        let (number, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => n,
            "ms" => n * 1e3,
            "s" => n * 1e6,
            _ => return None,
        })
    };
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(WrkRun {
        rps: field("Requests/sec:")?.parse().ok()?,
        p50_us: micros(field("50%")?)?,
        p99_us: micros(field("99%")?)?,
        requests,
    })
}

/// Requests `envoy` sent to its cluster `green` (admin `/stats`).
fn green_requests(envoy: &Envoy) -> Option<u64> {
    let body = harness_envoy::block_on(
        envoy.admin_get("/stats?filter=^cluster\\.green\\.upstream_rq_total$"),
    )
    .ok()?
    .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix("cluster.green.upstream_rq_total: "))?
        .trim()
        .parse()
        .ok()
}

/// Bytes `envoy` has allocated (its admin `/memory`).
fn heap(envoy: &Envoy) -> Option<u64> {
    let body = harness_envoy::block_on(envoy.admin_get("/memory"))
        .ok()?
        .ok()?;
    let value: Value = serde_json::from_str(&body).ok()?;
    value["allocated"].as_str()?.parse().ok()
}

/// Linear-memory pages of each module in the harness after 10,000 requests.
fn harness_memory(token: &str) -> Result<Vec<(String, u64, u64)>, String> {
    use proxy_wasm_harness::Plugin;
    let mut out = Vec::new();
    for name in ["header-transform", "routing", "auth"] {
        let module = root().join(format!("dist/{name}.wasm"));
        let config = fs::read(root().join(format!("filters/{name}/config/example.json")))
            .map_err(|e| format!("cannot read {name}'s example: {e}"))?;
        let plugin = Plugin::builder(&module)
            .configuration(config)
            .build()
            .map_err(|e| e.to_string())?;
        let mut vm = plugin.start().map_err(|e| e.to_string())?;
        let before = vm.memory_pages();
        for i in 0..10_000 {
            let path = format!("/api/items/{i}");
            let mut stream = vm.http_stream();
            let progress = stream
                .send_request_headers(
                    [
                        (":method", "GET"),
                        (":path", path.as_str()),
                        (":authority", "bench"),
                        (":scheme", "http"),
                        ("authorization", &format!("Bearer {token}")),
                    ],
                    true,
                )
                .map_err(|e| e.to_string())?;
            if progress == proxy_wasm_harness::Progress::Continued {
                stream
                    .send_response_headers([(":status", "200")], true)
                    .map_err(|e| e.to_string())?;
            }
            stream.finish().map_err(|e| e.to_string())?;
        }
        out.push((name.to_owned(), before, vm.memory_pages()));
    }
    Ok(out)
}

fn envoy_version(envoy: &Path) -> String {
    harness_envoy::binary::version(envoy).unwrap_or_default()
}

pub(crate) fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

struct Report<'a> {
    variants: &'a [Variant],
    results: &'a [Measured],
    harness_pages: &'a [(String, u64, u64)],
    seconds: u64,
    rounds: usize,
    envoy_version: String,
    machine: String,
}

impl Report<'_> {
    fn rps(&self, name: &str) -> Option<f64> {
        let i = self.variants.iter().position(|v| v.name == name)?;
        Some(median(&self.results[i].rps))
    }

    /// The variant `name`'s cost is measured from (`none`, or the
    /// filterless variant sending the same body).
    fn baseline(&self, name: &str) -> &'static str {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .map_or("none", |v| v.baseline)
    }

    /// µs added per request at one worker, against the baseline.
    fn added_us(&self, name: &str) -> Option<f64> {
        let base = self.rps(self.baseline(name))?;
        Some((1.0 / self.rps(name)? - 1.0 / base) * 1e6)
    }

    /// The front Envoy's median CPU µs per request.
    fn cpu_us(&self, name: &str) -> Option<f64> {
        let i = self.variants.iter().position(|v| v.name == name)?;
        Some(median(&self.results[i].cpu_us))
    }

    /// CPU µs per request added to the baseline's.
    fn added_cpu_us(&self, name: &str) -> Option<f64> {
        Some(self.cpu_us(name)? - self.cpu_us(self.baseline(name))?)
    }

    fn json(&self) -> Value {
        json!({
            "envoy": self.envoy_version,
            "machine": self.machine,
            "seconds": self.seconds,
            "rounds": self.rounds,
            "variants": self.variants.iter().zip(self.results).map(|(v, r)| json!({
                "name": v.name, "group": v.group, "rps": r.rps, "p50_us": r.p50_us,
                "p99_us": r.p99_us, "cpu_us_per_request": r.cpu_us,
                "cpu_us_by_region": r.cpu_by_region(), "heap_bytes": r.heap_bytes, "start_ms": r.start_ms,
            })).collect::<Vec<_>>(),
            "harness_pages": self.harness_pages.iter().map(|(n, a, b)| json!({
                "filter": n, "after_start": a, "after_10000_requests": b,
            })).collect::<Vec<_>>(),
        })
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n### Measured: `cargo xtask bench-envoy --seconds {} --rounds {}`\n\n{}; {}; one \
             front Envoy per variant with `--concurrency 1`, a second Envoy as the backend \
             (direct response), `wrk -t1 -c16`, variants interleaved round by round; medians \
             of the rounds. \"Added\" is the cost per request at one worker \
             (1/rps − 1/rps<sub>none</sub>; for the body variants, against `none-body-1k` or `none-body-64k`, which POST the same body without a filter). \"CPU\" is the front Envoy's own CPU time \
             (all its threads, from `/proc`) per completed request, and \"added CPU\" its \
             difference to `none`'s: the filter's cost with wrk and the backend, which share \
             the cores, taken out. \"Start\" is one sample per variant, from \
             spawning Envoy to its admin `/ready` answering 200 (wasm modules compiled, \
             their VMs started and configured), the Envoys started one at a time.\n",
            self.seconds, self.rounds, self.machine, self.envoy_version
        );
        let base = self.rps("none").unwrap_or(f64::NAN);
        s.push_str("| Variant | Group | req/s | vs none | added µs/req | CPU µs/req | added CPU µs | crossings µs (harness est.) | vs native | p50 µs | p99 µs | Envoy heap MiB | start ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (v, r) in self.variants.iter().zip(self.results) {
            let rps = median(&r.rps);
            let native = v
                .native
                .and_then(|n| self.rps(n))
                .map_or("—".to_owned(), |n| format!("{:.0} %", rps / n * 100.0));
            let _ = writeln!(
                s,
                "| `{}` | {} | {:.0} | {:.1} % | {} | {:.1} | {} | {} | {native} | {:.0} | {:.0} | {} | {:.0} |",
                v.name,
                v.group,
                rps,
                rps / base * 100.0,
                self.added_us(v.name)
                    .filter(|_| v.name != v.baseline)
                    .map_or("—".into(), |a| format!("{a:.1}")),
                median(&r.cpu_us),
                self.added_cpu_us(v.name)
                    .filter(|_| v.name != v.baseline)
                    .map_or("—".into(), |a| format!("{a:.1}")),
                r.crossings_us.map_or("—".into(), |c| format!("{c:.1}")),
                median(&r.p50_us),
                median(&r.p99_us),
                r.heap_bytes
                    .map_or("—".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0)),
                r.start_ms,
            );
        }
        let ratio = |ours: &str, theirs: &str| -> String {
            match (self.added_us(ours), self.added_us(theirs)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "n/a".into(),
            }
        };
        let share = |ours: &str, theirs: &str| -> String {
            match (self.rps(ours), self.rps(theirs)) {
                (Some(a), Some(b)) => format!("{:.0} %", a / b * 100.0),
                _ => "n/a".into(),
            }
        };
        let cpu_ratio = |ours: &str, theirs: &str| -> String {
            match (self.added_cpu_us(ours), self.added_cpu_us(theirs)) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "n/a".into(),
            }
        };
        // At one busy worker, req/s is 1 / (CPU per request).
        let cpu_share = |ours: &str, theirs: &str| -> String {
            match (self.cpu_us(ours), self.cpu_us(theirs)) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.0} %", b / a * 100.0),
                _ => "n/a".into(),
            }
        };
        let micros = |v: Option<f64>| v.map_or("n/a".into(), |a| format!("{a:.1} µs"));
        let _ = writeln!(
            s,
            "\n| Target (issue 26) | by req/s | by the front's CPU |\n|---|---|---|\n\
             | headers: added cost ≤ 1.0× Lua's | {} | {} |\n\
             | auth JWT RS256, caches on: ≥ 80 % of `jwt_authn`'s req/s | {} | {} |\n\
             | auth JWT RS256, caches off: ≥ 70 % of `jwt_authn`'s req/s | {} | {} |\n\
             | routing: added cost ≤ 1.0× Lua's | {} | {} |\n\
             | body routing, 1 KiB JSON (issue 29): added cost ≤ 1.0× Lua's | {} | {} |\n\
             | (context) body routing, 64 KiB JSON: added cost over Lua's | {} | {} |\n\
             | (context) each job's proxy-wasm floor (`wasm-floor-*`: our filter's callbacks and host calls, no work) over Lua's: headers · routing · body 1 KiB | {} · {} · {} | {} · {} · {} |\n\
             | (context) our filter's added cost over its job's floor: headers · routing · body 1 KiB | {} · {} · {} | {} · {} · {} |\n\
             | (context) the cached JWT job's proxy-wasm floor (`wasm-floor-auth`) as a share of `jwt_authn`'s req/s | {} | {} |\n\
             | (context) auth with a cached token: added cost over its job's floor | {} | {} |\n\
             | (context) the minimal wasm filter's added cost, the proxy-wasm floor | {} | {} |\n\
             | (context) Lua's added cost for the header job | {} | {} |\n\
             | (context) header-transform's added cost over `header_mutation`'s | {} | {} |",
            ratio("header-transform", "lua-headers"),
            cpu_ratio("header-transform", "lua-headers"),
            share("auth-jwt", "jwt_authn"),
            cpu_share("auth-jwt", "jwt_authn"),
            share("auth-jwt-nocache", "jwt_authn-nocache"),
            cpu_share("auth-jwt-nocache", "jwt_authn-nocache"),
            ratio("routing", "lua-routing"),
            cpu_ratio("routing", "lua-routing"),
            ratio("body-routing-1k", "lua-body-routing-1k"),
            cpu_ratio("body-routing-1k", "lua-body-routing-1k"),
            ratio("body-routing-64k", "lua-body-routing-64k"),
            cpu_ratio("body-routing-64k", "lua-body-routing-64k"),
            ratio("wasm-floor-headers", "lua-headers"),
            ratio("wasm-floor-routing", "lua-routing"),
            ratio("wasm-floor-body-1k", "lua-body-routing-1k"),
            cpu_ratio("wasm-floor-headers", "lua-headers"),
            cpu_ratio("wasm-floor-routing", "lua-routing"),
            cpu_ratio("wasm-floor-body-1k", "lua-body-routing-1k"),
            ratio("header-transform", "wasm-floor-headers"),
            ratio("routing", "wasm-floor-routing"),
            ratio("body-routing-1k", "wasm-floor-body-1k"),
            cpu_ratio("header-transform", "wasm-floor-headers"),
            cpu_ratio("routing", "wasm-floor-routing"),
            cpu_ratio("body-routing-1k", "wasm-floor-body-1k"),
            share("wasm-floor-auth", "jwt_authn"),
            cpu_share("wasm-floor-auth", "jwt_authn"),
            ratio("auth-jwt", "wasm-floor-auth"),
            cpu_ratio("auth-jwt", "wasm-floor-auth"),
            micros(self.added_us("wasm-minimal")),
            micros(self.added_cpu_us("wasm-minimal")),
            micros(self.added_us("lua-headers")),
            micros(self.added_cpu_us("lua-headers")),
            ratio("header-transform", "header_mutation"),
            cpu_ratio("header-transform", "header_mutation"),
        );
        s.push_str(&profile_table(self.variants, self.results));
        s.push_str("\nLinear memory of each module in the harness (64 KiB pages), started with its example configuration, then after 10,000 requests:\n\n| Filter | after start | after 10,000 requests |\n|---|---|---|\n");
        for (name, before, after) in self.harness_pages {
            let _ = writeln!(s, "| {name} | {before} | {after} |");
        }
        s.push_str("\n![requests per second by variant](bench-envoy.svg)\n\n");
        s
    }

    /// A horizontal bar chart of median requests/s (plotters, SVG).
    fn svg(&self) -> Result<String, String> {
        let rows: Vec<(&str, f64, RGBColor)> = self
            .variants
            .iter()
            .zip(self.results)
            .map(|(v, r)| {
                let colour = match (v.group, v.native) {
                    ("baseline", _) => RGBColor(0x88, 0x88, 0x88),
                    (_, None) if v.name != "wasm-minimal" => RGBColor(0x4c, 0x72, 0xb0),
                    _ if v.name.starts_with("lua") => RGBColor(0xdd, 0x84, 0x52),
                    _ => RGBColor(0x55, 0xa8, 0x68),
                };
                (v.name, median(&r.rps), colour)
            })
            .collect();
        let max = rows.iter().map(|r| r.1).fold(1.0, f64::max);
        // The y axis counts from the bottom: the first variant on top.
        let row = |i: usize| rows.len().checked_sub(i + 1).and_then(|i| rows.get(i));
        // `<path>/envoy  version: <commit>/<version>/Clean/RELEASE/BoringSSL`
        let version = self
            .envoy_version
            .split("version:")
            .nth(1)
            .and_then(|v| v.trim().split('/').nth(1))
            .unwrap_or("?");
        let mut svg = String::new();
        {
            let height = 90 + 24 * rows.len() as u32;
            let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
            let fail = |e: &dyn std::fmt::Display| format!("cannot draw the chart: {e}");
            root.fill(&WHITE).map_err(|e| fail(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(
                    format!("Envoy {version}, one worker: median requests/s"),
                    ("sans-serif", 15),
                )
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(170)
                .build_cartesian_2d(0.0..max * 1.12, (0..rows.len()).into_segmented())
                .map_err(|e| fail(&e))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(rows.len())
                .y_label_formatter(&|y| match y {
                    SegmentValue::CenterOf(i) => row(*i).map_or("", |r| r.0).to_owned(),
                    _ => String::new(),
                })
                .x_label_formatter(&|x| format!("{x:.0}"))
                .x_desc("requests/s · grey: no filter · green: ours (wasm) · orange: Lua · blue: Envoy native")
                .draw()
                .map_err(|e| fail(&e))?;
            chart
                .draw_series(rows.iter().rev().enumerate().map(|(i, (_, rps, colour))| {
                    let mut bar = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i)),
                            (*rps, SegmentValue::Exact(i + 1)),
                        ],
                        colour.filled(),
                    );
                    bar.set_margin(3, 3, 0, 0);
                    bar
                }))
                .map_err(|e| fail(&e))?;
            chart
                .draw_series(rows.iter().rev().enumerate().map(|(i, (_, rps, _))| {
                    Text::new(
                        format!("{rps:.0}"),
                        (rps + max * 0.01, SegmentValue::CenterOf(i)),
                        ("sans-serif", 12),
                    )
                }))
                .map_err(|e| fail(&e))?;
            root.present().map_err(|e| fail(&e))?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read_in_its_units() {
        let text = "Running 2s test\n  Latency Distribution\n     50%  652.00us\n     75%  1.00ms\n     90%    1.10ms\n     99%    1.21ms\n  1000 requests in 2.00s\nRequests/sec:  23232.12\nTransfer/sec: 1MB\n";
        assert_eq!(
            parse_wrk(text),
            Some(WrkRun {
                rps: 23232.12,
                p50_us: 652.0,
                p99_us: 1210.0,
                requests: 1000
            })
        );
        assert_eq!(parse_wrk("nothing"), None);
    }

    #[test]
    fn a_dso_report_is_read_as_shares_by_region() {
        let text = "# Samples: 100\n#\n    50.00%    50  envoy\n    30.00%    30  [kernel.kallsyms]\n     \
                    15.00%    15  [JIT] tid 23405\n     4.00%     4  libc.so.6\n     1.00%     1  libm.so.6\n";
        let shares = parse_dso_report(text);
        assert_eq!(shares["envoy"], 0.5);
        assert_eq!(shares["kernel"], 0.3);
        assert_eq!(shares["JIT"], 0.15);
        assert_eq!(shares["libc"], 0.04);
        assert_eq!(shares["other"], 0.01);
        assert!(parse_dso_report("# nothing\n").is_empty());
    }

    #[test]
    fn the_chart_has_a_bar_and_a_label_per_variant() {
        let variant = |name, group| Variant::new(name, group, Vec::new());
        let variants = [variant("none", "baseline"), variant("routing", "routing")];
        let measured = |rps| Measured {
            rps: vec![rps],
            ..Measured::default()
        };
        let results = [measured(20_000.0), measured(15_000.0)];
        let report = Report {
            variants: &variants,
            results: &results,
            harness_pages: &[],
            seconds: 1,
            rounds: 1,
            envoy_version: "/x/envoy  version: 9e55/1.40.0/Clean/RELEASE/BoringSSL".into(),
            machine: String::new(),
        };
        let svg = report.svg().unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in ["routing", "20000", "15000", "Envoy 1.40.0,"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.contains("fill=\"#888888\""), "the baseline's grey bar");
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;

    #[test]
    fn the_bench_body_has_its_size_and_names_the_green_model() {
        for size in [1024, 65_536] {
            let body = chat_body(size);
            assert_eq!(body.len(), size);
            let value: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(value["model"], "claude-y");
        }
    }

    /// A `wasm-floor-*` variant is the floor of our filter's job only
    /// while it makes the same crossings (the same callbacks, the same host
    /// calls in the same order) and leaves the same request and response.
    #[test]
    fn each_jobs_floor_makes_our_filters_crossings() {
        use proxy_wasm_harness::Plugin;
        let work = std::env::temp_dir().join(format!("bench-envoy-floor-{}", std::process::id()));
        // The bench request twice on one VM (a cached token is the
        // second), with `extra` headers; the second stream's crossings.
        let run = |module: &Path, config: Value, body: Option<usize>, extra: &[(&str, &str)]| {
            let mut vm = Plugin::builder(module)
                .configuration(config.to_string())
                .allow_on_headers_stop_iteration(true)
                .build()
                .and_then(|p| p.start())
                .unwrap();
            let mut last = None;
            for _ in 0..2 {
                let mut stream = vm.http_stream();
                let length = body.map(|size| size.to_string());
                let mut headers = vec![("x-internal-debug", "1")];
                headers.extend_from_slice(extra);
                if let Some(length) = &length {
                    headers.extend([
                        ("content-type", "application/json"),
                        ("content-length", length),
                    ]);
                }
                let method = if body.is_some() { "POST" } else { "GET" };
                let headers = proxy_wasm_harness::envoy::request_headers(
                    proxy_wasm_harness::envoy::Codec::Http1,
                    method,
                    PATH,
                    "bench",
                    headers,
                    "bench-request",
                );
                stream
                    .send_request_headers(headers, body.is_none())
                    .unwrap();
                if let Some(size) = body {
                    stream.send_request_body(chat_body(size), true).unwrap();
                }
                stream
                    .send_response_headers([(":status", "200"), ("x-powered-by", "php")], false)
                    .unwrap();
                stream.send_response_body("ok", true).unwrap();
                last = Some(stream.finish().unwrap());
            }
            let exchange = last.unwrap();
            let costs = &exchange.costs[0];
            let callbacks: Vec<_> = costs.callbacks.iter().map(|c| c.callback).collect();
            (
                callbacks,
                costs.host_calls(),
                exchange.upstream_request.headers.clone(),
                exchange.downstream_response.headers.clone(),
            )
        };
        let routing = json!({"cluster_header": "x-route-cluster", "rules": [
            {"name": "r9", "match": {"path": {"prefix": "/svc9/"}}, "cluster": "green"}]});
        let header = json!({"rules": [{"name": "job",
            "request_headers": [{"set": {"name": "x-edge", "value": "bench"}},
                                {"remove": {"name": "x-internal-debug"}}],
            "response_headers": [{"set": {"name": "x-content-type-options", "value": "nosniff"}},
                                 {"remove": {"name": "x-powered-by"}}]}]});
        let (jwks, token) = hs256_material();
        let bearer = format!("Bearer {token}");
        let auth = auth_bench_config(&jwks, 1024);
        let with_token = [("authorization", bearer.as_str())];
        for (ours, config, package, job, body, extra) in [
            (
                harness_fixtures::HEADER_TRANSFORM,
                header,
                "header-transform",
                header_floor_job(),
                None,
                &[][..],
            ),
            (
                harness_fixtures::ROUTING,
                routing,
                "routing",
                routing_floor_job(),
                None,
                &[],
            ),
            (
                harness_fixtures::ROUTING,
                body_routing_config(),
                "routing",
                body_floor_job(),
                Some(1024),
                &[],
            ),
            (
                harness_fixtures::AUTH,
                auth,
                "auth",
                auth_floor_job(),
                None,
                &with_token,
            ),
        ] {
            let probe = job_probe(&work, package).unwrap();
            let floor = run(&probe, json!({"job": job}), body, extra);
            assert_eq!(
                floor,
                run(Path::new(ours), config, body, extra),
                "{package}, body {body:?}"
            );
        }
        let _ = fs::remove_dir_all(&work);
    }

    /// A local HS256 key set and a token for the bench provider (the
    /// cached path's crossings do not depend on the algorithm).
    fn hs256_material() -> (String, String) {
        use base64::Engine as _;
        use hmac::Mac as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let secret = b"a-shared-hmac-secret-of-32-bytes";
        let jwks = json!({"keys": [{"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(secret)}]});
        let header = b64(br#"{"alg":"HS256","kid":"hs","typ":"JWT"}"#);
        let claims = json!({"iss": "bench", "aud": "bench", "sub": "alice", "exp": now() + 86_400});
        let signed = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(signed.as_bytes());
        let signature = b64(&mac.finalize().into_bytes());
        (jwks.to_string(), format!("{signed}.{signature}"))
    }

    #[test]
    fn body_variants_are_measured_from_their_own_baseline() {
        let variants = variants("{}", &std::env::temp_dir().join("bench-envoy-test")).unwrap();
        for v in variants.iter().filter(|v| v.body.is_some()) {
            let base = variants.iter().find(|b| b.name == v.baseline).unwrap();
            assert_eq!(base.body, v.body, "{}", v.name);
            assert!(base.filters.is_empty(), "{}", v.name);
        }
        let measured = |rps| Measured {
            rps: vec![rps],
            ..Measured::default()
        };
        let results: Vec<Measured> = variants
            .iter()
            .map(|v| match v.name {
                "none-body-1k" => measured(10_000.0),
                "body-routing-1k" => measured(8_000.0),
                _ => measured(20_000.0),
            })
            .collect();
        let report = Report {
            variants: &variants,
            results: &results,
            harness_pages: &[],
            seconds: 1,
            rounds: 1,
            envoy_version: String::new(),
            machine: String::new(),
        };
        let added = report.added_us("body-routing-1k").unwrap();
        assert!((added - 25.0).abs() < 1e-9, "{added}");
    }
}
