//! An in-memory header map. A filter reads the host's map once, changes this
//! copy, then writes back only what changed ([`HeaderMap::changes`]): one
//! host call to read, and one per changed name to write, whatever the rules
//! did between.

/// Header lines in order; names lower-case as the host delivers them,
/// values as bytes (a value need not be UTF-8).
///
/// Lines point into one byte buffer: the host's serialized map as read
/// (taken whole, not copied line by line), then every name and value
/// written since. Reading a map and dropping it cost one allocation each
/// instead of two per line, which in wasm is most of a small filter's work.
///
/// The map also remembers, for each name it changes, that name's lines as
/// they were read, so the writes back are found without copying the whole
/// map first. The buffer only grows, so those lines are kept as ranges of
/// it, not copies.
#[derive(Clone, Default)]
pub struct HeaderMap {
    bytes: Vec<u8>,
    lines: Vec<Line>,
    /// Each changed name with its values as read (ranges of `bytes`), in
    /// order of first change.
    as_read: Vec<(String, Vec<(usize, usize)>)>,
}

/// A line's name and value as byte ranges of [`HeaderMap::bytes`].
#[derive(Debug, Clone, Copy)]
struct Line {
    name: (usize, usize),
    value: (usize, usize),
}

/// A field's lines joined with `,` (RFC 9110 §5.3); `None` for no line.
fn joined<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut out = values.next()?.to_vec();
    for v in values {
        out.push(b',');
        out.extend_from_slice(v);
    }
    Some(out)
}

/// Whether `line` (of a map holding `bytes`) is named `name`.
fn named(bytes: &[u8], line: &Line, name: &str) -> bool {
    let (start, len) = line.name;
    len == name.len() && bytes.get(start..start.saturating_add(len)) == Some(name.as_bytes())
}

