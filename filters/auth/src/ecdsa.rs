//! ECDSA verification on P-256, P-384 and P-521 (JWS `ES256`, `ES384`,
//! `ES512`).
//!
//! Why not the `p256`/`p384` crates: their P-384 field and scalar
//! arithmetic is fiat-crypto's fully unrolled 32-bit code, ~118 KB of the
//! module alone, which put the filter far over its size budget. Here both
//! curves share `crypto-bigint`'s loop-based Montgomery arithmetic (one
//! instance per limb count) and the Renes–Costello–Batina complete formulas
//! for `a = -3` curves (<https://eprint.iacr.org/2015/1060>, algorithms 4
//! and 6), so no point needs a special case.
//!
//! Everything here is public (keys, signatures, messages), so nothing needs
//! to run in constant time; `tests/ecdsa.rs` checks every result against
//! the RustCrypto crates.

use crypto_bigint::modular::constant_mod::{Residue, ResidueParams};
use crypto_bigint::modular::montgomery_reduction;
use crypto_bigint::{Limb, U256, U384, U576, Uint, Word};
use sha2::Digest;

/// A short Weierstrass curve `y² = x³ - 3x + b` of prime order `n`, whose
/// elements take `L` limbs, with the JWS hash that goes with it.
pub trait Curve<const L: usize>: Copy {
    type Field: ResidueParams<L> + Copy;
    type Order: ResidueParams<L> + Copy;
    type Hash: Digest;
    const B: Uint<L>;
    const GX: Uint<L>;
    const GY: Uint<L>;
    /// Bytes in a coordinate and a scalar (a digest may be shorter).
    const BYTES: usize;
    /// `b` in Montgomery form, converted once at compile time.
    const B_RESIDUE: Residue<Self::Field, L> = Residue::new(&Self::B);
}

/// A constant modulus for `Residue`: what crypto-bigint's `impl_modulus!`
/// computes, without the `ConcatMixed` bound that `U576` does not meet.
macro_rules! modulus {
    ($name:ident, $uint:ty, $hex:literal) => {
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl ResidueParams<{ <$uint>::LIMBS }> for $name {
            const LIMBS: usize = <$uint>::LIMBS;
            const MODULUS: $uint = <$uint>::from_be_hex($hex);
            const R: $uint = <$uint>::MAX
                .const_rem(&Self::MODULUS)
                .0
                .wrapping_add(&<$uint>::ONE);
            const R2: $uint = <$uint>::const_rem_wide(Self::R.square_wide(), &Self::MODULUS).0;
            const MOD_NEG_INV: Limb = Limb(
                Word::MIN.wrapping_sub(
                    match Self::MODULUS
                        .inv_mod2k_vartime(Word::BITS as usize)
                        .as_words()
                        .first()
                    {
                        Some(word) => *word,
                        None => 0,
                    },
                ),
            );
            const R3: $uint =
                montgomery_reduction(&Self::R2.square_wide(), &Self::MODULUS, Self::MOD_NEG_INV);
        }
    };
}

modulus!(
    P256Field,
    U256,
    "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"
);
modulus!(
    P256Order,
    U256,
    "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
);
modulus!(
    P384Field,
    U384,
    "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff"
);
modulus!(
    P384Order,
    U384,
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"
);

/// NIST P-256 (secp256r1), with SHA-256.
#[derive(Clone, Copy, Debug)]
pub struct P256;

impl Curve<{ U256::LIMBS }> for P256 {
    type Field = P256Field;
    type Order = P256Order;
    type Hash = sha2::Sha256;
    const B: U256 =
        U256::from_be_hex("5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");
    const GX: U256 =
        U256::from_be_hex("6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296");
    const GY: U256 =
        U256::from_be_hex("4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5");
    const BYTES: usize = 32;
}

/// NIST P-384 (secp384r1), with SHA-384.
#[derive(Clone, Copy, Debug)]
pub struct P384;

impl Curve<{ U384::LIMBS }> for P384 {
    type Field = P384Field;
    type Order = P384Order;
    type Hash = sha2::Sha384;
    const B: U384 = U384::from_be_hex(
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
    );
    const GX: U384 = U384::from_be_hex(
        "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
    );
    const GY: U384 = U384::from_be_hex(
        "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
    );
    const BYTES: usize = 48;
}

modulus!(
    P521Field,
    U576,
    "00000000000001ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
);
modulus!(
    P521Order,
    U576,
    "00000000000001fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"
);

/// NIST P-521 (secp521r1), with SHA-512.
#[derive(Clone, Copy, Debug)]
pub struct P521;

impl Curve<{ U576::LIMBS }> for P521 {
    type Field = P521Field;
    type Order = P521Order;
    type Hash = sha2::Sha512;
    const B: U576 = U576::from_be_hex(
        "0000000000000051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00",
    );
    const GX: U576 = U576::from_be_hex(
        "00000000000000c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66",
    );
    const GY: U576 = U576::from_be_hex(
        "000000000000011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650",
    );
    const BYTES: usize = 66;
}

