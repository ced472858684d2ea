//! Signature verification against the MK12 golden vectors (`tests/data/mk12-golden.json`),
//! plus re-signing with the example keys to pin the key derivations, negative cases and
//! a no-panic property.

use dealport_core::sig::{
    secp256k1_address_payload, verify, SigError, SigType, BLS_DST, BLS_SIG_LEN, SECP256K1_SIG_LEN,
};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const SECP_CLIENT: &str = "011f788598007a7498b7f949058fa72058cc96d8c6";
const BLS_CLIENT: &str = "0388f5f88df961cb39d6bb2c2338180bfd68de4b79e61c8c1d76e41c3cd7841ec862c8fac5e70156cdd33c83f8737a4b51";
const DEAL_UUID: &str = "8f1c7b1e6a0e4c4b9b7e2a4d3c5e6f70";

/// BLS12-381 scalar field order r, big-endian.
const BLS_R: [u8; 32] = [
    0x73, 0xed, 0xa7, 0x53, 0x29, 0x9d, 0x7d, 0x48, 0x33, 0x39, 0xd8, 0x08, 0x09, 0xa1, 0xd8, 0x05,
    0x53, 0xbd, 0xa4, 0x02, 0xff, 0xfe, 0x5b, 0xfe, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
];
/// secp256k1 group order n, big-endian.
const SECP_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

// ---------------------------------------------------------------- vector loading

mod common;
use common::vector;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// The `Signature` byte string of a DealStatusRequest (S1/S2): the text key "Signature"
/// (`69 5369676e6174757265`), a one-byte-length byte string header `58 LL`, then LL bytes,
/// which end the map. Sliced, not decoded.
fn status_request_signature(req: &[u8]) -> Vec<u8> {
    let key = h("695369676e6174757265");
    let at = req
        .windows(key.len())
        .position(|w| w == key.as_slice())
        .expect("Signature key")
        + key.len();
    assert_eq!(req[at], 0x58, "byte string with 1-byte length");
    let len = req[at + 1] as usize;
    let sig = &req[at + 2..];
    assert_eq!(sig.len(), len, "signature is the last item");
    sig.to_vec()
}

/// Split a wire signature `type ‖ data` and verify it.
fn verify_wire(sig: &[u8], addr: &[u8], msg: &[u8]) -> Result<(), SigError> {
    verify(sig[0], &sig[1..], addr, msg)
}

// ---------------------------------------------------------------- test-only signers

fn blake2b_256(data: &[u8]) -> [u8; 32] {
    let hash = blake2b_simd::Params::new().hash_length(32).hash(data);
    hash.as_bytes().try_into().unwrap()
}

fn secp_secret() -> k256::ecdsa::SigningKey {
    let sk = Sha256::digest(b"mk12 example secp256k1 client");
    k256::ecdsa::SigningKey::from_slice(&sk).unwrap()
}

/// Filecoin secp256k1 signature payload `0x01 ‖ r ‖ s ‖ v` (RFC 6979, low-S).
fn secp_sign(key: &k256::ecdsa::SigningKey, msg: &[u8]) -> Vec<u8> {
    let (sig, recid) = key.sign_prehash_recoverable(&blake2b_256(msg));
    let mut out = vec![SigType::Secp256k1 as u8];
    out.extend_from_slice(&sig.to_bytes());
    out.push(recid.to_byte());
    out
}

fn secp_address(key: &k256::ecdsa::SigningKey) -> Vec<u8> {
    let point = key.verifying_key().to_sec1_point(false);
    let uncompressed: &[u8; 65] = point.as_bytes().try_into().unwrap();
    let mut addr = vec![1u8];
    addr.extend_from_slice(&secp256k1_address_payload(uncompressed));
    addr
}

/// a - b for equal-length big-endian integers with a >= b.
fn be_sub(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = if d < 0 {
            d += 256;
            1
        } else {
            0
        };
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "be_sub underflow");
    out
}

fn bls_secret() -> blst::min_pk::SecretKey {
    let mut scalar: [u8; 32] = Sha256::digest(b"mk12 example bls client").into();
    while scalar >= BLS_R {
        scalar = be_sub(&scalar, &BLS_R);
    }
    blst::min_pk::SecretKey::from_bytes(&scalar).unwrap()
}

