//! Istio `WasmPlugin` resources (extensions.istio.io/v1alpha1) for the
//! filters, from each filter's example configuration. `dist` writes them to
//! `dist/istio/`; the copies committed in `istio/` must equal them and pass
//! `cargo xtask validate-istio` (`cargo xtask test` checks both).
//!
//! - `oci/<filter>.yaml`: the compat image by tag, `sha256` = the image
//!   **manifest** digest (what Istio checks for `oci://`, not the module's).
//! - `file/<filter>.yaml`: the module at a path inside the proxy container;
//!   no `sha256`, because Istio does not check one for `file://`.
//! - `envoyfilter/<filter>.yaml`: an `EnvoyFilter` inserting the same wasm
//!   filter the ready Envoy configuration runs (capability restriction in
//!   `vm_config`, `allow_on_headers_stop_iteration` where the filter needs
//!   it), from the `file://` path: what a WasmPlugin cannot carry. Its
//!   Envoy half is checked with `envoy --mode validate`.
//! - `chain.yaml`: all three in order: auth in `AUTHN` (before Istio's own
//!   authentication), routing then header-transform in `STATS` (after
//!   Istio's authorization, so a redirect or direct response never skips
//!   it), ordered by descending `priority`.

use std::fs;

use serde_json::{Value, json};

use std::path::Path;

use harness_envoy::{Bootstrap, Cluster, EnvoyFilter, HttpFilter, Listener, Route, envoy_filter};

use crate::filters::Filter;
use crate::oci;

/// Where `dist` says the images live unless told otherwise
/// (`cargo xtask dist --oci-repository`): a local registry on port 5000,
/// as kind and minikube set up.
pub(crate) const DEFAULT_REPOSITORY: &str = "localhost:5000/proxy-wasm-toolkit";

/// Where the `file://` resources expect each module inside the proxy.
const FILE_DIR: &str = "/var/local/lib/wasm-filters";

/// The chain's order: (filter, phase, priority).
pub(crate) const CHAIN: &[(&str, &str, i32)] = &[
    ("auth", "AUTHN", 10),
    ("routing", "STATS", 20),
    ("header-transform", "STATS", 10),
];

/// Phase and priority of `filter` (the chain's, else the end of the chain).
fn placement(filter: &str) -> (&'static str, i32) {
    CHAIN
        .iter()
        .find(|(name, ..)| *name == filter)
        .map_or(("UNSPECIFIED_PHASE", 0), |(_, phase, priority)| {
            (*phase, *priority)
        })
}

/// How a resource fetches its module.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// `oci://<repository>/<filter>:<version>` pinned by manifest digest.
    Oci {
        repository: &'a str,
        manifest_digest: &'a str,
    },
    File,
}

/// One WasmPlugin as a JSON value (YAML is rendered from it).
pub(crate) fn resource(filter: &Filter, source: Source<'_>) -> Result<Value, String> {
    let name = &filter.package;
    let path = filter.example_config();
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let plugin_config: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let (phase, priority) = placement(name);
    let mut spec = json!({
        "selector": {"matchLabels": {"istio": "ingressgateway"}},
        "pluginName": name,
        "phase": phase,
        "priority": priority,
        // A VM that cannot serve answers 503 rather than letting requests
        // bypass the filter; a module that cannot be fetched makes the
        // istio-agent put a deny-all RBAC filter in its place.
        "failStrategy": "FAIL_CLOSE",
        "pluginConfig": plugin_config,
    });
    match source {
        Source::Oci {
            repository,
            manifest_digest,
        } => {
            let tag = oci::Format::Compat.tag(&filter.version);
            spec["url"] = format!("oci://{repository}/{name}:{tag}").into();
            spec["sha256"] = manifest_digest.trim_start_matches("sha256:").into();
            spec["imagePullPolicy"] = "IfNotPresent".into();
        }
        Source::File => {
            spec["url"] = format!("file://{FILE_DIR}/{name}.wasm").into();
        }
    }
    Ok(json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": "istio-system"},
        "spec": spec,
    }))
}

