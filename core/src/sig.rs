//! Filecoin signature verification: secp256k1 and BLS (min-pk), plus address derivation.
//!
//! This follows Lotus `lib/sigs` (see `docs/mk12-wire.md` §Signatures):
//!
//! - **secp256k1** (type 1): the signature is `r ‖ s ‖ v` (65 bytes) over
//!   `blake2b-256(message)`; the public key is recovered, hashed to a protocol-1 address
//!   (`0x01 ‖ blake2b-160(uncompressed key)`) and compared with the signer's address.
//!   High-S signatures are rejected.
//! - **BLS** (type 2): BLS12-381 min-pk, 48-byte compressed G1 public key taken from the
//!   protocol-3 address payload, 96-byte compressed G2 signature, ciphersuite
//!   [`BLS_DST`], message signed as-is.
//! - **delegated** (type 3): not verified here ([`SigError::Unsupported`]); f4 clients are
//!   checked through a chain fact elsewhere.
//!
//! The error type separates a well-formed signature that does not verify
//! ([`SigError::Invalid`]) from malformed inputs (see [`SigError::is_malformed`]), because
//! callers answer clients differently in the two cases. No input makes [`verify`] panic.

use blst::min_pk;
use blst::BLST_ERROR;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};

/// Ciphersuite domain separation tag Filecoin uses for BLS signatures (basic scheme, no
/// proof-of-possession tag).
pub const BLS_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// Length of a secp256k1 signature's data: `r(32) ‖ s(32) ‖ v(1)`.
pub const SECP256K1_SIG_LEN: usize = 65;
/// Length of a compressed BLS12-381 G2 signature.
pub const BLS_SIG_LEN: usize = 96;
/// Length of a compressed BLS12-381 G1 public key (the payload of an f3 address).
pub const BLS_PUBKEY_LEN: usize = 48;
/// Length of the payload of an f1 (secp256k1) address: blake2b-160 of the public key.
pub const SECP256K1_ADDRESS_PAYLOAD_LEN: usize = 20;

/// Address protocol byte of a secp256k1 (f1) address.
pub const ADDRESS_PROTOCOL_SECP256K1: u8 = 1;
/// Address protocol byte of a BLS (f3) address.
pub const ADDRESS_PROTOCOL_BLS: u8 = 3;
/// Highest address protocol byte Filecoin defines (4 = delegated, f4).
const ADDRESS_PROTOCOL_MAX: u8 = 4;

/// secp256k1 group order n, big-endian (SEC 2 §2.4.1).
const SECP256K1_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

/// secp256k1 group order n, halved (rounded down), big-endian. `s > N_HALF` is "high S".
const SECP256K1_N_HALF: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0x5d, 0x57, 0x6e, 0x73, 0x57, 0xa4, 0x50, 0x1d, 0xdf, 0xe9, 0x2f, 0x46, 0x68, 0x1b, 0x20, 0xa0,
];

/// Filecoin signature type byte (go-state-types `crypto.SigType`; the first byte of a
/// signature on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SigType {
    /// secp256k1 ECDSA over blake2b-256, recoverable (65 bytes).
    Secp256k1 = 1,
    /// BLS12-381 min-pk (96 bytes).
    Bls = 2,
    /// Delegated (f4 / Ethereum-style) signature.
    Delegated = 3,
}

impl TryFrom<u8> for SigType {
    type Error = SigError;

    fn try_from(byte: u8) -> Result<Self, SigError> {
        match byte {
            1 => Ok(Self::Secp256k1),
            2 => Ok(Self::Bls),
            3 => Ok(Self::Delegated),
            other => Err(SigError::UnknownSigType(other)),
        }
    }
}

impl From<SigType> for u8 {
    fn from(t: SigType) -> u8 {
        t as u8
    }
}

/// Why a signature was not accepted.
///
/// [`SigError::Invalid`] means the inputs were well-formed but the signature is not the
/// signer's over this message; [`SigError::Unsupported`] means the type is known but not
/// checked here; every other variant means the inputs were malformed
/// ([`SigError::is_malformed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigError {
    /// Well-formed signature that does not verify for this signer and message (includes a
    /// signature type that does not match the signer address's protocol).
    #[error("signature does not verify")]
    Invalid,
    /// A known signature type that this function does not verify.
    #[error("signature type {0:?} is not supported here")]
    Unsupported(SigType),
    /// Signature type byte that Filecoin does not define.
    #[error("unknown signature type {0}")]
    UnknownSigType(u8),
    /// Signature data of the wrong length for its type.
    #[error("signature data has {actual} bytes, expected {expected}")]
    BadSignatureLength {
        /// Length required by the signature type.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// secp256k1 recovery id (last byte) other than 0 or 1.
    #[error("secp256k1 recovery id {0} is not 0 or 1")]
    BadRecoveryId(u8),
    /// secp256k1 signature with a high S value (non-canonical, malleable form).
    #[error("secp256k1 signature is not in low-S form")]
    HighS,
    /// Signature bytes that do not encode a valid signature: secp256k1 r or s zero or not
    /// below the group order; BLS bytes that are not a compressed G2 point in the subgroup.
    #[error("signature bytes are not a valid encoding")]
    BadSignatureEncoding,
    /// BLS public key (f3 address payload) that is not a valid compressed G1 point in the
    /// subgroup, or is the point at infinity.
    #[error("BLS public key is not a valid G1 point")]
    BadPublicKey,
    /// Signer address bytes that are not a Filecoin address of a known shape (empty,
    /// unknown protocol, or wrong length for an f1/f3 address).
    #[error("signer address bytes are malformed")]
    BadAddress,
}

