//! Pushing the images of `dist/oci/` to a registry and pulling a module back
//! the way Istio does, through `oci-client` (the OCI distribution API over
//! reqwest with rustls; no Docker).
//!
//! - `cargo xtask push --registry HOST:PORT [--path PATH] [--plain-http] [FILTER...]`
//!   pushes each filter's two images (`<version>` compat, `<version>-wasm`
//!   artifact) byte for byte as `dist` wrote them, then reads each tag's
//!   digest back and prints the value for a WasmPlugin's `sha256`.
//! - `cargo xtask pull oci://HOST/PATH:TAG [--sha256 HEX] [--plain-http] [-o FILE]`
//!   fetches the manifest, refuses a digest other than `--sha256` before any
//!   layer is fetched (Istio's check), finds the module as Istio finds it,
//!   and writes it.
//!
//! Credentials come from `REGISTRY_USERNAME` / `REGISTRY_PASSWORD` when set
//! (basic, or exchanged for a bearer token when the registry asks);
//! anonymous otherwise.

use std::fs;
use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::filters;
use crate::oci;
use crate::toolchain::root;

/// The repository path under the registry that `dist`'s resources name.
pub(crate) const DEFAULT_PATH: &str = "proxy-wasm-toolkit";

/// A registry session: the client and a runtime to drive it.
pub(crate) struct Registry {
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
}

