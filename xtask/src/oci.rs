//! Wasm OCI images, built without Docker, in both formats Istio pulls
//! (`pkg/wasm/imagefetcher.go`), and read back the way Istio reads them.
//!
//! - **compat**: an ordinary image whose one (last) layer is a gzip'd tar
//!   holding `plugin.wasm`, annotated `module.wasm.image/variant=compat`.
//!   Istio tries this shape first; every fetcher derived from Istio's
//!   (Envoy Gateway, Higress, kgateway) and every registry accepts it.
//! - **wasm artifact** (solo-io's "oci" variant): config
//!   `application/vnd.module.wasm.config.v1+json` and exactly two layers,
//!   that runtime config and the raw module
//!   (`application/vnd.module.wasm.content.layer.v1+wasm`).
//!
//! Every byte is a function of the module alone (no timestamps, owners or
//! host names; JSON keys sorted), so the same module gives the same digests.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read as _, Write as _};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const TITLE: &str = "org.opencontainers.image.title";

/// The two formats, and the tag suffix each is published under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Compat,
    WasmArtifact,
}

impl Format {
    pub(crate) const ALL: [Format; 2] = [Format::Compat, Format::WasmArtifact];

    /// The tag for version `version`: the compat image is the plain version
    /// (the one the WasmPlugin resources use); the artifact adds `-wasm`.
    pub(crate) fn tag(self, version: &str) -> String {
        match self {
            Format::Compat => version.to_owned(),
            Format::WasmArtifact => format!("{version}-wasm"),
        }
    }
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) media_type: &'static str,
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn digest(&self) -> String {
        digest(&self.bytes)
    }

    fn descriptor(&self, annotations: &[(&str, &str)]) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.bytes.len(),
        });
        if !annotations.is_empty() {
            d["annotations"] = annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        d
    }
}

/// One image: its manifest and the blobs it points to.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) manifest: Blob,
    /// Config first, then the layers.
    pub(crate) blobs: Vec<Blob>,
}

impl Image {
    /// The manifest digest: what Istio's `sha256` must hold for `oci://`.
    pub(crate) fn digest(&self) -> String {
        self.manifest.digest()
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The image of `module` in `format`; `root_id` goes into the runtime
/// config (Envoy's `root_id`, Istio's `pluginName`).
pub(crate) fn image(format: Format, module: &[u8], root_id: &str) -> Result<Image, String> {
    let runtime_config = Blob {
        media_type: WASM_CONFIG,
        bytes: canonical(&json!({
            "type": "envoy_proxy",
            "abiVersions": ["proxy_abi_version_0_2_1"],
            "config": {"rootIds": [root_id]},
        })),
    };
    let (blobs, config, layers, annotations) = match format {
        Format::Compat => {
            let tar = tar_of("plugin.wasm", module)?;
            let diff_id = digest(&tar);
            let layer = Blob {
                media_type: OCI_TAR_GZIP,
                bytes: gzip(&tar)?,
            };
            let config = Blob {
                media_type: OCI_CONFIG,
                bytes: canonical(&json!({
                    // Go's names for WASI preview 1 (GOOS=wasip1 GOARCH=wasm).
                    "architecture": "wasm",
                    "os": "wasip1",
                    "config": {},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                })),
            };
            let layers = vec![layer.descriptor(&[])];
            (
                vec![config.clone(), layer],
                config,
                layers,
                json!({"module.wasm.image/variant": "compat"}),
            )
        }
        Format::WasmArtifact => {
            let layer = Blob {
                media_type: WASM_LAYER,
                bytes: module.to_vec(),
            };
            let layers = vec![
                runtime_config.descriptor(&[(TITLE, "runtime-config.json")]),
                layer.descriptor(&[(TITLE, "filter.wasm")]),
            ];
            (
                vec![runtime_config.clone(), layer],
                runtime_config,
                layers,
                json!({
                    "module.wasm.runtime/abi_version": "proxy_abi_version_0_2_1",
                    "module.wasm.runtime/type": "envoy_proxy",
                }),
            )
        }
    };
    let manifest = Blob {
        media_type: OCI_MANIFEST,
        bytes: canonical(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(&[]),
            "layers": layers,
            "annotations": annotations,
        })),
    };
    Ok(Image { manifest, blobs })
}

/// Compact JSON with sorted keys (serde_json's map is ordered).
fn canonical(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// A one-file ustar archive with fixed owner, mode and time.
fn tar_of(name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header
        .set_path(name)
        .map_err(|e| format!("tar path {name}: {e}"))?;
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder
        .append(&header, bytes)
        .map_err(|e| format!("tar: {e}"))?;
    builder.into_inner().map_err(|e| format!("tar: {e}"))
}

/// gzip with no name and no time in the header.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).map_err(|e| format!("gzip: {e}"))?;
    encoder.finish().map_err(|e| format!("gzip: {e}"))
}

