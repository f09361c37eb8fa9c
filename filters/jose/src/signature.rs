//! Where a JWS signature is verified: by the proxy, through Envoy's
//! `verify_signature` foreign function (BoringSSL, natively compiled), or in
//! the module (RustCrypto, compiled to wasm). An RS256 check costs about
//! 600 µs in Envoy's V8 and a few dozen through the host
//! (docs/performance.md), so RS256/384/512 and ES256/384/512 go to the host
//! when it has the function; PS*, EdDSA and HMAC stay in the module
//! (`verify_signature` verifies PKCS#1 v1.5 and ECDSA only, and an HMAC is
//! cheaper than the crossing).
//!
//! Whether the host has it is decided once, at configure, by a self-test
//! ([`self_test`]): a known P-256 signature must verify through the host and
//! the same signature over another text must not, so a host whose function
//! answers differently is never trusted with a verdict.

use hmac::{Hmac, Mac};
use prost::Message;
use rsa::signature::Verifier as _;
use sha2::{Sha256, Sha384, Sha512};

use crate::jwk::{Alg, Jwk, Material, P256Key, P384Key, P521Key, decode_base64url};

/// The proxy's side of signature verification.
pub trait SignatureHost {
    /// Whether [`SignatureHost::verify_signature`] may be called (the
    /// configure-time self-test passed).
    fn offers_verify_signature(&self) -> bool;

    /// Calls the proxy's `verify_signature` with encoded
    /// `VerifySignatureArguments`: the encoded `VerifySignatureResult`, or
    /// the ABI status the call failed with (1, NOT_FOUND: no such function).
    ///
    /// # Errors
    ///
    /// The host's status when it is not OK.
    fn verify_signature(&mut self, arguments: &[u8]) -> Result<Vec<u8>, u32>;

    /// One signature was checked, by `by` (for the counters).
    fn checked(&mut self, _by: Verifier) {}
}

/// Who checked a signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verifier {
    /// The proxy's `verify_signature`.
    Host,
    /// The module's own RustCrypto code.
    Module,
}

/// A proxy without `verify_signature` (and native tests): every signature
/// is checked in the module.
#[derive(Clone, Copy, Debug, Default)]
pub struct InModule;

impl SignatureHost for InModule {
    fn offers_verify_signature(&self) -> bool {
        false
    }

    fn verify_signature(&mut self, _arguments: &[u8]) -> Result<Vec<u8>, u32> {
        Err(1)
    }
}

/// Envoy's `VerifySignatureArguments`
/// (`source/extensions/common/wasm/ext/verify_signature.proto`).
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureArguments {
    /// `sha1`, `sha224`, `sha256`, `sha384` or `sha512`.
    #[prost(string, tag = "1")]
    pub hash_function: String,
    /// SubjectPublicKeyInfo, DER.
    #[prost(bytes = "vec", tag = "2")]
    pub public_key: Vec<u8>,
    /// PKCS#1 v1.5 for RSA keys, DER `ECDSA-Sig-Value` for EC keys.
    #[prost(bytes = "vec", tag = "3")]
    pub signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub text: Vec<u8>,
    /// The key as PEM instead (unused here: one of the two is given).
    #[prost(string, tag = "5")]
    pub public_key_pem: String,
}

/// Envoy's `VerifySignatureResult`.
#[derive(Clone, PartialEq, Message)]
pub struct VerifySignatureResult {
    #[prost(bool, tag = "1")]
    pub result: bool,
    /// Why it did not verify (BoringSSL's step that failed).
    #[prost(string, tag = "2")]
    pub error: String,
}

/// Whether `signature` signs `input` under `alg` with `key`: through the
/// host when it offers `verify_signature` and the algorithm is one it
/// verifies, else (or when the host's answer is not a result) in the
/// module.
pub fn verify(
    alg: Alg,
    key: &Jwk,
    input: &[u8],
    signature: &[u8],
    host: &mut dyn SignatureHost,
) -> bool {
    if host.offers_verify_signature()
        && let Some(arguments) = host_arguments(alg, key, input, signature)
        && let Ok(answer) = host.verify_signature(&arguments)
        && let Ok(verdict) = VerifySignatureResult::decode(answer.as_slice())
    {
        host.checked(Verifier::Host);
        return verdict.result;
    }
    host.checked(Verifier::Module);
    verify_signature(alg, &key.material, input, signature)
}

/// The host's arguments for a JWS check, when the host can make it: the
/// key's SubjectPublicKeyInfo, the hash `alg` names, and the signature in
/// the encoding BoringSSL takes (an ECDSA `r ‖ s` becomes DER; one that is
/// not a valid `r ‖ s` has no DER form and is left to the module, which
/// refuses it).
fn host_arguments(alg: Alg, key: &Jwk, input: &[u8], signature: &[u8]) -> Option<Vec<u8>> {
    let (hash_function, signature) = match (alg, &key.material) {
        (Alg::Rs256, Material::Rsa(_)) => ("sha256", signature.to_vec()),
        (Alg::Rs384, Material::Rsa(_)) => ("sha384", signature.to_vec()),
        (Alg::Rs512, Material::Rsa(_)) => ("sha512", signature.to_vec()),
        (Alg::Es256, Material::P256(_)) => ("sha256", P256Key::der_signature(signature)?),
        (Alg::Es384, Material::P384(_)) => ("sha384", P384Key::der_signature(signature)?),
        (Alg::Es512, Material::P521(_)) => ("sha512", P521Key::der_signature(signature)?),
        _ => return None,
    };
    let arguments = VerifySignatureArguments {
        hash_function: hash_function.to_owned(),
        public_key: key.spki.clone()?,
        signature,
        text: input.to_vec(),
        public_key_pem: String::new(),
    };
    Some(arguments.encode_to_vec())
}