/// A P-256 public key.
pub type P256Key = VerifyingKey<P256, { U256::LIMBS }>;
/// A P-384 public key.
pub type P384Key = VerifyingKey<P384, { U384::LIMBS }>;
/// A P-521 public key.
pub type P521Key = VerifyingKey<P521, { U576::LIMBS }>;

type Fe<C, const L: usize> = Residue<<C as Curve<L>>::Field, L>;

/// A point in projective coordinates `(X : Y : Z)`, `x = X/Z`, `y = Y/Z`;
/// the identity is `(0 : 1 : 0)`.
#[derive(Clone, Copy, Debug)]
struct Point<C: Curve<L>, const L: usize> {
    x: Fe<C, L>,
    y: Fe<C, L>,
    z: Fe<C, L>,
}

impl<C: Curve<L>, const L: usize> Point<C, L> {
    fn identity() -> Self {
        Self {
            x: Residue::ZERO,
            y: Residue::ONE,
            z: Residue::ZERO,
        }
    }

    fn affine(x: Fe<C, L>, y: Fe<C, L>) -> Self {
        Self {
            x,
            y,
            z: Residue::ONE,
        }
    }

    /// Complete addition (RCB algorithm 4): right for every pair of
    /// points, the identity and equal points included.
    fn add(&self, other: &Self) -> Self {
        let b = C::B_RESIDUE;
        let xx = self.x.mul(&other.x);
        let yy = self.y.mul(&other.y);
        let zz = self.z.mul(&other.z);
        let xy = self
            .x
            .add(&self.y)
            .mul(&other.x.add(&other.y))
            .sub(&xx.add(&yy));
        let yz = self
            .y
            .add(&self.z)
            .mul(&other.y.add(&other.z))
            .sub(&yy.add(&zz));
        let xz = self
            .x
            .add(&self.z)
            .mul(&other.x.add(&other.z))
            .sub(&xx.add(&zz));
        let bzz3 = triple(&xz.sub(&b.mul(&zz)));
        let yy_minus = yy.sub(&bzz3);
        let yy_plus = yy.add(&bzz3);
        let zz3 = triple(&zz);
        let bxz3 = triple(&b.mul(&xz).sub(&zz3.add(&xx)));
        let xx3_minus_zz3 = triple(&xx).sub(&zz3);
        Self {
            x: yy_plus.mul(&xy).sub(&yz.mul(&bxz3)),
            y: yy_plus.mul(&yy_minus).add(&xx3_minus_zz3.mul(&bxz3)),
            z: yy_minus.mul(&yz).add(&xy.mul(&xx3_minus_zz3)),
        }
    }

    /// Doubling (RCB algorithm 6), cheaper than `add(self, self)`.
    fn double(&self) -> Self {
        let b = C::B_RESIDUE;
        // `mul`, not `square`: crypto-bigint's squaring is a second
        // multiplication routine per limb count (~1 KB each in the module).
        let xx = self.x.mul(&self.x);
        let yy = self.y.mul(&self.y);
        let zz = self.z.mul(&self.z);
        let xy2 = double(&self.x.mul(&self.y));
        let xz2 = double(&self.x.mul(&self.z));
        let bzz3 = triple(&b.mul(&zz).sub(&xz2));
        let yy_minus = yy.sub(&bzz3);
        let yy_plus = yy.add(&bzz3);
        let zz3 = triple(&zz);
        let bxz6 = triple(&b.mul(&xz2).sub(&zz3.add(&xx)));
        let xx3_minus_zz3 = triple(&xx).sub(&zz3);
        let yz2 = double(&self.y.mul(&self.z));
        Self {
            x: yy_minus.mul(&xy2).sub(&bxz6.mul(&yz2)),
            y: yy_plus.mul(&yy_minus).add(&xx3_minus_zz3.mul(&bxz6)),
            z: double(&double(&yz2.mul(&yy))),
        }
    }
}

fn double<P: ResidueParams<L>, const L: usize>(a: &Residue<P, L>) -> Residue<P, L> {
    a.add(a)
}

fn triple<P: ResidueParams<L>, const L: usize>(a: &Residue<P, L>) -> Residue<P, L> {
    a.add(a).add(a)
}

/// A validated public key: a point on the curve other than the identity.
#[derive(Clone, Copy, Debug)]
pub struct VerifyingKey<C: Curve<L>, const L: usize> {
    q: Point<C, L>,
}

