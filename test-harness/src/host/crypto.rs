//! Envoy's `verify_signature` and `sign` foreign functions
//! (`source/extensions/common/wasm/foreign.cc` over `Common::Crypto::Utility`,
//! BoringSSL), on RustCrypto: the answers follow what Envoy 1.40 gives the
//! ABI probe (`test-harness/scenarios/abi-probe`, compared line by line).
//!
//! Arguments: `VerifySignatureArguments { string hash_function = 1; bytes
//! public_key = 2 (SubjectPublicKeyInfo DER); bytes signature = 3; bytes
//! text = 4; string public_key_pem = 5 }`. A message that does not parse,
//! no key or both keys answer BAD_ARGUMENT; otherwise OK with
//! `VerifySignatureResult { bool result = 1; string error = 2 }`, where a
//! key that does not import fails as "Failed to initialize digest verify.". The key decides the scheme, as `EVP_DigestVerify` does: RSA is
//! PKCS#1 v1.5 (a PSS signature fails), ECDSA takes a DER signature (a JWS
//! `r ‖ s` fails), Ed25519 refuses a digest.
//!
//! `sign` takes `SignArguments { string hash_function = 1; bytes private_key
//! = 2 (PKCS#8 DER); bytes text = 3; string private_key_pem = 4 }` and
//! answers `SignResult { bool result = 1; bytes signature = 2; string error
//! = 3 }`: RSA PKCS#1 v1.5 (deterministic: the same bytes as Envoy) or
//! ECDSA with a DER signature (RFC 6979 nonces here, random ones in Envoy:
//! both verify). A PKCS#1 or SEC1 DER key does not import, as in Envoy; a
//! PEM key must be a `PRIVATE KEY` (PKCS#8) block here.

use ecdsa::signature::hazmat::PrehashSigner;
use ecdsa::signature::hazmat::PrehashVerifier;
use rsa::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, PrivateKeyInfo};
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::Digest;

use super::foreign::{bytes_field, decode_message, string_field};
use crate::abi::Status;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// A public key as BoringSSL's `EVP_parse_public_key` imports it.
enum PublicKey {
    Rsa(Box<RsaPublicKey>),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    /// A key that did not import, or of a type `EVP_DigestVerifyInit` with
    /// a digest refuses (Ed25519, X25519, ...): verification fails at
    /// initialisation.
    Other,
}

/// The hash functions `Utility::getHashFunction` knows, case-insensitively.
#[derive(Clone, Copy)]
enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// Envoy's `verify_signature`: encoded `VerifySignatureArguments` in, an
/// encoded `VerifySignatureResult` out.
///
/// # Errors
///
/// `BadArgument` when the arguments do not parse or name no key or both.
pub fn verify_signature(args: &[u8]) -> Result<Vec<u8>, Status> {
    let fields = decode_message(args).ok_or(Status::BadArgument)?;
    let hash_name = string_field(&fields, 1)?;
    let der = bytes_field(&fields, 2);
    let signature = bytes_field(&fields, 3);
    let text = bytes_field(&fields, 4);
    let pem = string_field(&fields, 5)?;
    // No key or both keys: BAD_ARGUMENT. A key that does not import is an
    // empty key object, which fails at the verification's initialisation.
    let key = match (der.is_empty(), pem.is_empty()) {
        (false, true) => import_der(der),
        (true, false) => pem_block(&pem, "PUBLIC KEY").and_then(|der| import_der(&der)),
        _ => return Err(Status::BadArgument),
    }
    .unwrap_or(PublicKey::Other);
    let outcome = match hash(&hash_name) {
        None => Err(format!("{hash_name} is not supported.")),
        Some(hash) => verify(&key, hash, signature, text),
    };
    Ok(result_message(outcome))
}

/// A private key as BoringSSL's `EVP_parse_private_key` imports it.
enum PrivateKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    /// RustCrypto signs P-521 only with a random nonce from the OS; the
    /// harness answers UNIMPLEMENTED and fails the call instead.
    P521,
}

