//! The command line: parsing and one function per command.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use crate::report::{Report, Verdict};
use crate::{envoy_runner, fuzz, harness_runner, lint, outcome, report, scenario, serve};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Run proxy-wasm scenario files in the harness and in Envoy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs scenario files (or every .yaml under folders).
    Test(TestArgs),
    /// Prints the JSON Schema of scenario files.
    Schema,
    /// Prints the `capability_restriction_config` that allows exactly what a
    /// module needs: the `proxy_*` and WASI functions it imports and the
    /// `proxy_on_*` callbacks it exports (for Envoy's `VmConfig`).
    Capabilities(CapabilitiesArgs),
    /// Checks Envoy wasm filter configurations and Istio WasmPlugin /
    /// TrafficExtension resources against the Envoy and Istio versions they
    /// will run on (fields a version lacks or refuses), and against what
    /// the module needs (`--module`). Exits 1 on any error.
    Lint(LintArgs),
    /// Sends random requests, valid as Envoy would deliver them, through a
    /// module (or a scenario's chain) in the harness; reports traps,
    /// callbacks past a time budget, stale content-lengths, header values
    /// Envoy refuses, invalid local reply statuses and memory that grows
    /// without bound, each minimized into a scenario file. Exits 1 on any
    /// finding.
    Fuzz(fuzz::FuzzArgs),
    /// Runs a local dev proxy: real HTTP traffic through a filter chain in
    /// the harness, forwarded to an upstream URL, reloaded on change.
    Serve(serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
struct LintArgs {
    /// YAML or JSON files (or folders of them): Envoy bootstraps,
    /// listeners or filter configs, Istio resources (several documents per
    /// file).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The Envoy version the configurations will run on.
    #[arg(long, default_value = "1.40")]
    envoy: String,
    /// The Istio version the resources will run on.
    #[arg(long, default_value = "1.28")]
    istio: String,
    /// The module the configurations load: its restriction is checked
    /// against what it imports and exports.
    #[arg(long)]
    module: Option<PathBuf>,
    /// Also exit 1 on warnings.
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Debug, clap::Args)]
struct CapabilitiesArgs {
    /// The wasm module.
    module: std::path::PathBuf,
    /// Print JSON instead of YAML.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    /// Scenario files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Run in a real Envoy instead of the harness.
    #[arg(long, conflicts_with = "compare")]
    envoy: bool,
    /// Run in both and fail on any difference.
    #[arg(long)]
    compare: bool,
    /// `text` (default) or `junit` (XML on stdout; the text goes to stderr).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// The envoy binary (default: $ENVOY_BIN, then target/envoy-venv/bin/envoy).
    #[arg(long)]
    envoy_bin: Option<PathBuf>,
    /// Where the runs keep their files: per scenario file, Envoy's
    /// bootstrap and log, and each runner's plugin log.
    #[arg(long, default_value = "target/scenario-runs")]
    work: PathBuf,
    /// Print the plugins' logs (start-up and every step, both runners) for
    /// passing scenarios too; a failure always shows the start-up and the
    /// step that failed.
    #[arg(long, visible_alias = "verbose")]
    logs: bool,
    /// Print what each step's request cost each filter in the harness:
    /// callbacks, host calls by ABI function, bytes copied each way, guest
    /// allocations, and the estimate for Envoy 1.40 (also in `--format junit`,
    /// as each test case's `system-out`).
    #[arg(long)]
    costs: bool,
    /// `derived`: run every filter that sets no `capabilities` of its own
    /// under the capability restriction derived from its module (what
    /// `proxy-wasm-harness capabilities` prints), in both runners.
    #[arg(long, value_enum)]
    capabilities: Option<CapabilitiesDefault>,
}

/// The capability restriction `test --capabilities` gives filters.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum CapabilitiesDefault {
    Derived,
}

/// Lines of a plugin log section a failure report shows.
const SHOWN_LOG_LINES: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Junit,
}

