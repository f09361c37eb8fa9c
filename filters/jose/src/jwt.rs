//! JSON Web Tokens (RFC 7519) in JWS compact form: parsing, signature
//! verification against a key set, and the claim checks of Envoy's
//! `jwt_authn` (issuer, audiences, subject, `exp`/`nbf` with clock skew,
//! maximum lifetime). Failures carry Envoy's own status messages where
//! Envoy has one, so clients see the same answers.

use std::fmt;

use crate::jwk::{Alg, Jwks, decode_base64url};
use crate::signature::{self, SignatureHost};
use filter_common::value::{Map, Value};

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwtError {
    Missing,
    TooLarge,
    BadFormat,
    HeaderBadBase64,
    HeaderBadJson,
    AlgMissing,
    AlgNotImplemented,
    KidNotString,
    /// The header lists critical extensions (RFC 7515 §4.1.11); this
    /// verifier understands none, so it must refuse.
    CritNotSupported,
    PayloadBadBase64,
    PayloadBadJson,
    ClaimNotString(&'static str),
    ClaimNotNumber(&'static str),
    /// A claim the configuration copies to a header (or names the identity
    /// with) holds bytes no header value may carry.
    ClaimNotHeaderSafe(String),
    SignatureBadBase64,
    Expired,
    NotYetValid,
    ExpMissing,
    LifetimeTooLong,
    UnknownIssuer,
    AudienceNotAllowed,
    SubjectNotAllowed,
    NoMatchingKey,
    VerificationFailed,
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("Jwt is missing"),
            Self::TooLarge => f.write_str("Jwt is too large"),
            Self::BadFormat => f.write_str(
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
            ),
            Self::HeaderBadBase64 => f.write_str("Jwt header is an invalid Base64url encoded"),
            Self::HeaderBadJson => f.write_str("Jwt header is an invalid JSON"),
            Self::AlgMissing => {
                f.write_str("Jwt header [alg] field is required and must be a string")
            }
            Self::AlgNotImplemented => f.write_str("Jwt header [alg] is not supported"),
            Self::KidNotString => f.write_str("Jwt header [kid] field is not a string"),
            Self::CritNotSupported => {
                f.write_str("Jwt header [crit] names extensions that are not supported")
            }
            Self::PayloadBadBase64 => f.write_str("Jwt payload is an invalid Base64url encoded"),
            Self::PayloadBadJson => f.write_str("Jwt payload is an invalid JSON"),
            Self::ClaimNotString(claim) => write!(f, "Jwt payload [{claim}] field is not a string"),
            Self::ClaimNotNumber(claim) => {
                write!(
                    f,
                    "Jwt payload [{claim}] field is not a positive 64 bit integer"
                )
            }
            Self::ClaimNotHeaderSafe(claim) => {
                write!(f, "Jwt payload [{claim}] cannot be a header value")
            }
            Self::SignatureBadBase64 => {
                f.write_str("Jwt signature is an invalid Base64url encoded")
            }
            Self::Expired => f.write_str("Jwt is expired"),
            Self::NotYetValid => f.write_str("Jwt not yet valid"),
            Self::ExpMissing => f.write_str("Jwt has no expiration (exp) and one is required"),
            Self::LifetimeTooLong => f.write_str("Jwt lifetime is longer than allowed"),
            Self::UnknownIssuer => f.write_str("Jwt issuer is not configured"),
            Self::AudienceNotAllowed => f.write_str("Audiences in Jwt are not allowed"),
            Self::SubjectNotAllowed => f.write_str("Jwt subject is not allowed"),
            Self::NoMatchingKey => {
                f.write_str("Jwks doesn't have key to match kid or alg from Jwt")
            }
            Self::VerificationFailed => f.write_str("Jwt verification fails"),
        }
    }
}

/// A token's time claims.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

/// A token split and decoded, not yet verified.
#[derive(Clone, Debug)]
pub struct Token<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    /// The payload's claims.
    pub claims: Map,
    /// The payload as sent (base64url), for forwarding.
    pub payload_b64: &'a str,
    signing_input: &'a str,
    signature: Vec<u8>,
    /// Registered claims, checked for type when parsed.
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

impl<'a> Token<'a> {
    /// Splits and decodes a compact JWS of at most `max_len` bytes.
    ///
    /// # Errors
    ///
    /// The time claims, for [`Requirements::check_time`].
    pub fn times(&self) -> Times {
        Times {
            exp: self.exp,
            nbf: self.nbf,
            iat: self.iat,
        }
    }