/// Envoy's `sign`: encoded `SignArguments` in, an encoded `SignResult` out.
///
/// # Errors
///
/// `BadArgument` as Envoy answers it; `Unimplemented` for a P-521 key.
pub fn sign(args: &[u8]) -> Result<Vec<u8>, Status> {
    const NO_KEY: &str = "Invalid key type: private key required for signing operation.";
    let fields = decode_message(args).ok_or(Status::BadArgument)?;
    let hash_name = string_field(&fields, 1)?;
    let der = bytes_field(&fields, 2);
    let text = bytes_field(&fields, 3);
    let pem = string_field(&fields, 4)?;
    let key = match (der.is_empty(), pem.is_empty()) {
        (false, true) => import_private_der(der),
        (true, false) => pem_block(&pem, "PRIVATE KEY").and_then(|der| import_private_der(&der)),
        _ => return Err(Status::BadArgument),
    };
    let signed = match (hash(&hash_name), key) {
        (None, _) => Err(format!("{hash_name} is not supported.")),
        (Some(_), None) => Err(NO_KEY.to_owned()),
        (Some(_), Some(PrivateKey::P521)) => return Err(Status::Unimplemented),
        (Some(hash), Some(key)) => sign_with(&key, hash, text),
    };
    Ok(sign_result(signed))
}

fn import_private_der(der: &[u8]) -> Option<PrivateKey> {
    let info = PrivateKeyInfo::try_from(der).ok()?;
    let algorithm = info.algorithm.oid;
    if algorithm == RSA_ENCRYPTION {
        return RsaPrivateKey::from_pkcs8_der(der)
            .ok()
            .map(|k| PrivateKey::Rsa(Box::new(k)));
    }
    if algorithm != EC_PUBLIC_KEY {
        return None;
    }
    match info.algorithm.parameters_oid().ok()? {
        c if c == P256 => p256::ecdsa::SigningKey::from_pkcs8_der(der)
            .ok()
            .map(PrivateKey::P256),
        c if c == P384 => p384::ecdsa::SigningKey::from_pkcs8_der(der)
            .ok()
            .map(PrivateKey::P384),
        // Imports in Envoy; signing with it is not implemented here (see
        // `sign`).
        c if c == P521 => Some(PrivateKey::P521),
        _ => None,
    }
}

fn sign_with(key: &PrivateKey, hash: Hash, text: &[u8]) -> Result<Vec<u8>, String> {
    let digest = digest(hash, text);
    let failed = |_| "Failed to sign data.".to_owned();
    match key {
        PrivateKey::Rsa(key) => key
            .sign(pkcs1v15(hash), &digest)
            .map_err(|_| "Failed to sign data.".to_owned()),
        PrivateKey::P256(key) => {
            PrehashSigner::<p256::ecdsa::Signature>::sign_prehash(key, &digest)
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(failed)
        }
        PrivateKey::P384(key) => {
            PrehashSigner::<p384::ecdsa::Signature>::sign_prehash(key, &digest)
                .map(|s| s.to_der().as_bytes().to_vec())
                .map_err(failed)
        }
        PrivateKey::P521 => Err("Failed to sign data.".to_owned()),
    }
}

/// `SignResult`: `result = 1` and `signature = 2`, or `error = 3`.
fn sign_result(outcome: Result<Vec<u8>, String>) -> Vec<u8> {
    let mut out = Vec::new();
    match outcome {
        Ok(signature) => {
            out.extend_from_slice(&[0x08, 0x01]);
            length_delimited(&mut out, 2, &signature);
        }
        Err(error) => length_delimited(&mut out, 3, error.as_bytes()),
    }
    out
}

