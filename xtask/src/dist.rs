//! `cargo xtask dist`: build, check and package every filter.

use std::fmt::{self, Write as _};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use proxy_wasm_harness::{Plugin, Progress};
use sha2::{Digest, Sha256};

use crate::filters::{self, Filter};
use crate::oci::hex;
use crate::toolchain::{ensure_wasm_target, root};
use crate::{envoy_config, oci, wasm_opt, wasmplugin};

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let repository = match args {
        [] => wasmplugin::DEFAULT_REPOSITORY.to_owned(),
        [flag, repository] if flag == "--oci-repository" => {
            repository.trim_end_matches('/').to_owned()
        }
        _ => {
            return Err(format!(
                "dist takes only `--oci-repository REGISTRY/PATH` (got `{}`)",
                args.join(" ")
            ));
        }
    };
    ensure_wasm_target()?;
    let filters = filters::discover()?;
    filters::build(&filters)?;
    let dist = root().join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
    let shrink = !filters.is_empty() && wasm_opt::ensure();
    let mut sums = String::new();
    let mut digests = Vec::new();
    for filter in &filters {
        let name = format!("{}.wasm", filter.package);
        let built = filter.module();
        let rustc_size = fs::metadata(&built)
            .map_err(|e| format!("cannot read {}: {e}", built.display()))?
            .len();
        let built = match &filter.callbacks {
            Some(keep) => {
                let bytes = fs::read(&built)
                    .map_err(|e| format!("cannot read {}: {e}", built.display()))?;
                let pruned = harness_fixtures::callbacks::keep_only(&bytes, keep)
                    .map_err(|e| format!("{}: {e}", filter.package))?;
                let file = built.with_extension("shipped.wasm");
                fs::write(&file, pruned)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                file
            }
            None => built,
        };
        if shrink {
            wasm_opt::shrink(&built, &dist.join(&name))?;
        } else {
            fs::copy(&built, dist.join(&name))
                .map_err(|e| format!("cannot write dist/{name}: {e}"))?;
        }
        // The shipped bytes are the ones checked.
        let bytes =
            fs::read(dist.join(&name)).map_err(|e| format!("cannot read dist/{name}: {e}"))?;
        let load = check(filter, &bytes)?;
        for variant in filter.variants() {
            check(&variant, &bytes)?;
        }
        let cap = filter.size_cap / 1000;
        if bytes.len() > filter.size_cap {
            return Err(format!(
                "dist/{name} is {} bytes, over its {cap} kB cap (`size_cap_kb` in its Cargo.toml): \
                 find what grew before raising it",
                bytes.len()
            ));
        }
        let _ = writeln!(sums, "{}  {name}", hex(&Sha256::digest(&bytes)));
        digests.push((filter.package.clone(), write_images(&dist, filter, &bytes)?));
        eprintln!(
            "xtask: dist/{name}: {} bytes ({rustc_size} from rustc), under its {cap} kB cap; \
             checked in the harness: {load}",
            bytes.len()
        );
    }
    let envoy_dir = dist.join("envoy");
    fs::create_dir_all(&envoy_dir).map_err(|e| format!("cannot create dist/envoy: {e}"))?;
    for filter in envoy_config::with_variants(&filters) {
        let name = format!("{}.yaml", filter.file_stem());
        fs::write(envoy_dir.join(&name), envoy_config::render(&filter)?)
            .map_err(|e| format!("cannot write dist/envoy/{name}: {e}"))?;
    }
    if let Some(chain) = envoy_config::render_whole_chain(&filters) {
        let name = format!("{}.yaml", envoy_config::CHAIN_NAME);
        fs::write(envoy_dir.join(&name), chain?)
            .map_err(|e| format!("cannot write dist/envoy/{name}: {e}"))?;
    }
    let istio_dir = dist.join("istio");
    for (path, text) in wasmplugin::files(&filters, &repository, &digests)? {
        let path = istio_dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    fs::write(dist.join("SHA256SUMS"), sums)
        .map_err(|e| format!("cannot write dist/SHA256SUMS: {e}"))?;
    if filters.is_empty() {
        eprintln!(
            "xtask: no filter crates under filters/ yet; dist/ holds only an empty SHA256SUMS"
        );
    }
    Ok(())
}

