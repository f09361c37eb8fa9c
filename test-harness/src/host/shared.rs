//! Shared key-value data (scoped by vm_id, across VMs) and metrics.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use wasmtime::{Caller, Linker};

use super::{Host, Ret, copy_out, read, split, status, write_u32, write_u64};
use crate::abi::{MetricType, Status};
use crate::process::Metric;

/// The metrics this VM defined, this file's part of the store's state
/// (their values are process-wide, in `SharedState`).
pub(crate) struct Metrics {
    /// id → name.
    pub(crate) ids: HashMap<u32, String>,
    /// The next id of each kind (counter, gauge, histogram; step 4).
    pub(crate) next_ids: [u32; 3],
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            ids: HashMap::new(),
            next_ids: [0, 1, 2],
        }
    }
}

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(
        linker,
        proxy_get_shared_data,
        proxy_set_shared_data,
        proxy_define_metric,
        proxy_increment_metric,
        proxy_record_metric,
        proxy_get_metric
    );
    Ok(())
}

fn proxy_get_shared_data(
    mut caller: Caller<'_, Host>,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> Ret {
    let Some(key) = read(&mut caller, key_ptr, key_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let host = caller.data();
    let entry = host
        .shared
        .lock_data()
        .get(&host.settings.vm_id)
        .and_then(|m| m.get(&key).cloned());
    let Some((value, cas)) = entry else {
        return status(Status::NotFound);
    };
    let copied = copy_out(&mut caller, &value, ret_ptr, ret_len)?;
    if copied != Status::Ok {
        return status(copied);
    }
    let Some((mem, _)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    status(if write_u32(mem, ret_cas, cas) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

/// Envoy's rules: `cas == 0` writes unconditionally; a non-zero `cas` must
/// match the stored one; every write gets a new, never-zero cas.
fn proxy_set_shared_data(
    mut caller: Caller<'_, Host>,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
    cas: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let (Some(key), Some(value)) = (
        super::slice(mem, key_ptr, key_len),
        super::slice(mem, value_ptr, value_len),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let cas = cas as u32;
    let mut data = host.shared.lock_data();
    let map = data.entry(host.settings.vm_id.clone()).or_default();
    if let Some((_, stored)) = map.get(key)
        && cas != 0
        && cas != *stored
    {
        return status(Status::CasMismatch);
    }
    let next = host.shared.next_cas.fetch_add(1, Ordering::Relaxed).max(1);
    map.insert(key.to_vec(), (value.to_vec(), next));
    status(Status::Ok)
}

fn proxy_define_metric(
    mut caller: Caller<'_, Host>,
    metric_type: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> Ret {
    let Some(kind) = MetricType::from_abi(metric_type as u32) else {
        return status(Status::BadArgument);
    };
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(name) = super::slice(mem, name_ptr, name_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let name = String::from_utf8_lossy(name).into_owned();
    // Ids are tagged by type in the low two bits and step by 4, as in Envoy.
    let id = host.metrics.next_ids[kind as usize];
    if !write_u32(mem, ret_id, id) {
        return status(Status::InvalidMemoryAccess);
    }
    host.metrics.next_ids[kind as usize] += 4;
    host.shared
        .lock_metrics()
        .entry(name.clone())
        .or_insert_with(|| match kind {
            MetricType::Counter => Metric::Counter(0),
            MetricType::Gauge => Metric::Gauge(0),
            MetricType::Histogram => Metric::Histogram(Vec::new()),
        });
    host.metrics.ids.insert(id, name);
    status(Status::Ok)
}

fn with_metric(
    caller: &mut Caller<'_, Host>,
    id: i32,
    f: impl FnOnce(&mut Metric) -> Status,
) -> Ret {
    let host = caller.data();
    let Some(name) = host.metrics.ids.get(&(id as u32)) else {
        return status(Status::NotFound);
    };
    let mut metrics = host.shared.lock_metrics();
    match metrics.get_mut(name) {
        Some(metric) => status(f(metric)),
        None => status(Status::NotFound),
    }
}

fn proxy_increment_metric(mut caller: Caller<'_, Host>, id: i32, delta: i64) -> Ret {
    with_metric(&mut caller, id, |m| match m {
        Metric::Counter(v) if delta > 0 => {
            *v = v.wrapping_add(delta as u64);
            Status::Ok
        }
        Metric::Gauge(v) => {
            *v = v.wrapping_add_signed(delta);
            Status::Ok
        }
        _ => Status::BadArgument,
    })
}

fn proxy_record_metric(mut caller: Caller<'_, Host>, id: i32, value: i64) -> Ret {
    let value = value as u64;
    with_metric(&mut caller, id, |m| {
        match m {
            Metric::Counter(v) => *v = v.wrapping_add(value),
            Metric::Gauge(v) => *v = value,
            Metric::Histogram(values) => values.push(value),
        }
        Status::Ok
    })
}

fn proxy_get_metric(mut caller: Caller<'_, Host>, id: i32, ret: i32) -> Ret {
    let mut value = None;
    let result = with_metric(&mut caller, id, |m| match m {
        Metric::Counter(v) | Metric::Gauge(v) => {
            value = Some(*v);
            Status::Ok
        }
        Metric::Histogram(_) => Status::BadArgument,
    })?;
    let Some(value) = value else {
        return Ok(result);
    };
    let Some((mem, _)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    status(if write_u64(mem, ret, value) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}
