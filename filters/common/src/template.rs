//! The value template language every filter of the toolkit shares: literal
//! text with Envoy-style `%OPERATOR%` substitutions. Parsed once at
//! configure time; rendering is a walk over the pieces.
//!
//! | Operator | Value |
//! |---|---|
//! | `%REQ(name)%`, `%REQ(a?b)%` | request header (lines joined with `,`); `a?b` falls back to `b`; pseudo-headers too: `%REQ(:method)%`, `%REQ(:authority)%`, `%REQ(:path)%` |
//! | `%RESP(name)%` | response header (response side only) |
//! | `%QUERY_PARAM(name)%` | raw value of a query parameter |
//! | `%PATH%` | request path without its query |
//! | `%DOWNSTREAM_REMOTE_ADDRESS%` | client `ip:port` (`source.address`) |
//! | `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%` | client IP |
//! | `%ROUTE_NAME%` | `xds.route_name` |
//! | `%START_TIME%`, `%START_TIME(%s)%` | when the filter saw the request: RFC 3339 UTC with milliseconds, or Unix seconds |
//! | `%RESPONSE_CODE%` | response status (response side only) |
//! | `%BODY(/pointer)%` | a field of the request's JSON body by JSON Pointer (a string as its text, other values as compact JSON; see [`crate::body`]); nothing when the body was not read, is not JSON, lacks the field, or the field's text holds a control character (it could not be a header value) |
//! | `%%` | a literal `%` |
//!
//! `:N` after an operator (`%REQ(x-id):8%`) keeps at most N bytes. A missing
//! value renders as nothing.

use std::fmt::Write as _;

use crate::body::Selection;
use crate::config::{Fields, Problems, check_header_name, check_header_value, join, kind};
use filter_proxy::headers::HeaderMap;
use filter_proxy::request::{Host, Request, strip_port};

/// Where a template is rendered; response-only operators are refused on the
/// request side at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    RequestHeader(Vec<String>),
    ResponseHeader(Vec<String>),
    QueryParam(String),
    Path,
    ClientAddress,
    ClientIp,
    RouteName,
    StartTime,
    StartSeconds,
    ResponseCode,
    Body(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Value { value: Value, max: Option<usize> },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a template is rendered against.
#[derive(Debug)]
pub struct Vars<'a, H> {
    pub request: &'a Request<H>,
    /// The response headers, on the response side (read as received).
    pub response: Option<&'a HeaderMap>,
}

impl Template {
    /// Parses `source`; the error names the byte offset of the problem.
    pub fn parse(source: &str, side: Side) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut rest = source;
        while let Some(i) = rest.find('%') {
            text.extend_from_slice(rest.get(..i).unwrap_or_default().as_bytes());
            let offset = source.len() - rest.len() + i;
            let after = rest.get(i + 1..).unwrap_or_default();
            if let Some(tail) = after.strip_prefix('%') {
                text.push(b'%');
                rest = tail;
                continue;
            }
            let (piece, tail) =
                operator(after, side).map_err(|e| format!("at byte {offset}: {e}"))?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(piece);
            rest = tail;
        }
        text.extend_from_slice(rest.as_bytes());
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }

    /// Parses the template at `at`, reporting a bad one there.
    pub fn decode(source: &str, at: &str, side: Side, problems: &mut Problems) -> Option<Self> {
        match Self::parse(source, side) {
            Ok(t) => Some(t),
            Err(e) => {
                problems.push(at, format!("bad template: {e}"));
                None
            }
        }
    }

    /// The required member `key` as a template for a header value (no
    /// control characters).
    pub fn decode_field(
        f: &Fields<'_>,
        key: &str,
        side: Side,
        problems: &mut Problems,
    ) -> Option<Self> {
        let source = f.required_string(key, problems)?;
        let at = f.at(key);
        check_header_value(source, &at, problems);
        Self::decode(source, &at, side, problems)
    }

    /// The optional member `key`: an object of header names to value
    /// templates, in order.
    pub fn decode_header_map(
        f: &Fields<'_>,
        key: &str,
        side: Side,
        problems: &mut Problems,
    ) -> Vec<(String, Self)> {
        let mut headers = Vec::new();
        let Some(value) = f.value(key) else {
            return headers;
        };
        let at = f.at(key);
        let Some(map) = value.as_object() else {
            problems.push(&at, "expected an object of header names to values");
            return headers;
        };
        for (name, value) in map {
            let here = join(&at, &name);
            check_header_name(name, &here, problems);
            let Some(source) = value.as_str() else {
                problems.push(&here, format!("expected a string, found {}", kind(value)));
                continue;
            };
            check_header_value(source, &here, problems);
            if let Some(t) = Self::decode(source, &here, side, problems) {
                headers.push((name.clone(), t));
            }
        }
        headers
    }

    /// Adds the request body fields it reads (`%BODY(...)%`) to `read`.
    pub fn body_fields(&self, read: &mut Selection) {
        for piece in &self.pieces {
            if let Piece::Value {
                value: Value::Body(pointer),
                ..
            } = piece
            {
                read.add(pointer);
            }
        }
    }

    /// The text when the template has no operator.
    pub fn literal(&self) -> Option<&[u8]> {
        match self.pieces.as_slice() {
            [] => Some(&[]),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    pub fn render<H: Host>(&self, vars: &Vars<'_, H>) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Value { value, max } => {
                    let mut v = evaluate(value, vars).unwrap_or_default();
                    if let Some(max) = max {
                        v.truncate(*max);
                    }
                    out.extend_from_slice(&v);
                }
            }
        }
        out
    }
}

