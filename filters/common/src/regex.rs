//! The regex engine behind every `regex` member of the filters'
//! configurations: regex-lite's syntax and meaning (ASCII Perl classes and
//! case folding, leftmost-first matches), run by a Pike VM, so a match takes
//! time linear in the input whatever the pattern.
//!
//! Why our own: regex-lite, the smallest regex crate, cost each module about
//! 35 KB of its 150-200 KB budget (parser, compiler, VM and their error
//! texts); this engine does the same job in a few KB. A differential test
//! (`tests/regex_differential.rs`) checks it against regex-lite itself on
//! random patterns and inputs.
//!
//! Supported: literals and `\` escapes of punctuation, `.`, classes with
//! ranges, negation, `\d \w \s` (and negations) and `[:alpha:]`-style POSIX
//! names, groups (capturing, `(?:...)`, `(?P<name>...)` / `(?<name>...)`),
//! alternation, `* + ? {n} {n,} {n,m}` and their lazy forms, anchors
//! `^ $ \A \z`, word boundaries `\b \B`, and the flags `i m s U`
//! (`(?i)`, `(?i:...)`, `(?-i)`). Not supported, as in regex-lite:
//! Unicode classes (`\p{..}`), backreferences and look-around, nested
//! classes and class set operations. Input is bytes: valid UTF-8 is matched
//! character by character, any other byte as U+FFFD.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

/// Group nesting allowed in a pattern.
const MAX_NESTING: usize = 64;
/// The largest `{n,m}` count.
const MAX_REPEAT: u32 = 1000;
/// The largest compiled program, so `(x{1000}){1000}` is refused.
const MAX_PROGRAM: usize = 20_000;
/// The most capture slots a search may keep (one per program counter and
/// slot, in each of two lists), so no pattern allocates megabytes a search.
const MAX_SLOTS: usize = 1 << 18;
/// An unset capture slot.
const UNSET: usize = usize::MAX;
const MAX_CHAR: u32 = char::MAX as u32;

/// Why a pattern was refused, and where (a byte offset in the pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub message: &'static str,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid regex: {} at offset {}",
            self.message, self.offset
        )
    }
}

/// A compiled pattern.
#[derive(Clone)]
pub struct Regex {
    pattern: Box<str>,
    program: Vec<Inst>,
    /// Capture groups, the whole match (group 0) included.
    groups: usize,
    /// Every match starts at the text's start (`^...`, `\A...`): a search
    /// tries no other position.
    anchored: bool,
    /// The search's buffers, kept from one search to the next so matching
    /// a request allocates nothing (a filter's VM is single-threaded).
    /// Boxed: a regex sits in matcher enums beside small variants.
    scratch: Box<RefCell<Scratch>>,
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Regex").field(&self.pattern).finish()
    }
}

/// The groups of one match, as spans of the searched text.
#[derive(Debug, Clone)]
pub struct Captures<'t> {
    text: &'t [u8],
    slots: Vec<usize>,
}

impl<'t> Captures<'t> {
    /// Group `i`'s span (0: the whole match); `None` if it took no part.
    pub fn range(&self, i: usize) -> Option<Range<usize>> {
        let start = *self.slots.get(2 * i)?;
        let end = *self.slots.get(2 * i + 1)?;
        (start != UNSET && end != UNSET).then_some(start..end)
    }

    /// Group `i`'s text (0: the whole match).
    pub fn get(&self, i: usize) -> Option<&'t [u8]> {
        self.text.get(self.range(i)?)
    }
}

/// Successive non-overlapping matches, as [`Regex::captures_iter`] gives them.
#[derive(Debug)]
pub struct CapturesIter<'r, 't> {
    regex: &'r Regex,
    text: &'t [u8],
    at: usize,
    last_end: Option<usize>,
}

impl<'t> Iterator for CapturesIter<'_, 't> {
    type Item = Captures<'t>;

    fn next(&mut self) -> Option<Captures<'t>> {
        loop {
            if self.at > self.text.len() {
                return None;
            }
            let slots = self
                .regex
                .search(self.text, self.at, 2 * self.regex.groups, false)?;
            let caps = Captures {
                text: self.text,
                slots,
            };
            let whole = caps.range(0)?;
            if whole.is_empty() && Some(whole.end) == self.last_end {
                // An empty match where the previous one ended: move one
                // character on, as the regex crates do.
                self.at = whole.end + decode(self.text, whole.end).map_or(1, |(_, n)| n);
                continue;
            }
            self.at = whole.end;
            self.last_end = Some(whole.end);
            return Some(caps);
        }
    }
}

