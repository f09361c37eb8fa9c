//! What a filter costs its host: the crossings between host and module,
//! counted per stream and per callback, and an estimate of what they cost in
//! Envoy 1.40's V8.
//!
//! In Envoy most of a proxy-wasm filter's time is spent crossing between
//! Envoy and V8 (each callback in, each host call out, and each value a host
//! call returns, which calls back into the module to allocate it), not in the
//! module's own code (docs/performance.md, "Host calls in Envoy"). So the
//! count of crossings is what tells a filter author, in a unit test, that a
//! change made the filter slower in Envoy.

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

/// What one callback of one context cost, summed over its invocations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackCosts {
    /// The guest export Envoy called (`proxy_on_request_headers`, ...).
    pub callback: &'static str,
    /// How many times it ran.
    pub invocations: u32,
    /// Host calls the module made while it ran, by ABI function (WASI
    /// functions under their own names), in first-call order.
    pub host_calls: Vec<(&'static str, u32)>,
    /// Bytes the host copied into guest memory (values host calls returned).
    pub bytes_to_guest: u64,
    /// Bytes the host read out of guest memory (keys, values, messages).
    pub bytes_from_guest: u64,
    /// Calls the host made into the module's allocator
    /// (`proxy_on_memory_allocate` or `malloc`) to return a value.
    pub guest_allocations: u32,
}

impl CallbackCosts {
    fn new(callback: &'static str) -> Self {
        Self {
            callback,
            ..Self::default()
        }
    }

    /// Host calls of every function.
    pub fn host_call_count(&self) -> u32 {
        self.host_calls.iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, other: &Self) {
        self.invocations += other.invocations;
        for &(function, n) in &other.host_calls {
            *count_slot(&mut self.host_calls, function) += n;
        }
        self.bytes_to_guest += other.bytes_to_guest;
        self.bytes_from_guest += other.bytes_from_guest;
        self.guest_allocations += other.guest_allocations;
    }
}

/// The cost of a stream (or of a VM's root context) in one filter: one entry
/// per callback that ran, in the order each first ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Costs {
    /// Per callback.
    pub callbacks: Vec<CallbackCosts>,
}

impl Costs {
    /// Callbacks the host made into the module (each a crossing into V8).
    pub fn callback_count(&self) -> u32 {
        self.callbacks.iter().map(|c| c.invocations).sum()
    }

    /// Host calls of every function, in every callback.
    pub fn host_call_count(&self) -> u32 {
        self.callbacks
            .iter()
            .map(CallbackCosts::host_call_count)
            .sum()
    }

    /// Host calls of one ABI function, in every callback.
    pub fn host_calls_to(&self, function: &str) -> u32 {
        self.callbacks
            .iter()
            .flat_map(|c| &c.host_calls)
            .filter(|(name, _)| *name == function)
            .map(|(_, n)| n)
            .sum()
    }

    /// Host calls per ABI function, summed over callbacks, in first-call order.
    pub fn host_calls(&self) -> Vec<(&'static str, u32)> {
        let mut all = Vec::new();
        for &(function, n) in self.callbacks.iter().flat_map(|c| &c.host_calls) {
            *count_slot(&mut all, function) += n;
        }
        all
    }

    /// Bytes copied into guest memory.
    pub fn bytes_to_guest(&self) -> u64 {
        self.callbacks.iter().map(|c| c.bytes_to_guest).sum()
    }

    /// Bytes read out of guest memory.
    pub fn bytes_from_guest(&self) -> u64 {
        self.callbacks.iter().map(|c| c.bytes_from_guest).sum()
    }

    /// Calls into the guest allocator.
    pub fn guest_allocations(&self) -> u32 {
        self.callbacks.iter().map(|c| c.guest_allocations).sum()
    }

    /// Crossings between host and module: callbacks, host calls and
    /// allocator calls.
    pub fn crossings(&self) -> u32 {
        self.callback_count() + self.host_call_count() + self.guest_allocations()
    }

    /// What these crossings cost in a host with `model`'s figures.
    pub fn estimate(&self, model: &CostModel) -> Duration {
        let contexts: u32 = self
            .callbacks
            .iter()
            .filter(|c| c.callback == "proxy_on_context_create")
            .map(|c| c.invocations)
            .sum();
        let mut ns = f64::from(self.callback_count()) * model.callback_ns
            + f64::from(contexts) * model.context_ns
            + f64::from(self.guest_allocations()) * model.allocation_ns
            + (self.bytes_to_guest() + self.bytes_from_guest()) as f64 * model.byte_ns;
        for (function, n) in self.host_calls() {
            ns += f64::from(n) * model.host_call_ns(function);
        }
        Duration::from_nanos(ns.round() as u64)
    }