/// The `EnvoyFilter` for `filter`: its wasm filter before the gateway's
/// router, applied in the chain's order (ascending `priority`).
fn envoy_filter(filter: &Filter) -> Result<Value, String> {
    let name = &filter.package;
    let (wasm, _) = crate::envoy_config::wasm_filter(filter, &format!("{FILE_DIR}/{name}.wasm"))?;
    let order = crate::envoy_config::CHAIN
        .iter()
        .position(|n| n == name)
        .unwrap_or(crate::envoy_config::CHAIN.len());
    let priority = i32::try_from(order + 1).unwrap_or(i32::MAX) * 10;
    Ok(
        EnvoyFilter::new(format!("{}-wasm", filter.file_stem()), "istio-system", wasm)
            .priority(priority)
            .to_value(),
    )
}

/// Checks the Envoy half of each committed `istio/envoyfilter/<f>.yaml`:
/// the filters it inserts, with the module path inside the proxy replaced
/// by `dist/<f>.wasm`, in a bootstrap that `envoy --mode validate` accepts
/// (which loads the module and configures it).
fn check_envoy_filters(filters: &[Filter], envoy: &Path) -> Result<(), String> {
    let root = crate::toolchain::root();
    let dir = root.join("target/envoyfilter-check");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for filter in crate::envoy_config::with_variants(filters) {
        let name = &filter.package;
        let file = format!("istio/envoyfilter/{}.yaml", filter.file_stem());
        let text =
            fs::read_to_string(root.join(&file)).map_err(|e| format!("cannot read {file}: {e}"))?;
        let resource: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
        let inserted = envoy_filter::http_filters(&resource);
        if inserted.is_empty() {
            return Err(format!("{file} inserts no HTTP filter"));
        }
        let mut listener = Listener::new("ingress")
            .port(10000)
            .route_config("local")
            .virtual_host("backend");
        for http_filter in inserted {
            // The module's path inside the proxy, mapped to the one `dist`
            // wrote, so Envoy loads and configures the module.
            let mut value = http_filter.to_value();
            let filename =
                &mut value["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
            if *filename == format!("{FILE_DIR}/{name}.wasm") {
                *filename = format!("dist/{name}.wasm").into();
            }
            let http_filter = HttpFilter::from_value(&value)
                .ok_or_else(|| format!("{file}: a patch value without name or typed_config"))?;
            listener = listener.filter(http_filter);
        }
        let bootstrap = Bootstrap::new()
            .admin_port(9901)
            .listener(listener.route(Route::to_cluster("/", "backend")))
            .cluster(Cluster::new(
                "backend",
                std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            ));
        let config = dir.join(format!("{name}.yaml"));
        fs::write(&config, bootstrap.to_yaml()?)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        eprintln!("xtask: envoy --mode validate with the filter {file} inserts");
        harness_envoy::binary::validate(envoy, &root, &config)
            .map_err(|e| format!("{file}: Envoy refuses the filter it inserts: {e}"))?;
    }
    Ok(())
}

/// A YAML file of `resources` under a comment header.
pub(crate) fn render(header: &str, resources: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
    }
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(
            &serde_yaml_ng::to_string(resource).map_err(|e| format!("cannot render YAML: {e}"))?,
        );
    }
    Ok(out)
}

