//! The harness's modules stay in layers (ARCHITECTURE.md): a module uses
//! only modules of its own layer or below, the host functions never reach
//! up into stream, VM or plugin logic, and no import cycle spans more than
//! two modules. Read from the `crate::` paths of the sources, so a new
//! import that breaks the layering fails here, with the line that did it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Every module of `src/`, bottom layer first. A module may use what is
/// in its own layer or a lower one.
const LAYERS: &[&[&str]] = &[
    // Vocabulary and plain data: ABI names and statuses, header maps, cost
    // counters, log records, callout upstreams.
    &["abi", "headers", "costs", "log", "upstream"],
    // State the host functions read and write, and what Envoy does to a
    // message before a filter sees it.
    &[
        "error",
        "capabilities",
        "settings",
        "process",
        "stream_state",
        "tcp_state",
        "envoy",
    ],
    // Property values, computed from that state.
    &["properties"],
    // The host functions, one file per spec section, and the store's state.
    &["host"],
    // The engine with every host function linked.
    &["runtime"],
    // A plugin and its running VMs (start, guarded guest calls, the clock).
    &["plugin", "vm"],
    // Envoy's stream semantics: one filter's steps, the chain, TCP.
    &["stream", "tcp"],
];

/// What `src/host/` must never use: the host answers calls from the state
/// it owns, it never calls up into stream, VM or plugin logic.
const ABOVE_HOST: &[&str] = &["runtime", "plugin", "vm", "stream", "tcp"];

/// (module, file, line number, module it uses) for every `crate::x` outside
/// comments, and `lib.rs`'s own `mod` lines skipped.
fn uses(src: &Path) -> Vec<(String, String, usize, String)> {
    let mut found = Vec::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(dir) = files.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if relative == "lib.rs" || !relative.ends_with(".rs") {
                continue;
            }
            // `host/fields.rs` belongs to `host`, `vm/clock.rs` to `vm`; `http.rs` is `http`.
            let module = relative
                .split('/')
                .next()
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_owned();
            let text = fs::read_to_string(&path).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (i, _) in code.match_indices("crate::") {
                    let name: String = code[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    // `crate::Chain` names a re-export of lib.rs, not a module.
                    if !name.is_empty() && name != module {
                        found.push((module.clone(), relative.clone(), n + 1, name));
                    }
                }
            }
        }
    }
    found
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn modules_use_only_their_layer_and_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (module, file, line, used) in uses(&src) {
        let (Some(from), Some(to)) = (layer_of(&module), layer_of(&used)) else {
            problems.push(format!(
                "src/{file}:{line}: module `{module}` or `{used}` is in no layer of LAYERS (tests/all/layers.rs); place it"
            ));
            continue;
        };
        if to > from {
            problems.push(format!(
                "src/{file}:{line}: `{module}` (layer {from}) uses `{used}` (layer {to}), a layer above it"
            ));
        }
        if module == "host" && ABOVE_HOST.contains(&used.as_str()) {
            problems.push(format!(
                "src/{file}:{line}: the host functions use `{used}`; they may only use the state below them"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_import_cycle_spans_more_than_two_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, _, _, used) in uses(&src) {
        edges.entry(module).or_default().insert(used);
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    for (m, from_m) in &reached {
        // Modules on a cycle with `m`: each reaches the other.
        let cycle: Vec<&String> = from_m
            .iter()
            .filter(|o| reached.get(o).is_some_and(|r| r.contains(*m)))
            .collect();
        assert!(
            cycle.len() <= 2,
            "an import cycle spans more than two modules: {cycle:?}"
        );
    }
}

#[test]
fn the_layer_table_names_every_module_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .trim_start_matches("pub ")
                .strip_prefix("mod ")?
                .strip_suffix(';')
        })
        .collect();
    let listed: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    let unique: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(listed.len(), unique.len(), "a module is in two layers");
    assert_eq!(declared, unique, "LAYERS and lib.rs's modules differ");
}
