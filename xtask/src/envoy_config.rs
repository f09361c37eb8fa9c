//! Ready Envoy configurations: one per filter, from its example plugin
//! configuration. `dist` writes them to `dist/envoy/`; the copies committed
//! in `envoy/` must equal them and pass `envoy --mode validate`, which loads
//! the module and runs its `on_configure` (`cargo xtask test` checks both).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use harness_envoy::{Bootstrap, Cluster, HttpFilter, Listener, Route, WasmFilter};

use crate::filters::Filter;
use crate::toolchain::root;

/// The whole chain's file (`envoy/<CHAIN_NAME>.yaml`), and its filters in
/// `http_filters` order: authenticate, then route, then transform headers.
pub(crate) const CHAIN_NAME: &str = "chain";
pub(crate) const CHAIN: &[&str] = &["auth", "routing", "header-transform"];

/// The configuration for `filter`, reading `dist/<package>.wasm` relative to
/// the directory Envoy starts in (the repository root).
pub(crate) fn render(filter: &Filter) -> Result<String, String> {
    let name = &filter.package;
    let what = match &filter.variant {
        Some(_) => format!(
            "the {name} filter configured by {}",
            filter
                .example_config()
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        None => format!("the {name} filter"),
    };
    render_chain(&filter.file_stem(), &what, std::slice::from_ref(filter))
}

/// Every filter once per configuration: the example, then its variants.
pub(crate) fn with_variants(filters: &[Filter]) -> Vec<Filter> {
    filters.iter().flat_map(Filter::with_variants).collect()
}

/// The configuration with the whole chain, when every filter of [`CHAIN`]
/// is built (`None` otherwise).
pub(crate) fn render_whole_chain(filters: &[Filter]) -> Option<Result<String, String>> {
    let chain: Vec<&Filter> = CHAIN
        .iter()
        .map(|name| filters.iter().find(|f| f.package == *name))
        .collect::<Option<_>>()?;
    let owned: Vec<Filter> = chain.into_iter().cloned().collect();
    Some(render_chain(
        CHAIN_NAME,
        &format!("the filter chain {}", CHAIN.join(" → ")),
        &owned,
    ))
}

/// The wasm filter for `filter` as every ready configuration (Envoy's and
/// the Istio `EnvoyFilter`) runs it, loading the module from `module`: its
/// example configuration, failing closed, restricted to the capabilities
/// `dist/<package>.wasm` needs, and holding the headers while it reads the
/// body when its manifest says the filter does (`[package.metadata.dist]
/// allow_on_headers_stop_iteration`). Also returns the configuration.
pub(crate) fn wasm_filter(
    filter: &Filter,
    module: &str,
) -> Result<(HttpFilter, serde_json::Value), String> {
    let path = filter.example_config();
    let text =
        fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let name = &filter.package;
    let built = root().join(format!("dist/{name}.wasm"));
    let bytes = fs::read(&built).map_err(|e| format!("cannot read {}: {e}", built.display()))?;
    let allowed = proxy_wasm_harness::capabilities::required(&bytes)
        .map_err(|e| format!("{}: {e}", built.display()))?;
    let mut wasm = WasmFilter::new(name, module)
        .root_id(name)
        .vm_id(name)
        .failure_policy("FAIL_CLOSED")
        .allowed_capabilities(allowed)
        .configuration(value.to_string());
    if filter.holds_headers_for_body {
        wasm = wasm.allow_on_headers_stop_iteration(true);
    }
    Ok((HttpFilter::wasm(wasm), value))
}

fn render_chain(file: &str, what: &str, chain: &[Filter]) -> Result<String, String> {
    let mut listener = Listener::new("ingress")
        .port(10000)
        .route_config("local")
        .virtual_host("backend");
    let mut configs = Vec::new();
    let mut sources = Vec::new();
    for filter in chain {
        let (wasm, value) = wasm_filter(filter, &format!("dist/{}.wasm", filter.package))?;
        listener = listener.filter(wasm);
        let config = filter.example_config();
        sources.push(
            config
                .strip_prefix(root())
                .unwrap_or(&config)
                .display()
                .to_string(),
        );
        configs.push((filter.package.as_str(), value));
    }
    let (route, clusters) = cluster_parts(&configs);
    if let Some(route) = route {
        listener = listener.route(route);
    }
    let mut bootstrap = Bootstrap::new()
        .admin_port(9901)
        .listener(listener.route(Route::to_cluster("/", "backend").named("default")))
        .cluster(Cluster::new("backend", loopback(8080)));
    for cluster in clusters {
        bootstrap = bootstrap.cluster(cluster);
    }
    let plural = if sources.len() == 1 {
        "The plugin configuration is"
    } else {
        "The plugin configurations are"
    };
    Ok(format!(
        "# Generated by `cargo xtask dist` (dist/envoy/{file}.yaml); do not edit.
# Envoy 1.40 with {what} in front of a backend on 127.0.0.1:8080.
# Run from the repository root after `cargo xtask dist`:
#   envoy -c envoy/{file}.yaml
# {plural} {sources}.
# Each filter fails closed: when its VM cannot serve, requests get a 503
# instead of bypassing it (failure_policy replaces the deprecated
# fail_open; never set both), and may use only the capabilities its module
# imports and exports (`proxy-wasm-harness capabilities dist/<filter>.wasm`):
# any other host call answers INTERNAL_FAILURE.
{}",
        bootstrap.to_yaml()?,
        sources = sources.join(", "),
    ))
}

/// For configurations that name clusters (the routing filter's targets,
/// the auth filter's JWKS and authorization services): one static cluster
/// per name on 127.0.0.1:8081 and up, and with the routing filter a route
/// that follows its cluster header when the filter set it.
fn cluster_parts(configs: &[(&str, serde_json::Value)]) -> (Option<Route>, Vec<Cluster>) {
    let mut names = Vec::new();
    for (_, config) in configs {
        collect_clusters(config, &mut names);
    }
    names.sort();
    names.dedup();
    let routing = configs.iter().find(|(name, _)| *name == "routing");
    let route = routing.map(|(_, config)| {
        let header = config["cluster_header"]
            .as_str()
            .unwrap_or("x-route-cluster");
        Route::by_cluster_header(header).named("by-cluster-header")
    });
    let clusters = names
        .iter()
        .zip(8081..)
        .map(|(name, port)| Cluster::new(name, loopback(port)))
        .collect();
    (route, clusters)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn collect_clusters(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v.as_str()) {
                    ("cluster", Some(name)) => out.push(name.to_owned()),
                    _ => collect_clusters(v, out),
                }
            }
        }
        serde_json::Value::Array(list) => list.iter().for_each(|v| collect_clusters(v, out)),
        _ => {}
    }
}

/// Checks each committed `envoy/<package>.yaml`: equal to what `dist`
/// generates, and accepted by `envoy --mode validate` (run from the root,
/// so the module in `dist/` is loaded and configured).
pub(crate) fn check(filters: &[Filter], envoy: &Path) -> Result<(), String> {
    let mut files: Vec<(String, String)> = Vec::new();
    for filter in with_variants(filters) {
        files.push((filter.file_stem(), render(&filter)?));
    }
    if let Some(chain) = render_whole_chain(filters) {
        files.push((CHAIN_NAME.to_owned(), chain?));
    }
    for (name, rendered) in files {
        let file = format!("envoy/{name}.yaml");
        let committed = fs::read_to_string(root().join(&file)).map_err(|e| {
            format!("every filter ships a ready Envoy config; cannot read {file}: {e}")
        })?;
        if committed != rendered {
            return Err(format!(
                "{file} differs from what `cargo xtask dist` generates: copy dist/envoy/{name}.yaml over it"
            ));
        }
        eprintln!("xtask: envoy --mode validate -c {file}");
        harness_envoy::binary::validate(envoy, &root(), Path::new(&file))?;
    }
    Ok(())
}