    /// Adds `other` (another stream, or another filter of the chain).
    pub fn add(&mut self, other: &Self) {
        for entry in &other.callbacks {
            self.entry(entry.callback).add(entry);
        }
    }

    fn entry(&mut self, callback: &'static str) -> &mut CallbackCosts {
        let index = match self
            .callbacks
            .iter()
            .position(|c| same(c.callback, callback))
        {
            Some(index) => index,
            None => {
                self.callbacks.push(CallbackCosts::new(callback));
                self.callbacks.len() - 1
            }
        };
        &mut self.callbacks[index]
    }
}

/// One line per callback: `proxy_on_request_headers x1: 2 host calls
/// (proxy_get_header_map_pairs 1, proxy_add_header_map_value 1), 412 B in,
/// 18 B out, 1 allocation`.
impl fmt::Display for Costs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.callbacks.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{} x{}: {} host call{}",
                c.callback,
                c.invocations,
                c.host_call_count(),
                plural(c.host_call_count())
            )?;
            if !c.host_calls.is_empty() {
                f.write_str(" (")?;
                for (j, (function, n)) in c.host_calls.iter().enumerate() {
                    let sep = if j > 0 { ", " } else { "" };
                    write!(f, "{sep}{function} {n}")?;
                }
                f.write_str(")")?;
            }
            write!(
                f,
                ", {} B to the guest, {} B from it, {} allocation{}",
                c.bytes_to_guest,
                c.bytes_from_guest,
                c.guest_allocations,
                plural(c.guest_allocations)
            )?;
        }
        Ok(())
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What each crossing costs in a host, in nanoseconds.
///
/// [`CostModel::envoy_1_40`] holds the figures measured in Envoy 1.40's V8
/// with `cargo xtask bench-envoy --only 'cost-*'` (docs/performance.md,
/// "Host calls in Envoy"); a test can build its own for another host.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CostModel {
    /// One callback into the module (a stream's callbacks each cross once).
    pub callback_ns: f64,
    /// One context created and deleted besides its callbacks (Envoy's
    /// filter and context objects), per `proxy_on_context_create`.
    pub context_ns: f64,
    /// One host call of a function `host_call_ns` does not list.
    pub default_host_call_ns: f64,
    /// Host calls with their own figure.
    pub host_call_ns: Vec<(&'static str, f64)>,
    /// One call into the guest allocator.
    pub allocation_ns: f64,
    /// One byte copied either way.
    pub byte_ns: f64,
}

impl CostModel {
    /// Envoy 1.40 (V8, one worker), from `cargo xtask bench-envoy
    /// --host-calls` on a 2-core AMD EPYC VM (docs/performance.md, "Host
    /// calls in Envoy"): host calls are the mean of three runs, callbacks
    /// and contexts from twenty filters on one stream. A value-returning
    /// call's figure includes the allocation it makes in the module and the
    /// copy (0.5–1.2 µs of its cost), so allocations and bytes are not
    /// priced again.
    pub fn envoy_1_40() -> Self {
        Self {
            callback_ns: 170.0,
            context_ns: 460.0,
            // Unmeasured calls that return nothing are priced like a
            // header replace.
            default_host_call_ns: 180.0,
            host_call_ns: vec![
                ("proxy_get_header_map_value", 710.0),
                ("proxy_get_header_map_pairs", 1_340.0),
                ("proxy_replace_header_map_value", 180.0),
                ("proxy_add_header_map_value", 180.0),
                ("proxy_remove_header_map_value", 80.0),
                ("proxy_get_property", 830.0),
                ("proxy_increment_metric", 50.0),
                ("proxy_log", 50.0),
                ("proxy_get_log_level", 50.0),
                ("proxy_get_current_time_nanoseconds", 80.0),
                ("proxy_call_foreign_function", 420.0),
            ],
            allocation_ns: 0.0,
            byte_ns: 0.0,
        }
    }

    /// The figure for one call of `function`.
    pub fn host_call_ns(&self, function: &str) -> f64 {
        self.host_call_ns
            .iter()
            .find(|(name, _)| *name == function)
            .map_or(self.default_host_call_ns, |(_, ns)| *ns)
    }
}