/// The self-test's key (a P-256 JWK's `x` and `y`), text and JWS
/// signature (`r ‖ s`), made once with OpenSSL. Test material only.
const SELF_TEST_X: &str = "Mwqjs2fC4kGhkHD-aCiF0kNqxffAYtuO-pwhKOGXf4c";
const SELF_TEST_Y: &str = "btJ5RX9XYAP-2qtueaOAl3ivMjHHQjSDEaPgprei7EI";
const SELF_TEST_TEXT: &[u8] = b"auth filter: verify_signature self-test";
const SELF_TEST_SIGNATURE: &str =
    "Hi_9SViA3209AX-FXJFFsV7jhmd-TjNb5hABzUnYZO6Y6sRWUuDim88ldz5ywkuC6O27hwnGrmiPUNILdypepg";

/// Whether the host's `verify_signature` verifies as this filter needs,
/// through the same key and signature conversions requests use: a known
/// ES256 signature verifies, and fails over another text.
///
/// # Errors
///
/// Why the host is not used, for the log (`NOT_FOUND`: it has no
/// `verify_signature`).
pub fn self_test(host: &mut dyn SignatureHost) -> Result<(), String> {
    let coordinate = |text: &str| decode_base64url(text.as_bytes()).unwrap_or_default();
    let material = P256Key::from_coordinates(&coordinate(SELF_TEST_X), &coordinate(SELF_TEST_Y))
        .map(Material::P256)
        .ok_or("the self-test key does not import")?;
    let key = Jwk::new(None, Some(Alg::Es256), material);
    let signature = coordinate(SELF_TEST_SIGNATURE);
    let mut answer = |text: &[u8]| -> Result<VerifySignatureResult, String> {
        let arguments = host_arguments(Alg::Es256, &key, text, &signature)
            .ok_or("the self-test signature does not convert")?;
        let answer = host
            .verify_signature(&arguments)
            .map_err(|status| match status {
                1 => "the host has no verify_signature (NOT_FOUND)".to_owned(),
                status => format!("the host's verify_signature failed with status {status}"),
            })?;
        VerifySignatureResult::decode(answer.as_slice())
            .map_err(|_| "the host's verify_signature answer is not a VerifySignatureResult".into())
    };
    let good = answer(SELF_TEST_TEXT)?;
    let forged = answer(b"auth filter: verify_signature self-test, forged")?;
    match (good.result, forged.result) {
        (true, false) => Ok(()),
        (false, _) => Err(format!(
            "the host's verify_signature refused a valid signature ({})",
            good.error
        )),
        (true, true) => Err("the host's verify_signature accepted a forged signature".into()),
    }
}

/// The JWS layer (RFC 7515 §5.2 step 8, RFC 7518 §3): whether `signature`
/// signs `input` under `alg` with `material`. A key of the wrong kind for
/// `alg` never verifies. The Wycheproof vectors run through here.
pub fn verify_signature(alg: Alg, material: &Material, input: &[u8], signature: &[u8]) -> bool {
    match (alg, material) {
        (Alg::Hs256, Material::Secret(k)) => hmac::<Hmac<Sha256>>(k, input, signature),
        (Alg::Hs384, Material::Secret(k)) => hmac::<Hmac<Sha384>>(k, input, signature),
        (Alg::Hs512, Material::Secret(k)) => hmac::<Hmac<Sha512>>(k, input, signature),
        (Alg::Rs256, Material::Rsa(k)) => pkcs1::<Sha256>(k, input, signature),
        (Alg::Rs384, Material::Rsa(k)) => pkcs1::<Sha384>(k, input, signature),
        (Alg::Rs512, Material::Rsa(k)) => pkcs1::<Sha512>(k, input, signature),
        (Alg::Ps256, Material::Rsa(k)) => pss::<Sha256>(k, input, signature),
        (Alg::Ps384, Material::Rsa(k)) => pss::<Sha384>(k, input, signature),
        (Alg::Ps512, Material::Rsa(k)) => pss::<Sha512>(k, input, signature),
        (Alg::Es256, Material::P256(k)) => k.verify(input, signature),
        (Alg::Es384, Material::P384(k)) => k.verify(input, signature),
        (Alg::Es512, Material::P521(k)) => k.verify(input, signature),
        (Alg::EdDsa, Material::Ed25519(k)) => <[u8; 64]>::try_from(signature).is_ok_and(|s| {
            k.verify_strict(input, &ed25519_dalek::Signature::from_bytes(&s))
                .is_ok()
        }),
        _ => false,
    }
}

/// HMAC, compared in constant time (`verify_slice`).
fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], signature: &[u8]) -> bool {
    <M as hmac::digest::KeyInit>::new_from_slice(key).is_ok_and(|mut mac| {
        mac.update(input);
        mac.verify_slice(signature).is_ok()
    })
}

fn pkcs1<D>(key: &rsa::RsaPublicKey, input: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|s| {
        rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
            .verify(input, &s)
            .is_ok()
    })
}

fn pss<D>(key: &rsa::RsaPublicKey, input: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::FixedOutputReset,
{
    rsa::pss::Signature::try_from(signature).is_ok_and(|s| {
        rsa::pss::VerifyingKey::<D>::new(key.clone())
            .verify(input, &s)
            .is_ok()
    })
}
