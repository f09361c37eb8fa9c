//! What the client is told, and what the upstream receives. Refusals are
//! 401 with RFC 6750 / RFC 7617 challenges, denials 403, optionally with
//! RFC 9457 `application/problem+json` bodies; an allowed request carries
//! the identity and the configured token outputs, with any value the client
//! sent in those headers removed first.

use filter_common::value::{Map, Value};
use filter_proxy::reply::LocalReply;
use filter_proxy::request::{Host, Request};

use crate::config::{Config, Require, Rule};
use crate::policy::{Decision, Method, Passed, Refusal, claim, claim_text};

/// The local reply for a decision that refuses the request, and its
/// response-code details (for access logs: `%RESPONSE_CODE_DETAILS%`).
pub fn reply(
    config: &Config,
    rule: Option<&Rule>,
    decision: &Decision,
) -> Option<(LocalReply, String)> {
    match decision {
        Decision::Allow(_) => None,
        Decision::Missing(missing) => {
            Some(unauthorized(config, rule, missing_reason(*missing), None))
        }
        Decision::Unauthorized(refusal) => {
            Some(unauthorized(config, rule, &refusal.reason, Some(refusal)))
        }
        Decision::Forbidden(_) => {
            let details = match rule {
                Some(r) => format!("auth_denied{{{}}}", token_text(&r.name)),
                None => "auth_denied{unmatched}".to_owned(),
            };
            Some((
                local(config, 403, "Forbidden", "Access denied", Vec::new()),
                details,
            ))
        }
        Decision::AuthzDenied(reply) => Some((reply.clone(), "auth_ext_authz_denied".to_owned())),
        Decision::AuthzError => {
            let status = config.ext_authz.as_ref().map_or(403, |e| e.status_on_error);
            Some((
                LocalReply {
                    status,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                "auth_ext_authz_error".to_owned(),
            ))
        }
    }
}

/// A 401 with a challenge per method the rule accepts (the refused one
/// carrying the error).
fn unauthorized(
    config: &Config,
    rule: Option<&Rule>,
    reason: &str,
    refusal: Option<&Refusal>,
) -> (LocalReply, String) {
    let mut methods = rule
        .and_then(|r| r.require.as_ref())
        .map(challenged_methods)
        .unwrap_or_default();
    if methods.is_empty() {
        methods.push(Method::Jwt);
    }
    let headers = methods
        .iter()
        .map(|m| {
            (
                "www-authenticate".to_owned(),
                challenge(config, *m, refusal).into_bytes(),
            )
        })
        .collect();
    let details = match refusal {
        Some(r) => format!("auth_invalid_credentials{{{}}}", r.method.name()),
        None => "auth_missing_credentials".to_owned(),
    };
    let (status, title) = if refusal.is_some_and(|r| r.forbidden) {
        (403, "Forbidden")
    } else {
        (401, "Unauthorized")
    };
    (local(config, status, title, reason, headers), details)
}

/// The methods a requirement can challenge for, in order, once each
/// (external authorization has no challenge).
fn challenged_methods(require: &Require) -> Vec<Method> {
    fn walk(r: &Require, out: &mut Vec<Method>) {
        let method = match r {
            Require::Basic => Method::Basic,
            Require::ApiKey => Method::ApiKey,
            Require::Jwt(_) => Method::Jwt,
            Require::ExtAuthz => return,
            Require::Any(list) | Require::All(list) => {
                return list.iter().for_each(|r| walk(r, out));
            }
            Require::AllowMissing(r) | Require::AllowMissingOrFailed(r) => return walk(r, out),
        };
        if !out.contains(&method) {
            out.push(method);
        }
    }
    let mut out = Vec::new();
    walk(require, &mut out);
    out
}

fn missing_reason(method: Method) -> &'static str {
    match method {
        Method::Basic => "User authentication failed. Missing username and password.",
        Method::ApiKey => "Client authentication failed. Missing API key.",
        Method::Jwt | Method::ExtAuthz => "Jwt is missing",
    }
}

/// One `WWW-Authenticate` challenge. Bearer carries RFC 6750's `error` and
/// `error_description` when a token was refused (none when it was missing,
/// §3.1); API keys have no registered scheme, so `ApiKey` is used.
fn challenge(config: &Config, method: Method, refusal: Option<&Refusal>) -> String {
    let realm = quote(&config.realm);
    match method {
        Method::Basic => format!("Basic realm={realm}, charset=\"UTF-8\""),
        Method::ApiKey => format!("ApiKey realm={realm}"),
        Method::Jwt | Method::ExtAuthz => match refusal.filter(|r| r.method == Method::Jwt) {
            Some(r) => format!(
                "Bearer realm={realm}, error=\"{}\", error_description={}",
                r.code.unwrap_or("invalid_token"),
                quote(&r.reason)
            ),
            None => format!("Bearer realm={realm}"),
        },
    }
}

/// An RFC 9110 quoted-string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Response-code details may not contain spaces.
fn token_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if u8::try_from(c).is_ok_and(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn local(
    config: &Config,
    status: u16,
    title: &str,
    detail: &str,
    mut headers: Vec<(String, Vec<u8>)>,
) -> LocalReply {
    let (content_type, body) = if config.problem_details {
        let mut body = Map::new();
        body.insert("type", "about:blank");
        body.insert("title", title);
        body.insert("status", u64::from(status));
        body.insert("detail", detail);
        let body = Value::Object(body);
        ("application/problem+json", body.to_string().into_bytes())
    } else {
        ("text/plain", detail.as_bytes().to_vec())
    };
    headers.push(("content-type".to_owned(), content_type.as_bytes().to_vec()));
    LocalReply {
        status,
        headers,
        body,
    }
}

/// Removes every header this filter sets, whatever the client sent in them:
/// the identity header, providers' payload and claim headers, and the
/// authorization service's `upstream_headers` (so a client's `x-user`
/// never passes when the service's answer lacks it).
pub fn strip_outputs<H: Host>(config: &Config, request: &mut Request<H>) {
    request.headers.remove(&config.identity_header);
    for name in config.ext_authz.iter().flat_map(|a| &a.upstream_headers) {
        request.headers.remove(&name.to_ascii_lowercase());
    }
    for provider in &config.providers {
        if let Some(h) = &provider.payload_header {
            request.headers.remove(h);
        }
        for c in &provider.claims_to_headers {
            request.headers.remove(&c.header);
        }
    }
}

/// What an allowed request carries upstream (after [`strip_outputs`]).
pub fn apply<H: Host>(config: &Config, passed: &Passed, request: &mut Request<H>) {
    if let Some(identity) = &passed.identity {
        request
            .headers
            .set(&config.identity_header, identity.as_bytes());
    }
    for jwt in &passed.jwts {
        let Some(provider) = config.providers.get(jwt.provider) else {
            continue;
        };
        if !provider.forward {
            for source in &provider.sources {
                source.remove(request);
            }
        }
        if let Some(h) = &provider.payload_header {
            request.headers.set(h, jwt.payload_b64.as_bytes());
        }
        for c in &provider.claims_to_headers {
            if let Some(value) = claim(&jwt.claims, &c.claim) {
                request.headers.set(&c.header, &claim_text(value));
            }
        }
    }
    if config.api_key.hide
        && let Some(source) = passed
            .api_key_source
            .and_then(|i| config.api_key.sources.get(i))
    {
        source.remove(request);
    }
    for (name, value) in &passed.authz_headers {
        request.headers.set(&name.to_ascii_lowercase(), value);
    }
}