impl Registry {
    /// `plain_http` for local registries without TLS.
    pub(crate) fn new(plain_http: bool) -> Result<Self, String> {
        let client = Client::new(ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..ClientConfig::default()
        });
        let auth = match (
            std::env::var("REGISTRY_USERNAME"),
            std::env::var("REGISTRY_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
            _ => RegistryAuth::Anonymous,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
        Ok(Registry {
            client,
            auth,
            runtime,
        })
    }

    /// Pushes `image` as `reference` (`HOST/PATH:TAG`); returns the digest
    /// the registry reports for the tag, checked against the manifest's.
    pub(crate) fn push(&self, reference: &str, image: &oci::Image) -> Result<String, String> {
        let reference = parse(reference)?;
        let at = |e: oci_client::errors::OciDistributionError| format!("{reference}: {e}");
        self.runtime.block_on(async {
            self.client
                .auth(&reference, &self.auth, RegistryOperation::Push)
                .await
                .map_err(at)?;
            for blob in &image.blobs {
                self.client
                    .push_blob(&reference, &blob.bytes, &blob.digest())
                    .await
                    .map_err(at)?;
            }
            let content_type = oci::OCI_MANIFEST
                .parse()
                .map_err(|e| format!("bad media type: {e}"))?;
            self.client
                .push_manifest_raw(&reference, image.manifest.bytes.clone(), content_type)
                .await
                .map_err(at)?;
            let digest = self
                .client
                .fetch_manifest_digest(&reference, &self.auth)
                .await
                .map_err(at)?;
            if digest != image.digest() {
                return Err(format!(
                    "{reference}: the registry holds manifest {digest}, not the pushed {}",
                    image.digest()
                ));
            }
            Ok(digest)
        })
    }

    /// The raw manifest of `reference` and its digest (of the bytes received).
    pub(crate) fn manifest(&self, reference: &str) -> Result<(Vec<u8>, String), String> {
        let reference = parse(reference)?;
        let (bytes, _) = self
            .runtime
            .block_on(self.client.pull_manifest_raw(
                &reference,
                &self.auth,
                &[oci::OCI_MANIFEST, oci::DOCKER_MANIFEST],
            ))
            .map_err(|e| format!("{reference}: {e}"))?;
        let digest = oci::digest(&bytes);
        Ok((bytes, digest))
    }

    /// A blob of `reference`'s repository, checked against its digest.
    pub(crate) fn blob(&self, reference: &str, digest: &str) -> Result<Vec<u8>, String> {
        let reference = parse(reference)?;
        let mut bytes = Vec::new();
        self.runtime
            .block_on(self.client.pull_blob(&reference, digest, &mut bytes))
            .map_err(|e| format!("{reference}: blob {digest}: {e}"))?;
        if oci::digest(&bytes) != digest {
            return Err(format!("{reference}: blob {digest} arrived corrupt"));
        }
        Ok(bytes)
    }

    /// The module at `url` (`oci://` optional), fetched as Istio fetches it:
    /// the manifest first, its digest checked against `sha256` when given,
    /// then the module found in either image format.
    pub(crate) fn pull_module(
        &self,
        url: &str,
        sha256: Option<&str>,
    ) -> Result<(String, Vec<u8>), String> {
        let reference = url.strip_prefix("oci://").unwrap_or(url);
        let (manifest, digest) = self.manifest(reference)?;
        if let Some(want) = sha256 {
            let got = digest.trim_start_matches("sha256:");
            if got != want.trim_start_matches("sha256:") {
                return Err(format!(
                    "module downloaded from {url} has checksum {got}, which does not match: {want} \
                     (for oci:// URLs Istio's sha256 is the image manifest's digest)"
                ));
            }
        }
        let module = oci::module_of(&manifest, &mut |blob| self.blob(reference, blob))?;
        Ok((digest, module))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

fn parse(reference: &str) -> Result<Reference, String> {
    reference
        .parse()
        .map_err(|e| format!("`{reference}` is not an image reference: {e}"))
}

/// `cargo xtask push`.
pub(crate) fn run_push(args: &[String]) -> Result<(), String> {
    let mut registry = None;
    let mut path = DEFAULT_PATH.to_owned();
    let mut plain_http = false;
    let mut only = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--registry" => registry = args.next().cloned(),
            "--path" => path = args.next().cloned().ok_or("--path needs a value")?,
            "--plain-http" => plain_http = true,
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}` for push"));
            }
            filter => only.push(filter.to_owned()),
        }
    }
    let registry = registry.ok_or("push needs --registry HOST:PORT")?;
    let session = Registry::new(plain_http)?;
    let filters: Vec<_> = filters::discover()?
        .into_iter()
        .filter(|f| only.is_empty() || only.contains(&f.package))
        .collect();
    if filters.is_empty() {
        return Err(format!("no filter named {}", only.join(", ")));
    }
    for filter in filters {
        let layout = root().join("dist/oci").join(&filter.package);
        if !layout.is_dir() {
            return Err(format!(
                "{} is missing: run `cargo xtask dist` first",
                layout.display()
            ));
        }
        for (tag, image) in oci::read_layout(&layout)? {
            let reference = format!("{registry}/{path}/{}:{tag}", filter.package);
            let digest = session.push(&reference, &image)?;
            println!(
                "pushed oci://{reference}  digest {digest}  (WasmPlugin sha256: {})",
                digest.trim_start_matches("sha256:")
            );
        }
    }
    Ok(())
}

/// `cargo xtask pull`.
pub(crate) fn run_pull(args: &[String]) -> Result<(), String> {
    let mut url = None;
    let mut sha256 = None;
    let mut plain_http = false;
    let mut output = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sha256" => sha256 = args.next().cloned(),
            "--plain-http" => plain_http = true,
            "-o" | "--output" => output = args.next().map(PathBuf::from),
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}` for pull"));
            }
            other if url.is_none() => url = Some(other.to_owned()),
            other => {
                return Err(format!(
                    "pull takes one image URL (got a second: `{other}`)"
                ));
            }
        }
    }
    let url = url.ok_or("pull needs an image URL (oci://HOST/PATH:TAG)")?;
    let (digest, module) = Registry::new(plain_http)?.pull_module(&url, sha256.as_deref())?;
    println!(
        "{url}: manifest {digest}, module {} bytes ({})",
        module.len(),
        oci::digest(&module)
    );
    if let Some(path) = output {
        fs::write(&path, &module).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
