//! The harness's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::log::LogEntry;

/// Result alias for the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading or running a plugin. Each variant
/// says what happened in words a filter author can act on; the `Display`
/// text is meant for test output, not for matching.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `.wasm` file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly module.
    #[error("not a valid WebAssembly module: {reason}")]
    InvalidModule { reason: String },
    /// The module does not declare a proxy-wasm ABI version Envoy knows.
    #[error(
        "Missing or unknown Proxy-Wasm ABI version: the module exports none of \
         proxy_abi_version_0_1_0, proxy_abi_version_0_2_0, proxy_abi_version_0_2_1"
    )]
    MissingAbiVersion,
    /// The module exports no linear memory named `memory`.
    #[error(
        "the module exports no memory named `memory`; a proxy-wasm host cannot exchange data with it"
    )]
    MissingMemory,
    /// The module exports neither `malloc` nor `proxy_on_memory_allocate`.
    #[error(
        "Wasm module is missing malloc function (it exports neither `malloc` nor `proxy_on_memory_allocate` as (i32) -> i32)"
    )]
    MissingAllocator,
    /// A known export has the wrong signature for the module's ABI version.
    #[error("export `{name}` has signature {found}, but ABI {abi} expects {expected}")]
    BadExport {
        name: String,
        expected: String,
        found: String,
        abi: crate::AbiVersion,
    },
    /// The module imports something no proxy-wasm host provides; Envoy
    /// would refuse to load it too.
    #[error("the module cannot be linked (Envoy would refuse it too): {reason}")]
    Link { reason: String },
    /// Instantiation failed (for example a trap in a start function).
    #[error("instantiating the module failed: {reason}")]
    Instantiate { reason: String },
    /// `proxy_on_vm_start` returned false: Envoy would not use this VM.
    #[error("the plugin refused to start (proxy_on_vm_start returned false){}", render_logs(.logs))]
    VmStartFailed { logs: Vec<LogEntry> },
    /// `proxy_on_configure` returned false: Envoy would refuse the plugin.
    #[error("the plugin rejected its configuration (proxy_on_configure returned false){}", render_logs(.logs))]
    ConfigurationRejected { logs: Vec<LogEntry> },
    /// The guest trapped (a Rust panic, `unreachable`, an out-of-bounds
    /// access...). The VM is not used again.
    #[error("the plugin trapped in {callback}: {message}{}{}", panic.as_ref().map(|p| format!("\n  panic: {p}")).unwrap_or_default(), backtrace.as_ref().map(|b| format!("\n  {}", b.replace('\n', "\n  "))).unwrap_or_default())]
    Trap {
        callback: String,
        message: String,
        /// The panic message the SDK logged at CRITICAL (or the guest wrote
        /// to stderr) before the trap.
        panic: Option<String>,
        backtrace: Option<String>,
    },
    /// A callback ran past its deadline (an endless loop?). The VM is not
    /// used again.
    #[error(
        "the plugin did not return from {callback} within {deadline:?} (endless loop?); the call was interrupted"
    )]
    Timeout {
        callback: String,
        deadline: Duration,
    },
    /// The guest tried to grow its memory past the limit and then trapped.
    #[error("the plugin tried to grow its memory to {requested} bytes in {callback}, over the {limit}-byte limit, and trapped{}", guest_message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    MemoryLimit {
        callback: String,
        requested: usize,
        limit: usize,
        guest_message: Option<String>,
    },
    /// The harness found a problem during a callback: the plugin called a
    /// host function the harness does not implement yet, for example.
    #[error("harness error in {callback}: {}", problems.join("; "))]
    Harness {
        callback: String,
        problems: Vec<String>,
    },
    /// The VM trapped earlier and is not used again (as Envoy would not).
    #[error("this VM cannot be used any more: {cause}")]
    Poisoned { cause: String },
    /// The test drove the stream in an order HTTP does not allow.
    #[error("invalid use of the harness: {0}")]
    InvalidState(String),
    /// The wasm engine could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
}

fn render_logs(logs: &[LogEntry]) -> String {
    logs.iter()
        .map(|l| format!("\n  [{}] {}", l.level, l.message))
        .collect()
}
