//! Bytes as text, invalid UTF-8 replaced by U+FFFD.
//!
//! Why not `String::from_utf8_lossy`: its chunk iterator is about 1 KB in a
//! module; this gives the same text (checked against it in the tests) with
//! the validator every module already links.

use std::borrow::Cow;

/// `bytes` as text, each invalid sequence replaced by U+FFFD; borrowed when
/// `bytes` is valid UTF-8, as `String::from_utf8_lossy` does.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(replace_invalid(bytes)),
    }
}

fn replace_invalid(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at_checked(e.valid_up_to()).unwrap_or_default();
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                out.push(char::REPLACEMENT_CHARACTER);
                let skip = e.error_len().unwrap_or(rest.len());
                bytes = rest.get(skip..).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_as_std() {
        for bytes in [
            &b"ok"[..],
            b"a\xffb",
            b"\xe2\x82",
            b"x\xe2\x82y\xf0\x9f\x98\x80\xc0\xaf",
            b"",
            b"\xed\xa0\x80z",
        ] {
            assert_eq!(lossy(bytes), String::from_utf8_lossy(bytes), "{bytes:?}");
        }
        assert!(matches!(lossy(b"valid"), Cow::Borrowed("valid")));
    }
}
