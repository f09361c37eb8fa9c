//! Header maps as Envoy keeps them, and the proxy-wasm pairs encoding.

use std::fmt;

/// Largest pairs buffer Envoy decodes (cpp-host `limits.h`).
const MAX_PAIRS_BYTES: usize = 1 << 20;
/// Most pairs Envoy decodes from one buffer (cpp-host `limits.h`).
const MAX_PAIRS: usize = 1024;

/// An ordered multi-map of header names to values, with Envoy's rules: names
/// are lower-cased, pseudo-headers (`:path`, ...) stay ahead of the others,
/// repeated names keep every value and lookups return the first.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`, if present and valid UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name.as_bytes())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as bytes.
    pub fn get_bytes(&self, name: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in order.
    pub fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get_bytes(name.as_bytes()).is_some()
    }

    /// Number of entries (a repeated name counts once per value).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Adds a value, keeping existing ones (Envoy `addCopy`). A pseudo-header
    /// goes after the last pseudo-header, as in Envoy's header list.
    pub fn add(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let name = name.as_ref().to_ascii_lowercase();
        let value = value.as_ref().to_vec();
        if name.first() == Some(&b':') {
            let at = self
                .entries
                .iter()
                .position(|(k, _)| k.first() != Some(&b':'))
                .unwrap_or(self.entries.len());
            self.entries.insert(at, (name, value));
        } else {
            self.entries.push((name, value));
        }
    }

    /// Sets `name` to one value: every existing value is removed and the new
    /// one added at the end (Envoy's `setCopy`, which with
    /// `http_set_copy_replace_all_headers`, on by default, is remove +
    /// `addCopy`; measured in Envoy 1.40).
    pub fn replace(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let name = name.as_ref();
        self.remove(name);
        self.add(name, value);
    }

    /// Removes every value of `name`.
    pub fn remove(&mut self, name: impl AsRef<[u8]>) {
        let name = name.as_ref();
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// The proxy-wasm pairs encoding of this map.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_pairs(self.iter())
    }

    /// The sum of every name's and value's length: what Envoy's
    /// `HeaderMap::byteSize` answers to `proxy_get_header_map_size`.
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in iter {
            map.add(k, v);
        }
        map
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>, const N: usize> From<[(K, V); N]> for HeaderMap {
    fn from(pairs: [(K, V); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> From<&[(K, V)]> for HeaderMap {
    fn from(pairs: &[(K, V)]) -> Self {
        pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> From<Vec<(K, V)>> for HeaderMap {
    fn from(pairs: Vec<(K, V)>) -> Self {
        pairs.into_iter().collect()
    }
}

impl fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Encodes pairs as proxy-wasm does: `u32 count`, `count × (u32 key_len,
/// u32 value_len)`, then `count × (key, NUL, value, NUL)`, little-endian.
pub(crate) fn encode_pairs<'a>(
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Vec<u8> {
    let (count, size) = pairs.clone().fold((0u32, 4usize), |(n, s), (k, v)| {
        (n + 1, s + 8 + k.len() + v.len() + 2)
    });
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&count.to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Decodes a pairs buffer the way Envoy does: anything malformed (over 1 MiB,
/// over 1024 pairs, a length that over-reads, a missing NUL, trailing bytes)
/// decodes to an empty list rather than an error.
pub(crate) fn decode_pairs(buf: &[u8]) -> Vec<(&[u8], &[u8])> {
    decode_pairs_checked(buf).unwrap_or_default()
}

fn decode_pairs_checked(buf: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if buf.len() > MAX_PAIRS_BYTES {
        return None;
    }
    let count = read_u32(buf, 0)? as usize;
    if count > MAX_PAIRS {
        return None;
    }
    let mut sizes_at = 4usize;
    let mut data_at = 4usize.checked_add(count.checked_mul(8)?)?;
    if data_at > buf.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = read_u32(buf, sizes_at)? as usize;
        let value_len = read_u32(buf, sizes_at + 4)? as usize;
        sizes_at += 8;
        let key = buf.get(data_at..data_at.checked_add(key_len)?)?;
        data_at += key_len;
        if buf.get(data_at) != Some(&0) {
            return None;
        }
        data_at += 1;
        let value = buf.get(data_at..data_at.checked_add(value_len)?)?;
        data_at += value_len;
        if buf.get(data_at) != Some(&0) {
            return None;
        }
        data_at += 1;
        pairs.push((key, value));
    }
    (data_at == buf.len()).then_some(pairs)
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example `{"a":"1"}, {"b":"22"}`, byte for byte.
    const SERIALIZED: &[u8] = &[
        2, 0, 0, 0, // count
        1, 0, 0, 0, 1, 0, 0, 0, // len("a"), len("1")
        1, 0, 0, 0, 2, 0, 0, 0, // len("b"), len("22")
        b'a', 0, b'1', 0, // "a", "1"
        b'b', 0, b'2', b'2', 0, // "b", "22"
    ];

    #[test]
    fn encodes_the_spec_example() {
        let map = HeaderMap::from([("a", "1"), ("b", "22")]);
        assert_eq!(map.encode(), SERIALIZED);
        assert_eq!(map.byte_size(), 5);
    }

    #[test]
    fn decodes_the_spec_example() {
        let pairs = decode_pairs(SERIALIZED);
        assert_eq!(pairs, vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"22"[..])]);
    }

    #[test]
    fn malformed_buffers_decode_to_nothing() {
        let mut trailing = SERIALIZED.to_vec();
        trailing.push(7);
        let mut no_nul = SERIALIZED.to_vec();
        no_nul[21] = b'x';
        let mut too_many = SERIALIZED.to_vec();
        too_many[..4].copy_from_slice(&2000u32.to_le_bytes());
        let over_read = &SERIALIZED[..SERIALIZED.len() - 1];
        for bad in [&trailing[..], &no_nul, &too_many, over_read, &[1, 0], &[]] {
            assert!(decode_pairs(bad).is_empty(), "{bad:?}");
        }
        assert!(decode_pairs(&vec![0u8; MAX_PAIRS_BYTES + 1]).is_empty());
    }

    #[test]
    fn an_empty_map_is_a_zero_count() {
        assert_eq!(decode_pairs(&[0, 0, 0, 0]), vec![]);
        assert_eq!(HeaderMap::new().encode(), vec![0, 0, 0, 0]);
    }

    #[test]
    fn names_are_lower_cased_and_pseudo_headers_lead() {
        let mut map = HeaderMap::from([("Host", "a"), ("X-A", "1")]);
        map.add(":Path", "/");
        map.add("x-a", "2");
        let names: Vec<_> = map
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(names, [":path", "host", "x-a", "x-a"]);
        assert_eq!(map.get("X-A"), Some("1"));
        assert_eq!(map.get_all("x-a"), vec![&b"1"[..], &b"2"[..]]);
    }

    #[test]
    fn replace_removes_every_value_and_appends_one() {
        let mut map = HeaderMap::from([("a", "1"), ("b", "2"), ("a", "3")]);
        map.replace("A", "9");
        assert_eq!(map, HeaderMap::from([("b", "2"), ("a", "9")]));
        assert_eq!(map.byte_size(), 4);
        map.replace("c", "4");
        assert_eq!(map.get("c"), Some("4"));
        map.remove("a");
        assert_eq!(map, HeaderMap::from([("b", "2"), ("c", "4")]));
        map.replace(":path", "/x");
        assert_eq!(map.iter().next(), Some((&b":path"[..], &b"/x"[..])));
    }
}
