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