/// Filecoin BLS signature payload `0x02 ‖ compressed G2`.
fn bls_sign(key: &blst::min_pk::SecretKey, msg: &[u8]) -> Vec<u8> {
    let mut out = vec![SigType::Bls as u8];
    out.extend_from_slice(&key.sign(msg, BLS_DST, &[]).to_bytes());
    out
}

fn flip_bit(bytes: &[u8], index: usize, bit: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[index] ^= 1 << bit;
    out
}

// ---------------------------------------------------------------- golden vectors verify

#[test]
fn a2_verifies_over_a1_for_secp_client() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    assert_eq!(a2.len(), 1 + SECP256K1_SIG_LEN);
    assert_eq!(a2[0], 1);
    assert_eq!(verify_wire(&a2, &h(SECP_CLIENT), &a1), Ok(()));
}

#[test]
fn b1_verifies_over_b0_for_bls_client() {
    let (b0, b1) = (vector("B0"), vector("B1"));
    assert_eq!(b1.len(), 1 + BLS_SIG_LEN);
    assert_eq!(b1[0], 2);
    assert_eq!(verify_wire(&b1, &h(BLS_CLIENT), &b0), Ok(()));
}

#[test]
fn proposals_carry_their_clients() {
    // The Client field (`55 <21 bytes>` / `58 31 <49 bytes>`) is the address we verify against.
    let a1 = hex::encode(vector("A1"));
    let b0 = hex::encode(vector("B0"));
    assert!(a1.contains(&format!("55{SECP_CLIENT}")));
    assert!(b0.contains(&format!("5831{BLS_CLIENT}")));
}

#[test]
fn status_request_signatures_verify_over_uuid_bytes() {
    let uuid = h(DEAL_UUID);
    let s1 = status_request_signature(&vector("S1"));
    let s2 = status_request_signature(&vector("S2"));
    assert_eq!((s1.len(), s1[0]), (66, 1));
    assert_eq!((s2.len(), s2[0]), (97, 2));
    assert_eq!(verify_wire(&s1, &h(SECP_CLIENT), &uuid), Ok(()));
    assert_eq!(verify_wire(&s2, &h(BLS_CLIENT), &uuid), Ok(()));
    // Not over anything else, e.g. the UUID's text form.
    let text = b"8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70";
    assert_eq!(
        verify_wire(&s1, &h(SECP_CLIENT), text),
        Err(SigError::Invalid)
    );
    assert_eq!(
        verify_wire(&s2, &h(BLS_CLIENT), text),
        Err(SigError::Invalid)
    );
}

// ---------------------------------------------------------------- re-signing pins keys

#[test]
fn secp_key_derivation_matches_client_address() {
    assert_eq!(secp_address(&secp_secret()), h(SECP_CLIENT));
}

#[test]
fn bls_key_derivation_matches_client_address() {
    let pk = bls_secret().sk_to_pk().to_bytes();
    assert_eq!(pk.as_slice(), &h(BLS_CLIENT)[1..]);
}

#[test]
fn resigning_a1_reproduces_a2() {
    assert_eq!(secp_sign(&secp_secret(), &vector("A1")), vector("A2"));
}

#[test]
fn resigning_b0_reproduces_b1() {
    assert_eq!(bls_sign(&bls_secret(), &vector("B0")), vector("B1"));
}

#[test]
fn resigning_uuid_reproduces_status_request_signatures() {
    let uuid = h(DEAL_UUID);
    assert_eq!(
        secp_sign(&secp_secret(), &uuid),
        status_request_signature(&vector("S1"))
    );
    assert_eq!(
        bls_sign(&bls_secret(), &uuid),
        status_request_signature(&vector("S2"))
    );
}

#[test]
fn bls_scalar_reduction_is_sound() {
    // sha256 < 2^256 < 3r, so at most two subtractions; r itself reduces to zero.
    assert_eq!(be_sub(&BLS_R, &BLS_R), [0u8; 32]);
    let mut one = [0u8; 32];
    one[31] = 1;
    assert_eq!(be_sub(&BLS_R, &one)[31], 0);
}

// ---------------------------------------------------------------- negative cases

