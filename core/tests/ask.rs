//! The storage ask: its bytes, what the worker signs, and who gets it.
use dealport_core::ask::{answer_ask, bytes_to_sign, signed_ask, storage_ask};
use dealport_core::facts::AskTerms;
use dealport_core::sig::{secp256k1_address_payload, verify};
use dealport_core::wire::{
    Address, AskRequest, AskResponse, Cbor, Signature, SignedStorageAsk, StorageAsk, TokenAmount,
};
use sha2::{Digest, Sha256};

fn miner() -> Address {
    Address::new_id(1000)
}

fn terms() -> AskTerms {
    AskTerms {
        price: TokenAmount::from_u64(1000),
        verified_price: TokenAmount::zero(),
        min_piece_size: 256,
        max_piece_size: 34_359_738_368,
    }
}

fn the_ask() -> StorageAsk {
    storage_ask(miner(), &terms(), 4_500_000, 5_000_000, 3)
}

fn worker() -> k256::ecdsa::SigningKey {
    k256::ecdsa::SigningKey::from_slice(&Sha256::digest(b"dealport test worker")).unwrap()
}

fn worker_address(key: &k256::ecdsa::SigningKey) -> Address {
    let point = key.verifying_key().to_sec1_point(false);
    let uncompressed: &[u8; 65] = point.as_bytes().try_into().unwrap();
    Address::new_secp256k1(secp256k1_address_payload(uncompressed))
}

/// Filecoin secp256k1 signature: blake2b-256 digest, `r ‖ s ‖ v`.
fn worker_sign(key: &k256::ecdsa::SigningKey, msg: &[u8]) -> Signature {
    let digest = blake2b_simd::Params::new().hash_length(32).hash(msg);
    let (sig, recid) = key.sign_prehash_recoverable(digest.as_bytes());
    let mut data = sig.to_bytes().to_vec();
    data.push(recid.to_byte());
    Signature { sig_type: 1, data }
}

fn signed() -> SignedStorageAsk {
    let ask = the_ask();
    let sig = worker_sign(&worker(), &bytes_to_sign(&ask));
    signed_ask(ask, sig)
}

#[test]
fn storage_ask_carries_the_terms_and_bookkeeping() {
    assert_eq!(
        the_ask(),
        StorageAsk {
            price: TokenAmount::from_u64(1000),
            verified_price: TokenAmount::zero(),
            min_piece_size: 256,
            max_piece_size: 34_359_738_368,
            miner: miner(),
            timestamp: 4_500_000,
            expiry: 5_000_000,
            seq_no: 3,
        }
    );
}

#[test]
fn bytes_to_sign_are_the_storage_ask_cbor_in_wire_order() {
    let expected = [
        "a8",
        "654d696e6572",
        "4300e807", // Miner f01000
        "655072696365",
        "430003e8", // Price 1000
        "655365714e6f",
        "03", // SeqNo 3
        "66457870697279",
        "1a004c4b40", // Expiry 5000000
        "6954696d657374616d70",
        "1a0044aa20", // Timestamp 4500000
        "6c4d61785069656365",
        "53697a65",
        "1b0000000800000000", // MaxPieceSize 32 GiB
        "6c4d696e5069656365",
        "53697a65",
        "190100", // MinPieceSize 256
        "6d5665726966696564",
        "5072696365",
        "40", // VerifiedPrice 0
    ]
    .concat();
    let bytes = bytes_to_sign(&the_ask());
    assert_eq!(hex::encode(&bytes), expected);
    assert_eq!(StorageAsk::from_cbor(&bytes).unwrap(), the_ask());
}

#[test]
fn the_worker_signature_over_the_ask_bytes_verifies() {
    let s = signed();
    let sig = s.signature.as_ref().unwrap();
    let ask_bytes = bytes_to_sign(s.ask.as_ref().unwrap());
    let worker = worker_address(&worker());
    assert_eq!(
        verify(sig.sig_type, &sig.data, worker.as_bytes(), &ask_bytes),
        Ok(())
    );
}

#[test]
fn our_miner_gets_the_signed_ask_and_it_round_trips() {
    let req = AskRequest { miner: miner() };
    let resp = answer_ask(&req, &[Address::new_id(7), miner()], Some(signed()));
    assert_eq!(resp.ask, Some(signed()));
    let bytes = resp.to_cbor();
    assert_eq!(AskResponse::from_cbor(&bytes).unwrap(), resp);
    // The ask inside the response is byte-for-byte the signed bytes.
    let inner = bytes_to_sign(&the_ask());
    assert!(bytes.windows(inner.len()).any(|w| w == inner.as_slice()));
}

#[test]
fn a_foreign_miner_gets_null() {
    let req = AskRequest {
        miner: Address::new_id(2000),
    };
    let resp = answer_ask(&req, &[miner()], Some(signed()));
    assert_eq!(resp.ask, None);
    assert_eq!(hex::encode(resp.to_cbor()), "a16341736bf6");
}

#[test]
fn our_miner_without_a_signed_ask_gets_null() {
    let req = AskRequest { miner: miner() };
    assert_eq!(answer_ask(&req, &[miner()], None).ask, None);
}

#[test]
fn a_robust_address_of_our_miner_gets_null_as_in_boost() {
    // An f2 (actor) address; Boost compares the requested address's string with its
    // own ID address, so even the miner's own robust address gets no ask.
    let mut bytes = vec![2u8];
    bytes.extend_from_slice(&[0x51; 20]);
    let robust = Address::from_bytes(&bytes).unwrap();
    let req = AskRequest { miner: robust };
    assert_eq!(answer_ask(&req, &[miner()], Some(signed())).ask, None);
}

#[test]
fn a_signed_ask_for_another_miner_is_not_served() {
    let req = AskRequest {
        miner: Address::new_id(7),
    };
    // Node bug guard: the ask handed in is for f01000, the request for f07.
    let resp = answer_ask(&req, &[Address::new_id(7), miner()], Some(signed()));
    assert_eq!(resp.ask, None);
}
