//! What every filter needs at the proxy boundary, kept apart from the
//! configuration toolkit (`filter-common`) and, except `proxy`, from
//! proxy-wasm so it is tested natively:
//!
//! - [`headers`]: an in-memory header map and the minimal writes back to the host;
//! - [`request`]: the request as rules see it, host properties read lazily;
//! - [`client`]: where the client IP comes from, and reading an address;
//! - [`reply`]: local replies;
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

pub mod client;
pub mod headers;
#[cfg(target_arch = "wasm32")]
pub mod proxy;
pub mod reply;
pub mod request;