/// Parses one operator after its opening `%`; returns it and the rest.
fn operator(s: &str, side: Side) -> Result<(Piece, &str), String> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .unwrap_or(s.len());
    // `split_at_checked`: a panicking split would link core's slice-error
    // report and its Debug formatting (4 KB) into the module.
    let (name, mut rest) = s.split_at_checked(name_len).unwrap_or((s, ""));
    if name.is_empty() {
        return Err(
            "a `%` starts an operator such as %REQ(name)%; write `%%` for a literal `%`".into(),
        );
    }
    let mut arg = None;
    if let Some(inner) = rest.strip_prefix('(') {
        let close = inner
            .find(')')
            .ok_or_else(|| format!("`%{name}(` is not closed with `)`"))?;
        arg = Some(inner.get(..close).unwrap_or_default());
        rest = inner.get(close + 1..).unwrap_or_default();
    }
    let mut max = None;
    if let Some(digits) = rest.strip_prefix(':') {
        let len = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        let n = digits
            .get(..len)
            .and_then(|d| d.parse::<usize>().ok())
            .ok_or_else(|| format!("`%{name}...:` needs a length in digits"))?;
        max = Some(n);
        rest = digits.get(len..).unwrap_or_default();
    }
    let rest = rest
        .strip_prefix('%')
        .ok_or_else(|| format!("operator `%{name}` is not closed with `%`"))?;
    let value = value(name, arg, side)?;
    Ok((Piece::Value { value, max }, rest))
}

fn value(name: &str, arg: Option<&str>, side: Side) -> Result<Value, String> {
    let needs_arg = |what: &str| -> Result<&str, String> {
        match arg {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(format!("`%{name}(...)%` needs {what}")),
        }
    };
    let no_arg = |v: Value| -> Result<Value, String> {
        match arg {
            None => Ok(v),
            Some(_) => Err(format!("`%{name}%` takes no argument")),
        }
    };
    let response_only = |v: Value| -> Result<Value, String> {
        match side {
            Side::Response => Ok(v),
            Side::Request => Err(format!("`%{name}%` is only available on the response side")),
        }
    };
    let header_names = |a: &str| -> Result<Vec<String>, String> {
        let names: Vec<String> = a.split('?').map(str::to_ascii_lowercase).collect();
        if names.iter().any(String::is_empty) || names.len() > 2 {
            return Err(format!(
                "`%{name}({a})%`: write one header name, or two as `a?b`"
            ));
        }
        Ok(names)
    };
    match name {
        "REQ" => Ok(Value::RequestHeader(header_names(needs_arg(
            "a header name",
        )?)?)),
        "RESP" => response_only(Value::ResponseHeader(header_names(needs_arg(
            "a header name",
        )?)?)),
        "QUERY_PARAM" => Ok(Value::QueryParam(needs_arg("a parameter name")?.to_owned())),
        "PATH" => no_arg(Value::Path),
        "DOWNSTREAM_REMOTE_ADDRESS" => no_arg(Value::ClientAddress),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => no_arg(Value::ClientIp),
        "ROUTE_NAME" => no_arg(Value::RouteName),
        "START_TIME" => match arg {
            None => Ok(Value::StartTime),
            Some("%s") => Ok(Value::StartSeconds),
            Some(other) => Err(format!(
                "`%START_TIME({other})%`: the formats are `%START_TIME%` (RFC 3339) and `%START_TIME(%s)%` (Unix seconds)"
            )),
        },
        "RESPONSE_CODE" => response_only(no_arg(Value::ResponseCode)?),
        "BODY" => {
            let pointer = needs_arg("a JSON Pointer such as /model")?;
            match crate::body::pointer_problem(pointer) {
                Some(problem) => Err(problem),
                None => Ok(Value::Body(pointer.to_owned())),
            }
        }
        other => Err(format!(
            "unknown operator `%{other}%` (known: REQ, RESP, QUERY_PARAM, PATH, DOWNSTREAM_REMOTE_ADDRESS, \
             DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT, ROUTE_NAME, START_TIME, RESPONSE_CODE, BODY)"
        )),
    }
}

