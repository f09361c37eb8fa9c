//! The Envoy process type against the real binary: it starts on free
//! ports, says where its listener is, serves, and reports a bootstrap it
//! refuses with Envoy's own words.

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness_envoy::{
    Bootstrap, Envoy, HttpFilter, Listener, Options, Route, StartError, WasmFilter, block_on,
};

fn envoy() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match harness_envoy::binary::find(None, &root) {
        Ok(binary) => Some(binary),
        Err(e) => {
            eprintln!("SKIPPED: no Envoy to start ({e}); `cargo xtask test` installs it");
            None
        }
    }
}

fn work(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// Starts `binary` on `bootstrap` in the work folder `name`; waits until it
/// is ready or gave up.
fn start(
    binary: &Path,
    name: &str,
    bootstrap: &Bootstrap,
) -> (Envoy, Result<std::net::SocketAddr, StartError>) {
    let mut envoy = Envoy::start(binary, &work(name), "envoy", bootstrap, &Options::default())
        .expect("spawned");
    let ready = block_on(envoy.ready(Duration::from_secs(60))).expect("runtime");
    (envoy, ready)
}

#[test]
fn envoy_starts_on_free_ports_and_serves_its_listener() {
    let Some(binary) = envoy() else { return };
    let bootstrap = Bootstrap::new()
        .listener(Listener::new("one").route(Route::direct("/", 200, "first")))
        .listener(Listener::new("two").route(Route::direct("/", 201, "second")));
    let (envoy, ready) = start(&binary, "serves", &bootstrap);
    let admin = ready.expect("ready");
    assert_ne!(admin.port(), 0);
    for (listener, status, body) in [("one", 200, "first"), ("two", 201, "second")] {
        let addr = block_on(envoy.listener(listener))
            .expect("runtime")
            .expect("bound");
        let answer = block_on(harness_envoy::get(addr, "/", &[]))
            .expect("runtime")
            .expect("answered");
        assert_eq!((answer.status, answer.text().as_str()), (status, body));
    }
    assert!(block_on(envoy.listener("three")).expect("runtime").is_err());
    let stats = block_on(envoy.admin_get("/stats?filter=server.live"))
        .expect("runtime")
        .expect("admin answers");
    assert!(stats.contains("server.live: 1"), "{stats}");
}

#[test]
fn a_module_envoy_cannot_load_ends_start_up_with_its_log() {
    let Some(binary) = envoy() else { return };
    let missing = work("refused").join("no-such-module.wasm");
    let bootstrap = Bootstrap::new().listener(
        Listener::new("l")
            .filter(HttpFilter::wasm(WasmFilter::new("broken", &missing)))
            .route(Route::direct("/", 200, "ok")),
    );
    match start(&binary, "refused", &bootstrap).1 {
        Err(StartError::Exited { log }) => {
            assert!(log.contains("no-such-module.wasm"), "{log}");
        }
        other => panic!("expected Envoy to refuse the bootstrap, got {other:?}"),
    }
}
