//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use std::process::Command;

use crate::envoy::{ensure_envoy, scenario_dirs};
use crate::toolchain::{
    WASM_TARGET, cargo, ensure_debian_package, ensure_wasm_target, exec, harness_cli,
    has_cargo_subcommand, root,
};
use crate::{dist, envoy_config, filters, jwt_authn, wasmplugin};

/// Programs the tests use, and the Debian packages that provide them.
const REQUIRED_TOOLS: &[(&str, &str)] =
    &[("docker-registry", "docker-registry"), ("skopeo", "skopeo")];

pub(crate) fn run_all(lint: bool, runner_args: &[String]) -> Result<(), String> {
    ensure_wasm_target()?;
    if lint {
        let problems = crate::workspace::dependency_problems(&crate::workspace::metadata()?);
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        ensure_component("rustfmt", "fmt")?;
        ensure_component("clippy", "clippy")?;
        exec(cargo().args(["fmt", "--all", "--", "--check"]))?;
        exec(cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        // The filters' proxy-wasm glue only exists for wasm32: lint it there.
        let mut wasm_clippy = cargo();
        wasm_clippy.args(["clippy", "--target", WASM_TARGET]);
        for library in filters::libraries()? {
            wasm_clippy.args(["--package", &library]);
        }
        for filter in filters::discover()? {
            wasm_clippy.args(["--package", &filter.package]);
        }
        exec(wasm_clippy.args(["--", "-D", "warnings"]))?;
    }
    exec(cargo().args(["test", "--workspace", "--doc"]))?;
    // Every scenario, in the harness and in a real Envoy, compared.
    let envoy = ensure_envoy()?;
    // The ready Envoy configs load the shipped modules: build them first
    // when `dist` has not run.
    let shipped = filters::discover()?;
    if shipped.iter().any(|f| {
        !root()
            .join("dist")
            .join(format!("{}.wasm", f.package))
            .is_file()
    }) {
        dist::run(&[])?;
    }
    envoy_config::check(&shipped, &envoy)?;
    jwt_authn::check(&envoy)?;
    wasmplugin::check(&shipped, &envoy)?;
    // The harness's own scenarios as users run their filters (no
    // restriction); our filters' as they ship: under the capability
    // restriction derived from each module, as the ready configs set it.
    let (ours, harness): (Vec<_>, Vec<_>) = scenario_dirs()
        .into_iter()
        .partition(|dir| dir.starts_with(root().join("filters")));
    for (dirs, restriction) in [(harness, None), (ours, Some("derived"))] {
        let mut compare = harness_cli("test");
        compare.arg("--compare").arg("--envoy-bin").arg(&envoy);
        if let Some(restriction) = restriction {
            compare.args(["--capabilities", restriction]);
        }
        exec(compare.args(dirs))?;
    }
    // Our filters under the fuzzer, as they ship (dist's module, the
    // example configuration), the auth filter from two scenarios whose
    // steps seed it (signed tokens and a key-set fetch; an authorization
    // service answering, failing and timing out) and the routing filter
    // from a body-routing one: 10,000 random requests each, no finding.
    let mut targets: Vec<Vec<String>> = shipped
        .iter()
        .map(|f| {
            let package = &f.package;
            vec![
                format!("dist/{package}.wasm"),
                "--config".into(),
                format!("filters/{package}/config/example.json"),
            ]
        })
        .collect();
    for seeded in [
        "filters/auth/scenarios/remote-jwks-fetch-and-cache.yaml",
        "filters/auth/scenarios/ext-authz-allow.yaml",
        // Routing by the JSON body, and editing JSON bodies both ways:
        // held headers, bodies in pieces.
        "filters/routing/scenarios/body/model-to-cluster.yaml",
        "filters/header-transform/scenarios/body/edit-request-body.yaml",
        "filters/header-transform/scenarios/body/edit-response-body.yaml",
    ] {
        targets.push(vec![seeded.into()]);
    }
    for target in targets {
        exec(harness_cli("fuzz").args(target).args([
            "--runs",
            "10000",
            "--seed",
            "1",
            "--out",
            "target/fuzz",
        ]))?;
    }
    // The registry round trips need a real registry and skopeo; tests
    // fail rather than skip when these are missing (XTASK_REQUIRE_TOOLS).
    for (program, package) in REQUIRED_TOOLS {
        if !ensure_debian_package(program, package) {
            return Err(format!(
                "`{program}` is missing and could not be installed: install Debian's `{package}`"
            ));
        }
    }
    // The runner goes last so its own summary lines end the output.
    let mut runner = cargo();
    if has_cargo_subcommand("nextest") {
        runner.args(["nextest", "run"]);
    } else {
        eprintln!("xtask: cargo-nextest is not installed; using cargo test");
        runner.arg("test");
    }
    exec(
        runner
            .args(["--workspace", "--no-fail-fast"])
            .args(runner_args)
            .env("XTASK_REQUIRE_TOOLS", "1"),
    )
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let (ours, runner_args) = match args.iter().position(|a| a == "--") {
        Some(at) => (&args[..at], &args[at + 1..]),
        None => (args, &[][..]),
    };
    let mut lint = true;
    for arg in ours {
        match arg.as_str() {
            "--no-lint" => lint = false,
            other => return Err(format!("unknown option `{other}` for test")),
        }
    }
    run_all(lint, runner_args)
}

/// Adds a rustup component when its cargo subcommand is missing.
fn ensure_component(component: &str, subcommand: &str) -> Result<(), String> {
    if has_cargo_subcommand(subcommand) {
        return Ok(());
    }
    exec(Command::new("rustup").args(["component", "add", component]))
}