fn evaluate<H: Host>(value: &Value, vars: &Vars<'_, H>) -> Option<Vec<u8>> {
    let request = vars.request;
    match value {
        Value::RequestHeader(names) => names.iter().find_map(|n| request.headers.get(n)),
        Value::ResponseHeader(names) => {
            let response = vars.response?;
            names.iter().find_map(|n| response.get_as_read(n))
        }
        Value::QueryParam(name) => request.query_param(name).map(<[u8]>::to_vec),
        Value::Path => Some(request.path().to_vec()),
        Value::ClientAddress => request.client_address().map(<[u8]>::to_vec),
        Value::ClientIp => request.client_address().map(|a| {
            let ip = strip_port(a);
            // `[::1]` → `::1`, as Envoy prints an IPv6 address without port.
            ip.strip_prefix(b"[")
                .and_then(|i| i.strip_suffix(b"]"))
                .unwrap_or(ip)
                .to_vec()
        }),
        Value::RouteName => request.route_name().map(<[u8]>::to_vec),
        Value::StartTime => Some(rfc3339_millis(request.start_nanos()).into_bytes()),
        Value::StartSeconds => Some(
            (request.start_nanos() / 1_000_000_000)
                .to_string()
                .into_bytes(),
        ),
        Value::ResponseCode => vars.response?.get_as_read(":status"),
        Value::Body(pointer) => request
            .body_field(pointer)
            .filter(|v| !v.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f))
            .map(std::borrow::Cow::into_owned),
    }
}

