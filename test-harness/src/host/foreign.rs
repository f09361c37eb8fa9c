//! `proxy_call_foreign_function` and the foreign functions Envoy registers
//! (`source/extensions/common/wasm/foreign.cc`): `clear_route_cache`,
//! `set_envoy_filter_state`, `declare_property`, `compress`, `uncompress`,
//! `verify_signature` (in `crypto`).
//! A test may register its own under any name (`PluginBuilder::foreign_function`),
//! which takes precedence.

use wasmtime::{Caller, Linker};

use super::{Host, Ret, place, read, split, unimplemented, write_u32};
use crate::abi::Status;

/// Keys of the filter-state object factories Envoy 1.40 registers that build
/// their object from a string, with how each one checks its value. A key
/// without a factory is NOT_FOUND (`Context::setEnvoyFilterState`).
const ENVOY_OBJECT_FACTORIES: &[(&str, ValueCheck)] = &[
    ("envoy.string", ValueCheck::Any),
    ("envoy.tcp_proxy.cluster", ValueCheck::Any),
    ("envoy.network.upstream_server_name", ValueCheck::Any),
    ("envoy.network.application_protocols", ValueCheck::Any),
    ("envoy.network.upstream_subject_alt_names", ValueCheck::Any),
    ("envoy.upstream.dynamic_host", ValueCheck::Any),
    ("envoy.upstream.dynamic_port", ValueCheck::Port),
    (
        "envoy.network.transport_socket.original_dst_address",
        ValueCheck::SocketAddress,
    ),
];

#[derive(Clone, Copy, Debug)]
enum ValueCheck {
    Any,
    Port,
    SocketAddress,
}

impl ValueCheck {
    fn accepts(self, value: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Port => value.parse::<u32>().is_ok_and(|p| p <= 65535),
            Self::SocketAddress => value.parse::<std::net::SocketAddr>().is_ok(),
        }
    }
}

/// A property declared with `declare_property`: Envoy's `CelStatePrototype`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeclaredProperty {
    /// A read-only property can be set once per stream.
    pub(crate) readonly: bool,
}

pub(super) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    register!(linker, proxy_call_foreign_function);
    Ok(())
}

fn proxy_call_foreign_function(
    mut caller: Caller<'_, Host>,
    name_ptr: i32,
    name_len: i32,
    args_ptr: i32,
    args_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let (Some(name), Some(args)) = (
        read(&mut caller, name_ptr, name_len),
        read(&mut caller, args_ptr, args_len),
    ) else {
        return Ok(Status::InvalidMemoryAccess.code());
    };
    let registered = caller
        .data()
        .settings
        .foreign_functions
        .get(String::from_utf8_lossy(&name).as_ref())
        .cloned();
    if let Some(function) = registered {
        return write_results(&mut caller, (function.0)(&args), ret_ptr, ret_len);
    }
    let answer = match name.as_slice() {
        b"clear_route_cache" => {
            caller.data_mut().route_cache_clears += 1;
            Ok(Vec::new())
        }
        b"set_envoy_filter_state" => set_envoy_filter_state(caller.data_mut(), &args),
        b"declare_property" => declare_property(caller.data_mut(), &args),
        b"compress" => Ok(miniz_oxide::deflate::compress_to_vec_zlib(&args, 6)),
        b"uncompress" => miniz_oxide::inflate::decompress_to_vec_zlib(&args)
            .map_err(|_| Status::SerializationFailure),
        b"verify_signature" => super::crypto::verify_signature(&args),
        b"sign" => match super::crypto::sign(&args) {
            Err(Status::Unimplemented) => {
                return unimplemented(
                    &mut caller,
                    "proxy_call_foreign_function(\"sign\") with a P-521 key",
                );
            }
            answer => answer,
        },
        b"expr_create" | b"expr_evaluate" | b"expr_delete" => {
            let function = format!(
                "proxy_call_foreign_function(\"{}\")",
                String::from_utf8_lossy(&name)
            );
            return unimplemented(&mut caller, &function);
        }
        // No such function: cpp-host answers before touching the out-pointers.
        _ => return Ok(Status::NotFound.code()),
    };
    write_results(&mut caller, answer, ret_ptr, ret_len)
}

/// As cpp-host's `call_foreign_function` after a registered function ran,
/// whatever its status: the results are allocated in the guest only when
/// there are some and the plugin passed a results pointer (else the host
/// keeps them), then the address (0 when nothing was allocated) and the
/// size are written to each out-pointer that is not null.
fn write_results(
    caller: &mut Caller<'_, Host>,
    answer: Result<Vec<u8>, Status>,
    ret_ptr: i32,
    ret_len: i32,
) -> Ret {
    let (status, results) = match answer {
        Ok(results) => (Status::Ok, results),
        Err(status) => (status, Vec::new()),
    };
    let address = if ret_ptr == 0 {
        0
    } else {
        match place(caller, &results)? {
            Some(address) => address,
            None => return Ok(Status::InvalidMemoryAccess.code()),
        }
    };
    let Some((mem, _)) = split(caller) else {
        return Ok(Status::InvalidMemoryAccess.code());
    };
    if (ret_ptr != 0 && !write_u32(mem, ret_ptr, address))
        || (ret_len != 0 && !write_u32(mem, ret_len, results.len() as u32))
    {
        return Ok(Status::InvalidMemoryAccess.code());
    }
    Ok(status.code())
}

