//! Round trips through a real registry: Debian's `docker-registry`
//! (distribution 2.8) started on 127.0.0.1 by the test, and `skopeo` as an
//! independent reader. `cargo xtask test` installs both and sets
//! `XTASK_REQUIRE_TOOLS`, so in CI a missing tool fails instead of skipping.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A tool on PATH, or `None` with a loud note (a failure when required).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("XTASK_REQUIRE_TOOLS").is_none(),
            "{name} is required (XTASK_REQUIRE_TOOLS is set) but not installed"
        );
        eprintln!("SKIPPED: {name} is not installed (Debian package `{name}`)");
    }
    found
}

/// A registry process on a free loopback port, stopped on drop.
struct LocalRegistry {
    child: Child,
    address: String,
    dir: PathBuf,
}

impl LocalRegistry {
    fn start(binary: &Path) -> LocalRegistry {
        let dir = std::env::temp_dir().join(format!(
            "xtask-registry-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("storage")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n\
                 http: {{addr: '{address}'}}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = LocalRegistry {
            child,
            address,
            dir,
        };
        registry.wait_ready();
        registry
    }

    /// Until `GET /v2/` answers 200.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&self.address) {
                let _ = stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the registry on {} did not start", self.address);
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn module() -> Vec<u8> {
    fs::read(harness_fixtures::SDK_FILTER).unwrap()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn both_formats_round_trip_through_a_real_registry_and_skopeo_reads_them() {
    let (Some(binary), Some(_)) = (tool("docker-registry"), tool("skopeo")) else {
        return;
    };
    let local = LocalRegistry::start(&binary);
    let session = Registry::new(true).unwrap();
    let module = module();
    for format in oci::Format::ALL {
        let image = oci::image(format, &module, "sdk").unwrap();
        let reference = format!("{}/toolkit/sdk:{}", local.address, format.tag("1.0.0"));
        let digest = session.push(&reference, &image).unwrap();
        assert_eq!(digest, image.digest(), "{format:?}");

        // Pulled back by tag and by digest, like Istio: same module.
        let (pulled_digest, pulled) = session
            .pull_module(&format!("oci://{reference}"), Some(&digest))
            .unwrap();
        assert_eq!(pulled_digest, digest);
        assert_eq!(pulled, module, "{format:?}");
        let by_digest = format!("{}/toolkit/sdk@{digest}", local.address);
        let (_, pulled) = session.pull_module(&by_digest, None).unwrap();
        assert_eq!(pulled, module);

        // skopeo reads exactly the manifest we pushed.
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{reference}"),
        ]);
        assert_eq!(
            raw.as_bytes(),
            image.manifest.bytes.as_slice(),
            "{format:?}"
        );
        if format == oci::Format::Compat {
            let seen: serde_json::Value = serde_json::from_str(&skopeo(&[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ]))
            .unwrap();
            assert_eq!(seen["Digest"], digest.as_str());
            assert_eq!(seen["Architecture"], "wasm");
            assert_eq!(seen["Layers"].as_array().unwrap().len(), 1);
        }
    }
}

#[test]
fn a_wrong_digest_is_refused_before_any_layer_is_fetched() {
    let Some(binary) = tool("docker-registry") else {
        return;
    };
    let local = LocalRegistry::start(&binary);
    let session = Registry::new(true).unwrap();
    let image = oci::image(oci::Format::Compat, &module(), "sdk").unwrap();
    let reference = format!("{}/toolkit/sdk:2.0.0", local.address);
    session.push(&reference, &image).unwrap();

    // The module's own hash is the classic mistake (istio/istio#37565).
    let module_hash = oci::digest(&module());
    let err = session
        .pull_module(&reference, Some(&module_hash))
        .unwrap_err();
    assert!(
        err.contains("which does not match") && err.contains("manifest's digest"),
        "{err}"
    );
    // A digest the registry does not hold.
    let missing = format!("{}/toolkit/sdk@sha256:{}", local.address, "0".repeat(64));
    let err = session.pull_module(&missing, None).unwrap_err();
    assert!(err.contains("sdk@sha256:000"), "{err}");
}

#[test]
fn the_shipped_layouts_push_as_written() {
    let Some(binary) = tool("docker-registry") else {
        return;
    };
    let dist = root().join("dist/oci");
    let Ok(entries) = fs::read_dir(&dist) else {
        eprintln!(
            "SKIPPED: {} is absent; run `cargo xtask dist`",
            dist.display()
        );
        return;
    };
    let local = LocalRegistry::start(&binary);
    let session = Registry::new(true).unwrap();
    let mut pushed = 0;
    for entry in entries {
        let layout = entry.unwrap().path();
        let name = layout.file_name().unwrap().to_string_lossy().into_owned();
        for (tag, image) in oci::read_layout(&layout).unwrap() {
            let reference = format!("{}/{DEFAULT_PATH}/{name}:{tag}", local.address);
            assert_eq!(session.push(&reference, &image).unwrap(), image.digest());
            let (_, module) = session
                .pull_module(&reference, Some(&image.digest()))
                .unwrap();
            assert_eq!(
                module,
                fs::read(root().join(format!("dist/{name}.wasm"))).unwrap()
            );
            pushed += 1;
        }
    }
    assert!(pushed >= 2, "dist/oci holds no images");
}