/// Writes an OCI image layout (`oci-layout`, `index.json`, `blobs/`) at
/// `dir` holding `images`, each under its tag (`org.opencontainers.image.ref.name`).
pub(crate) fn write_layout(dir: &Path, images: &[(String, Image)]) -> Result<(), String> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| format!("cannot create {}: {e}", blobs.display()))?;
    let write = |path: &Path, bytes: &[u8]| {
        fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(
        &dir.join("oci-layout"),
        &canonical(&json!({"imageLayoutVersion": "1.0.0"})),
    )?;
    let mut manifests = Vec::new();
    for (tag, image) in images {
        for blob in std::iter::once(&image.manifest).chain(&image.blobs) {
            let hex = blob.digest().trim_start_matches("sha256:").to_owned();
            write(&blobs.join(hex), &blob.bytes)?;
        }
        manifests.push(image.manifest.descriptor(&[(REF_NAME, tag)]));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    write(&dir.join("index.json"), &canonical(&index))
}

/// The images of a layout written by [`write_layout`], by tag.
pub(crate) fn read_layout(dir: &Path) -> Result<BTreeMap<String, Image>, String> {
    let read =
        |path: &Path| fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let blob = |digest: &str| -> Result<Vec<u8>, String> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("{}: digest {digest} is not sha256", dir.display()))?;
        let bytes = read(&dir.join("blobs/sha256").join(hex))?;
        if self::digest(&bytes) != digest {
            return Err(format!("{}: blob {digest} is corrupt", dir.display()));
        }
        Ok(bytes)
    };
    let index: Value = serde_json::from_slice(&read(&dir.join("index.json"))?)
        .map_err(|e| format!("{}/index.json: {e}", dir.display()))?;
    let mut images = BTreeMap::new();
    for entry in index["manifests"].as_array().into_iter().flatten() {
        let tag = entry["annotations"][REF_NAME]
            .as_str()
            .ok_or_else(|| format!("{}/index.json: a manifest has no ref name", dir.display()))?;
        let manifest_bytes = blob(entry["digest"].as_str().unwrap_or_default())?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| format!("{}: manifest {tag}: {e}", dir.display()))?;
        let mut blobs = Vec::new();
        let descriptors = std::iter::once(&manifest["config"])
            .chain(manifest["layers"].as_array().into_iter().flatten());
        for d in descriptors {
            blobs.push(Blob {
                media_type: known_media_type(d["mediaType"].as_str().unwrap_or_default())?,
                bytes: blob(d["digest"].as_str().unwrap_or_default())?,
            });
        }
        images.insert(
            tag.to_owned(),
            Image {
                manifest: Blob {
                    media_type: OCI_MANIFEST,
                    bytes: manifest_bytes,
                },
                blobs,
            },
        );
    }
    Ok(images)
}

fn known_media_type(media_type: &str) -> Result<&'static str, String> {
    [OCI_CONFIG, OCI_TAR_GZIP, WASM_CONFIG, WASM_LAYER]
        .into_iter()
        .find(|m| *m == media_type)
        .ok_or_else(|| format!("unexpected media type {media_type}"))
}

/// The module inside an image, found as Istio finds it: the Docker or OCI
/// compat shape (last layer a tar.gz; its first `plugin.wasm`), else the
/// wasm artifact (exactly two layers, one of them the module). `blob`
/// fetches a layer by digest. Errors carry Istio's own wording.
pub(crate) fn module_of(
    manifest: &[u8],
    blob: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let manifest: Value =
        serde_json::from_slice(manifest).map_err(|e| format!("the manifest is not JSON: {e}"))?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let media = |layer: &Value| layer["mediaType"].as_str().unwrap_or_default().to_owned();
    let module = if manifest["mediaType"] == DOCKER_MANIFEST {
        let last = layers.last().ok_or("the image has no layers")?;
        if media(last) != DOCKER_TAR_GZIP {
            return Err(format!(
                "could not parse as compat variant: invalid media type {}",
                media(last)
            ));
        }
        plugin_of_tar_gzip(&blob(last["digest"].as_str().unwrap_or_default())?)?
    } else {
        match layers.last() {
            Some(last) if media(last) == OCI_TAR_GZIP => {
                plugin_of_tar_gzip(&blob(last["digest"].as_str().unwrap_or_default())?)?
            }
            _ if layers.len() != 2 => {
                return Err(format!(
                    "the given image is in invalid format as an OCI image: could not parse as \
                     compat variant: invalid media type; could not parse as oci variant: number \
                     of layers must be 2 but got {}",
                    layers.len()
                ));
            }
            _ => {
                let layer = layers
                    .iter()
                    .find(|l| media(l) == WASM_LAYER)
                    .ok_or_else(|| {
                        format!("could not parse as oci variant: no layer of type {WASM_LAYER}")
                    })?;
                blob(layer["digest"].as_str().unwrap_or_default())?
            }
        }
    };
    if !module.starts_with(b"\0asm") {
        return Err("fetched Wasm binary is invalid: it does not start with \\0asm".into());
    }
    Ok(module)
}

