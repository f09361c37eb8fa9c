//! Benchmarks live in `benches/` (see README.md); this is what they and the
//! `profile` example share.

/// A GET with eight typical request headers: the request the header-transform
/// benchmark and the `profile` example send.
pub const REQUEST: [(&str, &str); 8] = [
    (":method", "GET"),
    (":path", "/api/orders/42?debug=1&page=2"),
    (":authority", "shop.example.com"),
    (":scheme", "http"),
    ("user-agent", "bench/1.0"),
    ("x-user", "ada"),
    ("x-internal-token", "secret"),
    ("accept", "application/json"),
];

/// A JSON chat request of exactly `size` bytes whose `/model` is `claude-y`
/// (the body `cargo xtask bench-envoy` POSTs in its body variants).
pub fn chat_body(size: usize) -> String {
    let head = r#"{"model":"claude-y","messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// The POST that carries [`chat_body`] of `size` bytes.
pub fn chat_request(size: usize) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":path", "/v1/chat".into()),
        (":authority", "llm.example.com".into()),
        (":scheme", "http".into()),
        ("content-type", "application/json".into()),
        ("content-length", size.to_string()),
    ]
}
