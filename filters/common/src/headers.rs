//! An in-memory header map. A filter reads the host's map once, changes this
//! copy, then writes back only what changed ([`HeaderMap::changes`]): one
//! host call to read, and one per changed name to write, whatever the rules
//! did between.

/// Header lines in order; names lower-case as the host delivers them,
/// values as bytes (a value need not be UTF-8).
///
/// The map remembers, for each name it changes, that name's lines as they
/// were read, so the writes back are found without copying the whole map
/// first (a copy and a full diff cost more than the rules in wasm).
#[derive(Debug, Clone, Default)]
pub struct HeaderMap {
    entries: Vec<(String, Vec<u8>)>,
    /// Each changed name with its lines as read, in order of first change.
    as_read: Vec<(String, Vec<Vec<u8>>)>,
}

/// Maps are equal when their lines are; how they got there does not count.
impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for HeaderMap {}

impl HeaderMap {
    pub fn new(entries: Vec<(String, Vec<u8>)>) -> Self {
        Self {
            entries,
            as_read: Vec::new(),
        }
    }

    /// Records `name`'s lines as read before its first change.
    fn touch(&mut self, name: &str) {
        if !self.as_read.iter().any(|(n, _)| n == name) {
            let lines = self.values(name).map(<[u8]>::to_vec).collect();
            self.as_read.push((name.to_owned(), lines));
        }
    }

    fn lines_as_read<'a>(&'a self, name: &str) -> Option<&'a [Vec<u8>]> {
        self.as_read
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, lines)| lines.as_slice())
    }

    /// The field value of `name` as read, before any change this map made:
    /// what response-side templates see.
    pub fn get_as_read(&self, name: &str) -> Option<Vec<u8>> {
        match self.lines_as_read(name) {
            None => self.get(name),
            Some([]) => None,
            Some(lines) => Some(lines.join(&b',')),
        }
    }

    pub fn entries(&self) -> &[(String, Vec<u8>)] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<(String, Vec<u8>)> {
        self.entries
    }

    /// Every value of `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == name)
    }

    /// The field value of `name`: its lines joined with `,` (RFC 9110
    /// §5.3), or `None` when absent.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        let mut values = self.values(name);
        let mut out = values.next()?.to_vec();
        for v in values {
            out.push(b',');
            out.extend_from_slice(v);
        }
        Some(out)
    }

    /// Replaces every line of `name` with one line holding `value`, in the
    /// position of the first line (or at the end).
    pub fn set(&mut self, name: &str, value: Vec<u8>) {
        self.touch(name);
        match self.entries.iter().position(|(k, _)| k == name) {
            Some(first) => {
                if let Some(entry) = self.entries.get_mut(first) {
                    entry.1 = value;
                }
                let mut i = 0;
                self.entries.retain(|(k, _)| {
                    let keep = i <= first || k != name;
                    i += 1;
                    keep
                });
            }
            None => self.entries.push((name.to_owned(), value)),
        }
    }

    /// Adds a line.
    pub fn add(&mut self, name: &str, value: Vec<u8>) {
        self.touch(name);
        self.entries.push((name.to_owned(), value));
    }

    /// Removes every line of `name`; returns the removed values.
    pub fn remove(&mut self, name: &str) -> Vec<Vec<u8>> {
        if !self.contains(name) {
            return Vec::new();
        }
        self.touch(name);
        let mut removed = Vec::new();
        self.entries.retain_mut(|(k, v)| {
            if k == name {
                removed.push(std::mem::take(v));
                false
            } else {
                true
            }
        });
        removed
    }

    /// Keeps the lines for which `keep(name, value)` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        let kept: Vec<bool> = self.entries.iter().map(|(k, v)| keep(k, v)).collect();
        if !kept.contains(&false) {
            return;
        }
        let dropped: Vec<String> = self
            .entries
            .iter()
            .zip(&kept)
            .filter(|(_, keep)| !**keep)
            .map(|((k, _), _)| k.clone())
            .collect();
        for name in &dropped {
            self.touch(name);
        }
        let mut kept = kept.into_iter();
        self.entries.retain(|_| kept.next().unwrap_or(true));
    }

    /// Replaces the values of `name` with `values` (none removes it).
    pub fn replace_all(&mut self, name: &str, values: Vec<Vec<u8>>) {
        self.remove(name);
        for v in values {
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
        let mut names: Vec<&str> = Vec::with_capacity(self.as_read.len());
        let present = self.entries.iter().map(|(k, _)| k.as_str());
        for name in present.chain(self.as_read.iter().map(|(n, _)| n.as_str())) {
            if !names.contains(&name) && self.lines_as_read(name).is_some() {
                names.push(name);
            }
        }
        for name in names {
            let old = self.lines_as_read(name).unwrap_or_default();
            let new: Vec<&[u8]> = self.values(name).collect();
            if old.iter().map(Vec::as_slice).eq(new.iter().copied()) {
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

    #[test]
    fn set_keeps_the_first_position_and_drops_the_other_lines() {
        let mut m = map(&[("a", "1"), ("b", "2"), ("a", "3")]);
        m.set("a", b"9".to_vec());
        assert_eq!(m, map(&[("a", "9"), ("b", "2")]));
        m.set("c", b"4".to_vec());
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
        after.set("one", b"2".to_vec());
        after.remove("gone");
        after.remove("multi");
        after.add("multi", b"b".to_vec());
        after.add("multi", b"c".to_vec());
        after.add("new", b"n".to_vec());
        after.add("new", b"m".to_vec());
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
                Change::Replace(n, v) => replay.set(&n, v),
                Change::Add(n, v) => replay.add(&n, v),
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
        back.set("one", b"2".to_vec());
        back.set("one", b"1".to_vec());
        back.remove("gone");
        back.add("gone", b"g".to_vec());
        back.retain(|k, _| k != "keep");
        back.add("keep", b"k".to_vec());
        assert!(back.changes().is_empty());
    }
}