#[test]
fn flipped_signature_bits_fail() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let (b0, b1) = (vector("B0"), vector("B1"));
    // Low bit of r: r is still a scalar; recovery yields another key (or none) -> Invalid.
    let bad = flip_bit(&a2, 32, 0);
    assert_eq!(
        verify_wire(&bad, &h(SECP_CLIENT), &a1),
        Err(SigError::Invalid)
    );
    // Low bit of s.
    let bad = flip_bit(&a2, 64, 0);
    assert_eq!(
        verify_wire(&bad, &h(SECP_CLIENT), &a1),
        Err(SigError::Invalid)
    );
    // v flipped 1 -> 0: the other candidate key.
    let bad = flip_bit(&a2, 65, 0);
    assert_eq!(
        verify_wire(&bad, &h(SECP_CLIENT), &a1),
        Err(SigError::Invalid)
    );
    // BLS: a flipped bit in x almost never leaves a point on the curve: a typed encoding
    // error. The sign bit (bit 5 of the first byte) gives the negated point: Invalid.
    let bad = flip_bit(&b1, 96, 0);
    assert_eq!(
        verify_wire(&bad, &h(BLS_CLIENT), &b0),
        Err(SigError::BadSignatureEncoding)
    );
    let bad = flip_bit(&b1, 1, 5);
    assert_eq!(
        verify_wire(&bad, &h(BLS_CLIENT), &b0),
        Err(SigError::Invalid)
    );
    // Clearing the compression flag makes it not a compressed point at all.
    let bad = flip_bit(&b1, 1, 7);
    assert_eq!(
        verify_wire(&bad, &h(BLS_CLIENT), &b0),
        Err(SigError::BadSignatureEncoding)
    );
}

#[test]
fn flipped_message_bits_fail() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let (b0, b1) = (vector("B0"), vector("B1"));
    for (i, bit) in [(0usize, 0u8), (80, 3), (161, 7)] {
        let msg = flip_bit(&a1, i, bit);
        assert_eq!(
            verify_wire(&a2, &h(SECP_CLIENT), &msg),
            Err(SigError::Invalid)
        );
    }
    for (i, bit) in [(0usize, 0u8), (100, 3), (190, 7)] {
        let msg = flip_bit(&b0, i, bit);
        assert_eq!(
            verify_wire(&b1, &h(BLS_CLIENT), &msg),
            Err(SigError::Invalid)
        );
    }
    // Extra or missing bytes are also a different message.
    assert_eq!(
        verify_wire(&a2, &h(SECP_CLIENT), &a1[..a1.len() - 1]),
        Err(SigError::Invalid)
    );
    let mut longer = b0.clone();
    longer.push(0);
    assert_eq!(
        verify_wire(&b1, &h(BLS_CLIENT), &longer),
        Err(SigError::Invalid)
    );
}

#[test]
fn wrong_signer_fails() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let (b0, b1) = (vector("B0"), vector("B1"));
    // Another key of the same kind.
    let other_secp = k256::ecdsa::SigningKey::from_slice(&Sha256::digest(b"someone else")).unwrap();
    assert_eq!(
        verify_wire(&a2, &secp_address(&other_secp), &a1),
        Err(SigError::Invalid)
    );
    let mut other_bls = vec![3u8];
    other_bls.extend_from_slice(
        &blst::min_pk::SecretKey::key_gen(&[7u8; 32], &[])
            .unwrap()
            .sk_to_pk()
            .to_bytes(),
    );
    assert_eq!(verify_wire(&b1, &other_bls, &b0), Err(SigError::Invalid));
    // The clients swapped: a type/protocol mismatch, which Lotus reports as a failed match.
    assert_eq!(
        verify_wire(&a2, &h(BLS_CLIENT), &a1),
        Err(SigError::Invalid)
    );
    assert_eq!(
        verify_wire(&b1, &h(SECP_CLIENT), &b0),
        Err(SigError::Invalid)
    );
    // And each client's signature presented under the other's type byte.
    assert_eq!(
        verify(1, &b1[1..], &h(SECP_CLIENT), &b0),
        Err(SigError::BadSignatureLength {
            expected: 65,
            actual: 96
        })
    );
    // An ID address (protocol 0, e.g. f01000) must be resolved first: it never matches.
    assert_eq!(verify_wire(&a2, &h("00e807"), &a1), Err(SigError::Invalid));
    assert_eq!(verify_wire(&b1, &h("00e807"), &b0), Err(SigError::Invalid));
}

