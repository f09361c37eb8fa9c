//! Our regex engine (`filter_common::regex`) against regex-lite, which it
//! replaced in the modules to save size, on patterns the filters' users
//! write, natively and in one run: the price, per match, of the smaller
//! engine.
//!
//! `cargo bench -p proxy-wasm-benches --bench regex`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use filter_common::regex::Regex;

/// (name, pattern, input): a route regex on a path that matches, a header
/// name regex on one that does not, a case-insensitive scan through a long
/// query, and a rewrite's captures.
const CASES: &[(&str, &str, &str)] = &[
    ("path_match", "^/api/orders/[0-9]+$", "/api/orders/12345"),
    ("header_name_miss", "^x-debug-[0-9]+$", "x-forwarded-for"),
    (
        "query_scan",
        "(?i)(union|select)%20",
        "/search?q=shoes&size=42&colour=blue&sort=price&page=3&per_page=50&lang=en",
    ),
    ("captures", "^/t/([a-z]+)/(.*)$", "/t/tenant/v1/items/42"),
];

fn engines(c: &mut Criterion) {
    let mut group = c.benchmark_group("regex");
    for &(name, pattern, input) in CASES {
        let ours = Regex::new(pattern).unwrap();
        let theirs = regex_lite::Regex::new(pattern).unwrap();
        assert_eq!(
            ours.is_match(input.as_bytes()),
            theirs.is_match(input),
            "{name}"
        );
        group.bench_function(format!("{name}/ours"), |b| {
            b.iter(|| black_box(ours.captures(black_box(input.as_bytes())).is_some()))
        });
        group.bench_function(format!("{name}/regex-lite"), |b| {
            b.iter(|| black_box(theirs.captures(black_box(input)).is_some()))
        });
    }
    group.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
