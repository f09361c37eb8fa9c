//! The filters' configuration toolkit, kept apart from proxy-wasm so it is
//! tested natively (what they need at the proxy boundary, the request
//! model, header maps and local replies, is `filter-proxy`'s):
//!
//! - [`body`]: bodies as JSON documents, fields by JSON Pointer;
//! - [`config`]: typed configuration with every problem reported by JSON path;
//! - [`net`]: CIDR ranges and decoding where the client IP comes from;
//! - [`rewrite`]: Envoy's `regex_rewrite` (a regex and a `\1` substitution);
//! - [`matcher`]: string matchers and host patterns;
//! - [`path`]: path-separated prefixes and URI templates;
//! - [`expr`]: match expressions (AND of members, `all`/`any`/`not`);
//! - [`query`]: query-string edits on `:path`;
//! - [`pattern`]: configured regexes (regex-lite within configure-time limits, over header bytes);
//! - [`template`]: the `%OPERATOR%` value language;
//! - [`scope`]: per-route scoping (route name, virtual host, host, path, route metadata);
//! - [`value`]: JSON through serde_json into a tree (document order, names unique).
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

pub mod body;
pub mod config;
pub mod expr;
pub mod matcher;
pub mod net;
pub mod path;
pub mod pattern;
pub mod query;
pub mod rewrite;
pub mod scope;
pub mod template;
pub mod value;