impl Regex {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, Error> {
        let mut parser = Parser {
            src: pattern,
            pos: 0,
            flags: Flags::default(),
            groups: 0,
            depth: 0,
        };
        let node = parser.alternation()?;
        if parser.pos < pattern.len() {
            return Err(parser.error("`)` without a matching `(`"));
        }
        let mut compiler = Compiler {
            program: Vec::new(),
        };
        compiler.emit(Inst::Save(0))?;
        compiler.node(&node)?;
        compiler.emit(Inst::Save(1))?;
        compiler.emit(Inst::Match)?;
        let groups = parser.groups + 1;
        if compiler.program.len().saturating_mul(2 * groups) > MAX_SLOTS {
            return Err(Error {
                offset: 0,
                message: "the pattern has too many groups for its size",
            });
        }
        Ok(Self {
            pattern: pattern.into(),
            program: compiler.program,
            groups,
            anchored: node.is_anchored(),
            scratch: Box::default(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Capture groups, the whole match (group 0) included.
    pub fn captures_len(&self) -> usize {
        self.groups
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &[u8]) -> bool {
        self.search(text, 0, 0, true).is_some()
    }

    /// The leftmost-first match and its groups.
    pub fn captures<'t>(&self, text: &'t [u8]) -> Option<Captures<'t>> {
        let slots = self.search(text, 0, 2 * self.groups, false)?;
        Some(Captures { text, slots })
    }

    /// Every non-overlapping match, left to right.
    pub fn captures_iter<'r, 't>(&'r self, text: &'t [u8]) -> CapturesIter<'r, 't> {
        CapturesIter {
            regex: self,
            text,
            at: 0,
            last_end: None,
        }
    }

    /// The Pike VM: every thread advances one character at a time, in
    /// priority order, so the first thread to reach `Match` is the
    /// leftmost-first match. Records the first `slots` capture slots;
    /// `earliest` stops at the first match found (for `is_match`).
    fn search(
        &self,
        text: &[u8],
        start: usize,
        slots: usize,
        earliest: bool,
    ) -> Option<Vec<usize>> {
        // A search never calls back into another, so the borrow only fails
        // if that changes; fresh buffers keep it correct then.
        let mut fresh = Scratch::default();
        let mut kept = self.scratch.try_borrow_mut();
        let Scratch {
            current,
            next,
            stack,
            slots: thread_slots,
        } = match kept.as_deref_mut() {
            Ok(scratch) => scratch,
            Err(_) => &mut fresh,
        };
        let size = self.program.len();
        current.reset(size, slots);
        next.reset(size, slots);
        stack.clear();
        thread_slots.clear();
        thread_slots.resize(slots, UNSET);
        let mut closure = Closure {
            program: &self.program,
            text,
            stack,
            slots: thread_slots,
        };
        let mut matched = None;
        let mut at = start;
        loop {
            if matched.is_none() && (at == start || !self.anchored) {
                // A thread starting here ranks below every earlier one.
                closure.slots.fill(UNSET);
                closure.add(current, 0, at);
            }
            if current.dense.is_empty() {
                break;
            }
            let here = decode(text, at);
            for &pc in &current.dense {
                match self.program.get(pc) {
                    Some(Inst::Match) => {
                        matched = Some(current.slots_of(pc).to_vec());
                        if earliest {
                            return matched;
                        }
                        // Threads below this one lose to it.
                        break;
                    }
                    Some(Inst::Set(set)) => {
                        if let Some((_, len)) = here.filter(|(c, _)| contains(set, *c)) {
                            copy(closure.slots, current.slots_of(pc));
                            closure.add(next, pc + 1, at + len);
                        }
                    }
                    _ => {}
                }
            }
            let Some((_, len)) = here else { break };
            std::mem::swap(current, next);
            next.clear();
            at += len;
        }
        matched
    }
}

/// One character at `at`: valid UTF-8 as its character, any other byte as
/// U+FFFD; `None` at the end.
fn decode(text: &[u8], at: usize) -> Option<(u32, usize)> {
    let rest = text.get(at..)?;
    let first = *rest.first()?;
    let len = match first {
        0..=0x7f => return Some((u32::from(first), 1)),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some((0xfffd, 1)),
    };
    let c = rest
        .get(..len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.chars().next());
    Some(c.map_or((0xfffd, 1), |c| (u32::from(c), len)))
}

/// `copy_from_slice` without its panic on a length mismatch.
fn copy(dst: &mut [usize], src: &[usize]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

fn contains(set: &[(u32, u32)], c: u32) -> bool {
    set.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

fn is_word_byte(b: Option<&u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Start,
    End,
    LineStart,
    LineEnd,
    WordBoundary,
    NotWordBoundary,
}

impl Look {
    fn holds(self, text: &[u8], at: usize) -> bool {
        let before = at.checked_sub(1).and_then(|i| text.get(i));
        let after = text.get(at);
        match self {
            Look::Start => at == 0,
            Look::End => at == text.len(),
            Look::LineStart => at == 0 || before == Some(&b'\n'),
            Look::LineEnd => at == text.len() || after == Some(&b'\n'),
            Look::WordBoundary => is_word_byte(before) != is_word_byte(after),
            Look::NotWordBoundary => is_word_byte(before) == is_word_byte(after),
        }
    }
}

#[derive(Debug, Clone)]
enum Inst {
    /// Consumes one character in the set (sorted, disjoint ranges).
    Set(Box<[(u32, u32)]>),
    /// Tries the first target, then the second.
    Split(usize, usize),
    Jump(usize),
    Save(usize),
    Look(Look),
    Match,
}

/// What a search works in: two thread lists, the closure's stack and the
/// followed thread's capture slots.
#[derive(Debug, Clone, Default)]
struct Scratch {
    current: Threads,
    next: Threads,
    stack: Vec<Step>,
    slots: Vec<usize>,
}

/// The threads alive at one position: a sparse set of program counters,
/// in priority order, each with its capture slots.
#[derive(Debug, Clone, Default)]
struct Threads {
    dense: Vec<usize>,
    sparse: Vec<usize>,
    slots: Vec<usize>,
    width: usize,
}

impl Threads {
    /// Empty, for a program of `size` instructions keeping `width` slots a
    /// thread. Stale values in `sparse` and `slots` are harmless: the
    /// sparse set checks membership through `dense`, and a thread's slots
    /// are written when it is added.
    fn reset(&mut self, size: usize, width: usize) {
        self.dense.clear();
        self.width = width;
        if self.sparse.len() < size {
            self.sparse.resize(size, 0);
        }
        if self.slots.len() < size * width {
            self.slots.resize(size * width, UNSET);
        }
    }

    /// Adds `pc`; false if it was already there.
    fn insert(&mut self, pc: usize) -> bool {
        let index = self.sparse.get(pc).copied().unwrap_or(0);
        if self.dense.get(index) == Some(&pc) {
            return false;
        }
        if let Some(s) = self.sparse.get_mut(pc) {
            *s = self.dense.len();
        }
        self.dense.push(pc);
        true
    }

    fn slots_of(&self, pc: usize) -> &[usize] {
        self.slots
            .get(pc * self.width..(pc + 1) * self.width)
            .unwrap_or_default()
    }

    fn clear(&mut self) {
        self.dense.clear();
    }
}

/// Follows the non-consuming instructions from one program counter,
/// adding every thread that ends on a character test or `Match`. An
/// explicit stack, not recursion, so no pattern can overflow the stack.
struct Closure<'a> {
    program: &'a [Inst],
    text: &'a [u8],
    stack: &'a mut Vec<Step>,
    /// The capture slots of the thread being followed.
    slots: &'a mut [usize],
}

#[derive(Debug, Clone)]
enum Step {
    Visit(usize),
    Restore(usize, usize),
}

impl Closure<'_> {
    fn add(&mut self, threads: &mut Threads, pc: usize, at: usize) {
        self.stack.push(Step::Visit(pc));
        while let Some(step) = self.stack.pop() {
            let mut pc = match step {
                Step::Visit(pc) => pc,
                Step::Restore(slot, value) => {
                    if let Some(s) = self.slots.get_mut(slot) {
                        *s = value;
                    }
                    continue;
                }
            };
            while threads.insert(pc) {
                match self.program.get(pc) {
                    Some(Inst::Jump(to)) => pc = *to,
                    Some(Inst::Split(first, second)) => {
                        self.stack.push(Step::Visit(*second));
                        pc = *first;
                    }
                    Some(Inst::Save(slot)) => {
                        if let Some(s) = self.slots.get_mut(*slot) {
                            self.stack.push(Step::Restore(*slot, *s));
                            *s = at;
                        }
                        pc += 1;
                    }
                    Some(Inst::Look(look)) => {
                        if !look.holds(self.text, at) {
                            break;
                        }
                        pc += 1;
                    }
                    Some(Inst::Set(_) | Inst::Match) => {
                        let width = threads.width;
                        if let Some(dst) = threads.slots.get_mut(pc * width..(pc + 1) * width) {
                            copy(dst, self.slots);
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
    }
}

/// A parsed pattern.
#[derive(Debug)]
enum Node {
    Empty,
    Set(Vec<(u32, u32)>),
    Look(Look),
    Capture(Box<Node>, usize),
    Concat(Vec<Node>),
    Alternation(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
    swap_greed: bool,
}

struct Parser<'p> {
    src: &'p str,
    pos: usize,
    flags: Flags,
    groups: usize,
    depth: usize,
}

/// What a `\` escape stands for.
enum Escape {
    Char(u32),
    Set(Vec<(u32, u32)>),
    Look(Look),
}

impl Parser<'_> {
    fn error(&self, message: &'static str) -> Error {
        Error {
            offset: self.pos,
            message,
        }
    }

    fn rest(&self) -> &str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        if found {
            self.pos += c.len_utf8();
        }
        found
    }

    /// Branches separated by `|`, up to `)` or the end. Flags set inline
    /// (`(?i)`) last until then.
    fn alternation(&mut self) -> Result<Node, Error> {
        let flags = self.flags;
        let mut branches = vec![self.concat()?];
        while self.eat('|') {
            branches.push(self.concat()?);
        }
        self.flags = flags;
        Ok(match branches.len() {
            1 => branches.pop().unwrap_or(Node::Empty),
            _ => Node::Alternation(branches),
        })
    }

    fn concat(&mut self) -> Result<Node, Error> {
        let mut items = Vec::new();
        // Whether the last item may take a repetition operator.
        let mut repeatable = false;
        while let Some(c) = self.peek() {
            match c {
                '|' | ')' => break,
                '*' | '+' | '?' | '{' if !repeatable => {
                    return Err(self.error("a repetition operator has nothing to repeat"));
                }
                '*' | '+' | '?' | '{' => {}
                _ => {
                    let item = self.atom()?;
                    repeatable = item.is_some();
                    items.extend(item);
                    continue;
                }
            }
            let (min, max) = match self.bump() {
                Some('*') => (0, None),
                Some('+') => (1, None),
                Some('?') => (0, Some(1)),
                _ => self.counted()?,
            };
            let lazy = self.eat('?');
            let node = items.pop().unwrap_or(Node::Empty);
            items.push(Node::Repeat {
                node: Box::new(node),
                min,
                max,
                greedy: lazy == self.flags.swap_greed,
            });
            // `a**` is refused as regex-lite does; group to repeat again.
            repeatable = false;
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    /// `{n}`, `{n,}` or `{n,m}`, after the `{`.
    fn counted(&mut self) -> Result<(u32, Option<u32>), Error> {
        let min = self
            .number()
            .ok_or_else(|| self.error("a counted repetition needs a number, as in `{2}`"))?;
        let max = if self.eat(',') {
            if self.peek() == Some('}') {
                None
            } else {
                Some(
                    self.number()
                        .ok_or_else(|| self.error("invalid counted repetition"))?,
                )
            }
        } else {
            Some(min)
        };
        if !self.eat('}') {
            return Err(self.error("unclosed counted repetition"));
        }
        if max.is_some_and(|max| max < min) {
            return Err(self.error("a counted repetition's minimum exceeds its maximum"));
        }
        if max.unwrap_or(min) > MAX_REPEAT {
            return Err(self.error("a counted repetition over 1000"));
        }
        Ok((min, max))
    }

    fn number(&mut self) -> Option<u32> {
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        let value = self.rest().get(..digits)?.parse().ok();
        self.pos += digits;
        // Too many digits: over the limit all the same.
        value.or((digits > 0).then_some(u32::MAX))
    }

    /// One item, or `None` for a flag group such as `(?i)`.
    fn atom(&mut self) -> Result<Option<Node>, Error> {
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(None);
        };
        let node = match c {
            '(' => return self.group(start),
            '[' => Node::Set(self.class(start)?),
            '.' if self.flags.dot_all => Node::Set(vec![(0, MAX_CHAR)]),
            '.' => Node::Set(vec![(0, 9), (11, MAX_CHAR)]),
            '^' if self.flags.multi_line => Node::Look(Look::LineStart),
            '^' => Node::Look(Look::Start),
            '$' if self.flags.multi_line => Node::Look(Look::LineEnd),
            '$' => Node::Look(Look::End),
            '\\' => match self.escape(false)? {
                Escape::Char(c) => self.literal(c),
                Escape::Set(set) => Node::Set(set),
                Escape::Look(look) => Node::Look(look),
            },
            c => self.literal(u32::from(c)),
        };
        Ok(Some(node))
    }

    fn literal(&self, c: u32) -> Node {
        Node::Set(self.fold(vec![(c, c)]))
    }

    /// The set closed under ASCII case when `i` is on, sorted and merged.
    fn fold(&self, mut set: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
        if self.flags.case_insensitive {
            let mut other_case = Vec::new();
            for &(lo, hi) in &set {
                // The part in `a-z` shifted to `A-Z`, and the reverse.
                let (l, h) = (lo.max(0x61), hi.min(0x7a));
                if l <= h {
                    other_case.push((l - 32, h - 32));
                }
                let (l, h) = (lo.max(0x41), hi.min(0x5a));
                if l <= h {
                    other_case.push((l + 32, h + 32));
                }
            }
            set.extend(other_case);
        }
        normalize(set)
    }

    fn group(&mut self, start: usize) -> Result<Option<Node>, Error> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error("the pattern nests groups too deeply"));
        }
        let outer = self.flags;
        let mut capture = true;
        if self.eat('?') {
            if self.rest().starts_with("P<") {
                self.pos += 1;
            }
            if self.rest().starts_with("<=") || self.rest().starts_with("<!") {
                return Err(self.error("look-around is not supported"));
            }
            if self.eat('<') {
                self.group_name()?;
            } else {
                capture = false;
                if self.flags_group()? {
                    // `(?i)`: the flags stay on until the enclosing group ends.
                    self.depth -= 1;
                    return Ok(None);
                }
            }
        }
        let index = if capture {
            self.groups += 1;
            Some(self.groups)
        } else {
            None
        };
        let node = self.alternation()?;
        self.flags = outer;
        if !self.eat(')') {
            return Err(Error {
                offset: start,
                message: "a `(` is never closed",
            });
        }
        self.depth -= 1;
        Ok(Some(match index {
            Some(i) => Node::Capture(Box::new(node), i),
            None => node,
        }))
    }

    fn group_name(&mut self) -> Result<(), Error> {
        let len = self
            .rest()
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let starts_well = self
            .rest()
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        self.pos += len;
        if len == 0 || !starts_well || !self.eat('>') {
            return Err(self.error("invalid group name"));
        }
        Ok(())
    }

    /// The flags after `(?`, through `:` (true: a scoped group follows, its
    /// flags set) or `)` (false: they apply from here).
    fn flags_group(&mut self) -> Result<bool, Error> {
        let mut on = true;
        let mut any = false;
        loop {
            let at = self.pos;
            let flag = match self.bump() {
                Some(':') => return Ok(false),
                Some(')') if any => return Ok(true),
                Some(')') => return Err(self.error("an empty flag group")),
                Some('-') if on => {
                    on = false;
                    continue;
                }
                Some('i') => &mut self.flags.case_insensitive,
                Some('m') => &mut self.flags.multi_line,
                Some('s') => &mut self.flags.dot_all,
                Some('U') => &mut self.flags.swap_greed,
                Some('=' | '!') => return Err(self.error("look-around is not supported")),
                None => return Err(self.error("unclosed flag group")),
                Some(_) => {
                    self.pos = at;
                    return Err(self.error("unrecognized flag (known: i, m, s, U)"));
                }
            };
            *flag = on;
            any = true;
        }
    }

    /// A class after its `[`.
    fn class(&mut self, start: usize) -> Result<Vec<(u32, u32)>, Error> {
        let negated = self.eat('^');
        let mut set = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(Error {
                    offset: start,
                    message: "a `[` is never closed",
                });
            };
            if c == ']' && !first {
                self.bump();
                break;
            }
            first = false;
            if self.rest().starts_with("[:") {
                set.extend(self.posix_class()?);
                continue;
            }
            let lo = match self.class_item(start)? {
                Escape::Char(c) => c,
                Escape::Set(s) => {
                    set.extend(s);
                    continue;
                }
                Escape::Look(_) => return Err(self.error("an assertion cannot be in a class")),
            };
            let range = self.rest().starts_with('-') && !self.rest().starts_with("-]");
            if !range {
                set.push((lo, lo));
                continue;
            }
            self.bump();
            match self.class_item(start)? {
                Escape::Char(hi) if hi >= lo => set.push((lo, hi)),
                _ => return Err(self.error("invalid range in a class")),
            }
        }
        let set = self.fold(set);
        Ok(if negated { complement(&set) } else { set })
    }