    /// Envoy's parse failures, and `TooLarge`.
    pub fn parse(text: &'a str, max_len: usize) -> Result<Self, JwtError> {
        if text.is_empty() {
            return Err(JwtError::Missing);
        }
        if text.len() > max_len {
            return Err(JwtError::TooLarge);
        }
        let mut parts = text.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::BadFormat);
        };
        // What the signature covers: the text before the last dot.
        let signing_input = text
            .get(..header_b64.len() + 1 + payload_b64.len())
            .ok_or(JwtError::BadFormat)?;
        let header = decode_base64url(header_b64.as_bytes()).ok_or(JwtError::HeaderBadBase64)?;
        let Ok(Value::Object(header)) = filter_common::value::parse(&header) else {
            return Err(JwtError::HeaderBadJson);
        };
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Alg::parse(name).ok_or(JwtError::AlgNotImplemented)?,
            _ => return Err(JwtError::AlgMissing),
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwtError::KidNotString),
        };
        if header.get("crit").is_some() {
            return Err(JwtError::CritNotSupported);
        }
        let decoded = decode_base64url(payload_b64.as_bytes()).ok_or(JwtError::PayloadBadBase64)?;
        let Ok(Value::Object(claims)) = filter_common::value::parse(&decoded) else {
            return Err(JwtError::PayloadBadJson);
        };
        let signature =
            decode_base64url(signature.as_bytes()).ok_or(JwtError::SignatureBadBase64)?;
        let string = |claim: &'static str| match claims.get(claim) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(JwtError::ClaimNotString(claim)),
        };
        let time = |claim: &'static str| match claims.get(claim) {
            None => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(secs), _) => Ok(Some(secs)),
                // RFC 7519 NumericDate may have a fraction.
                (None, Some(secs)) if secs >= 0.0 && secs < u64::MAX as f64 => {
                    Ok(Some(secs as u64))
                }
                _ => Err(JwtError::ClaimNotNumber(claim)),
            },
            Some(_) => Err(JwtError::ClaimNotNumber(claim)),
        };
        let aud = match claims.get("aud") {
            None => Vec::new(),
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(JwtError::ClaimNotString("aud"))?,
            Some(_) => return Err(JwtError::ClaimNotString("aud")),
        };
        let (iss, sub) = (string("iss")?, string("sub")?);
        let (exp, nbf, iat) = (time("exp")?, time("nbf")?, time("iat")?);
        Ok(Self {
            alg,
            kid,
            claims,
            payload_b64,
            signing_input,
            signature,
            iss,
            sub,
            aud,
            exp,
            nbf,
            iat,
        })
    }

    /// Verifies the signature with a key of `jwks`: the key with the
    /// token's `kid` when it has one, else every key that fits the
    /// algorithm, as `jwt_authn` does.
    ///
    /// # Errors
    ///
    /// `NoMatchingKey` when no key fits; `VerificationFailed` when none
    /// verifies.
    ///
    /// A token without `kid` is tried against at most
    /// `max_keys_without_kid` keys that fit its `alg`, in the set's order:
    /// each try of a P-521 or 4096-bit RSA key costs milliseconds in wasm,
    /// and an unauthenticated caller chooses how many tries a token costs.
    ///
    /// `host` checks the signatures it can (Envoy's `verify_signature`);
    /// the module checks the rest.
    pub fn verify(
        &self,
        jwks: &Jwks,
        max_keys_without_kid: usize,
        host: &mut dyn SignatureHost,
    ) -> Result<(), JwtError> {
        let limit = if self.kid.is_some() {
            usize::MAX
        } else {
            max_keys_without_kid
        };
        let mut candidates = jwks
            .keys
            .iter()
            .filter(|key| self.kid.is_none() || key.kid == self.kid)
            .filter(|key| key.alg.is_none_or(|alg| alg == self.alg))
            .filter(|key| self.alg.fits(&key.material))
            .take(limit)
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::NoMatchingKey);
        }
        let input = self.signing_input.as_bytes();
        if candidates.any(|key| signature::verify(self.alg, key, input, &self.signature, host)) {
            Ok(())
        } else {
            Err(JwtError::VerificationFailed)
        }
    }
}

/// What a provider requires of a verified token's claims.
#[derive(Clone, Debug)]
pub struct Requirements {
    /// The `iss` a token must carry (none: any).
    pub issuer: Option<String>,
    /// A token's `aud` must name one of these (empty: any).
    pub audiences: Vec<String>,
    /// Tokens without `exp` are refused (Envoy's `require_expiration`).
    pub require_exp: bool,
    /// Longest allowed `exp - iat` (or `exp - nbf`, or `exp - now`), seconds.
    pub max_lifetime: Option<u64>,
    /// Leeway for `exp` and `nbf`, seconds (Envoy's default: 60).
    pub clock_skew: u64,
}

impl Default for Requirements {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            require_exp: true,
            max_lifetime: None,
            clock_skew: 60,
        }
    }
}

impl Requirements {
    /// Checks the registered claims at `now` (Unix seconds), in Envoy's
    /// order: issuer, audiences, then time.
    ///
    /// # Errors
    ///
    /// The first requirement the token misses.
    pub fn check(&self, token: &Token<'_>, now: u64) -> Result<(), JwtError> {
        if let Some(issuer) = &self.issuer
            && token.iss.as_ref() != Some(issuer)
        {
            return Err(JwtError::UnknownIssuer);
        }
        if !self.audiences.is_empty() && !token.aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(JwtError::AudienceNotAllowed);
        }
        self.check_time(&token.times(), now)
    }

    /// The checks that depend on `now`: `nbf`, `exp` and the lifetime.
    /// A cached token passes only these again.
    ///
    /// # Errors
    ///
    /// The first one the token misses.
    pub fn check_time(&self, times: &Times, now: u64) -> Result<(), JwtError> {
        if let Some(nbf) = times.nbf
            && now.saturating_add(self.clock_skew) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        let token = times;
        match token.exp {
            Some(exp) if exp.saturating_add(self.clock_skew) < now => Err(JwtError::Expired),
            None if self.require_exp => Err(JwtError::ExpMissing),
            Some(exp) => match self.max_lifetime {
                Some(max) => {
                    let start = token.iat.or(token.nbf).unwrap_or(now);
                    if exp.saturating_sub(start) > max {
                        Err(JwtError::LifetimeTooLong)
                    } else {
                        Ok(())
                    }
                }
                None => Ok(()),
            },
            None => Ok(()),
        }
    }
}