/// Maps are equal when their lines are; how they got there does not count.
impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl std::fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(k, v)| (k, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl HeaderMap {
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> Self {
        let mut map = Self::default();
        for (name, value) in &entries {
            map.push(name, value);
        }
        map
    }

    /// A map from the ABI's serialization (the answer to
    /// `proxy_get_header_map_pairs`): a count, a (name size, value size)
    /// pair per line, then each name and value followed by a NUL. Lines
    /// past a malformed size are dropped; a name that is not UTF-8 (hosts
    /// refuse those) is kept lossily converted.
    pub fn from_serialized(bytes: Vec<u8>) -> Self {
        let word = |at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        let count = word(0).unwrap_or(0);
        let mut lines = Vec::with_capacity(count.min(bytes.len() / 8));
        let mut lossy = Vec::new();
        let mut at = count.saturating_mul(8).saturating_add(4);
        for i in 0..count {
            let sizes = i
                .checked_mul(8)
                .and_then(|o| Some((word(o.checked_add(4)?)?, word(o.checked_add(8)?)?)));
            let Some((name_len, value_len)) = sizes else {
                break;
            };
            let name = (at, name_len);
            let value = (at.saturating_add(name_len).saturating_add(1), value_len);
            let end = value.0.saturating_add(value_len).saturating_add(1);
            if end > bytes.len() {
                break;
            }
            at = end;
            match bytes
                .get(name.0..name.0.saturating_add(name.1))
                .map(std::str::from_utf8)
            {
                Some(Ok(_)) => lines.push(Line { name, value }),
                _ => lossy.push((i, name, value)),
            }
        }
        let mut map = Self {
            bytes,
            lines,
            as_read: Vec::new(),
        };
        // Rare: convert and append, then put each line back in its place.
        for (i, name, value) in lossy {
            let text = String::from_utf8_lossy(map.slice(name)).into_owned();
            let line = Line {
                name: map.append(text.as_bytes()),
                value,
            };
            let at = i.min(map.lines.len());
            map.lines.insert(at, line);
        }
        map
    }

    fn slice(&self, (start, len): (usize, usize)) -> &[u8] {
        self.bytes
            .get(start..start.saturating_add(len))
            .unwrap_or_default()
    }

    fn append(&mut self, data: &[u8]) -> (usize, usize) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        (start, data.len())
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        let line = Line {
            name: self.append(name.as_bytes()),
            value: self.append(value),
        };
        self.lines.push(line);
    }

    fn name_of(&self, line: &Line) -> &str {
        std::str::from_utf8(self.slice(line.name)).unwrap_or_default()
    }

    fn is(&self, line: &Line, name: &str) -> bool {
        named(&self.bytes, line, name)
    }

    /// Every line as (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.lines
            .iter()
            .map(|line| (self.name_of(line), self.slice(line.value)))
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn into_entries(self) -> Vec<(String, Vec<u8>)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_vec()))
            .collect()
    }

    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        self.lines
            .iter()
            .find(|line| self.is(line, name))
            .map(|line| self.slice(line.value))
    }

    /// Every value of `name`, in order.
    pub fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.lines
            .iter()
            .filter(move |line| self.is(line, name))
            .map(|line| self.slice(line.value))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lines.iter().any(|line| self.is(line, name))
    }

    /// The field value of `name`: its lines joined with `,` (RFC 9110
    /// §5.3), or `None` when absent.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        joined(self.values(name))
    }

    /// Records `name`'s lines as read before its first change.
    fn touch(&mut self, name: &str) {
        if !self.as_read.iter().any(|(n, _)| n == name) {
            let lines = self
                .lines
                .iter()
                .filter(|line| self.is(line, name))
                .map(|line| line.value)
                .collect();
            self.as_read.push((name.to_owned(), lines));
        }
    }

    /// `name`'s values as read, when this map changed it.
    fn values_as_read<'a>(&'a self, name: &str) -> Option<impl Iterator<Item = &'a [u8]>> {
        let (_, lines) = self.as_read.iter().find(|(n, _)| n == name)?;
        Some(lines.iter().map(|range| self.slice(*range)))
    }

    /// The field value of `name` as read, before any change this map made:
    /// what response-side templates see.
    pub fn get_as_read(&self, name: &str) -> Option<Vec<u8>> {
        match self.values_as_read(name) {
            Some(values) => joined(values),
            None => self.get(name),
        }
    }

    /// Replaces every line of `name` with one line holding `value`, in the
    /// position of the first line (or at the end).
    pub fn set(&mut self, name: &str, value: &[u8]) {
        self.touch(name);
        match self.lines.iter().position(|line| self.is(line, name)) {
            Some(first) => {
                let value = self.append(value);
                if let Some(line) = self.lines.get_mut(first) {
                    line.value = value;
                }
                let later = self.lines.get(first + 1..).unwrap_or_default();
                if later.iter().any(|line| self.is(line, name)) {
                    let bytes = &self.bytes;
                    let mut i = 0;
                    self.lines.retain(|line| {
                        let keep = i <= first || !named(bytes, line, name);
                        i += 1;
                        keep
                    });
                }
            }
            None => self.push(name, value),
        }
    }

    /// Adds a line.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.touch(name);
        self.push(name, value);
    }

    /// Removes every line of `name`; returns the removed values.
    pub fn remove(&mut self, name: &str) -> Vec<Vec<u8>> {
        if !self.contains(name) {
            return Vec::new();
        }
        self.touch(name);
        let removed = self.values(name).map(<[u8]>::to_vec).collect();
        let bytes = &self.bytes;
        self.lines.retain(|line| !named(bytes, line, name));
        removed
    }

    /// Keeps the lines for which `keep(name, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        let mut dropped = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            if !keep(self.name_of(line), self.slice(line.value)) {
                dropped.push(i);
            }
        }
        for &i in &dropped {
            if let Some(name) = self.lines.get(i).map(|line| self.name_of(line).to_owned()) {
                self.touch(&name);
            }
        }
        let mut i = 0;
        let mut next = dropped.iter().peekable();
        self.lines.retain(|_| {
            let drop = next.next_if_eq(&&i).is_some();
            i += 1;
            !drop
        });
    }

    /// Replaces the values of `name` with `values` (none removes it).
    pub fn replace_all(&mut self, name: &str, values: Vec<Vec<u8>>) {
        self.remove(name);
        for v in &values {
            self.add(name, v);
        }
    }
}