    fn class_item(&mut self, start: usize) -> Result<Escape, Error> {
        match self.bump() {
            Some('\\') => self.escape(true),
            Some('[') => Err(self.error("nested classes are not supported; write `\\[`")),
            Some(c) => Ok(Escape::Char(u32::from(c))),
            None => Err(Error {
                offset: start,
                message: "a `[` is never closed",
            }),
        }
    }

    /// `[:name:]` or `[:^name:]` inside a class.
    fn posix_class(&mut self) -> Result<Vec<(u32, u32)>, Error> {
        self.pos += 2;
        let negated = self.eat('^');
        let name_len = (self.rest().as_bytes().windows(2))
            .position(|w| w == b":]")
            .unwrap_or(0);
        let name = self.rest().get(..name_len).unwrap_or_default();
        let set: &[(u32, u32)] = match name {
            "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
            "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
            "ascii" => &[(0, 0x7f)],
            "blank" => &[(9, 9), (0x20, 0x20)],
            "cntrl" => &[(0, 0x1f), (0x7f, 0x7f)],
            "digit" => DIGIT,
            "graph" => &[(0x21, 0x7e)],
            "lower" => &[(0x61, 0x7a)],
            "print" => &[(0x20, 0x7e)],
            "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
            "space" => SPACE,
            "upper" => &[(0x41, 0x5a)],
            "word" => WORD,
            "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
            _ => return Err(self.error("unrecognized POSIX class")),
        };
        self.pos += name_len + 2;
        Ok(if negated {
            complement(set)
        } else {
            set.to_vec()
        })
    }

