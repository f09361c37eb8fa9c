//! The `serve` configuration file: the filter chain (as in a scenario), the
//! upstream requests go to, and real URLs for the filters' callout clusters.
//! Loading checks everything and names the file and line of each problem.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::scenario::{FilterSpec, LoadError, chain_modules, locate, read_yaml};

/// A `serve` configuration file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServeConfig {
    /// Where to listen (default `127.0.0.1:10000`; `--listen` overrides it).
    #[serde(default)]
    pub(crate) listen: Option<SocketAddr>,
    /// Where requests go: `http://host:port`, optionally with a base path
    /// the filters' `:path` is appended to.
    pub(crate) upstream: String,
    /// Other upstreams by cluster name, picked by `cluster_header` as an
    /// Envoy route with `cluster_header` picks them (the routing filter sets
    /// it); an unknown name gets Envoy's 503.
    #[serde(default)]
    pub(crate) clusters: BTreeMap<String, String>,
    #[serde(default = "cluster_header")]
    pub(crate) cluster_header: String,
    /// Clusters the filters call with `proxy_http_call`, by name → URL.
    #[serde(default)]
    pub(crate) upstreams: BTreeMap<String, String>,
    /// Host properties by dotted path (`xds.route_name`, ...), as strings.
    #[serde(default)]
    pub(crate) properties: BTreeMap<String, String>,
    /// The filter chain, in order.
    pub(crate) filters: Vec<FilterSpec>,
}

fn cluster_header() -> String {
    "x-route-cluster".into()
}

/// A plain-HTTP server to send requests to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port` to connect to.
    pub(crate) address: String,
    /// Prefix for every request path (`""` or `/base`, no trailing slash).
    pub(crate) base_path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "`{url}`: only http:// URLs are supported (a dev proxy on loopback)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        if uri.query().is_some() {
            return Err(format!("`{url}`: a base URL has no query"));
        }
        Ok(Self {
            address: format!("{}:{port}", authority.host()),
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }
}

/// A loaded, checked configuration.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) config: ServeConfig,
    /// Each filter's module path.
    pub(crate) modules: Vec<PathBuf>,
    pub(crate) upstream: Target,
    pub(crate) clusters: BTreeMap<String, Target>,
    pub(crate) callouts: BTreeMap<String, Target>,
}

impl Loaded {
    /// Every file whose change reloads the chain: the configuration and the
    /// modules.
    pub(crate) fn watched(&self, file: &Path) -> Vec<PathBuf> {
        let mut files = vec![file.to_path_buf()];
        files.extend(self.modules.iter().cloned());
        files
    }
}

/// Reads and checks a `serve` configuration file.
pub(crate) fn load(file: &Path) -> Result<Loaded, LoadError> {
    let fail = |line: Option<usize>, message: String| LoadError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let (text, config): (String, ServeConfig) = read_yaml(file)?;
    let at = |needle: &str| locate(&text, needle);
    let modules = chain_modules(file, &text, &config.filters)?;
    let target = |url: &str| Target::parse(url).map_err(|message| fail(at(url), message));
    let upstream = target(&config.upstream)?;
    let mut clusters = BTreeMap::new();
    for (name, url) in &config.clusters {
        clusters.insert(name.clone(), target(url)?);
    }
    let mut callouts = BTreeMap::new();
    for (name, url) in &config.upstreams {
        callouts.insert(name.clone(), target(url)?);
    }
    Ok(Loaded {
        config,
        modules,
        upstream,
        clusters,
        callouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Loaded, String> {
        let dir = std::env::temp_dir().join(format!("serve-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let file = dir.join(format!("{:x}.yaml", text.len() * 31 + text.lines().count()));
        std::fs::write(&file, text).map_err(|e| e.to_string())?;
        load(&file).map_err(|e| {
            let shown = e.to_string();
            shown
                .split_once(".yaml")
                .map_or(shown.clone(), |(_, rest)| rest.to_owned())
        })
    }

    #[test]
    fn a_full_configuration_loads() {
        let loaded = load_text(
            "upstream: http://127.0.0.1:8080/base/\nclusters: {canary: 'http://localhost:8081'}\nupstreams: {jwks: 'http://127.0.0.1:9000'}\nfilters:\n  - wasm: fixture:sdk-filter\n",
        )
        .unwrap();
        assert_eq!(
            loaded.upstream,
            Target {
                address: "127.0.0.1:8080".into(),
                base_path: "/base".into()
            }
        );
        assert_eq!(loaded.clusters["canary"].address, "localhost:8081");
        assert_eq!(loaded.callouts["jwks"].base_path, "");
        assert_eq!(loaded.config.cluster_header, "x-route-cluster");
    }

    #[test]
    fn problems_name_the_line() {
        let unknown = load_text("upstream: http://a:1\nfilterz: []\n").unwrap_err();
        assert!(
            unknown.starts_with(":2: unknown field `filterz`"),
            "{unknown}"
        );
        let scheme =
            load_text("filters:\n  - wasm: fixture:sdk-filter\nupstream: https://example.com\n")
                .unwrap_err();
        assert!(
            scheme.starts_with(":3: `https://example.com`: only http://"),
            "{scheme}"
        );
        let missing =
            load_text("upstream: http://a:1\nfilters:\n  - wasm: nothere.wasm\n").unwrap_err();
        assert!(
            missing.starts_with(":3: wasm module") && missing.contains("does not exist"),
            "{missing}"
        );
        let empty = load_text("upstream: http://a:1\nfilters: []\n").unwrap_err();
        assert!(empty.starts_with(":2: `filters` is empty"), "{empty}");
    }
}