/// One write to the host's map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Remove every line of the name.
    Remove(String),
    /// Replace the name's single line (or add it).
    Replace(String, Vec<u8>),
    /// Add a line.
    Add(String, Vec<u8>),
}

impl HeaderMap {
    /// The fewest writes that turn the map as read into this one, name by
    /// name, in the order the names now appear (removed names last). A
    /// name whose lines ended as they were read costs nothing; a single line
    /// becomes one replace; anything multi-valued is removed and added again,
    /// so the result does not depend on how a host's replace treats repeated
    /// lines.
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        if self.as_read.is_empty() {
            return out;
        }
        // Changed names by where they now first appear; removed ones last,
        // in the order they were changed.
        let mut placed = vec![false; self.as_read.len()];
        let mut order = Vec::with_capacity(self.as_read.len());
        for line in &self.lines {
            let changed = self.as_read.iter().position(|(n, _)| self.is(line, n));
            if let Some(i) = changed
                && let Some(seen) = placed.get_mut(i)
                && !*seen
            {
                *seen = true;
                order.push(i);
            }
        }
        order.extend((0..placed.len()).filter(|i| placed.get(*i) == Some(&false)));
        for (name, old) in order.into_iter().filter_map(|i| self.as_read.get(i)) {
            let new: Vec<&[u8]> = self.values(name).collect();
            if old
                .iter()
                .map(|range| self.slice(*range))
                .eq(new.iter().copied())
            {
                continue;
            }
            match (old.len(), new.as_slice()) {
                (_, []) => out.push(Change::Remove(name.to_owned())),
                (0 | 1, [one]) => out.push(Change::Replace(name.to_owned(), one.to_vec())),
                (0, many) => {
                    out.extend(
                        many.iter()
                            .map(|v| Change::Add(name.to_owned(), v.to_vec())),
                    );
                }
                (_, many) => {
                    out.push(Change::Remove(name.to_owned()));
                    out.extend(
                        many.iter()
                            .map(|v| Change::Add(name.to_owned(), v.to_vec())),
                    );
                }
            }
        }
        out
    }
}