/// `capabilities MODULE`: the restriction block, as YAML (with a comment
/// saying where it goes) or JSON.
fn capabilities(args: &CapabilitiesArgs) -> ExitCode {
    let names = std::fs::read(&args.module)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            proxy_wasm_harness::capabilities::required(&bytes).map_err(|e| e.to_string())
        });
    let names = match names {
        Ok(names) => names,
        Err(e) => {
            eprintln!("error: {}: {e}", args.module.display());
            return ExitCode::FAILURE;
        }
    };
    let block = serde_json::json!({
        "capability_restriction_config": harness_envoy::bootstrap::capability_restriction(&names)
    });
    if args.json {
        println!("{block:#}");
        return ExitCode::SUCCESS;
    }
    match serde_yaml_ng::to_string(&block) {
        Ok(yaml) => {
            println!(
                "# What {} needs: the proxy_* and WASI functions it imports and the\n\
                 # proxy_on_* callbacks it exports. Goes in the wasm filter's vm_config\n\
                 # (envoy.extensions.wasm.v3.VmConfig; Envoy 1.40 deprecates the\n\
                 # PluginConfig field of the same name).",
                args.module
                    .file_name()
                    .unwrap_or(args.module.as_os_str())
                    .to_string_lossy()
            );
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command line.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Schema => {
            let schema = schemars::schema_for!(scenario::Scenario);
            match serde_json::to_string_pretty(&schema) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Capabilities(args) => capabilities(&args),
        Command::Lint(args) => lint_files(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Test(args) => test(&args),
        Command::Serve(args) => serve::run(&args),
    }
}

/// Writes each runner's plugin log into the scenario's work folder
/// (`harness-plugin.log`, `envoy-plugin.log`), for a reader to diff.
fn keep_transcripts(
    work: &std::path::Path,
    loaded: &scenario::Loaded,
    harness: Option<&Result<outcome::Outcome, String>>,
    envoy: Option<&Result<envoy_runner::EnvoyRun, String>>,
) {
    let dir = scenario::work_dir(work, loaded);
    let runs = [
        ("harness-plugin.log", harness.and_then(|r| r.as_ref().ok())),
        (
            "envoy-plugin.log",
            envoy.and_then(|r| r.as_ref().ok()).map(|run| &run.outcome),
        ),
    ];
    for (name, outcome) in runs {
        if let Some(outcome) = outcome
            && std::fs::create_dir_all(&dir).is_ok()
        {
            let _ = std::fs::write(dir.join(name), outcome::transcript(outcome));
        }
    }
}

fn test(args: &TestArgs) -> ExitCode {
    let files = match scenario::discover(&args.paths) {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            eprintln!("error: no scenario files under the given paths");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let envoy = if args.envoy || args.compare {
        match harness_envoy::binary::find(args.envoy_bin.as_deref(), std::path::Path::new(".")) {
            Ok(bin) => Some(bin),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let mode = if args.compare {
        "harness and envoy, compared"
    } else if args.envoy {
        "envoy"
    } else {
        "harness"
    };
    let mut text: Box<dyn Write> = match args.format {
        Format::Text => Box::new(std::io::stdout()),
        Format::Junit => Box::new(std::io::stderr()),
    };
    let _ = writeln!(text, "running {} scenarios ({mode})", files.len());
    let mut reports = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let started = Instant::now();
        let mut plugin_logs = Vec::new();
        let mut costs = None;
        let verdict = match scenario::load(file) {
            Err(e) => Verdict::Invalid(e.to_string()),
            Ok(mut loaded) => {
                if let Some(CapabilitiesDefault::Derived) = args.capabilities {
                    for filter in &mut loaded.scenario.filters {
                        filter
                            .capabilities
                            .get_or_insert(scenario::Capabilities::Derived(
                                scenario::Derived::Derived,
                            ));
                    }
                }
                let harness = (!args.envoy).then(|| harness_runner::run(&loaded));
                let envoy = envoy
                    .as_ref()
                    .map(|bin| envoy_runner::run(&loaded, bin, &args.work));
                keep_transcripts(&args.work, &loaded, harness.as_ref(), envoy.as_ref());
                let outcomes = [
                    (
                        "harness",
                        harness.as_ref().and_then(|r| r.as_ref().ok()).cloned(),
                    ),
                    (
                        "envoy",
                        envoy
                            .as_ref()
                            .and_then(|r| r.as_ref().ok())
                            .map(|run| run.outcome.clone()),
                    ),
                ];
                if args.costs
                    && let Some(Ok(outcome)) = &harness
                {
                    costs = Some(report::costs(outcome));
                }
                let verdict = report::judge(&loaded, harness, envoy);
                // A failure shows each runner's start-up and failed step; a
                // pass shows nothing unless `--logs` asks for all of it.
                let shown = match &verdict {
                    Verdict::Pass if !args.logs => None,
                    Verdict::Pass => Some((None, usize::MAX)),
                    failed => Some((report::failed_step(failed), SHOWN_LOG_LINES)),
                };
                if let Some((step, max_lines)) = shown {
                    let dir = scenario::work_dir(&args.work, &loaded);
                    for (runner, outcome) in outcomes {
                        if let Some(outcome) = outcome {
                            let mut text = outcome::excerpt(&outcome, step, max_lines);
                            text.push_str(&format!(
                                "(all of it: {})",
                                dir.join(format!("{runner}-plugin.log")).display()
                            ));
                            plugin_logs.push((runner, text));
                        }
                    }
                }
                verdict
            }
        };
        let report = Report {
            name: file.display().to_string(),
            verdict,
            seconds: started.elapsed().as_secs_f64(),
            plugin_logs,
            costs,
        };
        let _ = writeln!(text, "[{}/{}] {}", i + 1, files.len(), report.render());
        reports.push(report);
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    let _ = writeln!(text, "\n{} passed, {failed} failed", reports.len() - failed);
    if args.format == Format::Junit {
        println!("{}", report::junit(&reports));
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn lint_files(args: &LintArgs) -> ExitCode {
    let targets = (|| -> Result<lint::Targets, String> {
        let module_needs = match &args.module {
            Some(module) => Some(
                std::fs::read(module)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        proxy_wasm_harness::capabilities::required(&bytes)
                            .map_err(|e| e.to_string())
                    })
                    .map_err(|e| format!("{}: {e}", module.display()))?,
            ),
            None => None,
        };
        Ok(lint::Targets {
            envoy: args.envoy.parse()?,
            istio: args.istio.parse()?,
            module_needs,
        })
    })();
    let targets = match targets {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut errors, mut warnings) = (0, 0);
    let files = match lint_inputs(&args.files) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for file in &files {
        let found = std::fs::read_to_string(file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|text| lint::lint(file, &text, &targets));
        match found {
            Ok(found) => {
                for finding in found {
                    match finding.severity {
                        lint::Severity::Error => errors += 1,
                        lint::Severity::Warning => warnings += 1,
                    }
                    println!("{finding}");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "{} file(s) for Envoy {} and Istio {}: {errors} error(s), {warnings} warning(s)",
        files.len(),
        targets.envoy,
        targets.istio
    );
    if errors > 0 || (args.deny_warnings && warnings > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The files to lint: each file given, and the `.yaml`, `.yml` and `.json`
/// files under each folder given, in name order.
fn lint_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        let mut pending = vec![path.clone()];
        while let Some(dir) = pending.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
                if entry.is_dir() {
                    pending.push(entry);
                } else if entry
                    .extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                {
                    found.push(entry);
                }
            }
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}