#[test]
fn high_s_variant_is_rejected() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let s: [u8; 32] = a2[33..65].try_into().unwrap();
    let mut high = a2.clone();
    high[33..65].copy_from_slice(&be_sub(&SECP_N, &s));
    high[65] ^= 1;
    // (r, n - s, v ^ 1) is the same signature in malleated form: mathematically valid,
    // but non-canonical, so it must be refused.
    assert_eq!(
        verify_wire(&high, &h(SECP_CLIENT), &a1),
        Err(SigError::HighS)
    );
    assert!(SigError::HighS.is_malformed());
}

#[test]
fn bad_lengths_fail() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let (b0, b1) = (vector("B0"), vector("B1"));
    for len in [0usize, 1, 64, 66, 130] {
        let mut sig = a2[1..].to_vec();
        sig.resize(len, 0);
        assert_eq!(
            verify(1, &sig, &h(SECP_CLIENT), &a1),
            Err(SigError::BadSignatureLength {
                expected: 65,
                actual: len
            })
        );
    }
    for len in [0usize, 48, 95, 97, 192] {
        let mut sig = b1[1..].to_vec();
        sig.resize(len, 0);
        assert_eq!(
            verify(2, &sig, &h(BLS_CLIENT), &b0),
            Err(SigError::BadSignatureLength {
                expected: 96,
                actual: len
            })
        );
    }
}

#[test]
fn bad_secp_fields_fail() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let addr = h(SECP_CLIENT);
    for v in [2u8, 3, 27, 28, 255] {
        let mut sig = a2[1..].to_vec();
        sig[64] = v;
        assert_eq!(verify(1, &sig, &addr, &a1), Err(SigError::BadRecoveryId(v)));
    }
    // r = 0, s = 0, r = n, s = n are not signatures at all.
    for (range, value) in [
        (0..32, [0u8; 32]),
        (32..64, [0u8; 32]),
        (0..32, SECP_N),
        (32..64, SECP_N),
    ] {
        let mut sig = a2[1..].to_vec();
        sig[range].copy_from_slice(&value);
        assert_eq!(
            verify(1, &sig, &addr, &a1),
            Err(SigError::BadSignatureEncoding)
        );
    }
}

#[test]
fn bls_signature_points_off_curve_or_outside_g2_are_malformed() {
    let (b0, b1) = (vector("B0"), vector("B1"));
    let with_last = |b: u8| {
        let mut sig = b1.clone();
        sig[96] = b;
        sig
    };
    let decodes = |sig: &[u8]| blst::min_pk::Signature::uncompress(&sig[1..]).ok();
    let not_in_g2 = (0u8..=255)
        .map(with_last)
        .find(|sig| decodes(sig).is_some_and(|p| !p.subgroup_check()))
        .expect("some x gives a point outside G2");
    assert_eq!(
        verify_wire(&not_in_g2, &h(BLS_CLIENT), &b0),
        Err(SigError::BadSignatureEncoding)
    );
    let off_curve = (0u8..=255)
        .map(with_last)
        .find(|sig| decodes(sig).is_none())
        .expect("some x is not on the curve");
    assert_eq!(
        verify_wire(&off_curve, &h(BLS_CLIENT), &b0),
        Err(SigError::BadSignatureEncoding)
    );
    // The point at infinity is a well-formed encoding that never verifies.
    let mut inf = vec![2u8, 0xc0];
    inf.resize(97, 0);
    assert_eq!(
        verify_wire(&inf, &h(BLS_CLIENT), &b0),
        Err(SigError::Invalid)
    );
}

#[test]
fn bad_bls_public_key_fails() {
    let (b0, b1) = (vector("B0"), vector("B1"));
    // Not a compressed point (flag bit cleared).
    let bad = flip_bit(&h(BLS_CLIENT), 1, 7);
    assert_eq!(verify_wire(&b1, &bad, &b0), Err(SigError::BadPublicKey));
    // On the curve but outside the G1 subgroup (uncompresses, fails the group check).
    let bad = flip_bit(&h(BLS_CLIENT), 48, 0);
    let point = blst::min_pk::PublicKey::uncompress(&bad[1..]).expect("on the curve");
    assert_eq!(
        point.validate(),
        Err(blst::BLST_ERROR::BLST_POINT_NOT_IN_GROUP)
    );
    assert_eq!(verify_wire(&b1, &bad, &b0), Err(SigError::BadPublicKey));
    // Not on the curve at all.
    let off_curve = (0u8..=255)
        .map(|b| {
            let mut pk = h(BLS_CLIENT);
            pk[48] = b;
            pk
        })
        .find(|pk| blst::min_pk::PublicKey::uncompress(&pk[1..]).is_err())
        .expect("some x is not on the curve");
    assert_eq!(
        verify_wire(&b1, &off_curve, &b0),
        Err(SigError::BadPublicKey)
    );
    // The point at infinity (compressed: 0xc0 then zeros).
    let mut inf = vec![3u8, 0xc0];
    inf.resize(49, 0);
    assert_eq!(verify_wire(&b1, &inf, &b0), Err(SigError::BadPublicKey));
}

