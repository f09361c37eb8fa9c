//! What the toolkit's filters share, kept apart from proxy-wasm so it is
//! tested natively:
//!
//! - [`config`]: typed configuration with every problem reported by JSON path;
//! - [`headers`]: an in-memory header map and the minimal writes back to the host;
//! - [`net`]: CIDR ranges and where the client IP comes from;
//! - [`reply`]: local replies;
//! - [`request`]: the request as rules see it, host properties read lazily;
//! - [`rewrite`]: Envoy's `regex_rewrite` (a regex and a `\1` substitution);
//! - [`matcher`]: string matchers and host patterns;
//! - [`path`]: path-separated prefixes and URI templates;
//! - [`expr`]: match expressions (AND of members, `all`/`any`/`not`);
//! - [`query`]: query-string edits on `:path`;
//! - [`pattern`]: configured regexes (regex-lite within configure-time limits, over header bytes);
//! - [`template`]: the `%OPERATOR%` value language;
//! - [`scope`]: per-route scoping (route name, virtual host, host, path, route metadata);
//! - [`value`]: JSON through serde_json into a tree (document order, names unique);
//! - `proxy` (wasm32 only): reading and writing the host's maps without the SDK's panics, counters.
// Filters run inside the proxy, where a panic kills the VM: no unwrap,
// expect, panic or unchecked indexing outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod expr;
pub mod headers;
pub mod matcher;
pub mod net;
pub mod path;
pub mod pattern;
#[cfg(target_arch = "wasm32")]
pub mod proxy;
pub mod query;
pub mod reply;
pub mod request;
pub mod rewrite;
pub mod scope;
pub mod template;
pub mod value;