/// `2026-11-21T09:30:00.123Z` (Envoy's default `%START_TIME%` format).
pub fn rfc3339_millis(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let millis = (nanos / 1_000_000) % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_proxy::request::TableHost;

    fn request() -> Request<TableHost> {
        let headers = HeaderMap::new(vec![
            (":method".into(), b"POST".to_vec()),
            (":path".into(), b"/orders/7?id=42&x".to_vec()),
            (":authority".into(), b"shop.example:8080".to_vec()),
            ("x-user".into(), b"ada".to_vec()),
            ("x-multi".into(), b"a".to_vec()),
            ("x-multi".into(), b"b".to_vec()),
        ]);
        let host = TableHost {
            now_nanos: 1_763_717_400_123_456_789,
            ..TableHost::default()
        }
        .with("source.address", "10.0.0.7:5555")
        .with("xds.route_name", "orders");
        Request::new(headers, host)
    }

    fn render(src: &str, side: Side, response: Option<&HeaderMap>) -> String {
        let t = Template::parse(src, side).unwrap();
        let request = request();
        String::from_utf8(t.render(&Vars {
            request: &request,
            response,
        }))
        .unwrap()
    }

    #[test]
    fn operators_render_their_values() {
        let cases = [
            ("user=%REQ(x-user)%", "user=ada"),
            ("%REQ(X-User)%", "ada"),
            ("%REQ(x-none?x-user)%", "ada"),
            ("[%REQ(x-none)%]", "[]"),
            ("%REQ(x-multi)%", "a,b"),
            (
                "%REQ(:method)% %REQ(:authority)% %REQ(:path)%",
                "POST shop.example:8080 /orders/7?id=42&x",
            ),
            (
                "%QUERY_PARAM(id)%/%QUERY_PARAM(x)%/%QUERY_PARAM(y)%",
                "42//",
            ),
            ("%PATH%", "/orders/7"),
            (
                "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                "10.0.0.7:5555 10.0.0.7",
            ),
            ("%ROUTE_NAME%", "orders"),
            ("%START_TIME%", "2025-11-21T09:30:00.123Z"),
            ("%START_TIME(%s)%", "1763717400"),
            ("100%% sure", "100% sure"),
            ("%REQ(x-user):2%", "ad"),
            ("plain", "plain"),
            ("", ""),
        ];
        for (src, want) in cases {
            assert_eq!(render(src, Side::Request, None), want, "{src}");
        }
    }

    #[test]
    fn response_side_operators() {
        let response = HeaderMap::new(vec![
            (":status".into(), b"404".to_vec()),
            ("etag".into(), b"v1".to_vec()),
        ]);
        assert_eq!(
            render(
                "%RESPONSE_CODE% %RESP(etag)% %REQ(x-user)%",
                Side::Response,
                Some(&response)
            ),
            "404 v1 ada"
        );
    }

    #[test]
    fn bad_templates_say_what_and_where() {
        let cases = [
            ("%NOPE%", "unknown operator"),
            ("a %REQ(x", "not closed with `)`"),
            ("%REQ(x)", "not closed with `%`"),
            ("%REQ()%", "needs a header name"),
            ("%PATH(x)%", "takes no argument"),
            ("%RESP(x)%", "only available on the response side"),
            ("%RESPONSE_CODE%", "only available on the response side"),
            ("%START_TIME(%Y)%", "the formats are"),
            ("50% off", "write `%%`"),
            ("%REQ(x):%", "needs a length"),
            ("%REQ(a?b?c)%", "two as `a?b`"),
        ];
        for (src, want) in cases {
            let err = Template::parse(src, Side::Request).unwrap_err();
            assert!(err.contains(want), "{src}: {err}");
            assert!(err.starts_with("at byte "), "{err}");
        }
    }

    #[test]
    fn body_fields_render_as_text_or_compact_json_and_never_as_control_bytes() {
        let mut r = request();
        let t = |src: &str| Template::parse(src, Side::Request).unwrap();
        let read = |t: &Template| {
            let mut read = Selection::default();
            t.body_fields(&mut read);
            read
        };
        let model: Selection = ["/model"].into_iter().collect();
        assert_eq!(read(&t("%BODY(/model)%")), model);
        assert!(read(&t("%REQ(x-user)%")).is_empty());
        fn vars<H>(request: &Request<H>) -> Vars<'_, H> {
            Vars {
                request,
                response: None,
            }
        }
        assert_eq!(t("[%BODY(/model)%]").render(&vars(&r)), b"[]", "not read");
        r.set_body(Box::new(crate::body::JsonBody::parse(
            br#"{"model": "gpt-x", "n": 2, "o": {"a": [true]}, "bad": "a\r\nx-evil: 1", "tab": "a\tb"}"#,
        )));
        for (src, want) in [
            ("%BODY(/model)%", "gpt-x"),
            ("%BODY(/n)%/%BODY(/o)%", r#"2/{"a":[true]}"#),
            ("%BODY(/o/a/0)%", "true"),
            ("[%BODY(/bad)%]", "[]"),
            ("%BODY(/tab)%", "a\tb"),
            ("%BODY(/model):3%", "gpt"),
            ("[%BODY(/none)%]", "[]"),
        ] {
            assert_eq!(
                String::from_utf8(t(src).render(&vars(&r))).unwrap(),
                want,
                "{src}"
            );
        }
        for (src, error) in [
            ("%BODY%", "needs a JSON Pointer"),
            ("%BODY(model)%", "starts with `/`"),
        ] {
            let e = Template::parse(src, Side::Request).unwrap_err();
            assert!(e.contains(error), "{src}: {e}");
        }
    }

    #[test]
    fn literal_templates_are_recognised() {
        assert_eq!(
            Template::parse("a%%b", Side::Request).unwrap().literal(),
            Some(&b"a%b"[..])
        );
        assert_eq!(
            Template::parse("%PATH%", Side::Request).unwrap().literal(),
            None
        );
    }

    #[test]
    fn dates_convert_across_leap_years() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_millis(4_107_542_399_999_000_000),
            "2100-02-28T23:59:59.999Z"
        );
    }
}
