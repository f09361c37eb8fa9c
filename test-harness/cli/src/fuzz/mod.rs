//! `proxy-wasm-harness fuzz`: random requests, valid as Envoy would deliver
//! them, through a filter chain in the harness, watching for what breaks
//! filters in production: traps (the VM dies and the failure policy takes
//! over), callbacks past a time budget, memory past the limit, a stale
//! `content-length` after a body change, header values Envoy's codec
//! refuses, local replies with a status HTTP does not have, and linear
//! memory that grows without bound. Each finding is minimized and written
//! out as a scenario file that shows it in both runners.
//!
//! A run is seeded and repeatable: the same seed, target and run count draw
//! the same requests. The chain's VMs live across requests, as Envoy's do,
//! and are started anew after a VM failure.

mod dictionary;
mod generate;
mod shrink;

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::harness_runner::{self, Observed, Session, Started};
use crate::outcome::{ClientResult, StepOutcome};
use crate::scenario::{self, Loaded, Step};
use dictionary::Dictionary;
use generate::Generator;

#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// A module (with `--config`), or a scenario file whose chain
    /// (filters, configurations, upstreams, clusters) is fuzzed; its steps
    /// are not used.
    target: PathBuf,
    /// The module's plugin configuration (JSON, or any text).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The seed: the same seed draws the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many requests to send (default 10,000 unless `--seconds`).
    #[arg(long)]
    runs: Option<u64>,
    /// Send requests for this long instead.
    #[arg(long)]
    seconds: Option<u64>,
    /// A callback that runs longer than this is a finding (and fails the
    /// VM, as the harness's deadline does).
    #[arg(long, default_value_t = 100)]
    budget_ms: u64,
    /// Where the reproduction scenarios go.
    #[arg(long, default_value = "target/fuzz")]
    out: PathBuf,
    /// Worker chains sharing shared data and queues, as Envoy's worker
    /// threads do; requests go to them in turn.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Run the module as Envoy's `allow_on_headers_stop_iteration: true`
    /// does (a filter that reads the body before it lets the headers go).
    #[arg(long)]
    allow_on_headers_stop_iteration: bool,
}

impl FuzzArgs {
    fn options(&self) -> FuzzOptions {
        FuzzOptions {
            target: self.target.clone(),
            config: self.config.clone(),
            seed: self.seed,
            runs: self.runs,
            seconds: self.seconds,
            budget: Duration::from_millis(self.budget_ms),
            out: self.out.clone(),
            workers: self.workers,
            allow_on_headers_stop_iteration: self.allow_on_headers_stop_iteration,
        }
    }
}

/// What to fuzz and for how long: `proxy-wasm-harness fuzz` from Rust.
///
/// ```no_run
/// use proxy_wasm_harness_cli::{FuzzOptions, fuzz};
///
/// let report = fuzz(
///     &FuzzOptions::new("target/wasm32-wasip1/release/my_filter.wasm")
///         .config("config.json")
///         .runs(10_000),
/// )
/// .unwrap();
/// assert!(report.findings.is_empty(), "{report}");
/// ```
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// A module (with `config`) or a scenario file whose chain is fuzzed.
    pub target: PathBuf,
    /// The module's plugin configuration file.
    pub config: Option<PathBuf>,
    /// The same seed draws the same requests.
    pub seed: u64,
    /// How many requests (default 10,000 unless `seconds`).
    pub runs: Option<u64>,
    /// Send requests for this long instead.
    pub seconds: Option<u64>,
    /// A callback running longer is a finding.
    pub budget: Duration,
    /// Where the reproduction scenarios go.
    pub out: PathBuf,
    /// Worker chains sharing shared data and queues (default 2).
    pub workers: usize,
    /// For a module target: Envoy's `allow_on_headers_stop_iteration`.
    pub allow_on_headers_stop_iteration: bool,
}

impl FuzzOptions {
    /// Fuzzes `target` with the defaults of the command: seed 1, 10,000
    /// requests, a 100 ms budget, reproductions in `target/fuzz`.
    pub fn new(target: impl Into<PathBuf>) -> Self {
        Self {
            target: target.into(),
            config: None,
            seed: 1,
            runs: None,
            seconds: None,
            budget: Duration::from_millis(100),
            out: PathBuf::from("target/fuzz"),
            workers: 2,
            allow_on_headers_stop_iteration: false,
        }
    }

