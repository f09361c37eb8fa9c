//! `proxy-wasm-harness fuzz` against fixtures with planted bugs: within its
//! default budget (10,000 requests) it finds the sdk fixture's trap, its
//! stale `content-length` and its unbounded shared-data cache, and the
//! leaky fixture's unbounded memory; each
//! reproduction it writes fails in the harness and, when Envoy is
//! installed, in Envoy; the same seed draws the same run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_proxy-wasm-harness"))
}

fn fuzz(module: &str, out: &Path, extra: &[&str]) -> Output {
    cli()
        .args(["fuzz", module, "--seed", "1", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The reproduction files the run wrote for `kind`.
fn reproductions(out: &Path, kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .contains(&format!("-{kind}-"))
        })
        .collect();
    files.sort();
    files
}

fn envoy() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match harness_envoy::binary::find(None, &root) {
        Ok(binary) => Some(binary),
        Err(e) => {
            eprintln!("SKIPPED in Envoy: no Envoy ({e}); `cargo xtask test` installs it");
            None
        }
    }
}

/// Runs a scenario file in the harness (and Envoy); whether each passed.
fn passes(file: &Path, envoy: Option<&Path>, work: &Path) -> (bool, Option<bool>) {
    let run = |extra: &[&str]| {
        cli()
            .args(["test", "--work"])
            .arg(work)
            .args(extra)
            .arg(file)
            .output()
            .unwrap()
            .status
            .success()
    };
    let harness = run(&[]);
    let in_envoy = envoy.map(|bin| run(&["--envoy", "--envoy-bin", bin.to_str().unwrap()]));
    (harness, in_envoy)
}

#[test]
fn the_planted_trap_and_stale_content_length_are_found_minimized_and_fail_in_both_runners() {
    let out = out_dir("fuzz-sdk");
    // The fixture loops forever on `x-fixture-loop`: a short budget keeps
    // the run short (its findings are not what this test checks).
    let run = fuzz(harness_fixtures::SDK_FILTER, &out, &["--budget-ms", "10"]);
    let report = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "findings exit 1:\n{report}");
    assert!(report.contains("fixture panic requested"), "{report}");
    let envoy = envoy();
    let work = out.join("runs");
    let traps = reproductions(&out, "trap");
    let planted = traps
        .iter()
        .find(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .contains("x-fixture-panic")
        })
        .expect("a reproduction of the planted trap");
    let stale = reproductions(&out, "stale-content-length");
    assert_eq!(stale.len(), 1, "{report}");
    for file in [planted, &stale[0]] {
        let text = std::fs::read_to_string(file).unwrap();
        let steps: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(
            steps["steps"].as_array().unwrap().len(),
            1,
            "minimized: {text}"
        );
        let (harness, in_envoy) = passes(file, envoy.as_deref(), &work);
        assert!(!harness, "fails in the harness: {text}");
        assert_ne!(in_envoy, Some(true), "fails in Envoy: {text}");
    }
    assert!(
        std::fs::read_to_string(&stale[0])
            .unwrap()
            .contains("x-fixture-append"),
        "the planted body change"
    );
    // The planted unbounded cache: shared data grows across the workers.
    let shared = reproductions(&out, "shared-data-growth");
    assert_eq!(shared.len(), 1, "{report}");
    let text = std::fs::read_to_string(&shared[0]).unwrap();
    assert!(
        text.contains("x-fixture-remember"),
        "the requests that grow it"
    );
}

#[test]
fn the_planted_leak_is_found_and_its_request_repeated() {
    let out = out_dir("fuzz-leaky");
    let run = fuzz(harness_fixtures::LEAKY_FILTER, &out, &[]);
    let report = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{report}");
    assert!(report.contains("memory-growth"), "{report}");
    let files = reproductions(&out, "memory-growth");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let value: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    let steps = value["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 400, "the one request, repeated");
    assert!(steps.iter().all(|s| s == &steps[0]));
    // The minimized request is the plainest there is: the leak needs none
    // of what was drawn.
    assert_eq!(steps[0]["request"]["path"], "/", "{}", steps[0]);
}

#[test]
fn a_seed_repeats_its_run_and_a_clean_filter_reports_nothing() {
    let module = harness_fixtures::MINIMAL_FILTER;
    let a = fuzz(module, &out_dir("fuzz-seed-a"), &["--runs", "2000"]);
    let b = fuzz(module, &out_dir("fuzz-seed-b"), &["--runs", "2000"]);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert_eq!(String::from_utf8_lossy(&a.stdout), "no findings\n");
    let coverage = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| l.contains("reached the backend"))
            .map(str::to_owned)
    };
    assert!(coverage(&a).is_some());
    assert_eq!(coverage(&a), coverage(&b), "same seed, same requests");
}

#[test]
fn the_rust_api_runs_the_same_fuzzer() {
    use proxy_wasm_harness_cli::{FuzzOptions, fuzz};
    let out = out_dir("fuzz-api");
    let clean = fuzz(
        &FuzzOptions::new(harness_fixtures::MINIMAL_FILTER)
            .runs(500)
            .out(&out),
    )
    .unwrap();
    assert_eq!(clean.runs, 500);
    assert!(clean.findings.is_empty(), "{clean}");
    let found = fuzz(
        &FuzzOptions::new(harness_fixtures::SDK_FILTER)
            .runs(3000)
            .budget(std::time::Duration::from_millis(10))
            .out(&out),
    )
    .unwrap();
    let trap = found
        .findings
        .iter()
        .find(|f| f.kind == "trap" && f.message.contains("fixture panic requested"))
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(trap.steps, 1);
    assert!(trap.reproduction.is_file());
}

/// A filter that holds the request headers to read the body, run without
/// Envoy's `allow_on_headers_stop_iteration`, never sees the body: the
/// fuzzer reports the held request, minimized to one, whose file fails in
/// the harness (in Envoy the request would wait for its stream's timeout,
/// so the file is not run there); with the setting, nothing.
#[test]
fn a_request_held_forever_is_found_and_the_setting_that_frees_it_named() {
    let out = out_dir("fuzz-stalled");
    std::fs::create_dir_all(&out).unwrap();
    let config = out.join("body-routing.json");
    std::fs::write(
        &config,
        r#"{"rules": [{"cluster_from": {"body": "/model", "clusters": {"gpt-x": "llm-a"}, "default": "llm-b"}}]}"#,
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let run = fuzz(
        harness_fixtures::ROUTING,
        &out,
        &["--config", config, "--runs", "2000"],
    );
    let report = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "findings exit 1:\n{report}");
    assert!(
        report.contains("allow_on_headers_stop_iteration"),
        "{report}"
    );
    let stalled = reproductions(&out, "stalled-request");
    assert_eq!(stalled.len(), 1, "{report}");
    let text = std::fs::read_to_string(&stalled[0]).unwrap();
    let file: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(
        file["steps"].as_array().unwrap().len(),
        1,
        "minimized: {text}"
    );
    let (harness, _) = passes(&stalled[0], None, &out.join("runs"));
    assert!(!harness, "fails in the harness: {text}");
    let freed = fuzz(
        harness_fixtures::ROUTING,
        &out_dir("fuzz-stalled-freed"),
        &[
            "--config",
            config,
            "--runs",
            "2000",
            "--allow-on-headers-stop-iteration",
        ],
    );
    assert!(
        freed.status.success(),
        "{}",
        String::from_utf8_lossy(&freed.stdout)
    );
}
