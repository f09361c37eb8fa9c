//! Basic auth's answer time does not tell which users exist: an unknown
//! user, a known user with a wrong password and the right password, through
//! the auth filter's logic natively (`auth::policy::evaluate`), with one
//! bcrypt user of cost 8 (the decoy an unknown user is checked against)
//! and one `{SHA}` user. Side by side in one run; the first two should be
//! equal, the third no faster (a verified password is cached after it).
//!
//! `cargo bench -p proxy-wasm-benches --bench basic_auth`

use std::hint::black_box;

use auth::Config;
use auth::policy::{AuthzAnswer, Caches, Env, Keys, evaluate};
use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use filter_proxy::headers::HeaderMap;
use filter_proxy::request::{Request, TableHost};
use serde_json::json;

/// A fresh cache per request, so the right password is checked every time.
struct Fresh(Caches);

impl Env for Fresh {
    fn now(&self) -> u64 {
        1_800_000_000
    }
    fn keys(&mut self, _: usize, _: bool) -> Keys {
        Keys::Failed
    }
    fn authz(&self) -> Option<&AuthzAnswer> {
        None
    }
    fn caches(&mut self) -> &mut Caches {
        &mut self.0
    }
}

fn answers(c: &mut Criterion) {
    let hash = bcrypt::hash_with_salt("s3cret", 8, [7; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let config = json!({
        "consumers": [
            {"name": "ops", "basic": {"username": "ops", "password_hash": hash}},
            {"name": "ci", "basic": {"username": "ci", "password_hash": "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="}}
        ],
        "rules": [{"require": "basic"}]
    });
    let config = Config::parse(config.to_string().as_bytes()).unwrap();
    let mut group = c.benchmark_group("basic_auth");
    for (name, credentials) in [
        ("unknown_user", "nobody:s3cret"),
        ("known_user_wrong_password", "ops:wrong"),
        ("known_user_right_password", "ops:s3cret"),
    ] {
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        );
        let request = Request::new(
            HeaderMap::new(vec![
                (":method".into(), b"GET".to_vec()),
                (":path".into(), b"/".to_vec()),
                (":authority".into(), b"api".to_vec()),
                ("authorization".into(), value.into_bytes()),
            ]),
            TableHost::default(),
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut env = Fresh(Caches::new(1));
                black_box(evaluate(&config, &request, &mut env).is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, answers);
criterion_main!(benches);
