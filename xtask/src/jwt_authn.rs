//! Our auth filter against Envoy's `jwt_authn` on the same tokens. One
//! Envoy, two listeners answering 200 behind either filter, each configured
//! with one provider (the `mint` example's key set, issuer and audience
//! `bench`); every case's token goes to both, and the status, the body and
//! the Bearer challenge's `error` must agree. The differences the auth
//! README lists are expected here, each with its reason; any other fails
//! `cargo xtask test`.

use std::net::SocketAddr;
use std::path::Path;

use harness_envoy::{Bootstrap, Listener, Route};
use serde_json::json;

use crate::bench_envoy::{jwt_authn_filter, mint, now, start_envoy, wasm_filter};
use crate::toolchain::root;

/// The listener behind Envoy's `jwt_authn`, and the one behind ours.
const JWT_AUTHN: &str = "jwt_authn";
const OURS: &str = "ours";

/// A case: its name, the token (`None`: no `Authorization`), and, where
/// the filters answer differently on purpose, why.
struct Case {
    name: &'static str,
    token: Option<String>,
    differs: Option<&'static str>,
}

/// What a client sees of an answer.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    body: String,
    /// The `error` parameter of the Bearer challenge, if any.
    error: Option<String>,
}

fn cases() -> Result<Vec<Case>, String> {
    let now = now();
    let claims = |extra: serde_json::Value| {
        let mut c = json!({"iss": "bench", "aud": "bench", "sub": "alice", "exp": now + 3600});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                if v.is_null() {
                    c.remove(k);
                } else {
                    c.insert(k.clone(), v.clone());
                }
            }
        }
        c.to_string()
    };
    let token = |extra: serde_json::Value| mint(&["token", "RS256", &claims(extra)]);
    let valid = token(json!({}))?;
    let tampered = format!("{}AAAA", &valid[..valid.len() - 4]);
    let case = |name, token: String| Case {
        name,
        token: Some(token),
        differs: None,
    };
    Ok(vec![
        case("valid", valid.clone()),
        Case {
            name: "missing",
            token: None,
            differs: None,
        },
        case("expired", token(json!({"exp": now - 3600}))?),
        case("not yet valid", token(json!({"nbf": now + 3600}))?),
        case("wrong issuer", token(json!({"iss": "other"}))?),
        case("wrong audience", token(json!({"aud": "other"}))?),
        case("bad signature", tampered),
        case("not a JWT", "abc".to_owned()),
        case(
            "unknown kid",
            mint(&["token", "RS256", &claims(json!({})), "nope"])?,
        ),
        case(
            "alg none",
            mint(&[
                "token",
                "HS256",
                &claims(json!({})),
                "",
                r#"{"alg":"none"}"#,
            ])?,
        ),
        Case {
            name: "no exp",
            token: Some(token(json!({"exp": null}))?),
            differs: Some(
                "require_expiration defaults to true here, to false in jwt_authn (README table)",
            ),
        },
        Case {
            name: "crit header",
            token: Some(mint(&[
                "token",
                "RS256",
                &claims(json!({})),
                "rsa",
                r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            ])?),
            differs: Some("RFC 7515 §4.1.11: this filter refuses critical extensions"),
        },
    ])
}

/// The answer, and the whole `WWW-Authenticate` value for the log (the
/// realm differs by design: the request URL there, the configured realm
/// here).
fn answer(addr: SocketAddr, token: Option<&str>) -> Result<(Answer, String), String> {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = authorization
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let response = harness_envoy::block_on(harness_envoy::get(addr, "/", &headers))??;
    let challenge = response
        .headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .map_or(String::new(), |(_, v)| v.clone());
    let error = challenge.find("error=\"").and_then(|at| {
        let rest = challenge.get(at + 7..)?;
        Some(rest.get(..rest.find('"')?)?.to_owned())
    });
    let answer = Answer {
        status: response.status,
        body: response.text(),
        error,
    };
    Ok((answer, challenge))
}

/// `cargo xtask jwt-authn`: the comparison alone (`dist/auth.wasm` built
/// first when missing).
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("jwt-authn takes no options (got `{arg}`)"));
    }
    let envoy = crate::envoy::ensure_envoy()?;
    if !root().join("dist/auth.wasm").is_file() {
        crate::dist::run(&[])?;
    }
    check(&envoy)
}

/// Runs every case through both filters; prints the comparison and fails
/// on a difference that is not documented.
pub(crate) fn check(envoy: &Path) -> Result<(), String> {
    let module = root().join("dist/auth.wasm");
    let jwks = mint(&["jwks"])?;
    let ours = json!({
        "realm": "bench",
        "jwt_providers": [{"name": "bench", "issuer": "bench", "audiences": ["bench"], "local_jwks": jwks}],
        "rules": [{"require": {"jwt": "bench"}}]
    });
    // The bench's provider: issuer and audience `bench`, no cache.
    let behind = |name: &str, filter| {
        Listener::new(name)
            .filter(filter)
            .route(Route::direct("/", 200, "ok"))
    };
    let bootstrap = Bootstrap::new()
        .listener(behind(JWT_AUTHN, jwt_authn_filter(&jwks, false)))
        .listener(behind(OURS, wasm_filter("auth", &module, &ours)));
    let work = root().join("target/jwt-authn-agreement");
    let envoy = start_envoy(envoy, &work, "envoy", &bootstrap)?.0;
    let theirs_at = harness_envoy::block_on(envoy.listener(JWT_AUTHN))??;
    let ours_at = harness_envoy::block_on(envoy.listener(OURS))??;
    let mut unexplained = Vec::new();
    for case in cases()? {
        let (theirs, their_challenge) = answer(theirs_at, case.token.as_deref())?;
        let (mine, my_challenge) = answer(ours_at, case.token.as_deref())?;
        let verdict = match (theirs == mine, case.differs) {
            (true, None) => "agree".to_owned(),
            (true, Some(_)) => "agree (a documented difference did not show)".to_owned(),
            (false, Some(why)) => format!("differ, as documented: {why}"),
            (false, None) => {
                unexplained.push(case.name);
                "DIFFER".to_owned()
            }
        };
        eprintln!(
            "xtask: jwt_authn {:<14} {} {:?} [{their_challenge}] | ours {} {:?} [{my_challenge}] | {verdict}",
            case.name, theirs.status, theirs.body, mine.status, mine.body,
        );
    }
    if unexplained.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the auth filter answers unlike jwt_authn for: {} (see the lines above; \
             target/jwt-authn-agreement has the Envoy config and log)",
            unexplained.join(", ")
        ))
    }
}