impl SigError {
    /// True when the inputs were malformed (as opposed to a well-formed signature that
    /// does not verify, or an unsupported signature type).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, SigError::Invalid | SigError::Unsupported(_))
    }
}

/// blake2b with a `N`-byte output (no key, no personalisation), as Filecoin uses it.
fn blake2b<const N: usize>(data: &[u8]) -> [u8; N] {
    let hash = blake2b_simd::Params::new().hash_length(N).hash(data);
    let mut out = [0u8; N];
    out.copy_from_slice(hash.as_bytes());
    out
}

/// Payload of the f1 address for a secp256k1 public key: blake2b-160 of the 65-byte
/// uncompressed SEC1 encoding (`0x04 ‖ x ‖ y`). The address bytes are `0x01 ‖ payload`.
pub fn secp256k1_address_payload(uncompressed_pubkey_65: &[u8; 65]) -> [u8; 20] {
    blake2b::<SECP256K1_ADDRESS_PAYLOAD_LEN>(uncompressed_pubkey_65)
}

/// Verify a Filecoin signature.
///
/// `sig_type` is the signature type byte (see [`SigType`]), `sig_data` the signature bytes
/// after it, `signer_address` the signer's Filecoin address bytes (protocol byte ‖
/// payload; f1 or f3, i.e. already resolved from an ID address), and `message` the bytes
/// that were signed.
///
/// Returns `Ok(())` only if the signature is valid for that signer over that message.
/// A signature type that does not match the address protocol yields
/// [`SigError::Invalid`], as Lotus simply fails the comparison.
pub fn verify(
    sig_type: u8,
    sig_data: &[u8],
    signer_address: &[u8],
    message: &[u8],
) -> Result<(), SigError> {
    let sig_type = SigType::try_from(sig_type)?;
    let (&protocol, payload) = signer_address.split_first().ok_or(SigError::BadAddress)?;
    check_address_shape(protocol, payload)?;
    match sig_type {
        SigType::Secp256k1 => verify_secp256k1(sig_data, protocol, payload, message),
        SigType::Bls => verify_bls(sig_data, protocol, payload, message),
        SigType::Delegated => Err(SigError::Unsupported(SigType::Delegated)),
    }
}

/// Reject address bytes that cannot be a Filecoin address. Only the shapes this module
/// relies on (f1, f3) are length-checked; other known protocols are left alone so that a
/// mismatched signature type reports [`SigError::Invalid`].
fn check_address_shape(protocol: u8, payload: &[u8]) -> Result<(), SigError> {
    let ok = match protocol {
        ADDRESS_PROTOCOL_SECP256K1 => payload.len() == SECP256K1_ADDRESS_PAYLOAD_LEN,
        ADDRESS_PROTOCOL_BLS => payload.len() == BLS_PUBKEY_LEN,
        p => p <= ADDRESS_PROTOCOL_MAX && !payload.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(SigError::BadAddress)
    }
}

