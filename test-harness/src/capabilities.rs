//! The capabilities a module needs, for Envoy's
//! `VmConfig.capability_restriction_config`: the `proxy_*` host
//! functions and restrictable WASI functions it imports, and the
//! `proxy_on_*` callbacks it exports (Envoy calls a callback only when it
//! is allowed, so a restriction must name them too). Read from the module's
//! import and export sections, without compiling it.

use std::collections::BTreeSet;

use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use crate::abi::RESTRICTABLE_WASI;
use crate::error::{Error, Repr, Result};

/// The names a `capability_restriction_config` must allow for `module` to
/// run as it would unrestricted, sorted.
///
/// # Errors
///
/// [`ErrorKind::InvalidModule`](crate::ErrorKind::InvalidModule) when the
/// bytes are not a wasm module.
pub fn required(module: &[u8]) -> Result<Vec<String>> {
    let invalid = |e: wasmparser::BinaryReaderError| -> Error {
        Repr::InvalidModule {
            reason: e.to_string(),
        }
        .into()
    };
    let mut names = BTreeSet::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    if !matches!(import.ty, TypeRef::Func(_)) {
                        continue;
                    }
                    let wanted = match import.module {
                        "env" => import.name.starts_with("proxy_"),
                        "wasi_snapshot_preview1" | "wasi_unstable" => {
                            RESTRICTABLE_WASI.contains(&import.name)
                        }
                        _ => false,
                    };
                    if wanted {
                        names.insert(import.name.to_owned());
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
                    // The allocator is looked up whatever the restriction.
                    if export.kind == ExternalKind::Func
                        && export.name.starts_with("proxy_on_")
                        && export.name != "proxy_on_memory_allocate"
                    {
                        names.insert(export.name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(names.into_iter().collect())
}