fn pkcs1v15(hash: Hash) -> Pkcs1v15Sign {
    match hash {
        Hash::Sha1 => Pkcs1v15Sign::new::<sha1::Sha1>(),
        Hash::Sha224 => Pkcs1v15Sign::new::<sha2::Sha224>(),
        Hash::Sha256 => Pkcs1v15Sign::new::<sha2::Sha256>(),
        Hash::Sha384 => Pkcs1v15Sign::new::<sha2::Sha384>(),
        Hash::Sha512 => Pkcs1v15Sign::new::<sha2::Sha512>(),
    }
}

/// One length-delimited protobuf field.
fn length_delimited(out: &mut Vec<u8>, number: u8, value: &[u8]) {
    out.push(number << 3 | 2);
    let mut n = value.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(value);
}

fn hash(name: &str) -> Option<Hash> {
    Some(match name.to_ascii_lowercase().as_str() {
        "sha1" => Hash::Sha1,
        "sha224" => Hash::Sha224,
        "sha256" => Hash::Sha256,
        "sha384" => Hash::Sha384,
        "sha512" => Hash::Sha512,
        _ => return None,
    })
}

fn import_der(der: &[u8]) -> Option<PublicKey> {
    let info = SubjectPublicKeyInfoRef::try_from(der).ok()?;
    let algorithm = info.algorithm.oid;
    if algorithm == RSA_ENCRYPTION {
        return RsaPublicKey::from_public_key_der(der)
            .ok()
            .map(|k| PublicKey::Rsa(Box::new(k)));
    }
    if algorithm == EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = info.algorithm.parameters_oid().ok()?;
        let point = info.subject_public_key.as_bytes()?;
        return match curve {
            c if c == P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .ok()
                .map(PublicKey::P256),
            c if c == P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .ok()
                .map(PublicKey::P384),
            c if c == P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .ok()
                .map(PublicKey::P521),
            _ => None,
        };
    }
    Some(PublicKey::Other)
}

/// The DER inside a PEM block with `label` (`PUBLIC KEY` holds a
/// SubjectPublicKeyInfo, as `PEM_read_bio_PUBKEY` reads it; `PRIVATE KEY`
/// a PKCS#8 key).
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let (found, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes()).ok()?;
    (found == label).then_some(der)
}

fn verify(key: &PublicKey, hash: Hash, signature: &[u8], text: &[u8]) -> Result<(), String> {
    const INIT: &str = "Failed to initialize digest verify.";
    let ok = match key {
        PublicKey::Rsa(key) => key
            .verify(pkcs1v15(hash), &digest(hash, text), signature)
            .is_ok(),
        // ECDSA takes a strict DER signature over the digest (longer
        // digests are truncated to the curve's order, as BoringSSL does).
        PublicKey::P256(key) => p256::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| key.verify_prehash(&digest(hash, text), &s).is_ok()),
        PublicKey::P384(key) => p384::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| key.verify_prehash(&digest(hash, text), &s).is_ok()),
        PublicKey::P521(key) => p521::ecdsa::Signature::from_der(signature)
            .is_ok_and(|s| key.verify_prehash(&digest(hash, text), &s).is_ok()),
        PublicKey::Other => return Err(INIT.to_owned()),
    };
    if ok {
        Ok(())
    } else {
        Err("Failed to verify digest. Error code: 0".to_owned())
    }
}

/// The digest `hash` names of `text`.
fn digest(hash: Hash, text: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha1 => sha1::Sha1::digest(text).to_vec(),
        Hash::Sha224 => sha2::Sha224::digest(text).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(text).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(text).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(text).to_vec(),
    }
}

/// `VerifySignatureResult`: `result = 1` when true, `error = 2` when not
/// empty (proto3 leaves defaults out).
fn result_message(outcome: Result<(), String>) -> Vec<u8> {
    match outcome {
        Ok(()) => vec![0x08, 0x01],
        Err(error) => {
            let mut out = Vec::new();
            length_delimited(&mut out, 2, error.as_bytes());
            out
        }
    }
}
