//! Base64url without padding (RFC 7515 §2), strict: padding, characters
//! outside the URL-safe alphabet, an impossible length and non-zero
//! trailing bits are all refused, so one token has exactly one encoding.

fn value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    }))
}

/// Decodes `text`, or `None` when it is not canonical base64url.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        match chunk.len() {
            4 => {
                let [_, a, b, c] = acc.to_be_bytes();
                out.extend([a, b, c]);
            }
            3 => {
                // 18 bits: 2 bytes and 2 bits that must be zero.
                if acc & 0b11 != 0 {
                    return None;
                }
                let [_, _, a, b] = (acc >> 2).to_be_bytes();
                out.extend([a, b]);
            }
            2 => {
                // 12 bits: 1 byte and 4 bits that must be zero.
                if acc & 0b1111 != 0 {
                    return None;
                }
                out.push((acc >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Encodes `bytes` without padding (for forwarding a payload).
pub fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            acc |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            let index = ((acc >> (18 - 6 * i)) & 63) as usize;
            if let Some(&c) = ALPHABET.get(index) {
                out.push(char::from(c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for n in 0..40 {
            let encoded = encode(&data[..n]);
            assert!(!encoded.contains('='));
            assert_eq!(decode(encoded.as_bytes()).as_deref(), Some(&data[..n]));
        }
        assert_eq!(encode(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn refuses_what_is_not_canonical() {
        for bad in ["YQ==", "YQ=", "a", "Y+8", "Y/8", "YR", "YWJ", "Y Q", "Yé"] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(decode(b"YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode(b"YWI").as_deref(), Some(&b"ab"[..]));
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
    }
}
