//! Shared queues: registered per vm_id, resolvable from any VM of the
//! runtime, with `proxy_on_queue_ready` sent to the registering VM after the
//! enqueuing call returns (Envoy posts it to that VM's thread).

use wasmtime::{Caller, Linker};

use super::{Deferred, Host, Ret, copy_out, split, status, write_u32};
use crate::abi::Status;

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(
        linker,
        proxy_register_shared_queue,
        proxy_resolve_shared_queue,
        proxy_enqueue_shared_queue,
        proxy_dequeue_shared_queue
    );
    Ok(())
}

/// Registers (or re-opens) the queue `name` of this VM's vm_id; the caller
/// becomes the VM told when items arrive.
fn proxy_register_shared_queue(
    mut caller: Caller<'_, Host>,
    name_ptr: i32,
    name_len: i32,
    token_ptr: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(name) = super::slice(mem, name_ptr, name_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let name = String::from_utf8_lossy(name).into_owned();
    let token = host
        .shared
        .lock_queues()
        .register(&host.settings.vm_id, &name, host.vm_uid);
    status(if write_u32(mem, token_ptr, token) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

fn proxy_resolve_shared_queue(
    mut caller: Caller<'_, Host>,
    vm_id_ptr: i32,
    vm_id_len: i32,
    name_ptr: i32,
    name_len: i32,
    token_ptr: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let (Some(vm_id), Some(name)) = (
        super::slice(mem, vm_id_ptr, vm_id_len),
        super::slice(mem, name_ptr, name_len),
    ) else {
        return status(Status::InvalidMemoryAccess);
    };
    let key = (
        String::from_utf8_lossy(vm_id).into_owned(),
        String::from_utf8_lossy(name).into_owned(),
    );
    let Some(token) = host.shared.lock_queues().resolve(&key.0, &key.1) else {
        return status(Status::NotFound);
    };
    status(if write_u32(mem, token_ptr, token) {
        Status::Ok
    } else {
        Status::InvalidMemoryAccess
    })
}

fn proxy_enqueue_shared_queue(
    mut caller: Caller<'_, Host>,
    token: i32,
    value_ptr: i32,
    value_len: i32,
) -> Ret {
    let Some((mem, host)) = split(&mut caller) else {
        return status(Status::InvalidMemoryAccess);
    };
    let Some(value) = super::slice(mem, value_ptr, value_len) else {
        return status(Status::InvalidMemoryAccess);
    };
    let token = token as u32;
    let owner = host.shared.lock_queues().enqueue(token, value.to_vec());
    match owner {
        None => status(Status::NotFound),
        Some(owner) => {
            if owner == host.vm_uid {
                host.deferred.push(Deferred::QueueReady { token });
            } else {
                host.shared.lock_queues().notify(owner, token);
            }
            status(Status::Ok)
        }
    }
}

fn proxy_dequeue_shared_queue(
    mut caller: Caller<'_, Host>,
    token: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let item = caller.data().shared.lock_queues().dequeue(token as u32);
    match item {
        None => status(Status::NotFound),
        Some(None) => status(Status::Empty),
        Some(Some(value)) => Ok(copy_out(&mut caller, &value, ret_ptr, ret_len)?.code()),
    }
}