    /// For a module target: run it under Envoy's
    /// `allow_on_headers_stop_iteration: true`.
    #[must_use]
    pub fn allow_on_headers_stop_iteration(mut self, allow: bool) -> Self {
        self.allow_on_headers_stop_iteration = allow;
        self
    }

    /// The module's plugin configuration file.
    #[must_use]
    pub fn config(mut self, file: impl Into<PathBuf>) -> Self {
        self.config = Some(file.into());
        self
    }

    /// The seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many requests to send.
    #[must_use]
    pub fn runs(mut self, runs: u64) -> Self {
        self.runs = Some(runs);
        self
    }

    /// Where the reproductions go.
    #[must_use]
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out = dir.into();
        self
    }

    /// The time budget of one callback.
    #[must_use]
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct FuzzReport {
    /// Requests sent.
    pub runs: u64,
    /// How far the requests got (the share that reached the backend,
    /// callouts, client statuses).
    pub coverage: String,
    /// Each distinct finding, minimized and written out.
    pub findings: Vec<FuzzFinding>,
}

/// One distinct finding.
#[derive(Debug, Clone)]
pub struct FuzzFinding {
    /// `trap`, `past-time-budget`, `memory-limit`, `stale-content-length`,
    /// `refused-header-value`, `invalid-local-status`, `memory-growth`,
    /// `shared-data-growth` or `harness-error`.
    pub kind: &'static str,
    /// What happened (a trap's panic message and wasm backtrace, ...).
    pub message: String,
    /// How many requests showed it.
    pub count: u64,
    /// The request that first showed it.
    pub first_run: u64,
    /// Steps of the minimized reproduction.
    pub steps: usize,
    /// The reproduction scenario file.
    pub reproduction: PathBuf,
}

impl std::fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.findings.is_empty() {
            return writeln!(f, "no findings");
        }
        writeln!(
            f,
            "{:<22} {:>6} {:>9} {:>6}  reproduction",
            "finding", "count", "first run", "steps"
        )?;
        for finding in &self.findings {
            writeln!(
                f,
                "{:<22} {:>6} {:>9} {:>6}  {}",
                finding.kind,
                finding.count,
                finding.first_run,
                finding.steps,
                finding.reproduction.display()
            )?;
            for line in finding.message.lines().take(6) {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

/// What a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Trap,
    Budget,
    MemoryLimit,
    StaleContentLength,
    RefusedHeader,
    InvalidStatus,
    Stalled,
    MemoryGrowth,
    SharedGrowth,
    Harness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::Budget => "past-time-budget",
            Self::MemoryLimit => "memory-limit",
            Self::StaleContentLength => "stale-content-length",
            Self::RefusedHeader => "refused-header-value",
            Self::InvalidStatus => "invalid-local-status",
            Self::Stalled => "stalled-request",
            Self::MemoryGrowth => "memory-growth",
            Self::SharedGrowth => "shared-data-growth",
            Self::Harness => "harness-error",
        }
    }
}

/// One thing that went wrong, and where.
#[derive(Debug, Clone)]
struct Finding {
    kind: Kind,
    /// What happened, first line first.
    message: String,
    /// What tells two findings of a kind apart (their first line).
    signature: String,
}

/// A finding as the report lists it.
struct Found {
    finding: Finding,
    count: u64,
    first_run: u64,
    steps: Vec<Value>,
    observed: Observed,
    /// The step's outcome (for the reproduction's expectation).
    outcome: Option<StepOutcome>,
    file: Option<PathBuf>,
    /// How many steps the minimization started from.
    minimized_from: usize,
}

impl Found {
    /// A finding first seen at request `run`, after `steps`.
    fn new(finding: Finding, run: u64, steps: Vec<Value>) -> Self {
        Self {
            finding,
            count: 0,
            first_run: run,
            steps,
            observed: Observed::default(),
            outcome: None,
            file: None,
            minimized_from: 0,
        }
    }
}

/// How far the requests got: whether the fuzzer gets past the filter.
#[derive(Debug, Default)]
struct Coverage {
    reached_backend: u64,
    statuses: BTreeMap<u16, u64>,
    resets: u64,
    callouts: u64,
    steps: u64,
}

