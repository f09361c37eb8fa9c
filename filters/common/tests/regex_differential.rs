//! Our regex engine against regex-lite, whose syntax and meaning it keeps:
//! random patterns over the syntax both support, each run on random
//! haystacks, must agree on whether they match, the first match's groups,
//! and every non-overlapping match.

use filter_common::regex::{Captures, Regex};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

const PATTERNS: usize = 3_000;
const HAYSTACKS: usize = 30;

struct Gen {
    rng: ChaCha8Rng,
    names: u32,
}

impl Gen {
    fn below(&mut self, n: u32) -> u32 {
        self.rng.next_u32() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u32) as usize]
    }

    fn alternation(&mut self, depth: u32) -> String {
        let branches: Vec<String> = (0..1 + self.below(if depth > 0 { 3 } else { 2 }))
            .map(|_| self.concat(depth))
            .collect();
        branches.join("|")
    }

    fn concat(&mut self, depth: u32) -> String {
        (0..self.below(4) + 1).map(|_| self.item(depth)).collect()
    }

    fn item(&mut self, depth: u32) -> String {
        let atom = match self.below(if depth < 3 { 12 } else { 9 }) {
            0..=2 => self
                .pick(&["a", "b", "c", "A", "-", "é", "1", " ", "_"])
                .to_owned(),
            3 => ".".to_owned(),
            4 => self.class(),
            5 => self
                .pick(&[
                    r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", r"\.", r"\x61", r"\x{e9}",
                ])
                .to_owned(),
            6 => {
                // Assertions and inline flags take no repetition here.
                return self
                    .pick(&[
                        "^", "$", r"\A", r"\z", r"\b", r"\B", "(?i)", "(?m)", "(?s)", "(?U)",
                        "(?-i)",
                    ])
                    .to_owned();
            }
            7 | 8 => self.pick(&["ab", "a", "b"]).to_owned(),
            _ => {
                let open = match self.pick(&["(", "(", "(?:", "(?P<", "(?i:", "(?s-i:"]) {
                    "(?P<" => {
                        self.names += 1;
                        format!("(?P<n{}>", self.names)
                    }
                    open => open.to_owned(),
                };
                format!("{open}{})", self.alternation(depth + 1))
            }
        };
        let repeat = self.pick(&["", "", "", "*", "+", "?", "{2}", "{1,}", "{0,2}", "{1,3}"]);
        let lazy = if !repeat.is_empty() && self.below(3) == 0 {
            "?"
        } else {
            ""
        };
        format!("{atom}{repeat}{lazy}")
    }

    fn class(&mut self) -> String {
        let negated = if self.below(3) == 0 { "^" } else { "" };
        let items: String = (0..1 + self.below(3))
            .map(|_| {
                self.pick(&[
                    "a",
                    "b-c",
                    "A-Z",
                    r"\d",
                    r"\s",
                    "[:alpha:]",
                    "[:^digit:]",
                    "é",
                    "_",
                    r"\-",
                    "1",
                ])
            })
            .collect();
        format!("[{negated}{items}]")
    }

    fn haystack(&mut self) -> String {
        (0..self.below(12))
            .map(|_| self.pick(&["a", "b", "c", "A", "B", "-", "\n", "é", "1", " ", "_", "ab"]))
            .collect()
    }
}

type Spans = Vec<Option<(usize, usize)>>;
type Outcome = (bool, Option<Spans>, Vec<(usize, usize)>);

fn ours(re: &Regex, hay: &str) -> Outcome {
    let text = hay.as_bytes();
    let groups = |c: &Captures<'_>| -> Spans {
        (0..re.captures_len())
            .map(|i| c.range(i).map(|r| (r.start, r.end)))
            .collect()
    };
    (
        re.is_match(text),
        re.captures(text).map(|c| groups(&c)),
        re.captures_iter(text)
            .map(|c| c.range(0).map(|r| (r.start, r.end)).unwrap())
            .collect(),
    )
}

fn theirs(re: &regex_lite::Regex, hay: &str) -> Outcome {
    (
        re.is_match(hay),
        re.captures(hay).map(|c| {
            (0..c.len())
                .map(|i| c.get(i).map(|m| (m.start(), m.end())))
                .collect()
        }),
        re.find_iter(hay).map(|m| (m.start(), m.end())).collect(),
    )
}

#[test]
fn agrees_with_regex_lite_on_random_patterns_and_inputs() {
    let mut generator = Gen {
        rng: ChaCha8Rng::seed_from_u64(0x7e6e),
        names: 0,
    };
    let (mut compared, mut refused_by_both) = (0, 0);
    for _ in 0..PATTERNS {
        let pattern = generator.alternation(0);
        let (reference, candidate) = match (regex_lite::Regex::new(&pattern), Regex::new(&pattern))
        {
            (Ok(r), Ok(c)) => (r, c),
            (Err(_), Err(_)) => {
                refused_by_both += 1;
                continue;
            }
            (Ok(_), Err(e)) => panic!("{pattern:?}: regex-lite compiles it, we refuse it: {e}"),
            (Err(e), Ok(_)) => panic!("{pattern:?}: we compile it, regex-lite refuses it: {e}"),
        };
        assert_eq!(
            candidate.captures_len(),
            reference.captures_len(),
            "{pattern:?}"
        );
        for _ in 0..HAYSTACKS {
            let hay = generator.haystack();
            assert_eq!(
                ours(&candidate, &hay),
                theirs(&reference, &hay),
                "pattern {pattern:?} on {hay:?}"
            );
            compared += 1;
        }
    }
    // The generator writes valid patterns: a run that compared little
    // tested little.
    assert!(refused_by_both < PATTERNS / 20, "{refused_by_both} refused");
    assert!(compared > PATTERNS * HAYSTACKS * 9 / 10);
}

#[test]
fn refuses_what_regex_lite_refuses() {
    for pattern in [
        "(", ")", "[a", "a{2", "a{3,2}", "*", r"\1", r"\p{L}", "(?=a)", "(?<=a)b", "(?z)", r"\",
        "[b-a]", r"\q", "(?P<1>a)", "(?)",
    ] {
        assert!(
            regex_lite::Regex::new(pattern).is_err(),
            "regex-lite accepts {pattern:?}"
        );
        assert!(Regex::new(pattern).is_err(), "we accept {pattern:?}");
    }
}