fn verify_secp256k1(
    sig_data: &[u8],
    protocol: u8,
    payload: &[u8],
    message: &[u8],
) -> Result<(), SigError> {
    let sig_data: &[u8; SECP256K1_SIG_LEN] =
        sig_data
            .try_into()
            .map_err(|_| SigError::BadSignatureLength {
                expected: SECP256K1_SIG_LEN,
                actual: sig_data.len(),
            })?;
    let (rs, v) = sig_data.split_at(64);
    let v = v[0];
    if v > 1 {
        return Err(SigError::BadRecoveryId(v));
    }
    // r and s must each be in [1, n-1]; equal-length big-endian byte strings compare
    // like the integers they encode.
    let in_range = |x: &[u8]| x.iter().any(|&b| b != 0) && x < &SECP256K1_N[..];
    if !in_range(&rs[..32]) || !in_range(&rs[32..]) {
        return Err(SigError::BadSignatureEncoding);
    }
    if rs[32..] > SECP256K1_N_HALF[..] {
        return Err(SigError::HighS);
    }
    if protocol != ADDRESS_PROTOCOL_SECP256K1 {
        return Err(SigError::Invalid);
    }
    let digest = blake2b::<32>(message);
    // Public-key recovery by libsecp256k1 (Bitcoin Core's, as Lotus's go-crypto wraps it):
    // about two thirds of a deal's server instructions went to this with k256
    // (BENCHMARKS.md). It fails when r is not the x-coordinate of a curve point or the
    // result is the identity: well-formed (r, s, v) that is simply not a signature.
    let recovery_id = RecoveryId::try_from(i32::from(v)).map_err(|_| SigError::BadRecoveryId(v))?;
    let signature = RecoverableSignature::from_compact(rs, recovery_id)
        .map_err(|_| SigError::BadSignatureEncoding)?;
    let key = signature
        .recover_ecdsa(secp256k1::Message::from_digest(digest))
        .map_err(|_| SigError::Invalid)?;
    let uncompressed: [u8; 65] = key.serialize_uncompressed();
    if secp256k1_address_payload(&uncompressed)[..] == *payload {
        Ok(())
    } else {
        Err(SigError::Invalid)
    }
}

fn verify_bls(
    sig_data: &[u8],
    protocol: u8,
    payload: &[u8],
    message: &[u8],
) -> Result<(), SigError> {
    if sig_data.len() != BLS_SIG_LEN {
        return Err(SigError::BadSignatureLength {
            expected: BLS_SIG_LEN,
            actual: sig_data.len(),
        });
    }
    let signature =
        min_pk::Signature::uncompress(sig_data).map_err(|_| SigError::BadSignatureEncoding)?;
    if protocol != ADDRESS_PROTOCOL_BLS {
        return Err(SigError::Invalid);
    }
    let public_key = min_pk::PublicKey::uncompress(payload).map_err(|_| SigError::BadPublicKey)?;
    let pk_point: &blst::blst_p1_affine = (&public_key).into();
    let sig_point: &blst::blst_p2_affine = (&signature).into();
    // The pairing API directly, not `min_pk::Signature::verify`: with blst's default
    // features that one runs on blst's global thread pool (this crate starts no threads)
    // and folds every error into BLST_VERIFY_FAIL. This is blst's single-threaded core
    // verification: hash to G2 with BLS_DST, public key validated (not infinity, in G1),
    // signature group-checked (in G2).
    let mut pairing = blst::Pairing::new(true, BLS_DST);
    match pairing.aggregate(pk_point, true, sig_point, true, message, &[]) {
        BLST_ERROR::BLST_SUCCESS => {}
        // Which input failed its check (the error code alone does not say).
        _ if public_key.validate().is_err() => return Err(SigError::BadPublicKey),
        _ if !signature.subgroup_check() => return Err(SigError::BadSignatureEncoding),
        _ => return Err(SigError::Invalid),
    }
    pairing.commit();
    if pairing.finalverify(None) {
        Ok(())
    } else {
        Err(SigError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sig_type_bytes() {
        for (b, t) in [
            (1u8, SigType::Secp256k1),
            (2, SigType::Bls),
            (3, SigType::Delegated),
        ] {
            assert_eq!(SigType::try_from(b), Ok(t));
            assert_eq!(u8::from(t), b);
        }
        for b in [0u8, 4, 255] {
            assert_eq!(SigType::try_from(b), Err(SigError::UnknownSigType(b)));
        }
    }

    #[test]
    fn n_half_is_order_shifted_right() {
        let n = SECP256K1_N;
        let mut half = [0u8; 32];
        let mut carry = 0u8;
        for (h, b) in half.iter_mut().zip(n) {
            *h = (carry << 7) | (b >> 1);
            carry = b & 1;
        }
        assert_eq!(half, SECP256K1_N_HALF);
    }

    #[test]
    fn r_and_s_outside_one_to_n_minus_one_are_encoding_errors() {
        let check = |r: [u8; 32], s: [u8; 32], v: u8| {
            let sig = [&r[..], &s[..], &[v]].concat();
            verify_secp256k1(&sig, ADDRESS_PROTOCOL_SECP256K1, &[0u8; 20], b"m")
        };
        let mut one = [0u8; 32];
        one[31] = 1;
        for (r, s) in [
            ([0u8; 32], one),
            (one, [0u8; 32]),
            (SECP256K1_N, one),
            (one, SECP256K1_N),
            ([0xff; 32], one),
        ] {
            assert_eq!(check(r, s, 0), Err(SigError::BadSignatureEncoding));
        }
        let mut n_minus_one = SECP256K1_N;
        n_minus_one[31] -= 1;
        assert_eq!(check(one, n_minus_one, 0), Err(SigError::HighS));
        assert_eq!(check(one, one, 2), Err(SigError::BadRecoveryId(2)));
    }
}
