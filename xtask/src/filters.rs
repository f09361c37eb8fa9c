//! Finding the filter crates of the workspace and building them to wasm.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::toolchain::{WASM_TARGET, cargo, exec, root};

/// Cargo profile the filters ship with (size-tuned, see the root Cargo.toml).
pub(crate) const PROFILE: &str = "wasm-release";

/// The most a shipped module may weigh unless its manifest says otherwise
/// (`[package.metadata.dist] size_cap_kb`), in kB of 1,000 bytes: a cap
/// against bloat, not a goal (`dist` fails past it).
const DEFAULT_SIZE_CAP_KB: u64 = 400;

/// A filter crate: a `cdylib` package under `filters/`.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// Package name, e.g. `proxy-wasm-headers`.
    pub(crate) package: String,
    /// The crate's directory.
    pub(crate) dir: PathBuf,
    /// The most the shipped module may weigh, in bytes.
    pub(crate) size_cap: usize,
    /// Package version: the tag of its OCI images.
    pub(crate) version: String,
    /// The callbacks it implements (`[package.metadata.dist] callbacks`):
    /// the module ships without the other optional ones.
    pub(crate) callbacks: Option<Vec<String>>,
    /// Whether it holds the request headers while it reads the body
    /// (`[package.metadata.dist] allow_on_headers_stop_iteration = true`):
    /// its ready configurations then set Envoy's
    /// `allow_on_headers_stop_iteration`, which a WasmPlugin cannot.
    pub(crate) holds_headers_for_body: bool,
    /// Other configurations its ready configs are also written for
    /// (`[package.metadata.dist.variants] <name> = "config/<file>.json"`):
    /// (name, path relative to the crate).
    pub(crate) variants: Vec<(String, String)>,
    /// Which of them this value stands for (`None`: the example).
    pub(crate) variant: Option<String>,
}

impl Filter {
    /// The module cargo writes for this filter.
    pub(crate) fn module(&self) -> PathBuf {
        root()
            .join("target")
            .join(WASM_TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", self.package.replace('-', "_")))
    }

    /// The example plugin configuration the filter ships with (or this
    /// variant's); `dist` checks the module with it.
    pub(crate) fn example_config(&self) -> PathBuf {
        let variant = self.variant.as_ref().and_then(|name| {
            self.variants
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, path)| self.dir.join(path))
        });
        variant.unwrap_or_else(|| self.dir.join("config").join("example.json"))
    }

    /// The name of its ready configs' files: the package, or
    /// `<package>-<variant>`.
    pub(crate) fn file_stem(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}-{v}", self.package),
            None => self.package.clone(),
        }
    }

    /// The filter with its example configuration, then with each of its
    /// variant configurations.
    pub(crate) fn with_variants(&self) -> impl Iterator<Item = Filter> + '_ {
        std::iter::once(self.clone()).chain(self.variants.iter().map(|(name, _)| Filter {
            variant: Some(name.clone()),
            ..self.clone()
        }))
    }

    /// The filter with each of its variant configurations.
    pub(crate) fn variants(&self) -> impl Iterator<Item = Filter> + '_ {
        self.with_variants().skip(1)
    }
}

/// Every package whose manifest lies under `filters/`, and whether it
/// builds a `cdylib` (a filter) or not (a library the filters share).
fn packages_under_filters() -> Result<Vec<(Value, bool)>, String> {
    let metadata = crate::workspace::metadata()?;
    let filters_dir = root().join("filters");
    let mut out = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        if !manifest.starts_with(&filters_dir) {
            continue;
        }
        let is_cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["crate_types"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c == "cdylib")
            });
        out.push((package.clone(), is_cdylib));
    }
    Ok(out)
}

/// The libraries under `filters/` (`filter-common`, `jose`): what the
/// filters share, linted for wasm32 with them.
pub(crate) fn libraries() -> Result<Vec<String>, String> {
    let mut names: Vec<String> = packages_under_filters()?
        .into_iter()
        .filter(|(_, is_cdylib)| !is_cdylib)
        .map(|(package, _)| package["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Every `cdylib` package whose manifest lies under `filters/`.
pub(crate) fn discover() -> Result<Vec<Filter>, String> {
    let mut filters = Vec::new();
    for (package, is_cdylib) in packages_under_filters()? {
        let manifest = Path::new(package["manifest_path"].as_str().unwrap_or_default());
        if is_cdylib {
            filters.push(Filter {
                package: package["name"].as_str().unwrap_or_default().to_owned(),
                dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
                size_cap: usize::try_from(
                    package["metadata"]["dist"]["size_cap_kb"]
                        .as_u64()
                        .unwrap_or(DEFAULT_SIZE_CAP_KB)
                        * 1000,
                )
                .unwrap_or(usize::MAX),
                version: package["version"].as_str().unwrap_or("0.0.0").to_owned(),
                callbacks: package["metadata"]["dist"]["callbacks"]
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|c| c.as_str().unwrap_or_default().to_owned())
                            .collect()
                    }),
                holds_headers_for_body: package["metadata"]["dist"]
                    ["allow_on_headers_stop_iteration"]
                    == true,
                variants: package["metadata"]["dist"]["variants"]
                    .as_object()
                    .map(|map| {
                        map.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default(),
                variant: None,
            });
        }
    }
    filters.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(filters)
}

/// Builds the given filters to `wasm32-wasip1` in one cargo invocation.
pub(crate) fn build(filters: &[Filter]) -> Result<(), String> {
    if filters.is_empty() {
        return Ok(());
    }
    let mut cmd = cargo();
    cmd.args(["build", "--target", WASM_TARGET, "--profile", PROFILE]);
    for filter in filters {
        cmd.args(["--package", &filter.package]);
    }
    exec(&mut cmd)
}