// ---- counting, host side ----------------------------------------------------

thread_local! {
    /// Bytes read out of guest memory on this thread. Host functions read
    /// guest memory through `host::slice`, a free function over memory
    /// borrowed apart from the host state; a VM's calls all run on the
    /// thread that called into it, so the difference across a callback is
    /// that callback's reads.
    static BYTES_FROM_GUEST: Cell<u64> = const { Cell::new(0) };
}

/// Counts `len` bytes read out of guest memory.
pub(crate) fn note_guest_read(len: usize) {
    BYTES_FROM_GUEST.with(|c| c.set(c.get().wrapping_add(len as u64)));
}

fn guest_reads() -> u64 {
    BYTES_FROM_GUEST.with(Cell::get)
}

/// The running callback's counts, kept by the VM's host state.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    current: CallbackCosts,
    reads_mark: u64,
}

impl Meter {
    /// A callback starts.
    pub(crate) fn begin(&mut self, callback: &'static str) {
        // Reset in place: the host-call list keeps its capacity, so a
        // callback allocates nothing to be counted.
        let current = &mut self.current;
        current.callback = callback;
        current.invocations = 1;
        current.host_calls.clear();
        current.bytes_to_guest = 0;
        current.bytes_from_guest = 0;
        current.guest_allocations = 0;
        self.reads_mark = guest_reads();
    }

    pub(crate) fn host_call(&mut self, function: &'static str) {
        *count_slot(&mut self.current.host_calls, function) += 1;
    }

    pub(crate) fn copied_to_guest(&mut self, len: usize) {
        self.current.bytes_to_guest += len as u64;
    }

    pub(crate) fn allocation(&mut self) {
        self.current.guest_allocations += 1;
    }

    /// The callback returned: its counts, added to `into`.
    pub(crate) fn end(&mut self, into: &mut Costs) {
        self.current.bytes_from_guest = guest_reads().wrapping_sub(self.reads_mark);
        into.entry(self.current.callback).add(&self.current);
    }
}

/// Names are the same literal almost always; compare the text otherwise.
fn same(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

fn count_slot<'a>(counts: &'a mut Vec<(&'static str, u32)>, name: &'static str) -> &'a mut u32 {
    let index = match counts.iter().position(|(n, _)| same(n, name)) {
        Some(index) => index,
        None => {
            counts.push((name, 0));
            counts.len() - 1
        }
    };
    &mut counts[index].1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_adds_each_invocation_into_its_callback() {
        let mut costs = Costs::default();
        let mut meter = Meter::default();
        for _ in 0..2 {
            meter.begin("proxy_on_request_headers");
            meter.host_call("proxy_get_header_map_value");
            meter.host_call("proxy_get_header_map_value");
            meter.copied_to_guest(5);
            meter.allocation();
            note_guest_read(7);
            meter.end(&mut costs);
        }
        meter.begin("proxy_on_log");
        meter.end(&mut costs);
        assert_eq!(costs.callback_count(), 3);
        assert_eq!(costs.host_calls_to("proxy_get_header_map_value"), 4);
        assert_eq!(costs.host_call_count(), 4);
        assert_eq!(costs.bytes_to_guest(), 10);
        assert_eq!(costs.bytes_from_guest(), 14);
        assert_eq!(costs.guest_allocations(), 2);
        assert_eq!(costs.crossings(), 3 + 4 + 2);
        assert_eq!(
            costs.to_string(),
            "proxy_on_request_headers x2: 4 host calls (proxy_get_header_map_value 4), \
             10 B to the guest, 14 B from it, 2 allocations\n\
             proxy_on_log x1: 0 host calls, 0 B to the guest, 0 B from it, 0 allocations"
        );
    }

    #[test]
    fn the_estimate_prices_each_crossing() {
        let mut costs = Costs::default();
        let mut meter = Meter::default();
        meter.begin("proxy_on_request_headers");
        meter.host_call("proxy_log");
        meter.host_call("proxy_done");
        meter.allocation();
        meter.end(&mut costs);
        let model = CostModel {
            callback_ns: 1000.0,
            context_ns: 5.0,
            default_host_call_ns: 10.0,
            host_call_ns: vec![("proxy_log", 100.0)],
            allocation_ns: 1.0,
            byte_ns: 0.0,
        };
        assert_eq!(costs.estimate(&model), Duration::from_nanos(1111));
    }
}
