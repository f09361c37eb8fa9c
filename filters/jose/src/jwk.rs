//! JSON Web Key Sets (RFC 7517/7518): the public keys (and HMAC secrets)
//! tokens are verified with, and the algorithms each key may verify.
//! A key the filter cannot use (an unknown `kty` or curve, a private-only
//! use) is skipped and named; a malformed key or a set with no usable key is
//! an error.

use ed25519_dalek::VerifyingKey as Ed25519Key;
use filter_common::value::Value;
use rsa::{BigUint, RsaPublicKey};

/// RSA moduli shorter than this are refused (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// And longer than this (verification cost grows with the square).
pub const MAX_RSA_BITS: usize = 8192;

/// A signature algorithm (RFC 7518 §3, RFC 8037). `none` is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    Es512,
    EdDsa,
}

impl Alg {
    /// The algorithm a JOSE `alg` names, if the filter implements it.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "HS256" => Self::Hs256,
            "HS384" => Self::Hs384,
            "HS512" => Self::Hs512,
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "ES512" => Self::Es512,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }

    /// The shortest HMAC key this algorithm takes: its hash's length
    /// (RFC 7518 §3.2); 0 for the others.
    pub fn min_secret_len(self) -> usize {
        match self {
            Self::Hs256 => 32,
            Self::Hs384 => 48,
            Self::Hs512 => 64,
            _ => 0,
        }
    }

    /// Whether keys of this material verify this algorithm: HMAC only with
    /// `oct` secrets at least as long as its hash, RSA only with RSA keys,
    /// each curve with its own — so a public key can never become an HMAC
    /// secret (algorithm confusion).
    pub fn fits(self, material: &Material) -> bool {
        if let Material::Secret(k) = material {
            return k.len() >= self.min_secret_len() && self.min_secret_len() > 0;
        }
        matches!(
            (self, material),
            (Self::Hs256 | Self::Hs384 | Self::Hs512, Material::Secret(_))
                | (
                    Self::Rs256
                        | Self::Rs384
                        | Self::Rs512
                        | Self::Ps256
                        | Self::Ps384
                        | Self::Ps512,
                    Material::Rsa(_)
                )
                | (Self::Es256, Material::P256(_))
                | (Self::Es384, Material::P384(_))
                | (Self::Es512, Material::P521(_))
                | (Self::EdDsa, Material::Ed25519(_))
        )
    }
}

/// What a key verifies with.
#[derive(Clone, Debug)]
pub enum Material {
    Rsa(RsaPublicKey),
    P256(P256Key),
    P384(P384Key),
    P521(P521Key),
    Ed25519(Ed25519Key),
    /// An HMAC secret (`kty: oct`).
    Secret(Vec<u8>),
}

/// One usable key.
#[derive(Clone, Debug)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The only algorithm the key may verify, when the set says so.
    pub alg: Option<Alg>,
    pub material: Material,
    /// The key as SubjectPublicKeyInfo DER, the form the proxy's
    /// `verify_signature` takes: RSA and EC keys only, encoded once here
    /// rather than per request.
    pub spki: Option<Vec<u8>>,
}

impl Jwk {
    pub fn new(kid: Option<String>, alg: Option<Alg>, material: Material) -> Self {
        let spki = material.spki();
        Self {
            kid,
            alg,
            material,
            spki,
        }
    }
}

impl Material {
    /// SubjectPublicKeyInfo DER for RSA and EC keys.
    fn spki(&self) -> Option<Vec<u8>> {
        use rsa::pkcs8::EncodePublicKey as _;
        let document = match self {
            Self::Rsa(key) => key.to_public_key_der(),
            Self::P256(key) => p256::PublicKey::from(&key.0).to_public_key_der(),
            Self::P384(key) => p384::PublicKey::from(&key.0).to_public_key_der(),
            Self::P521(key) => p521::PublicKey::from_affine(*key.0.as_affine())
                .ok()?
                .to_public_key_der(),
            Self::Ed25519(_) | Self::Secret(_) => return None,
        };
        document.ok().map(rsa::pkcs8::Document::into_vec)
    }
}