    /// What follows a `\`.
    fn escape(&mut self, in_class: bool) -> Result<Escape, Error> {
        let Some(c) = self.bump() else {
            return Err(self.error("the pattern ends with `\\`"));
        };
        let set = |s: &[(u32, u32)], negated: bool| {
            Ok(Escape::Set(if negated {
                complement(s)
            } else {
                s.to_vec()
            }))
        };
        let look = |l| {
            if in_class {
                Err(self.error("an assertion cannot be in a class"))
            } else {
                Ok(Escape::Look(l))
            }
        };
        match c {
            'd' | 'D' => set(DIGIT, c == 'D'),
            'w' | 'W' => set(WORD, c == 'W'),
            's' | 'S' => set(SPACE, c == 'S'),
            'b' => look(Look::WordBoundary),
            'B' => look(Look::NotWordBoundary),
            'A' => look(Look::Start),
            'z' => look(Look::End),
            'n' => Ok(Escape::Char(0x0a)),
            't' => Ok(Escape::Char(0x09)),
            'r' => Ok(Escape::Char(0x0d)),
            'f' => Ok(Escape::Char(0x0c)),
            'v' => Ok(Escape::Char(0x0b)),
            'a' => Ok(Escape::Char(0x07)),
            'x' => self.hex().map(Escape::Char),
            'p' | 'P' => Err(self.error("Unicode classes are not supported")),
            '0'..='9' => Err(self.error("backreferences are not supported")),
            c if c.is_ascii_punctuation() => Ok(Escape::Char(u32::from(c))),
            _ => Err(self.error("unrecognized escape sequence")),
        }
    }

