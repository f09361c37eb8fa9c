//! Our JWS ECDSA layer (`jose::jwk::P256Key` and its kin: JWK coordinates
//! to a key, `r ‖ s` to a signature) against the RustCrypto `p256`, `p384`
//! and `p521` crates used directly: keys those crates make are accepted and
//! points off the curve refused alike; their signatures verify; and every
//! mutated signature, message, out-of-range scalar, misshapen length and
//! high-`s` form gets the same answer from both.

use jose::jwk::{P256Key, P384Key, P521Key};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::{RngCore, SeedableRng};

const KEYS: usize = 8;
const TRIES_PER_KEY: usize = 16;

/// A key's affine coordinates and a signer with its private half.
type NewKey = (Vec<u8>, Vec<u8>, Box<dyn Fn(&[u8]) -> Vec<u8>>);
/// Whether `(x, y)` is a key.
type KeyCheck = fn(&[u8], &[u8]) -> bool;
/// Whether key `(x, y)` verifies `(message, signature)`.
type Verify = fn(&[u8], &[u8], &[u8], &[u8]) -> bool;

/// One curve, as both implementations see it.
struct Curve {
    name: &'static str,
    bytes: usize,
    order: &'static str,
    key: fn(&mut ChaCha20Rng) -> NewKey,
    reference_key: KeyCheck,
    reference_verify: Verify,
    ours_key: KeyCheck,
    ours_verify: Verify,
}

macro_rules! curve {
    ($name:literal, $krate:ident, $ours:ty, $bytes:literal, $order:literal) => {
        Curve {
            name: $name,
            bytes: $bytes,
            order: $order,
            key: |rng| {
                use $krate::ecdsa::signature::Signer;
                let signing = $krate::ecdsa::SigningKey::random(rng);
                // (`p521` 0.13 has no `verifying_key()`; `From` works for all.)
                let point = $krate::ecdsa::VerifyingKey::from(&signing).to_encoded_point(false);
                let (x, y) = (point.x().unwrap().to_vec(), point.y().unwrap().to_vec());
                let sign = move |message: &[u8]| {
                    let signature: $krate::ecdsa::Signature = signing.sign(message);
                    signature.to_bytes().to_vec()
                };
                (x, y, Box::new(sign))
            },
            reference_key: |x, y| reference_key!($krate, x, y).is_some(),
            reference_verify: |x, y, message, signature| {
                use $krate::ecdsa::signature::Verifier;
                let key = reference_key!($krate, x, y).unwrap();
                $krate::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|s| key.verify(message, &s).is_ok())
            },
            ours_key: |x, y| <$ours>::from_coordinates(x, y).is_some(),
            ours_verify: |x, y, message, signature| {
                <$ours>::from_coordinates(x, y)
                    .unwrap()
                    .verify(message, signature)
            },
        }
    };
}

macro_rules! reference_key {
    ($krate:ident, $x:expr, $y:expr) => {{
        let (x, y): (&[u8], &[u8]) = ($x, $y);
        if x.len() == y.len() && x.len() == $krate::FieldBytes::default().len() {
            let point = $krate::EncodedPoint::from_affine_coordinates(
                $krate::FieldBytes::from_slice(x),
                $krate::FieldBytes::from_slice(y),
                false,
            );
            $krate::ecdsa::VerifyingKey::from_encoded_point(&point).ok()
        } else {
            None
        }
    }};
}

fn curves() -> [Curve; 3] {
    [
        curve!(
            "P-256",
            p256,
            P256Key,
            32,
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
        ),
        curve!(
            "P-384",
            p384,
            P384Key,
            48,
            "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"
        ),
        curve!(
            "P-521",
            p521,
            P521Key,
            66,
            "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"
        ),
    ]
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Big-endian `a - b`, both as long as each other, `a >= b`.
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = (d + 256 * borrow) as u8;
    }
    out
}

fn random_bytes(rng: &mut ChaCha20Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    rng.fill_bytes(&mut out);
    out
}