/// The shortest `oct` key accepted at all (HS256's hash length).
const MIN_SECRET: usize = 32;

/// A parsed key set.
#[derive(Clone, Debug, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
    /// Keys left out, each with why (for the log).
    pub skipped: Vec<String>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`) or a single JWK.
    ///
    /// # Errors
    ///
    /// Not JSON, no `keys` list, a malformed key, or no usable key.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let doc =
            filter_common::value::parse(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let keys = match doc.get("keys") {
            Some(Value::Array(keys)) => keys.iter().collect(),
            Some(_) => return Err("the JWKS `keys` is not a list".into()),
            None if doc.get("kty").is_some() => vec![&doc],
            None => return Err("the JWKS has no `keys` list".into()),
        };
        let mut set = Self::default();
        for (i, key) in keys.into_iter().enumerate() {
            match parse_key(key).map_err(|e| format!("keys[{i}]: {e}"))? {
                Ok(jwk) => set.keys.push(jwk),
                Err(reason) => set.skipped.push(format!("keys[{i}]: {reason}")),
            }
        }
        if set.keys.is_empty() {
            let why = if set.skipped.is_empty() {
                String::new()
            } else {
                format!(" ({})", set.skipped.join("; "))
            };
            return Err(format!("the JWKS has no usable key{why}"));
        }
        Ok(set)
    }
}

/// `Ok(Ok(key))`, `Ok(Err(why skipped))`, or `Err(why malformed)`.
fn parse_key(key: &Value) -> Result<Result<Jwk, String>, String> {
    let Value::Object(fields) = key else {
        return Err("a key is a JSON object".into());
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(format!("`{name}` is not a string")),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| format!("`{name}` is missing"))?;
        decode_base64url(value.as_bytes()).ok_or_else(|| format!("`{name}` is not base64url"))
    };
    if let Some(usage) = text("use")?
        && usage != "sig"
    {
        return Ok(Err(format!("`use` is `{usage}`, not `sig`")));
    }
    let kid = text("kid")?.map(str::to_owned);
    let alg = match text("alg")? {
        None => None,
        Some(name) => match Alg::parse(name) {
            Some(alg) => Some(alg),
            None => return Ok(Err(format!("algorithm `{name}` is not supported"))),
        },
    };
    let kty = text("kty")?.ok_or("`kty` is missing")?;
    let material = match kty {
        "RSA" => {
            let n = BigUint::from_bytes_be(&bytes("n")?);
            let e = BigUint::from_bytes_be(&bytes("e")?);
            let key = RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                .map_err(|e| format!("not an RSA public key: {e}"))?;
            let bits = rsa::traits::PublicKeyParts::n(&key).bits();
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "the RSA modulus has {bits} bits, fewer than {MIN_RSA_BITS}"
                ));
            }
            Material::Rsa(key)
        }
        "EC" => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            match text("crv")? {
                Some("P-256") => {
                    let (x, y) = (fixed(&x, 32, "x")?, fixed(&y, 32, "y")?);
                    Material::P256(
                        P256Key::from_coordinates(x, y).ok_or("the point is not on P-256")?,
                    )
                }
                Some("P-384") => {
                    let (x, y) = (fixed(&x, 48, "x")?, fixed(&y, 48, "y")?);
                    Material::P384(
                        P384Key::from_coordinates(x, y).ok_or("the point is not on P-384")?,
                    )
                }
                Some("P-521") => {
                    let (x, y) = (fixed(&x, 66, "x")?, fixed(&y, 66, "y")?);
                    Material::P521(
                        P521Key::from_coordinates(x, y).ok_or("the point is not on P-521")?,
                    )
                }
                Some(other) => return Ok(Err(format!("curve `{other}` is not supported"))),
                None => return Err("`crv` is missing".into()),
            }
        }
        "OKP" => match text("crv")? {
            Some("Ed25519") => {
                let x: [u8; 32] = bytes("x")?
                    .try_into()
                    .map_err(|_| "an Ed25519 `x` has 32 bytes")?;
                Material::Ed25519(
                    Ed25519Key::from_bytes(&x).map_err(|_| "not an Ed25519 public key")?,
                )
            }
            Some(other) => return Ok(Err(format!("curve `{other}` is not supported"))),
            None => return Err("`crv` is missing".into()),
        },
        "oct" => {
            let k = bytes("k")?;
            if k.is_empty() {
                return Err("an `oct` key's `k` is empty".into());
            }
            // RFC 7518 §3.2: an HMAC key is at least as long as the hash
            // (a non-HMAC `alg` is refused below as not fitting).
            let least = alg.map_or(MIN_SECRET, Alg::min_secret_len);
            if k.len() < least {
                return Err(format!(
                    "an `oct` key must be at least {least} bytes (RFC 7518 §3.2: as long as the \
                     hash), this one has {}",
                    k.len()
                ));
            }
            Material::Secret(k)
        }
        other => return Ok(Err(format!("key type `{other}` is not supported"))),
    };
    if let Some(alg) = alg
        && !alg.fits(&material)
    {
        return Err(format!("`alg` does not fit a `{kty}` key"));
    }
    Ok(Ok(Jwk::new(kid, alg, material)))
}

/// A coordinate of exactly `len` bytes (RFC 7518 §6.2.1.2).
fn fixed<'a>(bytes: &'a [u8], len: usize, name: &str) -> Result<&'a [u8], String> {
    if bytes.len() == len {
        Ok(bytes)
    } else {
        Err(format!("`{name}` has {} bytes, not {len}", bytes.len()))
    }
}

/// JWS's base64url (RFC 7515 §2): the URL-safe alphabet without padding,
/// strict (padding, an impossible length and non-zero trailing bits are
/// refused), so one token has exactly one encoding.
pub fn decode_base64url(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// An ECDSA key of a JWK on one curve, verified the JWS way (RFC 7518
/// §3.4): the signature is `r ‖ s`, each the curve's size, over the curve's
/// hash. The arithmetic is RustCrypto's.
macro_rules! ec_key {
    ($name:ident, $krate:ident, $curve:literal) => {
        #[doc = concat!("A ", $curve, " public key.")]
        #[derive(Clone)]
        pub struct $name($krate::ecdsa::VerifyingKey);

        // (`p521`'s key has no `Debug`; a public key shows its curve only.)
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!($curve, " key"))
            }
        }

        impl $name {
            /// A key from its affine coordinates (big-endian, the curve's
            /// size each, as JWK `x` and `y`): `None` when a coordinate has
            /// another length or the point is not on the curve.
            pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
                let size = $krate::FieldBytes::default().len();
                if x.len() != size || y.len() != size {
                    return None;
                }
                // SEC1's uncompressed form: 0x04, x, y.
                let mut sec1 = Vec::with_capacity(1 + 2 * size);
                sec1.push(4);
                sec1.extend_from_slice(x);
                sec1.extend_from_slice(y);
                $krate::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                    .ok()
                    .map(Self)
            }

            /// A JWS signature (`r ‖ s`) as DER, the encoding BoringSSL
            /// verifies; `None` when it is not a valid `r ‖ s` on this
            /// curve (wrong length, `r` or `s` zero or not below the order).
            pub fn der_signature(signature: &[u8]) -> Option<Vec<u8>> {
                $krate::ecdsa::Signature::from_slice(signature)
                    .ok()
                    .map(|s| s.to_der().as_bytes().to_vec())
            }

            /// Whether `signature` (`r ‖ s`) signs `message`.
            pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
                use $krate::ecdsa::signature::Verifier as _;
                $krate::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|s| self.0.verify(message, &s).is_ok())
            }
        }
    };
}

ec_key!(P256Key, p256, "P-256");
ec_key!(P384Key, p384, "P-384");
ec_key!(P521Key, p521, "P-521");
