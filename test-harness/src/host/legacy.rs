//! Host functions Envoy still registers for ABI 0.1.0 modules, and two
//! Emscripten helpers it links for every module.

use wasmtime::{Caller, Linker};

use super::{Host, Phase, Ret, copy_out, lifecycle::continue_http};
use crate::abi::Status;
use crate::stream_state::Direction;

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(
        linker,
        proxy_get_configuration,
        proxy_continue_request,
        proxy_continue_response,
        proxy_clear_route_cache,
    );
    linker.func_wrap(
        "env",
        "pthread_equal",
        |_: Caller<'_, Host>, a: i32, b: i32| -> i32 { i32::from(a == b) },
    )?;
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_: Caller<'_, Host>, _: i32| {},
    )?;
    Ok(())
}

/// 0.1.0's `proxy_continue_request`: 0.2's `proxy_continue_stream` on the
/// request.
fn proxy_continue_request(mut caller: Caller<'_, Host>) -> Ret {
    continue_http(&mut caller, Direction::Request)
}

/// 0.1.0's `proxy_continue_response`.
fn proxy_continue_response(mut caller: Caller<'_, Host>) -> Ret {
    continue_http(&mut caller, Direction::Response)
}

/// 0.1.0's route-cache clear (0.2 has the `clear_route_cache` foreign
/// function).
fn proxy_clear_route_cache(mut caller: Caller<'_, Host>) -> Ret {
    caller.data_mut().route_cache_clears += 1;
    Ok(Status::Ok.code())
}

/// 0.1.0's configuration read: the VM configuration from `proxy_on_vm_start`,
/// the plugin configuration from `proxy_on_configure`.
fn proxy_get_configuration(mut caller: Caller<'_, Host>, ret_ptr: i32, ret_len: i32) -> Ret {
    let host = caller.data();
    let value = match host.phase {
        Phase::Configure => host.settings.configuration.clone(),
        _ => host.settings.vm_configuration.clone(),
    };
    Ok(copy_out(&mut caller, &value, ret_ptr, ret_len)?.code())
}