impl Coverage {
    fn count(&mut self, outcome: &StepOutcome) {
        self.steps += 1;
        self.reached_backend += u64::from(outcome.backend.is_some());
        self.callouts += outcome.calls.len() as u64;
        match &outcome.client {
            ClientResult::Response { status, .. } => {
                *self.statuses.entry(*status).or_default() += 1
            }
            ClientResult::Reset => self.resets += 1,
        }
    }
}

impl std::fmt::Display for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = |n: u64| 100.0 * n as f64 / self.steps.max(1) as f64;
        write!(
            f,
            "{:.0} % of requests reached the backend; {} callouts; client statuses:",
            percent(self.reached_backend),
            self.callouts
        )?;
        for (status, n) in &self.statuses {
            write!(f, " {status}×{n}")?;
        }
        if self.resets > 0 {
            write!(f, ", reset×{}", self.resets)?;
        }
        Ok(())
    }
}

/// The chain under test, compiled once.
struct Target {
    loaded: Loaded,
    /// The scenario's own steps, without their expectations: seeds.
    seeds: Vec<Value>,
    /// The plugins' runtime: its shared data and queues outlive VMs.
    runtime: proxy_wasm_harness::Runtime,
    /// The base file as written, for the reproductions' filters.
    base: Value,
    plugins: Vec<proxy_wasm_harness::Plugin>,
}

impl Target {
    fn start(&self) -> Result<Session, String> {
        match harness_runner::start(&self.plugins)? {
            Started::Ready(session) => Ok(session),
            Started::Rejected(_) => Err(format!(
                "{}: the chain refuses its configuration (run it with `proxy-wasm-harness test` to see why)",
                self.loaded.file.display()
            )),
        }
    }
}