fn plugin_of_tar_gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let entries = archive
        .entries()
        .map_err(|e| format!("the layer is not a tar.gz: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("the layer is not a tar.gz: {e}"))?;
        let is_plugin = entry
            .path()
            .is_ok_and(|p| p.file_name().is_some_and(|n| n == "plugin.wasm"));
        if is_plugin {
            let mut module = Vec::new();
            entry
                .read_to_end(&mut module)
                .map_err(|e| format!("cannot read plugin.wasm: {e}"))?;
            return Ok(module);
        }
    }
    Err("plugin.wasm not found in the layer".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0 not really a module";

    fn from_blobs(image: &Image) -> impl FnMut(&str) -> Result<Vec<u8>, String> + '_ {
        |digest: &str| {
            image
                .blobs
                .iter()
                .find(|b| b.digest() == digest)
                .map(|b| b.bytes.clone())
                .ok_or_else(|| format!("no blob {digest}"))
        }
    }

    #[test]
    fn both_formats_hold_the_module_where_istio_looks() {
        for format in Format::ALL {
            let image = image(format, MODULE, "auth").unwrap();
            let module = module_of(&image.manifest.bytes, &mut from_blobs(&image)).unwrap();
            assert_eq!(module, MODULE, "{format:?}");
        }
    }

    #[test]
    fn the_compat_image_is_one_tar_gzip_layer_annotated_compat() {
        let image = image(Format::Compat, MODULE, "auth").unwrap();
        let manifest: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], OCI_TAR_GZIP);
        assert_eq!(
            manifest["annotations"]["module.wasm.image/variant"],
            "compat"
        );
        // The config's diff_id is the uncompressed layer's digest.
        let config: Value = serde_json::from_slice(&image.blobs[0].bytes).unwrap();
        let tar = tar_of("plugin.wasm", MODULE).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], digest(&tar));
    }

    #[test]
    fn the_artifact_has_exactly_the_two_layers_istio_counts() {
        let image = image(Format::WasmArtifact, MODULE, "auth").unwrap();
        let manifest: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["mediaType"], WASM_CONFIG);
        let types: Vec<&str> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(types, [WASM_CONFIG, WASM_LAYER]);
        let config: Value = serde_json::from_slice(&image.blobs[0].bytes).unwrap();
        assert_eq!(config["config"]["rootIds"][0], "auth");
    }

    #[test]
    fn the_same_module_gives_the_same_digests() {
        for format in Format::ALL {
            let a = image(format, MODULE, "auth").unwrap();
            let b = image(format, MODULE, "auth").unwrap();
            assert_eq!(a.digest(), b.digest());
            let c = image(format, b"\0asm\x01\0\0\0 another", "auth").unwrap();
            assert_ne!(a.digest(), c.digest());
        }
    }

    #[test]
    fn a_layout_reads_back_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("xtask-oci-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let images: Vec<(String, Image)> = Format::ALL
            .iter()
            .map(|f| (f.tag("1.0.0"), image(*f, MODULE, "auth").unwrap()))
            .collect();
        write_layout(&dir, &images).unwrap();
        let read = read_layout(&dir).unwrap();
        assert_eq!(read.len(), 2);
        for (tag, image) in &images {
            assert_eq!(read[tag].manifest.bytes, image.manifest.bytes);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn look_alike_formats_are_refused_as_istio_refuses_them() {
        // One wasm layer (a plain `oras push`): Istio wants exactly two.
        let layer = Blob {
            media_type: WASM_LAYER,
            bytes: MODULE.to_vec(),
        };
        let manifest = canonical(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": layer.descriptor(&[]), "layers": [layer.descriptor(&[])],
        }));
        let err = module_of(&manifest, &mut |_| Ok(MODULE.to_vec())).unwrap_err();
        assert!(
            err.contains("number of layers must be 2 but got 1"),
            "{err}"
        );
        // Not a module.
        let image = image(Format::WasmArtifact, b"text", "x").unwrap();
        let err = module_of(&image.manifest.bytes, &mut from_blobs(&image)).unwrap_err();
        assert!(err.contains("invalid"), "{err}");
    }
}