#[test]
fn bad_addresses_fail() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let (b0, b1) = (vector("B0"), vector("B1"));
    let secp = h(SECP_CLIENT);
    let bls = h(BLS_CLIENT);
    for addr in [
        vec![],
        secp[..20].to_vec(),
        [secp.as_slice(), &[0]].concat(),
        vec![1u8],
        vec![9u8, 1, 2, 3],
        vec![0u8],
    ] {
        assert_eq!(
            verify_wire(&a2, &addr, &a1),
            Err(SigError::BadAddress),
            "{addr:02x?}"
        );
    }
    for addr in [
        bls[..48].to_vec(),
        [bls.as_slice(), &[0]].concat(),
        vec![3u8],
    ] {
        assert_eq!(
            verify_wire(&b1, &addr, &b0),
            Err(SigError::BadAddress),
            "{addr:02x?}"
        );
    }
}

#[test]
fn delegated_is_unsupported_and_unknown_types_are_malformed() {
    let (a1, a2) = (vector("A1"), vector("A2"));
    let err = verify(3, &a2[1..], &h(SECP_CLIENT), &a1).unwrap_err();
    assert_eq!(err, SigError::Unsupported(SigType::Delegated));
    assert!(!err.is_malformed());
    // Even with an f4 address.
    let f4 = [&[4u8, 10][..], &[0xab; 20]].concat();
    assert_eq!(
        verify(3, &a2[1..], &f4, &a1),
        Err(SigError::Unsupported(SigType::Delegated))
    );
    for t in [0u8, 4, 255] {
        let err = verify(t, &a2[1..], &h(SECP_CLIENT), &a1).unwrap_err();
        assert_eq!(err, SigError::UnknownSigType(t));
        assert!(err.is_malformed());
    }
    assert!(!SigError::Invalid.is_malformed());
}

#[test]
fn fresh_signatures_round_trip() {
    // Beyond the vectors: our own signer and verifier agree on arbitrary messages.
    let secp = secp_secret();
    let bls = bls_secret();
    for msg in [&b""[..], b"x", &[0u8; 1000]] {
        assert_eq!(
            verify_wire(&secp_sign(&secp, msg), &h(SECP_CLIENT), msg),
            Ok(())
        );
        assert_eq!(
            verify_wire(&bls_sign(&bls, msg), &h(BLS_CLIENT), msg),
            Ok(())
        );
    }
}

// ---------------------------------------------------------------- no panics

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn verify_never_panics(
        sig_type in any::<u8>(),
        sig in proptest::collection::vec(any::<u8>(), 0..200),
        addr in proptest::collection::vec(any::<u8>(), 0..80),
        msg in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let _ = verify(sig_type, &sig, &addr, &msg);
    }

    /// Inputs of the right shapes, so the curve code (not just the length checks) runs.
    #[test]
    fn verify_never_panics_on_well_shaped_inputs(
        kind in 0u8..4,
        sig in proptest::collection::vec(any::<u8>(), 96),
        payload in proptest::collection::vec(any::<u8>(), 48),
        msg in proptest::collection::vec(any::<u8>(), 0..64),
        flags in any::<u8>(),
    ) {
        let (sig_type, sig, addr) = match kind {
            0 => (1u8, sig[..65].to_vec(), [&[1u8][..], &payload[..20]].concat()),
            1 => (1u8, [&sig[..64], &[flags & 1]].concat(), [&[1u8][..], &payload[..20]].concat()),
            _ => {
                let mut sig = sig;
                sig[0] = (sig[0] & 0x1f) | 0x80 | (flags & 0x20);
                let mut pk = payload;
                pk[0] = (pk[0] & 0x1f) | 0x80 | (flags & 0x20);
                (2u8, sig, [&[3u8][..], &pk].concat())
            }
        };
        let result = verify(sig_type, &sig, &addr, &msg);
        // Random bytes are never a valid signature.
        prop_assert!(result.is_err());
    }
}