pub(crate) fn run(args: &FuzzArgs) -> ExitCode {
    match fuzz(&args.options()) {
        Ok(report) => {
            print!("{report}");
            if report.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the fuzzer (progress on standard error); what it found.
///
/// # Errors
///
/// When the target cannot be read or loaded, or its chain refuses its
/// configuration.
pub fn fuzz(args: &FuzzOptions) -> Result<FuzzReport, String> {
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let target = target(args)?;
    let mut dictionary = Dictionary::default();
    for module in &target.loaded.modules {
        let bytes = std::fs::read(module).map_err(|e| format!("{}: {e}", module.display()))?;
        dictionary.add_module(&bytes);
    }
    dictionary.add_json(&target.base["filters"]);
    let mut generator = Generator {
        rng: ChaCha8Rng::seed_from_u64(args.seed),
        dictionary: &dictionary,
        upstreams: target.loaded.scenario.upstreams.keys().cloned().collect(),
        seeds: target.seeds.clone(),
    };
    let runs = match (args.runs, args.seconds) {
        (Some(runs), _) => runs,
        (None, Some(_)) => u64::MAX,
        (None, None) => 10_000,
    };
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    eprintln!(
        "fuzz: {} (seed {}, {} names and {} values in the dictionary)",
        target.loaded.file.display(),
        args.seed,
        dictionary.names.len(),
        dictionary.values.len()
    );
    let started = Instant::now();
    // Several workers, each a chain of VMs as an Envoy worker thread has,
    // sharing the runtime's shared data and queues as Envoy's share the
    // process's; requests go to them in turn.
    let mut workers = Vec::new();
    for _ in 0..args.workers.max(1) {
        workers.push(Worker::new(target.start()?));
    }
    let mut shared: VecDeque<u64> = VecDeque::new();
    // The last requests across workers: shared data is theirs together.
    let mut recent: VecDeque<Value> = VecDeque::new();
    let mut found: BTreeMap<(Kind, String), Found> = BTreeMap::new();
    let mut last_progress = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let mut coverage = Coverage::default();
    let mut run = 0;
    while run < runs && deadline.is_none_or(|d| Instant::now() < d) {
        run += 1;
        let value = generator.step();
        recent.push_back(value.clone());
        if recent.len() > GROWTH_REPEATS {
            recent.pop_front();
        }
        let count = workers.len() as u64;
        let worker = &mut workers[((run - 1) % count) as usize];
        worker.history.push_back(value.clone());
        if worker.history.len() > HISTORY {
            worker.history.pop_front();
        }
        let (findings, outcome) = take_step(&target, &mut worker.session, &value, run)?;
        if let Some(outcome) = &outcome {
            coverage.count(outcome);
        }
        worker.pages.push_back(
            worker
                .session
                .vms()
                .iter()
                .map(|vm| vm.memory_pages())
                .collect(),
        );
        if worker.pages.len() > WINDOW {
            worker.pages.pop_front();
        }
        shared.push_back(target.runtime.shared_bytes() as u64);
        if shared.len() > WINDOW {
            shared.pop_front();
        }
        let restart = findings.iter().any(|f| {
            matches!(
                f.kind,
                Kind::Trap | Kind::Budget | Kind::MemoryLimit | Kind::Harness
            )
        });
        for finding in findings {
            let entry = found
                .entry((finding.kind, finding.signature.clone()))
                .or_insert_with(|| Found {
                    observed: worker.session.observed.clone(),
                    outcome: outcome.clone(),
                    ..Found::new(
                        finding.clone(),
                        run,
                        worker.history.iter().cloned().collect(),
                    )
                });
            entry.count += 1;
        }
        if restart {
            check_growth(&target, worker, run, &mut found);
            *worker = Worker::new(target.start()?);
        }
        // A progress line: rewritten each second on a terminal, a new line
        // every ten seconds in a log.
        let every = if terminal { 1 } else { 10 };
        if last_progress.elapsed() >= Duration::from_secs(every) {
            last_progress = Instant::now();
            let line = format!(
                "fuzz: {run} runs, {} findings, {:.0} runs/s",
                found.len(),
                run as f64 / started.elapsed().as_secs_f64()
            );
            if terminal {
                eprint!("\r{line}   ");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
        }
    }
    for worker in &mut workers {
        check_growth(&target, worker, run, &mut found);
    }
    if let Some(marks) = grew(shared.make_contiguous(), SHARED_GROWTH) {
        let history: Vec<Value> = recent.iter().cloned().collect();
        let finding = Finding {
            kind: Kind::SharedGrowth,
            message: format!(
                "shared data and queues grew from {} to {} bytes over {} requests, in every quarter: they grow without bound (Envoy keeps them for the life of the process)",
                marks.0,
                marks.1,
                shared.len()
            ),
            signature: String::new(),
        };
        found
            .entry((Kind::SharedGrowth, String::new()))
            .or_insert_with(|| Found::new(finding, run, history))
            .count += 1;
    }
    eprintln!(
        "{}fuzz: {run} runs in {:.1} s, {} distinct findings",
        if terminal { "\r" } else { "" },
        started.elapsed().as_secs_f64(),
        found.len(),
    );
    eprintln!("fuzz: {coverage}");
    let stem = target
        .loaded
        .file
        .file_stem()
        .map_or_else(|| "target".into(), |s| s.to_string_lossy().into_owned());
    for (n, found) in found.values_mut().enumerate() {
        minimize(&target, found);
        let file = args.out.join(format!(
            "{stem}-{}-{}.yaml",
            found.finding.kind.name(),
            n + 1
        ));
        write_reproduction(&target, found, args.seed, &file)?;
        found.file = Some(file);
    }
    Ok(FuzzReport {
        runs: run,
        coverage: coverage.to_string(),
        findings: found
            .into_values()
            .map(|f| FuzzFinding {
                kind: f.finding.kind.name(),
                message: f.finding.message,
                count: f.count,
                first_run: f.first_run,
                steps: f.steps.len(),
                reproduction: f.file.unwrap_or_default(),
            })
            .collect(),
    })
}

/// The chain to fuzz: a scenario file's, or a module with its
/// configuration (written out as a scenario, so that reproductions and the
/// fuzzer load the chain the same way).
fn target(args: &FuzzOptions) -> Result<Target, String> {
    let is_scenario = args
        .target
        .extension()
        .is_some_and(|e| e == "yaml" || e == "yml");
    let file = if is_scenario {
        args.target.clone()
    } else {
        let module = args
            .target
            .canonicalize()
            .map_err(|e| format!("{}: {e}", args.target.display()))?;
        let configuration = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            None => Value::String(String::new()),
        };
        // Clusters the configuration names become callout upstreams that
        // answer, fail or time out at random.
        let mut upstreams = serde_json::Map::new();
        collect_clusters(&configuration, &mut upstreams);
        let stem = module
            .file_stem()
            .map_or_else(|| "module".into(), |s| s.to_string_lossy().into_owned());
        let base = json!({
            "description": format!("The chain `proxy-wasm-harness fuzz` runs for {}.", module.display()),
            "filters": [{
                "wasm": module.display().to_string(),
                "configuration": configuration,
                "allow_on_headers_stop_iteration": args.allow_on_headers_stop_iteration,
            }],
            "upstreams": upstreams,
        });
        let file = args.out.join(format!("{stem}.yaml"));
        let text = serde_yaml_ng::to_string(&base).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
        file
    };
    let loaded = scenario::load(&file).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut base: Value = serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    // Reproductions live elsewhere: module paths become absolute.
    if let Some(filters) = base["filters"].as_array_mut() {
        for (filter, module) in filters.iter_mut().zip(&loaded.modules) {
            let wasm = filter["wasm"].as_str().unwrap_or_default();
            if !wasm.starts_with("fixture:") && !wasm.starts_with("filter:") {
                let absolute = module.canonicalize().unwrap_or_else(|_| module.clone());
                filter["wasm"] = json!(absolute.display().to_string());
            }
        }
    }
    let runtime = proxy_wasm_harness::Runtime::new().map_err(|e| e.to_string())?;
    let plugins = harness_runner::plugins(&loaded, &runtime, Some(args.budget))?;
    let seeds = base["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| {
                    let mut s = s.clone();
                    let object = s.as_object_mut()?;
                    object.remove("expect");
                    object.remove("name");
                    Some(s)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Target {
        loaded,
        seeds,
        runtime,
        base,
        plugins,
    })
}

/// Every string under a key named `cluster` (a callout's target).
fn collect_clusters(value: &Value, into: &mut serde_json::Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(name) if key == "cluster" && !name.is_empty() => {
                        into.insert(name.clone(), json!({"status": 200}));
                    }
                    _ => collect_clusters(v, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_clusters(v, into)),
        _ => {}
    }
}

/// Runs one step; what it shows.
fn take_step(
    target: &Target,
    session: &mut Session,
    value: &Value,
    index: u64,
) -> Result<(Vec<Finding>, Option<StepOutcome>), String> {
    let step = Step::deserialize(value)
        .map_err(|e| format!("the generator drew a step the format refuses: {e}: {value}"))?;
    let outcome = match session.step(&target.loaded.scenario, &step, index as usize) {
        Ok(outcome) => outcome,
        Err(e) => return Ok((vec![finding(Kind::Harness, e)], None)),
    };
    let mut findings = Vec::new();
    for failure in &outcome.vm_failures {
        let kind = if failure.contains("did not return from") {
            Kind::Budget
        } else if failure.contains("grow its memory") {
            Kind::MemoryLimit
        } else {
            Kind::Trap
        };
        findings.push(finding(kind, failure.clone()));
    }
    for stale in &outcome.stale_content_length {
        findings.push(finding(Kind::StaleContentLength, stale.clone()));
    }
    let observed = &session.observed;
    if let Some(name) = &observed.refused_header {
        findings.push(finding(
            Kind::RefusedHeader,
            format!("a filter wrote a value Envoy's codec refuses (CR, LF or NUL) into `{name}`"),
        ));
    }
    if observed.stalled && outcome.vm_failures.is_empty() {
        findings.push(finding(
            Kind::Stalled,
            "the filters held the request and never let it go, answered or reset it: in Envoy \
             it waits until its stream times out (a filter that pauses the request headers to \
             read the body needs allow_on_headers_stop_iteration)"
                .to_owned(),
        ));
    }
    if let Some(status) = observed.local_status.filter(|s| !(200..=599).contains(s)) {
        findings.push(finding(
            Kind::InvalidStatus,
            format!("a local reply with status {status}, outside 200 to 599"),
        ));
    }
    Ok((findings, Some(outcome)))
}

fn finding(kind: Kind, message: String) -> Finding {
    // Where a panic was raised tells traps apart better than the trap's own
    // first line (always `unreachable` for a Rust panic); other findings by
    // their first line without its numbers (sizes, statuses).
    let signature = match message
        .lines()
        .find_map(|l| l.trim().strip_prefix("panic: "))
    {
        Some(place) => place.to_owned(),
        None => message
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect(),
    };
    Finding {
        kind,
        message,
        signature,
    }
}

/// One worker: a chain of VMs, the requests it served since it started
/// and each VM's memory after each.
struct Worker {
    session: Session,
    history: VecDeque<Value>,
    pages: VecDeque<Vec<u64>>,
}

impl Worker {
    fn new(session: Session) -> Self {
        Self {
            session,
            history: VecDeque::new(),
            pages: VecDeque::new(),
        }
    }
}

/// Growth without bound in a series of samples: over the last four fifths
/// of at least 1,000 samples, at least `min` more, each quarter more than
/// the one before. The first and last marks, when it grew so.
fn grew(series: &[u64], min: u64) -> Option<(u64, u64)> {
    if series.len() < 1000 {
        return None;
    }
    let from = series.len() / 5;
    let quarter = (series.len() - from) / 4;
    let marks: Vec<u64> = (0..=4)
        .map(|q| series[(from + q * quarter).min(series.len() - 1)])
        .collect();
    (marks[4].saturating_sub(marks[0]) >= min && marks.windows(2).all(|w| w[1] > w[0]))
        .then(|| (marks[0], marks[4]))
}

/// 1 MiB of linear memory, in 64 KiB pages; 64 KiB of shared data.
const MEMORY_GROWTH: u64 = 16;
const SHARED_GROWTH: u64 = 64 * 1024;

/// A worker's VMs whose linear memory grew without bound (see [`grew`]).
fn check_growth(
    target: &Target,
    worker: &mut Worker,
    run: u64,
    found: &mut BTreeMap<(Kind, String), Found>,
) {
    let pages = worker.pages.make_contiguous();
    let Some(vms) = pages.first().map(Vec::len) else {
        return;
    };
    for vm in 0..vms {
        let series: Vec<u64> = pages.iter().map(|p| p[vm]).collect();
        let Some((from, to)) = grew(&series, MEMORY_GROWTH) else {
            continue;
        };
        let name = target.loaded.scenario.filters[vm].plugin_name(vm);
        let message = format!(
            "filter `{name}`'s linear memory grew from {from} to {to} pages (64 KiB each) over {} requests, in every quarter: it grows without bound",
            series.len()
        );
        found
            .entry((Kind::MemoryGrowth, name.clone()))
            .or_insert_with(|| {
                let finding = Finding {
                    kind: Kind::MemoryGrowth,
                    message,
                    signature: name,
                };
                Found::new(finding, run, worker.history.iter().cloned().collect())
            })
            .count += 1;
    }
}

/// The most recent requests a finding is minimized from.
const HISTORY: usize = 2_000;
/// The most recent requests memory growth is judged over.
const WINDOW: usize = 10_000;

/// How many times a memory-growth reproduction repeats its request (and
/// how many requests a shared-data one keeps), and the growth in pages it
/// must show.
const GROWTH_REPEATS: usize = 400;
const GROWTH_UNITS: u64 = 4;

/// Minimizes a finding's steps, keeping what the last run of them showed.
fn minimize(target: &Target, found: &mut Found) {
    found.minimized_from = found.steps.len();
    let kind = found.finding.kind;
    let signature = found.finding.signature.clone();
    if kind == Kind::SharedGrowth {
        // Shared data grows with distinct keys, which one request repeated
        // does not make: the reproduction is the last requests as drawn.
        let keep = found.steps.len().saturating_sub(GROWTH_REPEATS);
        found.steps.drain(..keep);
        return;
    }
    if kind == Kind::MemoryGrowth {
        let vm = target
            .loaded
            .scenario
            .filters
            .iter()
            .enumerate()
            .position(|(i, f)| f.plugin_name(i) == signature)
            .unwrap_or(0);
        let mut grows = |steps: &[Value]| grows(target, steps, vm);
        // The request that grows it when repeated: try the last ones.
        let candidates: Vec<Value> = found.steps.iter().rev().take(20).cloned().collect();
        if let Some(step) = candidates
            .into_iter()
            .find(|s| grows(std::slice::from_ref(s)))
        {
            let small = shrink::shrink(vec![step], &mut grows);
            found.steps = small;
        } else {
            found.steps.truncate(0);
        }
        return;
    }
    let mut last = None;
    let mut still = |steps: &[Value]| {
        let Ok(mut session) = target.start() else {
            return false;
        };
        for (i, value) in steps.iter().enumerate() {
            let Ok((findings, outcome)) = take_step(target, &mut session, value, i as u64 + 1)
            else {
                return false;
            };
            if findings
                .iter()
                .any(|f| f.kind == kind && f.signature == signature)
            {
                last = Some((session.observed.clone(), outcome));
                return i + 1 == steps.len();
            }
        }
        false
    };
    let small = shrink::shrink(found.steps.clone(), &mut still);
    // Run the result once more for what its last step showed.
    if still(&small)
        && let Some((observed, outcome)) = last
    {
        found.observed = observed;
        found.outcome = outcome;
    }
    found.steps = small;
}

/// Whether `steps`, repeated, grow what `measure` reads (a VM's pages) by
/// `GROWTH_UNITS`.
fn grows(target: &Target, steps: &[Value], vm: usize) -> bool {
    let measure = |session: &Session| session.vms().get(vm).map_or(0, |v| v.memory_pages());
    let Ok(mut session) = target.start() else {
        return false;
    };
    let mut first = None;
    for i in 0..GROWTH_REPEATS {
        for (j, value) in steps.iter().enumerate() {
            if take_step(
                target,
                &mut session,
                value,
                (i * steps.len() + j) as u64 + 1,
            )
            .is_err()
            {
                return false;
            }
        }
        if i == GROWTH_REPEATS / 4 {
            first = Some(measure(&session));
        }
    }
    first.is_some_and(|f| measure(&session) >= f + GROWTH_UNITS)
}

/// Writes a finding's steps as a scenario: the target's chain, the steps,
/// and on the last one the expectation that the finding breaks.
fn write_reproduction(
    target: &Target,
    found: &Found,
    seed: u64,
    file: &Path,
) -> Result<(), String> {
    let mut steps = found.steps.clone();
    let mut note = String::new();
    if found.finding.kind == Kind::SharedGrowth {
        note = " The last requests as drawn (distinct keys make shared data grow, so one request \
                repeated would not): no runner can assert on shared data, so this file passes."
            .into();
    }
    if found.finding.kind == Kind::MemoryGrowth && !steps.is_empty() {
        let step = steps[0].clone();
        steps = vec![step; GROWTH_REPEATS];
        note = format!(
            " The request repeated {GROWTH_REPEATS} times: the harness measured the growth; no \
             runner can assert on a VM's memory or shared data, so this file passes and shows \
             the request."
        );
    }
    if let Some(last) = steps.last_mut() {
        let expect = expectation(found, last);
        if !expect.is_null() {
            last["expect"] = expect;
        }
    }
    match found.finding.kind {
        Kind::Budget => {
            note =
                " Envoy has no callback deadline: in Envoy this request holds the worker thread \
                    until the callback returns; run the file in the harness."
                    .into();
        }
        Kind::InvalidStatus => {
            note = " What Envoy does with such a local reply is not measured; the file shows the \
                    request."
                .into();
        }
        _ => {}
    }
    let mut scenario = target.base.clone();
    let Some(object) = scenario.as_object_mut() else {
        return Err("the base scenario is not a mapping".into());
    };
    object.insert(
        "description".into(),
        json!(format!(
            "Found by `proxy-wasm-harness fuzz` (seed {seed}, run {}), minimized from {} step(s): \
             {}: {}.{note}",
            found.first_run,
            found.minimized_from,
            found.finding.kind.name(),
            found.finding.message.lines().next().unwrap_or_default()
        )),
    );
    object.insert("steps".into(), Value::Array(steps));
    for key in ["expect_rejected", "compare_logs", "compare_logs_except"] {
        object.remove(key);
    }
    let text = serde_yaml_ng::to_string(&scenario).map_err(|e| e.to_string())?;
    std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))
}

/// What the last step must show for the finding to be absent; a VM
/// failure and a stale `content-length` already fail a step by default.
fn expectation(found: &Found, step: &Value) -> Value {
    match found.finding.kind {
        // The request's: the backend must read the whole body the filter
        // sent (it reads the declared length instead, or waits for more).
        Kind::StaleContentLength if found.finding.message.starts_with("the request") => {
            json!({"backend": {"body": String::from_utf8_lossy(&found.observed.sent_body)}})
        }
        // A held request never reaches the backend.
        Kind::Stalled => json!({"backend": {"reached": true}}),
        Kind::RefusedHeader => match &found.outcome {
            // The response's header: the client's stream is reset.
            Some(StepOutcome {
                client: ClientResult::Reset,
                backend: Some(_),
                ..
            }) => json!({"client": {"status": step["response"]["status"].as_u64().unwrap_or(200)}}),
            // The request's: the router answers 503 instead of sending it.
            _ => json!({"backend": {"reached": true}}),
        },
        _ => Value::Null,
    }
}
