//! The WASI preview1 functions Envoy registers, under both `wasi_unstable`
//! and `wasi_snapshot_preview1`: stdout/stderr become logs, clocks follow the
//! virtual clock, randomness comes from the VM's seeded generator, the
//! environment is the VM configuration's, and file, socket and process calls
//! answer as Envoy's stubs do.

use rand_core::RngCore;
use wasmtime::{Caller, Linker};

use super::{Host, Ret, slice, split, write_bytes, write_u32, write_u64};
use crate::abi::{LogLevel, RESTRICTABLE_WASI, errno};

/// Whether `name` is a restrictable WASI function outside the plugin's
/// capability restriction (then recorded; Envoy's stub answers
/// `ENOTCAPABLE` and logs the attempt in its own log).
fn restricted(caller: &mut Caller<'_, Host>, name: &'static str) -> bool {
    RESTRICTABLE_WASI.contains(&name) && super::restricted(caller, name)
}

/// Envoy refuses to fill more than 64 KiB of randomness at once.
const MAX_RANDOM_BYTES: usize = 64 * 1024;

macro_rules! stub {
    ($linker:expr, $module:expr, $name:literal, ($($t:ty),*), $errno:expr) => {
        $linker.func_wrap($module, $name, |mut c: Caller<'_, Host>, $(_: $t),*| -> Ret {
            c.data_mut().meter.host_call($name);
            if restricted(&mut c, $name) {
                return Ok(errno::NOTCAPABLE);
            }
            Ok($errno)
        })?;
    };
}

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        linker.func_wrap(module, "fd_write", fd_write)?;
        linker.func_wrap(module, "fd_fdstat_get", fd_fdstat_get)?;
        linker.func_wrap(module, "environ_get", environ_get)?;
        linker.func_wrap(module, "environ_sizes_get", environ_sizes_get)?;
        linker.func_wrap(module, "args_sizes_get", args_sizes_get)?;
        linker.func_wrap(module, "clock_time_get", clock_time_get)?;
        linker.func_wrap(module, "random_get", random_get)?;
        linker.func_wrap(module, "proc_exit", proc_exit)?;
        linker.func_wrap(
            module,
            "fd_seek",
            |mut c: Caller<'_, Host>, _: i32, _: i64, _: i32, _: i32| -> Ret {
                c.data_mut().meter.host_call("fd_seek");
                if restricted(&mut c, "fd_seek") {
                    return Ok(errno::NOTCAPABLE);
                }
                c.data_mut().log(LogLevel::Error, b"wasi_unstable fd_seek");
                Ok(errno::SUCCESS)
            },
        )?;
        linker.func_wrap(
            module,
            "fd_close",
            |mut c: Caller<'_, Host>, _: i32| -> Ret {
                c.data_mut().meter.host_call("fd_close");
                if restricted(&mut c, "fd_close") {
                    return Ok(errno::NOTCAPABLE);
                }
                c.data_mut().log(LogLevel::Error, b"wasi_unstable fd_close");
                Ok(errno::SUCCESS)
            },
        )?;
        stub!(linker, module, "args_get", (i32, i32), errno::SUCCESS);
        stub!(linker, module, "sched_yield", (), errno::SUCCESS);
        stub!(
            linker,
            module,
            "fd_read",
            (i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_open",
            (i32, i32, i32, i32, i32, i64, i64, i32, i32),
            errno::NOENT
        );
        stub!(linker, module, "fd_prestat_get", (i32, i32), errno::BADF);
        stub!(
            linker,
            module,
            "fd_prestat_dir_name",
            (i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "fd_fdstat_set_flags",
            (i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "fd_fdstat_set_rights",
            (i32, i64, i64),
            errno::NOSYS
        );
        stub!(linker, module, "clock_res_get", (i32, i32), errno::NOSYS);
        stub!(
            linker,
            module,
            "fd_advise",
            (i32, i64, i64, i32),
            errno::NOSYS
        );
        stub!(linker, module, "fd_allocate", (i32, i64, i64), errno::NOSYS);
        stub!(linker, module, "fd_datasync", (i32), errno::NOSYS);
        stub!(linker, module, "fd_filestat_get", (i32, i32), errno::NOSYS);
        stub!(
            linker,
            module,
            "fd_filestat_set_size",
            (i32, i64),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "fd_filestat_set_times",
            (i32, i64, i64, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "fd_pread",
            (i32, i32, i32, i64, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "fd_pwrite",
            (i32, i32, i32, i64, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "fd_readdir",
            (i32, i32, i32, i64, i32),
            errno::NOSYS
        );
        stub!(linker, module, "fd_renumber", (i32, i32), errno::NOSYS);
        stub!(linker, module, "fd_sync", (i32), errno::NOSYS);
        stub!(linker, module, "fd_tell", (i32, i32), errno::NOSYS);
        stub!(
            linker,
            module,
            "path_create_directory",
            (i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_filestat_get",
            (i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_filestat_set_times",
            (i32, i32, i32, i32, i64, i64, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_link",
            (i32, i32, i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_readlink",
            (i32, i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_remove_directory",
            (i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_rename",
            (i32, i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_symlink",
            (i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "path_unlink_file",
            (i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "poll_oneoff",
            (i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(linker, module, "sock_accept", (i32, i32, i32), errno::NOSYS);
        stub!(
            linker,
            module,
            "sock_recv",
            (i32, i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(
            linker,
            module,
            "sock_send",
            (i32, i32, i32, i32, i32),
            errno::NOSYS
        );
        stub!(linker, module, "sock_shutdown", (i32, i32), errno::NOSYS);
    }
    Ok(())
}

/// stdout (fd 1) logs at info, stderr (fd 2) at error, one entry per call
/// with one trailing newline removed, as Envoy does; other fds are BADF.
fn fd_write(mut caller: Caller<'_, Host>, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) -> Ret {
    caller.data_mut().meter.host_call("fd_write");
    if restricted(&mut caller, "fd_write") {
        return Ok(errno::NOTCAPABLE);
    }
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return Ok(errno::BADF),
    };
    let Some((mem, host)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    let mut text = Vec::new();
    for i in 0..iovs_len as u32 {
        let Some(iov) = (i.checked_mul(8))
            .and_then(|off| (iovs as u32).checked_add(off))
            .and_then(|at| slice(mem, at as i32, 8))
        else {
            return Ok(errno::FAULT);
        };
        let buf = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        if len != 0 {
            let Some(bytes) = slice(mem, buf, len) else {
                return Ok(errno::FAULT);
            };
            text.extend_from_slice(bytes);
        }
    }
    let written = text.len() as u32;
    if !text.is_empty() {
        let message = text.strip_suffix(b"\n").unwrap_or(&text);
        host.log(level, message);
    }
    Ok(if write_u32(mem, nwritten, written) {
        errno::SUCCESS
    } else {
        errno::FAULT
    })
}

fn fd_fdstat_get(mut caller: Caller<'_, Host>, fd: i32, stat: i32) -> Ret {
    caller.data_mut().meter.host_call("fd_fdstat_get");
    if restricted(&mut caller, "fd_fdstat_get") {
        return Ok(errno::NOTCAPABLE);
    }
    if fd != 1 && fd != 2 {
        return Ok(errno::BADF);
    }
    let Some((mem, _)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    // A character device with only the fd_write right (64), as Envoy reports.
    let mut fdstat = [0u8; 24];
    fdstat[8..16].copy_from_slice(&64u64.to_le_bytes());
    Ok(if write_bytes(mem, stat, &fdstat) {
        errno::SUCCESS
    } else {
        errno::FAULT
    })
}

fn environ_sizes_get(mut caller: Caller<'_, Host>, count_ptr: i32, size_ptr: i32) -> Ret {
    caller.data_mut().meter.host_call("environ_sizes_get");
    if restricted(&mut caller, "environ_sizes_get") {
        return Ok(errno::NOTCAPABLE);
    }
    let Some((mem, host)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    let env = &host.settings.environment;
    let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let ok = write_u32(mem, count_ptr, env.len() as u32) && write_u32(mem, size_ptr, size as u32);
    Ok(if ok { errno::SUCCESS } else { errno::FAULT })
}

fn environ_get(mut caller: Caller<'_, Host>, array_ptr: i32, buf_ptr: i32) -> Ret {
    caller.data_mut().meter.host_call("environ_get");
    if restricted(&mut caller, "environ_get") {
        return Ok(errno::NOTCAPABLE);
    }
    let Some((mem, host)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    let (mut entry, mut at) = (array_ptr as u32, buf_ptr as u32);
    for (key, value) in &host.settings.environment {
        let text = format!("{key}={value}\0");
        if !write_u32(mem, entry as i32, at) || !write_bytes(mem, at as i32, text.as_bytes()) {
            return Ok(errno::FAULT);
        }
        entry = entry.wrapping_add(4);
        at = at.wrapping_add(text.len() as u32);
    }
    Ok(errno::SUCCESS)
}

fn args_sizes_get(mut caller: Caller<'_, Host>, argc: i32, size: i32) -> Ret {
    caller.data_mut().meter.host_call("args_sizes_get");
    if restricted(&mut caller, "args_sizes_get") {
        return Ok(errno::NOTCAPABLE);
    }
    let Some((mem, _)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    Ok(if write_u32(mem, argc, 0) && write_u32(mem, size, 0) {
        errno::SUCCESS
    } else {
        errno::FAULT
    })
}

fn clock_time_get(mut caller: Caller<'_, Host>, clock: i32, _precision: i64, ret: i32) -> Ret {
    caller.data_mut().meter.host_call("clock_time_get");
    if restricted(&mut caller, "clock_time_get") {
        return Ok(errno::NOTCAPABLE);
    }
    let Some((mem, host)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    let now = match clock {
        0 => host.clock.realtime_ns,
        1 => host.clock.monotonic_ns,
        _ => return Ok(errno::NOTSUP),
    };
    Ok(if write_u64(mem, ret, now) {
        errno::SUCCESS
    } else {
        errno::FAULT
    })
}

fn random_get(mut caller: Caller<'_, Host>, buf: i32, len: i32) -> Ret {
    caller.data_mut().meter.host_call("random_get");
    if restricted(&mut caller, "random_get") {
        return Ok(errno::NOTCAPABLE);
    }
    let len = len as u32 as usize;
    if len > MAX_RANDOM_BYTES {
        return Ok(errno::INVAL);
    }
    let Some((mem, host)) = split(&mut caller) else {
        return Ok(errno::FAULT);
    };
    let start = buf as u32 as usize;
    let Some(dst) = start
        .checked_add(len)
        .and_then(|end| mem.get_mut(start..end))
    else {
        return Ok(errno::FAULT);
    };
    host.rng.fill_bytes(dst);
    Ok(errno::SUCCESS)
}

/// Envoy only logs `proc_exit`; the guest then usually traps on its own.
fn proc_exit(mut caller: Caller<'_, Host>, code: i32) {
    caller.data_mut().meter.host_call("proc_exit");
    if restricted(&mut caller, "proc_exit") {
        return;
    }
    let message = format!("wasi proc_exit({code})");
    caller.data_mut().log(LogLevel::Error, message.as_bytes());
}
