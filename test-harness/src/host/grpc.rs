//! gRPC callouts: linked so every SDK module instantiates, but not emulated
//! yet. Each call answers UNIMPLEMENTED and records a harness error that
//! fails the test (never a silent success).

use wasmtime::{Caller, Linker};

use super::{Host, unimplemented};

type Ret = wasmtime::Result<i32>;

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_grpc_call",
        |mut c: Caller<'_, Host>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Ret { unimplemented(&mut c, "proxy_grpc_call") },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_stream",
        |mut c: Caller<'_, Host>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32|
         -> Ret { unimplemented(&mut c, "proxy_grpc_stream") },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut c: Caller<'_, Host>, _: i32, _: i32, _: i32, _: i32| -> Ret {
            unimplemented(&mut c, "proxy_grpc_send")
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |mut c: Caller<'_, Host>, _: i32| -> Ret { unimplemented(&mut c, "proxy_grpc_cancel") },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |mut c: Caller<'_, Host>, _: i32| -> Ret { unimplemented(&mut c, "proxy_grpc_close") },
    )?;
    Ok(())
}
