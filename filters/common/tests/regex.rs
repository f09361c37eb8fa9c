//! Configured regexes behave as regex-lite documents them, including the
//! cases where our former engine differed, and patterns too costly for a
//! request are refused at configure time with their JSON path.

use filter_common::config::Problems;
use filter_common::matcher::{Named, StringMatcher};
use filter_common::pattern::Regex;

fn finds(pattern: &str, haystack: &str) -> bool {
    Regex::new(pattern).unwrap().is_match(haystack.as_bytes())
}

fn refusal(pattern: &str) -> String {
    Regex::new(pattern).unwrap_err()
}

#[test]
fn word_boundary_shorthands_are_boundaries() {
    // `\<` and `\>` were literal `<`/`>` in our engine: a deny rule written
    // for regex-lite silently stopped matching.
    assert!(finds(r"\<admin\>", "/x/admin/y"));
    assert!(!finds(r"\<admin\>", "/x/sysadmins"));
    assert!(!finds(r"^\<admin\>$", "<admin>"));
    assert!(finds(r"\b{start}foo", "foo"));
}

#[test]
fn classes_read_as_regex_lite_reads_them() {
    assert!(finds(r"^[]a]$", "]"));
    assert!(finds(r"^[-a]$", "-"));
    assert!(finds(r"^[a-]$", "-"));
    assert!(!finds(r"^[-a]$", "b"));
    assert_eq!(
        refusal(r"[a&&b]"),
        "invalid regex: character class intersection is not supported"
    );
    assert_eq!(
        refusal(r"[\d-z]"),
        "invalid regex: character class ranges must start and end with a single character"
    );
}

#[test]
fn groups_and_flags_read_as_regex_lite_reads_them() {
    assert_eq!(
        refusal(r"(?P<n>a)(?P<n>b)"),
        "invalid regex: duplicate capture group name"
    );
    assert_eq!(
        refusal(r"(?i-)a"),
        "invalid regex: inline flags cannot end with negation directive"
    );
    // A group repeated zero times matches the empty string and is dropped
    // from the groups, so a `\1` substitution cannot name it.
    assert!(finds(r"^(x){0}y$", "y"));
    assert!(!finds(r"^(x){0}y$", "xy"));
    assert_eq!(Regex::new(r"(x){0}y").unwrap().captures_len(), 1);
}

#[test]
fn costly_patterns_are_refused_quickly() {
    // Our former engine compiled this for seconds, and one more level for
    // hours, inside `on_configure`.
    for pattern in [
        "(?:(?:(?:){1000}){1000}){1000}",
        "(?:(?:(?:(?:){1000}){1000}){1000}){1000}",
        "(x{1000}){1000}",
    ] {
        let started = std::time::Instant::now();
        let err = refusal(pattern);
        assert_eq!(err, "invalid regex: compiled regex exceeded size limit");
        // Not a timing assertion on the matcher's speed: a hang here would
        // be the bug, and a minute is far above any machine's noise.
        assert!(started.elapsed().as_secs() < 60, "{pattern}");
    }
    let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
    assert!(refusal(&deep).starts_with("invalid regex: "));
}

#[test]
fn a_refused_pattern_names_its_json_path() {
    let config = r#"{"name": "x-user", "regex": "(?:(?:(?:){1000}){1000}){1000}"}"#;
    let value = filter_common::config::parse_json(config.as_bytes()).unwrap();
    let mut problems = Problems::default();
    assert!(StringMatcher::decode(&value, "/headers/0", Named::Required, &mut problems).is_none());
    let text = problems.to_string();
    assert!(
        text.contains("/headers/0/regex: invalid regex: compiled regex exceeded size limit"),
        "{text}"
    );
}
