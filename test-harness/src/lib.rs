//! Unit-test proxy-wasm filters without Envoy.
//!
//! This crate is a [wasmtime] host that implements the proxy-wasm ABI
//! (v0.2.1, with 0.2.0 and 0.1.0) the way Envoy does: it loads any stock
//! `wasm32-wasip1` filter, from any SDK, starts it as Envoy starts a VM, and
//! drives HTTP streams through it with Envoy's rules for pauses, buffering,
//! local replies, header maps and properties. Tests then assert on plain
//! state: what the upstream received, what the client got, what was logged.
//!
//! ```
//! use proxy_wasm_harness::{Plugin, Progress};
//!
//! # fn main() -> proxy_wasm_harness::Result<()> {
//! // A tiny filter in WAT that adds `x-hello: world` to every request; a
//! // real test loads the `.wasm` its crate builds with `Plugin::load`.
//! let filter = r#"(module
//!   (import "env" "proxy_add_header_map_value"
//!     (func $add (param i32 i32 i32 i32 i32) (result i32)))
//!   (memory (export "memory") 1)
//!   (data (i32.const 16) "x-helloworld")
//!   (global $heap (mut i32) (i32.const 1024))
//!   (func (export "proxy_abi_version_0_2_1"))
//!   (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
//!     global.get $heap
//!     (global.set $heap (i32.add (global.get $heap) (local.get $size))))
//!   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
//!     (drop (call $add (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 23) (i32.const 5)))
//!     (i32.const 0)))"#;
//!
//! let plugin = Plugin::builder_from_bytes(filter).configuration("{}").build()?;
//! let mut vm = plugin.start()?;
//! let mut stream = vm.http_stream();
//! let progress = stream.send_request_headers(
//!     [(":method", "GET"), (":path", "/"), (":authority", "example.com")],
//!     true,
//! )?;
//! assert_eq!(progress, Progress::Continued);
//! assert_eq!(stream.upstream_request().header("x-hello"), Some("world"));
//! let exchange = stream.finish()?;
//! assert!(exchange.upstream_request.complete);
//! # Ok(())
//! # }
//! ```
//!
//! # Core types
//!
//! - [`Runtime`]: a wasm engine with every host function linked. Optional:
//!   plugins built without one get their own, so tests run in parallel.
//! - [`Plugin`]: a compiled, checked module with its configuration;
//!   `Send + Sync`, cheap to clone, starts any number of VMs.
//! - [`Vm`]: one running VM (its own store): logs, properties, time, metrics.
//! - [`Chain`]: several VMs on one stream, in order, with Envoy's
//!   filter-chain rules.
//! - [`HttpStream`]: one request/response exchange through a VM or a chain.
//! - [`Error`]: what went wrong, including a guest trap with the panic
//!   message, a callback past its deadline, or a harness limitation.
//!
//! [wasmtime]: https://docs.rs/wasmtime

mod abi;
pub mod capabilities;
mod costs;
pub mod envoy;
mod error;
mod headers;
mod host;
mod log;
mod plugin;
mod process;
mod properties;
mod runtime;
mod settings;
mod stream;
mod stream_state;
mod tcp;
mod tcp_state;
mod upstream;
mod vm;

pub use abi::{AbiVersion, LogLevel, Status};
pub use costs::{CallbackCosts, CostModel, Costs};
pub use error::{Error, ErrorKind, Result};
pub use headers::HeaderMap;
pub use log::LogEntry;
pub use plugin::{
    DEFAULT_CALLBACK_DEADLINE, DEFAULT_MEMORY_LIMIT, DEFAULT_RELOAD_BASE_INTERVAL,
    DEFAULT_START_TIME_UNIX_SECS, Plugin, PluginBuilder,
};
pub use process::Metric;
pub use properties::value as property;
pub use runtime::Runtime;
pub use settings::{FailurePolicy, ForeignFunction};
pub use stream::{Chain, Exchange, HttpStream};
pub use stream_state::{LocalResponse, Message, Progress};
pub use tcp::{TcpConnection, TcpExchange};
pub use tcp_state::PeerType;
pub use upstream::{
    CallOutcome, GrpcCall, GrpcReply, GrpcUpstream, HttpCall, HttpResponse, Upstream,
};
pub use vm::Vm;

/// Envoy's crypto foreign functions as the harness answers a module's
/// `proxy_call_foreign_function`, callable directly: a filter's logic,
/// tested natively, gets the answers Envoy 1.40 would give it.
pub mod foreign_functions {
    pub use crate::host::{sign, verify_signature};
}