    /// `\xHH` or `\x{H..}` after the `x`.
    fn hex(&mut self) -> Result<u32, Error> {
        let braced = self.eat('{');
        let digits = self
            .rest()
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count();
        let digits = if braced { digits } else { digits.min(2) };
        let value = self
            .rest()
            .get(..digits)
            .filter(|d| (if braced { 1..=8 } else { 2..=2 }).contains(&d.len()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .filter(|v| char::from_u32(*v).is_some());
        self.pos += digits;
        match value {
            Some(v) if !braced || self.eat('}') => Ok(v),
            _ => Err(self.error("invalid hexadecimal escape")),
        }
    }
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];
const SPACE: &[(u32, u32)] = &[(0x09, 0x0d), (0x20, 0x20)];

/// Sorted, merged ranges.
fn normalize(mut set: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    crate::sort::heapsort(&mut set);
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(set.len());
    for (lo, hi) in set {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// Every character not in `set`.
fn complement(set: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0;
    for &(lo, hi) in &normalize(set.to_vec()) {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi.saturating_add(1);
    }
    if next <= MAX_CHAR {
        out.push((next, MAX_CHAR));
    }
    out
}

struct Compiler {
    program: Vec<Inst>,
}

impl Compiler {
    fn emit(&mut self, inst: Inst) -> Result<usize, Error> {
        if self.program.len() >= MAX_PROGRAM {
            return Err(Error {
                offset: 0,
                message: "the pattern compiles too large (repetitions of repetitions?)",
            });
        }
        self.program.push(inst);
        Ok(self.program.len() - 1)
    }

    fn patch(&mut self, at: usize, inst: Inst) {
        if let Some(slot) = self.program.get_mut(at) {
            *slot = inst;
        }
    }

    fn node(&mut self, node: &Node) -> Result<(), Error> {
        match node {
            Node::Empty => {}
            Node::Set(set) => {
                self.emit(Inst::Set(set.clone().into_boxed_slice()))?;
            }
            Node::Look(look) => {
                self.emit(Inst::Look(*look))?;
            }
            Node::Capture(inner, i) => {
                self.emit(Inst::Save(2 * i))?;
                self.node(inner)?;
                self.emit(Inst::Save(2 * i + 1))?;
            }
            Node::Concat(items) => {
                for item in items {
                    self.node(item)?;
                }
            }
            Node::Alternation(branches) => {
                let mut ends = Vec::new();
                let last = branches.len().saturating_sub(1);
                for (k, branch) in branches.iter().enumerate() {
                    if k == last {
                        self.node(branch)?;
                        break;
                    }
                    let split = self.emit(Inst::Split(0, 0))?;
                    self.node(branch)?;
                    ends.push(self.emit(Inst::Jump(0))?);
                    let next = self.program.len();
                    self.patch(split, Inst::Split(split + 1, next));
                }
                let end = self.program.len();
                for at in ends {
                    self.patch(at, Inst::Jump(end));
                }
            }
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => {
                // The same shapes as regex-lite's compiler, so captures in
                // repetitions that can match empty agree with it.
                let greedy = *greedy;
                match max {
                    Some(max) => {
                        for _ in 0..*min {
                            self.node(node)?;
                        }
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.emit(Inst::Split(0, 0))?);
                            self.node(node)?;
                        }
                        let end = self.program.len();
                        for at in splits {
                            self.patch(at, prefer(greedy, at + 1, end));
                        }
                    }
                    None if *min == 0 && !node.can_match_empty() => {
                        let at = self.emit(Inst::Split(0, 0))?;
                        self.node(node)?;
                        self.emit(Inst::Jump(at))?;
                        let end = self.program.len();
                        self.patch(at, prefer(greedy, at + 1, end));
                    }
                    None if *min == 0 => {
                        // `(x+)?`
                        let at = self.emit(Inst::Split(0, 0))?;
                        self.at_least(node, 1, greedy)?;
                        let end = self.program.len();
                        self.patch(at, prefer(greedy, at + 1, end));
                    }
                    None => self.at_least(node, *min, greedy)?,
                }
            }
        }
        Ok(())
    }

    /// `x{min,}` for `min >= 1`: the last copy loops back to itself.
    fn at_least(&mut self, node: &Node, min: u32, greedy: bool) -> Result<(), Error> {
        for _ in 1..min {
            self.node(node)?;
        }
        let start = self.program.len();
        self.node(node)?;
        let at = self.emit(Inst::Split(0, 0))?;
        self.patch(at, prefer(greedy, start, at + 1));
        Ok(())
    }
}

/// A split that tries `more` first when greedy, `done` first when lazy.
fn prefer(greedy: bool, more: usize, done: usize) -> Inst {
    if greedy {
        Inst::Split(more, done)
    } else {
        Inst::Split(done, more)
    }
}

impl Node {
    /// Whether every match must start at the start of the text.
    fn is_anchored(&self) -> bool {
        match self {
            Node::Look(look) => *look == Look::Start,
            Node::Capture(inner, _) => inner.is_anchored(),
            Node::Concat(items) => items.first().is_some_and(Node::is_anchored),
            Node::Alternation(branches) => branches.iter().all(Node::is_anchored),
            Node::Empty | Node::Set(_) | Node::Repeat { .. } => false,
        }
    }

    fn can_match_empty(&self) -> bool {
        match self {
            Node::Empty | Node::Look(_) => true,
            Node::Set(_) => false,
            Node::Capture(inner, _) => inner.can_match_empty(),
            Node::Concat(items) => items.iter().all(Node::can_match_empty),
            Node::Alternation(branches) => branches.iter().any(Node::can_match_empty),
            Node::Repeat { node, min, .. } => *min == 0 || node.can_match_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(pattern: &str, text: &str) -> Option<(usize, usize)> {
        let re = Regex::new(pattern).unwrap();
        re.captures(text.as_bytes())
            .and_then(|c| c.range(0))
            .map(|r| (r.start, r.end))
    }

    #[test]
    fn leftmost_first_matches() {
        assert_eq!(find("a|ab", "ab"), Some((0, 1)));
        assert_eq!(find("ab|a", "ab"), Some((0, 2)));
        assert_eq!(find("a*", "baaa"), Some((0, 0)));
        assert_eq!(find("a+", "baaa"), Some((1, 4)));
        assert_eq!(find("a+?", "baaa"), Some((1, 2)));
        assert_eq!(find("(?U)a+", "baaa"), Some((1, 2)));
        assert_eq!(find("x{2,3}", "xxxx"), Some((0, 3)));
        assert_eq!(find("x{2,3}?", "xxxx"), Some((0, 2)));
        assert_eq!(find("^/v[0-9]+/orders$", "/v12/orders"), Some((0, 11)));
        assert_eq!(find("^/v[0-9]+/orders$", "/v12/orders/x"), None);
    }

    #[test]
    fn classes_flags_and_anchors() {
        assert_eq!(find("(?i)SELECT", "xselectx"), Some((1, 7)));
        assert_eq!(find("(?i)[a-c]+", "xABCd"), Some((1, 4)));
        assert_eq!(find("[^a-z]", "abc1"), Some((3, 4)));
        assert_eq!(find("[[:digit:]]+", "ab12"), Some((2, 4)));
        assert_eq!(find(r"\bfoo\b", "a foo b"), Some((2, 5)));
        assert_eq!(find("(?m)^b$", "a\nb\nc"), Some((2, 3)));
        assert_eq!(find("^b$", "a\nb\nc"), None);
        assert_eq!(find("a.c", "a\nc"), None);
        assert_eq!(find("(?s)a.c", "a\nc"), Some((0, 3)));
        assert_eq!(find(r"\x41\x{42}", "AB"), Some((0, 2)));
        assert_eq!(find("é.", "xéé"), Some((1, 5)));
    }

    #[test]
    fn captures_and_iteration() {
        let re = Regex::new("/([a-z]+)/(\\d+)?").unwrap();
        assert_eq!(re.captures_len(), 3);
        let caps = re.captures(b"x/users/").unwrap();
        assert_eq!(caps.get(1), Some(&b"users"[..]));
        assert_eq!(caps.get(2), None);
        let re = Regex::new("a*").unwrap();
        let spans: Vec<_> = re
            .captures_iter(b"baaa")
            .map(|c| c.range(0).unwrap())
            .collect();
        assert_eq!(spans, vec![0..0, 1..4]);
    }

    #[test]
    fn bytes_that_are_not_utf8_match_as_one_replacement_character() {
        let re = Regex::new("^a.b$").unwrap();
        assert!(re.is_match(b"a\xffb"));
        assert!(!re.is_match(b"a\xff\xffb"));
    }

    #[test]
    fn bad_patterns_say_what_and_where() {
        for (pattern, message, offset) in [
            ("(", "a `(` is never closed", 0),
            ("a)", "`)` without a matching `(`", 1),
            ("[a-", "a `[` is never closed", 0),
            ("*a", "a repetition operator has nothing to repeat", 0),
            ("a**", "a repetition operator has nothing to repeat", 2),
            (
                "a{3,2}",
                "a counted repetition's minimum exceeds its maximum",
                6,
            ),
            ("a{1001}", "a counted repetition over 1000", 7),
            (r"\1", "backreferences are not supported", 2),
            (r"\pL", "Unicode classes are not supported", 2),
            ("(?=a)", "look-around is not supported", 3),
            ("(?x)a", "unrecognized flag (known: i, m, s, U)", 2),
            ("[z-a]", "invalid range in a class", 4),
            ("a\\", "the pattern ends with `\\`", 2),
        ] {
            let err = Regex::new(pattern).unwrap_err();
            assert_eq!((err.message, err.offset), (message, offset), "{pattern}");
        }
        assert!(Regex::new(&"(".repeat(100)).is_err());
        assert!(Regex::new("(a{1000}){1000}").is_err());
        assert!(Regex::new(&"(a)".repeat(400)).is_err());
        assert!(Regex::new(&"(a)".repeat(100)).is_ok());
    }

    #[test]
    fn matching_is_linear_for_patterns_that_backtrack_exponentially() {
        let re = Regex::new("(a*)*$").unwrap();
        let text = "a".repeat(5000) + "b";
        assert!(re.is_match(text.as_bytes()));
        let re = Regex::new("^(a|a)*c$").unwrap();
        assert!(!re.is_match(text.as_bytes()));
    }
}
