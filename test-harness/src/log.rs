//! What a plugin logs, as the harness records it.

use crate::abi::LogLevel;

/// A log line the plugin wrote (`proxy_log`, or stdout/stderr via WASI).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// Level; WASI stdout logs at info and stderr at error, as in Envoy.
    pub level: LogLevel,
    /// The message (lossy UTF-8).
    pub message: String,
    /// The context that was active (or effective) when it was written.
    pub context_id: u32,
}
