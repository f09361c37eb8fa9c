//! The harness's integration tests, one binary with a module per area.

mod guest;

mod abi_arguments;
mod abi_fields;
mod abi_lifecycle;
mod abi_shared;
mod abi_wasi;
mod callouts;
mod capabilities;
mod chains;
mod costs;
mod envoy_ffi;
mod failure_policy;
mod grpc;
mod layers;
mod malformed;
mod queues_ffi;
mod sdk_filter;
mod stream_semantics;
mod tcp;
