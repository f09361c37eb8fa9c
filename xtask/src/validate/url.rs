//! The Kubernetes CEL URL library's parser (`isURL`, `url(...)`,
//! `getScheme()`), which is Go's `url.ParseRequestURI`, for the WasmPlugin
//! `url` rule.
//! Only what decides that rule is modelled: control bytes, the scheme, a
//! request URI's need for a scheme or a leading `/`, the authority's
//! user-info, host and port characters, and percent escapes.

/// The lower-cased scheme when Go's `url.ParseRequestURI` accepts `raw`.
pub(crate) fn parse_request_uri(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    if raw == "*" {
        return Some(String::new());
    }
    let (scheme, rest) = split_scheme(raw)?;
    // The query is not validated by ParseRequestURI beyond its split.
    let rest = rest.split_once('?').map_or(rest, |(before, _)| before);
    if !rest.starts_with('/') {
        // `scheme:opaque` parses; a relative path is no request URI.
        return (!scheme.is_empty()).then_some(scheme);
    }
    let path = if let (false, Some(after)) = (scheme.is_empty(), rest.strip_prefix("//")) {
        let (authority, path) = after
            .find('/')
            .map_or((after, ""), |at| (&after[..at], &after[at..]));
        if !valid_authority(authority) {
            return None;
        }
        path
    } else {
        rest
    };
    valid_escapes(path).then_some(scheme)
}

/// Go's `getScheme`: letters, then letters, digits, `+ - .` up to `:`.
fn split_scheme(raw: &str) -> Option<(String, &str)> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return None, // "missing protocol scheme"
            ':' => return Some((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            _ => return Some((String::new(), raw)),
        }
    }
    Some((String::new(), raw))
}

fn valid_authority(authority: &str) -> bool {
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let ok = userinfo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b) || b >= 0x80);
        if !ok || !valid_escapes(userinfo) {
            return false;
        }
    }
    valid_host(host)
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return false;
        };
        (&v6[..end], &v6[end + 1..])
    } else {
        match host.rfind(':') {
            Some(at) => (&host[..at], &host[at..]),
            None => (host, ""),
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = name
        .bytes()
        .all(|b| b >= 0x80 || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]<>\"%".contains(&b));
    port_ok && name_ok && valid_escapes(name)
}

/// Every `%` starts a two-digit hex escape.
fn valid_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_case_insensitive_and_a_leading_colon_is_no_scheme() {
        assert_eq!(parse_request_uri("OCI://r/i").as_deref(), Some("oci"));
        assert_eq!(parse_request_uri(":x"), None);
        assert_eq!(parse_request_uri("relative/path"), None);
    }
}