/// Whether `value` can be a header field value as Envoy sends it (RFC 9110
/// §5.5): visible characters, spaces, tabs and obs-text; never CR, LF, NUL or
/// another control character, which Envoy answers with 503 after the filters
/// ran, or which would split the line.
pub fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// The ABI's serialization of `pairs`.
    fn serialized(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let len = |n: usize| u32::try_from(n).unwrap().to_le_bytes();
        let mut out = len(pairs.len()).to_vec();
        for (k, v) in pairs {
            out.extend(len(k.len()));
            out.extend(len(v.len()));
        }
        for (k, v) in pairs {
            out.extend(*k);
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn a_serialized_map_reads_in_order_and_a_malformed_one_safely() {
        let pairs: [(&[u8], &[u8]); 3] = [(b":path", b"/a"), (b"x", b"\xff\x00v"), (b"x", b"")];
        let m = HeaderMap::from_serialized(serialized(&pairs));
        let lines: Vec<(&str, &[u8])> = m.iter().collect();
        assert_eq!(
            lines,
            [(":path", &b"/a"[..]), ("x", b"\xff\x00v"), ("x", b"")]
        );
        assert_eq!(m.first("x"), Some(&b"\xff\x00v"[..]));
        // A name that is not UTF-8 keeps its place, converted.
        let odd =
            HeaderMap::from_serialized(serialized(&[(b"a", b"1"), (b"\xc3(", b"2"), (b"b", b"3")]));
        let names: Vec<&str> = odd.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "\u{fffd}(", "b"]);
        // Truncated anywhere, a huge count, or empty: the lines that fit.
        let whole = serialized(&pairs);
        for cut in 0..whole.len() {
            let m = HeaderMap::from_serialized(whole[..cut].to_vec());
            assert!(m.len() <= 3);
        }
        let mut huge = whole.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMap::from_serialized(huge).len() <= 3);
        assert!(HeaderMap::from_serialized(Vec::new()).is_empty());
    }

    #[test]
    fn set_keeps_the_first_position_and_drops_the_other_lines() {
        let mut m = map(&[("a", "1"), ("b", "2"), ("a", "3")]);
        m.set("a", b"9");
        assert_eq!(m, map(&[("a", "9"), ("b", "2")]));
        m.set("c", b"4");
        assert_eq!(m.get("c").as_deref(), Some(&b"4"[..]));
    }

    #[test]
    fn get_joins_lines_with_commas() {
        let m = map(&[("a", "1"), ("a", "2")]);
        assert_eq!(m.get("a").as_deref(), Some(&b"1,2"[..]));
        assert_eq!(m.get("b"), None);
    }

    #[test]
    fn changes_are_minimal_and_replay_to_the_same_map() {
        let before = map(&[
            ("keep", "k"),
            ("one", "1"),
            ("multi", "a"),
            ("multi", "b"),
            ("gone", "g"),
        ]);
        let mut after = before.clone();
        assert!(after.changes().is_empty());
        after.set("one", b"2");
        after.remove("gone");
        after.remove("multi");
        after.add("multi", b"b");
        after.add("multi", b"c");
        after.add("new", b"n");
        after.add("new", b"m");
        assert_eq!(after.get_as_read("one").as_deref(), Some(&b"1"[..]));
        assert_eq!(after.get_as_read("multi").as_deref(), Some(&b"a,b"[..]));
        assert_eq!(after.get_as_read("new"), None);
        let writes = after.changes();
        assert_eq!(
            writes,
            vec![
                Change::Replace("one".into(), b"2".to_vec()),
                Change::Remove("multi".into()),
                Change::Add("multi".into(), b"b".to_vec()),
                Change::Add("multi".into(), b"c".to_vec()),
                Change::Add("new".into(), b"n".to_vec()),
                Change::Add("new".into(), b"m".to_vec()),
                Change::Remove("gone".into()),
            ]
        );
        // Replaying the writes on the original gives the same lines per name.
        let mut replay = before.clone();
        for w in writes {
            match w {
                Change::Remove(n) => drop(replay.remove(&n)),
                Change::Replace(n, v) => replay.set(&n, &v),
                Change::Add(n, v) => replay.add(&n, &v),
            }
        }
        for name in ["keep", "one", "multi", "gone", "new"] {
            assert_eq!(
                replay.values(name).collect::<Vec<_>>(),
                after.values(name).collect::<Vec<_>>(),
                "{name}"
            );
        }
        // Changing a name back to its lines as read writes nothing.
        let mut back = before.clone();
        back.set("one", b"2");
        back.set("one", b"1");
        back.remove("gone");
        back.add("gone", b"g");
        back.retain(|k, _| k != "keep");
        back.add("keep", b"k");
        assert!(back.changes().is_empty());
    }

    #[test]
    fn retain_drops_only_the_lines_refused_and_remembers_them_as_read() {
        let mut map = map(&[
            ("authorization", "Bearer t"),
            ("x-a", "1"),
            ("authorization", "Basic b"),
            ("x-b", "2"),
            ("x-a", "3"),
        ]);
        let mut seen = Vec::new();
        map.retain(|k, v| {
            seen.push(k.to_owned());
            !(k == "authorization" && v.starts_with(b"Bearer")) && v != b"3"
        });
        assert_eq!(seen.len(), 5, "each line asked once");
        let lines: Vec<_> = map.iter().collect();
        assert_eq!(
            lines,
            vec![
                ("x-a", &b"1"[..]),
                ("authorization", &b"Basic b"[..]),
                ("x-b", &b"2"[..])
            ]
        );
        assert_eq!(
            map.get_as_read("authorization").as_deref(),
            Some(&b"Bearer t,Basic b"[..])
        );
        assert_eq!(
            map.changes(),
            vec![
                Change::Remove("x-a".into()),
                Change::Add("x-a".into(), b"1".to_vec()),
                Change::Remove("authorization".into()),
                Change::Add("authorization".into(), b"Basic b".to_vec()),
            ]
        );
        let untouched = map.clone();
        map.retain(|_, _| true);
        assert_eq!(map.changes(), untouched.changes());
    }
}