/// Writes `dist/oci/<package>/`, an OCI image layout with the module in both
/// formats Istio pulls, and returns the compat image's manifest digest.
fn write_images(dist: &Path, filter: &Filter, module: &[u8]) -> Result<String, String> {
    let mut images = Vec::new();
    for format in oci::Format::ALL {
        let image = oci::image(format, module, &filter.package)?;
        eprintln!(
            "xtask: dist/oci/{}: {}:{} {}",
            filter.package,
            filter.package,
            format.tag(&filter.version),
            image.digest()
        );
        images.push((format.tag(&filter.version), image));
    }
    oci::write_layout(&dist.join("oci").join(&filter.package), &images)?;
    Ok(images[0].1.digest())
}

/// What loading a module cost in the harness.
#[derive(Debug)]
pub(crate) struct Load {
    /// Compiling the module (wasmtime's Cranelift, as Envoy's V8 compiles
    /// once per worker).
    compile: Duration,
    /// Starting a VM: instantiation, `_start`, `proxy_on_vm_start` and
    /// `proxy_on_configure` with the example configuration.
    start: Duration,
    /// Linear memory after [`REQUESTS`] requests, in 64 KiB pages.
    pages: u64,
}

/// Requests sent through a checked module before its memory is read.
const REQUESTS: usize = 10_000;

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compile {:.1} ms, VM start {:.2} ms, {} pages ({} KiB) after {REQUESTS} requests",
            self.compile.as_secs_f64() * 1e3,
            self.start.as_secs_f64() * 1e3,
            self.pages,
            self.pages * 64
        )
    }
}

/// Loads the module in the harness with its example configuration, as
/// Envoy would, and sends [`REQUESTS`] requests through it; one timed
/// sample each of compiling and starting (a report, not a benchmark).
pub(crate) fn check_module(bytes: &[u8], config: &[u8]) -> Result<Load, String> {
    let started = Instant::now();
    // Under the capability restriction the ready configs ship with: a host
    // call outside it fails the check.
    let allowed = proxy_wasm_harness::capabilities::required(bytes).map_err(|e| e.to_string())?;
    let plugin = Plugin::builder_from_bytes(bytes.to_vec())
        .configuration(config.to_vec())
        .allowed_capabilities(allowed)
        .build()
        .map_err(|e| e.to_string())?;
    let compile = started.elapsed();
    let started = Instant::now();
    let mut vm = plugin.start().map_err(|e| e.to_string())?;
    let start = started.elapsed();
    let request = [
        (":method", "GET"),
        (":path", "/"),
        (":authority", "dist.check"),
        (":scheme", "http"),
    ];
    for _ in 0..REQUESTS {
        let mut stream = vm.http_stream();
        let progress = stream
            .send_request_headers(request, true)
            .map_err(|e| e.to_string())?;
        if progress == Progress::Continued {
            stream
                .send_response_headers([(":status", "200")], true)
                .map_err(|e| e.to_string())?;
        }
        stream.finish().map_err(|e| e.to_string())?;
        // Log lines would pile up in the harness, not in the module.
        vm.take_logs();
    }
    if let Some(call) = vm.restricted_calls().first() {
        return Err(format!(
            "it called {call}, outside the capabilities derived from its imports and exports"
        ));
    }
    Ok(Load {
        compile,
        start,
        pages: vm.memory_pages(),
    })
}

fn check(filter: &Filter, bytes: &[u8]) -> Result<Load, String> {
    let config_path = filter.example_config();
    let config = read_config(&config_path)?;
    check_module(bytes, &config)
        .map_err(|e| format!("{} failed its check in the harness: {e}", filter.package))
}

fn read_config(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| {
        format!(
            "every filter ships an example configuration; cannot read {}: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_accepts_a_working_filter_and_reports_a_rejected_configuration() {
        let bytes = fs::read(harness_fixtures::SDK_FILTER).unwrap();
        check_module(&bytes, b"{}").unwrap();
        let err = check_module(&bytes, b"reject").unwrap_err();
        assert!(err.contains("rejected its configuration"), "{err}");
    }

    #[test]
    fn checksums_are_lower_case_hex_sha256() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