/// `SetEnvoyFilterStateArguments { string path = 1; string value = 2;
/// LifeSpan span = 3; }`: an object for a registered factory, stored in the
/// stream's filter state.
fn set_envoy_filter_state(host: &mut Host, args: &[u8]) -> Result<Vec<u8>, Status> {
    let fields = decode_message(args).ok_or(Status::BadArgument)?;
    let path = string_field(&fields, 1)?;
    let value = string_field(&fields, 2)?;
    let check = ENVOY_OBJECT_FACTORIES
        .iter()
        .find(|(key, _)| *key == path)
        .map(|(_, check)| *check)
        .or_else(|| {
            host.settings
                .filter_state_keys
                .contains(&path)
                .then_some(ValueCheck::Any)
        })
        .ok_or(Status::NotFound)?;
    if !check.accepts(&value) {
        return Err(Status::BadArgument);
    }
    let (_, stream) = host.stream_mut().ok_or(Status::NotFound)?;
    stream
        .filter_state
        .write()
        .objects
        .insert(path, value.into_bytes());
    Ok(Vec::new())
}

/// `DeclarePropertyArguments { string name = 1; bool readonly = 2;
/// WasmType type = 3; bytes schema = 4; LifeSpan span = 5; }`. Envoy keeps
/// declarations on the calling context and reads them from the root context
/// when a property is set, so only root-context declarations take effect
/// (the harness answers OK to others and keeps nothing). Declaring a name
/// twice is BAD_ARGUMENT.
fn declare_property(host: &mut Host, args: &[u8]) -> Result<Vec<u8>, Status> {
    let fields = decode_message(args).ok_or(Status::BadArgument)?;
    let name = string_field(&fields, 1)?;
    let readonly = fields
        .iter()
        .rev()
        .find_map(|(n, v)| match (n, v) {
            (2, Field::Varint(v)) => Some(*v != 0),
            _ => None,
        })
        .unwrap_or(false);
    if host.context() != host.root_id {
        // Stored on a stream context, a declaration never takes effect.
        return Ok(Vec::new());
    }
    let key = name.replace('.', "\0").into_bytes();
    if host.declared_properties.contains_key(&key) {
        return Err(Status::BadArgument);
    }
    host.declared_properties
        .insert(key, DeclaredProperty { readonly });
    Ok(Vec::new())
}

#[derive(Debug)]
pub(super) enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// A protobuf message's fields (varint, 64-bit, length-delimited, 32-bit
/// wire types), or `None` when it does not parse, as `ParseFromString`.
/// Read field by field rather than through prost (which the auth filter
/// uses to write these messages): C++'s parser, which Envoy runs, keeps a
/// field whose wire type does not match its declaration as an unknown
/// field and parses on, where prost refuses the message.
pub(super) fn decode_message(mut bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let field = match key & 7 {
            0 => Field::Varint(varint(&mut bytes)?),
            1 => Field::Bytes(take(&mut bytes, 8)?),
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                Field::Bytes(take(&mut bytes, len)?)
            }
            5 => Field::Bytes(take(&mut bytes, 4)?),
            _ => return None,
        };
        fields.push((number, field));
    }
    Some(fields)
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if bytes.len() < len {
        return None;
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Some(head)
}

/// The last value of a bytes field (absent = empty).
pub(super) fn bytes_field<'a>(fields: &[(u64, Field<'a>)], number: u64) -> &'a [u8] {
    fields
        .iter()
        .rev()
        .find_map(|(n, f)| match f {
            Field::Bytes(b) if *n == number => Some(*b),
            _ => None,
        })
        .unwrap_or_default()
}

/// The last value of a string field (proto3: last one wins; absent = "").
/// A string that is not UTF-8 fails the parse, as in C++ proto3.
pub(super) fn string_field(fields: &[(u64, Field<'_>)], number: u64) -> Result<String, Status> {
    let raw = fields
        .iter()
        .rev()
        .find_map(|(n, f)| match f {
            Field::Bytes(b) if *n == number => Some(*b),
            _ => None,
        })
        .unwrap_or_default();
    String::from_utf8(raw.to_vec()).map_err(|_| Status::BadArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fields_and_rejects_truncation() {
        // path = "a", value = "bc", span = 1
        let msg = [0x0a, 1, b'a', 0x12, 2, b'b', b'c', 0x18, 1];
        let fields = decode_message(&msg).expect("parses");
        assert_eq!(string_field(&fields, 1).ok().as_deref(), Some("a"));
        assert_eq!(string_field(&fields, 2).ok().as_deref(), Some("bc"));
        assert!(matches!(fields[2], (3, Field::Varint(1))));
        assert!(decode_message(&msg[..5]).is_none());
        assert!(decode_message(&[0x0b]).is_none(), "group wire type");
        assert!(decode_message(&[0x00, 0x01]).is_none(), "field 0");
    }
}