impl<C: Curve<L>, const L: usize> VerifyingKey<C, L> {
    /// A key from its affine coordinates (big-endian, `C::BYTES` each, as
    /// JWK `x` and `y`): `None` when a coordinate has another length, is
    /// not below the field prime, or the point is not on the curve.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
        let x = field_element::<C, L>(x)?;
        let y = field_element::<C, L>(y)?;
        let b = C::B_RESIDUE;
        // y² = x³ - 3x + b
        let rhs = x.mul(&x).mul(&x).sub(&triple(&x)).add(&b);
        if y.mul(&y).retrieve() != rhs.retrieve() {
            return None;
        }
        Some(Self {
            q: Point::affine(x, y),
        })
    }

    /// Verifies a JWS ECDSA signature (`r || s`, `C::BYTES` each; RFC 7518
    /// §3.4) of `message` hashed with the curve's hash.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Some((r, s)) = signature.split_at_checked(C::BYTES) else {
            return false;
        };
        let (Some(r), Some(s)) = (scalar::<C, L>(r), scalar::<C, L>(s)) else {
            return false;
        };
        // Each curve's digest has at most as many bits as its order, so it
        // is its own leftmost bits; `Residue::new` reduces it modulo `n`.
        let digest = C::Hash::digest(message);
        let Some(e) = padded::<L>(&digest) else {
            return false;
        };
        let e = Residue::<C::Order, L>::new(&e);
        let (w, invertible) = s.invert();
        if !bool::from(invertible) {
            return false;
        }
        let u1 = e.mul(&w).retrieve();
        let u2 = r.mul(&w).retrieve();
        let g = Point::<C, L>::affine(Fe::<C, L>::new(&C::GX), Fe::<C, L>::new(&C::GY));
        let sum = self.shamir(&g, &u1, &u2);
        let (z_inv, on_curve) = sum.z.invert();
        if !bool::from(on_curve) {
            // The identity: no x to compare.
            return false;
        }
        let x = sum.x.mul(&z_inv).retrieve();
        Residue::<C::Order, L>::new(&x).retrieve() == r.retrieve()
    }

    /// `u1·G + u2·Q` by Shamir's trick: one doubling per bit, one addition
    /// of `G`, `Q` or `G + Q`.
    fn shamir(&self, g: &Point<C, L>, u1: &Uint<L>, u2: &Uint<L>) -> Point<C, L> {
        let both = g.add(&self.q);
        let mut acc = Point::identity();
        for bit in (0..Uint::<L>::BITS).rev() {
            acc = acc.double();
            match (u1.bit_vartime(bit), u2.bit_vartime(bit)) {
                (true, true) => acc = acc.add(&both),
                (true, false) => acc = acc.add(g),
                (false, true) => acc = acc.add(&self.q),
                (false, false) => {}
            }
        }
        acc
    }
}

/// A field element from exactly `C::BYTES` big-endian bytes below `p`.
fn field_element<C: Curve<L>, const L: usize>(bytes: &[u8]) -> Option<Fe<C, L>> {
    let value = integer::<C, L>(bytes)?;
    (value < C::Field::MODULUS).then(|| Residue::new(&value))
}

/// A signature scalar from exactly `C::BYTES` bytes, in `1..n`.
fn scalar<C: Curve<L>, const L: usize>(bytes: &[u8]) -> Option<Residue<C::Order, L>> {
    let value = integer::<C, L>(bytes)?;
    (value != Uint::ZERO && value < C::Order::MODULUS).then(|| Residue::new(&value))
}

fn integer<C: Curve<L>, const L: usize>(bytes: &[u8]) -> Option<Uint<L>> {
    if bytes.len() == C::BYTES {
        padded(bytes)
    } else {
        None
    }
}

/// Big-endian bytes as an integer, when they fit.
fn padded<const L: usize>(bytes: &[u8]) -> Option<Uint<L>> {
    // `from_be_slice` wants exactly the integer's width (P-521's 66 bytes
    // live in 72).
    let mut buffer = [0u8; 72];
    let width = Uint::<L>::BYTES;
    let start = buffer.len().checked_sub(width)?;
    let at = buffer.len().checked_sub(bytes.len())?;
    if at < start {
        return None;
    }
    buffer.get_mut(at..)?.copy_from_slice(bytes);
    Some(Uint::from_be_slice(buffer.get(start..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_bigint::Encoding;

    fn bytes(value: &U256) -> [u8; 32] {
        value.to_be_bytes()
    }

    #[test]
    fn coordinates_and_scalars_must_be_reduced() {
        let p = P256Field::MODULUS;
        let n = P256Order::MODULUS;
        let below = |m: &U256| m.wrapping_sub(&U256::ONE);
        assert!(field_element::<P256, { U256::LIMBS }>(&bytes(&p)).is_none());
        assert!(field_element::<P256, { U256::LIMBS }>(&bytes(&below(&p))).is_some());
        assert!(scalar::<P256, { U256::LIMBS }>(&bytes(&n)).is_none());
        assert!(scalar::<P256, { U256::LIMBS }>(&bytes(&U256::ZERO)).is_none());
        assert!(scalar::<P256, { U256::LIMBS }>(&bytes(&below(&n))).is_some());
        assert!(scalar::<P256, { U256::LIMBS }>(&bytes(&U256::ONE)[1..]).is_none());
    }

    #[test]
    fn the_generator_is_on_its_curve() {
        let on_curve = |x: &[u8], y: &[u8]| P256Key::from_coordinates(x, y).is_some();
        assert!(on_curve(&bytes(&P256::GX), &bytes(&P256::GY)));
        assert!(!on_curve(&bytes(&P256::GY), &bytes(&P256::GX)));
    }
}
