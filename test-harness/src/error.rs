//! The harness's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::log::LogEntry;

/// Result alias for the harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading or running a plugin: its `Display`
/// says what happened in words a filter author can act on (meant for test
/// output, not for matching); [`Error::kind`] says which kind of failure it
/// is, and the accessors give its parts (the callback, the plugin's logs,
/// a trap's message and backtrace...).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Repr>);

/// Which kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The `.wasm` file could not be read.
    Io,
    /// The bytes are not a valid WebAssembly module.
    InvalidModule,
    /// The module declares no proxy-wasm ABI version Envoy knows.
    MissingAbiVersion,
    /// The module exports no linear memory named `memory`.
    MissingMemory,
    /// The module exports neither `malloc` nor `proxy_on_memory_allocate`.
    MissingAllocator,
    /// A known export has the wrong signature for the module's ABI version.
    BadExport,
    /// The module imports something no proxy-wasm host provides.
    Link,
    /// Instantiation failed (for example a trap in a start function).
    Instantiate,
    /// `proxy_on_vm_start` returned false.
    VmStartFailed,
    /// `proxy_on_configure` returned false.
    ConfigurationRejected,
    /// The guest trapped; the VM is not used again.
    Trap,
    /// A callback ran past its deadline; the VM is not used again.
    Timeout,
    /// The guest grew its memory past the limit and trapped.
    MemoryLimit,
    /// The harness found a problem during a callback (an unimplemented
    /// host function, say).
    Harness,
    /// The VM trapped earlier and is not used again.
    Poisoned,
    /// The test drove the harness in an order it does not allow.
    InvalidState,
    /// The wasm engine could not be set up.
    Engine,
}

impl Error {
    /// Which kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match &*self.0 {
            Repr::Io { .. } => ErrorKind::Io,
            Repr::InvalidModule { .. } => ErrorKind::InvalidModule,
            Repr::MissingAbiVersion => ErrorKind::MissingAbiVersion,
            Repr::MissingMemory => ErrorKind::MissingMemory,
            Repr::MissingAllocator => ErrorKind::MissingAllocator,
            Repr::BadExport { .. } => ErrorKind::BadExport,
            Repr::Link { .. } => ErrorKind::Link,
            Repr::Instantiate { .. } => ErrorKind::Instantiate,
            Repr::VmStartFailed { .. } => ErrorKind::VmStartFailed,
            Repr::ConfigurationRejected { .. } => ErrorKind::ConfigurationRejected,
            Repr::Trap { .. } => ErrorKind::Trap,
            Repr::Timeout { .. } => ErrorKind::Timeout,
            Repr::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Repr::Harness { .. } => ErrorKind::Harness,
            Repr::Poisoned { .. } => ErrorKind::Poisoned,
            Repr::InvalidState(_) => ErrorKind::InvalidState,
            Repr::Engine(_) => ErrorKind::Engine,
        }
    }

    /// The callback that failed (trap, timeout, memory limit, harness
    /// problem), as the ABI names it: `proxy_on_request_headers`, say.
    pub fn callback(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Trap { callback, .. }
            | Repr::Timeout { callback, .. }
            | Repr::MemoryLimit { callback, .. }
            | Repr::Harness { callback, .. } => Some(callback),
            _ => None,
        }
    }

    /// What the plugin logged before refusing to start or rejecting its
    /// configuration; empty for other kinds.
    pub fn logs(&self) -> &[LogEntry] {
        match &*self.0 {
            Repr::VmStartFailed { logs } | Repr::ConfigurationRejected { logs } => logs,
            _ => &[],
        }
    }

    /// A trap's message (`unreachable`, an out-of-bounds access...).
    pub fn trap_message(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Trap { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The panic message the plugin logged (or wrote to stderr) before it
    /// trapped, or the message it trapped with past the memory limit.
    pub fn panic_message(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Trap { panic, .. } => panic.as_deref(),
            Repr::MemoryLimit { guest_message, .. } => guest_message.as_deref(),
            _ => None,
        }
    }

    /// A trap's wasm backtrace, when the module has names for it.
    pub fn backtrace(&self) -> Option<&str> {
        match &*self.0 {
            Repr::Trap { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }

    /// A timed-out callback's deadline.
    pub fn deadline(&self) -> Option<Duration> {
        match &*self.0 {
            Repr::Timeout { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }

    /// A refused memory growth: (bytes requested, the limit).
    pub fn memory(&self) -> Option<(usize, usize)> {
        match &*self.0 {
            Repr::MemoryLimit {
                requested, limit, ..
            } => Some((*requested, *limit)),
            _ => None,
        }
    }

    /// The problems the harness found during a callback.
    pub fn problems(&self) -> &[String] {
        match &*self.0 {
            Repr::Harness { problems, .. } => problems,
            _ => &[],
        }
    }

    /// An error for misuse of the harness by code built on it (a runner,
    /// a proxy): `message` says what was asked out of order.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Repr::InvalidState(message.into()).into()
    }
}

impl From<Repr> for Error {
    fn from(repr: Repr) -> Self {
        Self(Box::new(repr))
    }
}

/// The error's parts, by kind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Repr {
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
