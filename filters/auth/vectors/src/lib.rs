//! Runs signature vectors through the auth filter's JWS layer
//! ([`auth::verify_signature`]) inside a proxy-wasm VM: the plugin
//! configuration is a JSON list of cases
//! `{"alg": "ES256", "jwk": {...}, "msg": "<base64>", "sig": "<base64>"}`,
//! and `on_configure` logs one line, `verdicts <one character per case>`:
//! `1` verified, `0` refused, `k` the key was refused, `x` the case was
//! malformed. The test (filters/auth/tests/wycheproof.rs) compares it with
//! the vectors' expected results.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proxy_wasm::traits::{Context, RootContext};
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Vectors) });
}}

struct Vectors;

impl Context for Vectors {}

impl RootContext for Vectors {
    fn on_configure(&mut self, _: usize) -> bool {
        let Some(config) = self.get_plugin_configuration() else {
            log::error!("no cases");
            return false;
        };
        let Ok(serde_json::Value::Array(cases)) = serde_json::from_slice(&config) else {
            log::error!("the cases are not a JSON list");
            return false;
        };
        let verdicts: String = cases.iter().map(verdict).collect();
        log::info!("verdicts {verdicts}");
        true
    }
}

fn verdict(case: &serde_json::Value) -> char {
    let field = |name: &str| case.get(name).and_then(serde_json::Value::as_str);
    let bytes = |name: &str| field(name).and_then(|b| STANDARD.decode(b).ok());
    let (Some(alg), Some(jwk), Some(msg), Some(sig)) = (
        field("alg").and_then(auth::Alg::parse),
        case.get("jwk"),
        bytes("msg"),
        bytes("sig"),
    ) else {
        return 'x';
    };
    let Ok(jwks) = auth::Jwks::parse(jwk.to_string().as_bytes()) else {
        return 'k';
    };
    let verified = jwks
        .keys
        .iter()
        .any(|key| auth::verify_signature(alg, &key.material, &msg, &sig));
    if verified { '1' } else { '0' }
}