/// The files `dist` writes under `dist/istio/`, by relative path.
/// `digests` holds each filter's compat manifest digest.
pub(crate) fn files(
    filters: &[Filter],
    repository: &str,
    digests: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let digest_of = |name: &str| {
        digests
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.as_str())
            .ok_or_else(|| format!("no image digest for {name}"))
    };
    let mut files = Vec::new();
    let mut resources = Vec::new();
    for filter in filters {
        let name = &filter.package;
        let oci = resource(
            filter,
            Source::Oci {
                repository,
                manifest_digest: digest_of(name)?,
            },
        )?;
        files.push((
            format!("oci/{name}.yaml"),
            render(
                &format!(
                    "Generated by `cargo xtask dist` (dist/istio/oci/{name}.yaml); do not edit.\n\
                     The {name} filter on Istio's ingress gateway, pulled from {repository}.\n\
                     Push the images first (`cargo xtask push --registry HOST:PORT`); `sha256` is\n\
                     the image manifest's digest, which Istio checks before pulling the layers."
                ),
                std::slice::from_ref(&oci),
            )?,
        ));
        files.push((
            format!("file/{name}.yaml"),
            render(
                &format!(
                    "Generated by `cargo xtask dist` (dist/istio/file/{name}.yaml); do not edit.\n\
                     The {name} filter on Istio's ingress gateway, loaded from a file the proxy\n\
                     container already holds ({FILE_DIR}/{name}.wasm, e.g. from a mounted\n\
                     volume). Istio checks no sha256 for file:// URLs, so none is set."
                ),
                &[resource(filter, Source::File)?],
            )?,
        ));
        for filter in filter.with_variants() {
            let stem = filter.file_stem();
            files.push((
                format!("envoyfilter/{stem}.yaml"),
                render(
                    &format!(
                        "Generated by `cargo xtask dist` (dist/istio/envoyfilter/{stem}.yaml); do not edit.\n\
                         The {name} filter on Istio's ingress gateway as an EnvoyFilter instead of a\n\
                         WasmPlugin (apply one or the other, not both): the wasm filter of\n\
                         envoy/{stem}.yaml, with what a WasmPlugin cannot carry (the capability\n\
                         restriction, allow_on_headers_stop_iteration), loaded from\n\
                         {FILE_DIR}/{name}.wasm inside the proxy container. Envoy pulls\n\
                         no oci:// images itself: mount the module (e.g. from `dist/`)."
                    ),
                    &[envoy_filter(&filter)?],
                )?,
            ));
        }
        resources.push((name.as_str(), oci));
    }
    // In the chain's order, when every filter of it is built.
    let chain: Option<Vec<Value>> = CHAIN
        .iter()
        .map(|(name, ..)| {
            resources
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r.clone())
        })
        .collect();
    if let Some(chain) = chain {
        let order = CHAIN
            .iter()
            .map(|(name, phase, priority)| format!("{name} ({phase}, priority {priority})"))
            .collect::<Vec<_>>()
            .join(", ");
        files.push((
            "chain.yaml".to_owned(),
            render(
                &format!(
                    "Generated by `cargo xtask dist` (dist/istio/chain.yaml); do not edit.\n\
                     The whole chain on Istio's ingress gateway, in this order: {order}.\n\
                     Within a phase Istio runs the higher priority first."
                ),
                &chain,
            )?,
        ));
    }
    Ok(files)
}

/// Checks the committed `istio/`: each file equal to what `dist` renders
/// for the default repository from the images in `dist/oci/`, and every
/// resource valid (`cargo xtask validate-istio istio/`), and the filters
/// the EnvoyFilters insert accepted by Envoy.
pub(crate) fn check(filters: &[Filter], envoy: &Path) -> Result<(), String> {
    let mut digests = Vec::new();
    for filter in filters {
        let layout = crate::toolchain::root()
            .join("dist/oci")
            .join(&filter.package);
        let images = oci::read_layout(&layout)?;
        let tag = oci::Format::Compat.tag(&filter.version);
        let image = images
            .get(&tag)
            .ok_or_else(|| format!("{} has no image tagged {tag}", layout.display()))?;
        digests.push((filter.package.clone(), image.digest()));
    }
    for (path, rendered) in files(filters, DEFAULT_REPOSITORY, &digests)? {
        let file = format!("istio/{path}");
        let committed = fs::read_to_string(crate::toolchain::root().join(&file))
            .map_err(|e| format!("cannot read {file}: {e}"))?;
        if committed != rendered {
            return Err(format!(
                "{file} differs from what `cargo xtask dist` generates: copy dist/istio/{path} over it"
            ));
        }
    }
    crate::validate::validate_paths(&[crate::toolchain::root().join("istio")], None)?;
    check_envoy_filters(filters, envoy)?;
    // Each filter's ready Envoy config and WasmPlugins against Envoy 1.40,
    // Istio 1.28 and its module: an error fails; the WasmPlugins' warning
    // that Istio cannot carry the capability restriction is expected.
    for filter in filters {
        let package = &filter.package;
        let mut lint = crate::toolchain::harness_cli("lint");
        lint.arg("--module")
            .arg(format!("dist/{package}.wasm"))
            .arg(format!("istio/oci/{package}.yaml"))
            .arg(format!("istio/file/{package}.yaml"));
        for ready in filter.with_variants() {
            let stem = ready.file_stem();
            lint.arg(format!("envoy/{stem}.yaml"))
                .arg(format!("istio/envoyfilter/{stem}.yaml"));
        }
        crate::toolchain::exec(&mut lint)?;
    }
    Ok(())
}