#[test]
fn signatures_from_the_reference_verify_and_every_mutation_agrees() {
    for curve in curves() {
        let mut rng = ChaCha20Rng::seed_from_u64(0xec);
        let mut agreed = 0;
        for _ in 0..KEYS {
            let (x, y, sign) = (curve.key)(&mut rng);
            assert!(
                (curve.ours_key)(&x, &y),
                "{}: a valid key refused",
                curve.name
            );
            for _ in 0..TRIES_PER_KEY {
                let len = (rng.next_u32() % 200) as usize;
                let message = random_bytes(&mut rng, len);
                let signature = sign(&message);
                assert!(
                    (curve.ours_verify)(&x, &y, &message, &signature),
                    "{}: a valid signature refused",
                    curve.name
                );

                let mut mutated = signature.clone();
                let at = rng.next_u32() as usize % mutated.len();
                mutated[at] ^= 1 << (rng.next_u32() % 8);
                let mut other = message.clone();
                other.push(rng.next_u32() as u8);
                for (message, signature) in [
                    (&message, &mutated),
                    (&other, &signature),
                    (&message, &random_bytes(&mut rng, 2 * curve.bytes)),
                ] {
                    let ours = (curve.ours_verify)(&x, &y, message, signature);
                    let reference = (curve.reference_verify)(&x, &y, message, signature);
                    assert_eq!(ours, reference, "{}: {signature:02x?}", curve.name);
                    agreed += 1;
                }
            }
        }
        assert_eq!(agreed, KEYS * TRIES_PER_KEY * 3);
    }
}

#[test]
fn high_s_out_of_range_and_misshapen_signatures_get_the_reference_answer() {
    for curve in curves() {
        let mut rng = ChaCha20Rng::seed_from_u64(0x5c);
        let (x, y, sign) = (curve.key)(&mut rng);
        let message = b"header.payload";
        let signature = sign(message);
        let (r, s) = signature.split_at(curve.bytes);
        let n = hex(curve.order);
        let zero = vec![0; curve.bytes];
        let one = {
            let mut one = zero.clone();
            *one.last_mut().unwrap() = 1;
            one
        };
        let high_s = [r, &sub(&n, s)].concat();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("high s (n - s)", high_s),
            ("r = 0", [&zero, s].concat()),
            ("s = 0", [r, &zero].concat()),
            ("r = n", [&n, s].concat()),
            ("s = n", [r, &n[..]].concat()),
            ("r = n - 1", [&sub(&n, &one), s].concat()),
            ("s = n - 1", [r, &sub(&n, &one)].concat()),
            ("all ones", vec![0xff; 2 * curve.bytes]),
            ("short", signature[1..].to_vec()),
            ("long", [&signature[..], &[0]].concat()),
            ("empty", Vec::new()),
        ];
        for (what, candidate) in cases {
            let ours = (curve.ours_verify)(&x, &y, message, &candidate);
            let reference = (curve.reference_verify)(&x, &y, message, &candidate);
            assert_eq!(ours, reference, "{}: {what}", curve.name);
        }
        // The high-s form is a valid ECDSA signature, and both accept it.
        let high_s = [r, &sub(&n, s)].concat();
        assert!((curve.ours_verify)(&x, &y, message, &high_s));
    }
}

#[test]
fn keys_off_the_curve_or_out_of_range_are_refused_alike() {
    for curve in curves() {
        let mut rng = ChaCha20Rng::seed_from_u64(0x1e);
        for _ in 0..KEYS {
            let (x, y, _) = (curve.key)(&mut rng);
            let mut bent = y.clone();
            let last = bent.len() - 1;
            bent[last] ^= 1;
            let all_ones = vec![0xff; curve.bytes];
            let candidates = [
                (x.clone(), bent),
                (random_bytes(&mut rng, curve.bytes), y.clone()),
                (all_ones.clone(), y.clone()),
                (x.clone(), all_ones),
                (vec![0; curve.bytes], vec![0; curve.bytes]),
                (x[1..].to_vec(), y.clone()),
                ([&[0][..], &x].concat(), [&[0][..], &y].concat()),
            ];
            for (cx, cy) in candidates {
                assert_eq!(
                    (curve.ours_key)(&cx, &cy),
                    (curve.reference_key)(&cx, &cy),
                    "{}: x {cx:02x?} y {cy:02x?}",
                    curve.name
                );
            }
        }
    }
}

#[test]
fn a_key_and_its_negation_are_different_keys() {
    // (x, p - y) is on the curve too: accepted as a key, but it must not
    // verify signatures made with (x, y).
    let p = hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
    let curve = &curves()[0];
    let mut rng = ChaCha20Rng::seed_from_u64(0x4e);
    let (x, y, sign) = (curve.key)(&mut rng);
    let negated = sub(&p, &y);
    assert!((curve.ours_key)(&x, &negated));
    let signature = sign(b"m");
    assert!((curve.ours_verify)(&x, &y, b"m", &signature));
    assert!(!(curve.ours_verify)(&x, &negated, b"m", &signature));
    assert!(!(curve.reference_verify)(&x, &negated, b"m", &signature));
}
