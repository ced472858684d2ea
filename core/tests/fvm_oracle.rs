//! Cross-check against an independent encoder: the FVM's own types and its dag-cbor
//! (serde_ipld_dagcbor) encoding must produce the same bytes as ours.
use dealport_core::wire::{self, Cbor};
use fvm_ipld_encoding::tuple::*;
use fvm_ipld_encoding::{strict_bytes, to_vec};
use fvm_shared::address::Address as FvmAddress;
use fvm_shared::bigint::BigInt;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::crypto::signature::Signature as FvmSignature;
use fvm_shared::econ::TokenAmount as FvmToken;
use fvm_shared::piece::PaddedPieceSize;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

mod common;
use common::vector;

/// builtin-actors' `Label`: a text or a byte string.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
enum Label {
    String(String),
    Bytes(#[serde(with = "strict_bytes")] Vec<u8>),
}

/// builtin-actors' `DealProposal`, declared the way the actors declare it.
#[derive(Serialize_tuple, Deserialize_tuple, Debug, Clone, PartialEq)]
struct FvmDealProposal {
    piece_cid: cid::Cid,
    piece_size: PaddedPieceSize,
    verified_deal: bool,
    client: FvmAddress,
    provider: FvmAddress,
    label: Label,
    start_epoch: ChainEpoch,
    end_epoch: ChainEpoch,
    storage_price_per_epoch: FvmToken,
    provider_collateral: FvmToken,
    client_collateral: FvmToken,
}

#[derive(Serialize_tuple, Deserialize_tuple, Debug, Clone, PartialEq)]
struct FvmClientDealProposal {
    proposal: FvmDealProposal,
    client_signature: FvmSignature,
}

fn to_fvm(p: &wire::DealProposal) -> FvmDealProposal {
    let tok = |t: &wire::TokenAmount| {
        FvmToken::from_atto(BigInt::from_signed_bytes_be(&t.0.to_signed_bytes_be()))
    };
    FvmDealProposal {
        piece_cid: cid::Cid::try_from(p.piece_cid.as_bytes()).unwrap(),
        piece_size: PaddedPieceSize(p.piece_size),
        verified_deal: p.verified_deal,
        client: FvmAddress::from_bytes(p.client.as_bytes()).unwrap(),
        provider: FvmAddress::from_bytes(p.provider.as_bytes()).unwrap(),
        label: match &p.label {
            wire::DealLabel::Text(s) => Label::String(s.clone()),
            wire::DealLabel::Bytes(b) => Label::Bytes(b.clone()),
        },
        start_epoch: p.start_epoch,
        end_epoch: p.end_epoch,
        storage_price_per_epoch: tok(&p.storage_price_per_epoch),
        provider_collateral: tok(&p.provider_collateral),
        client_collateral: tok(&p.client_collateral),
    }
}

#[test]
fn golden_proposals_encode_identically_in_the_fvm() {
    for name in ["A1", "B0"] {
        let bytes = vector(name);
        let fvm: FvmDealProposal = fvm_ipld_encoding::from_slice(&bytes).unwrap();
        assert_eq!(
            to_vec(&fvm).unwrap(),
            bytes,
            "{name} through the FVM encoder"
        );
        let ours = wire::DealProposal::from_cbor(&bytes).unwrap();
        assert_eq!(to_fvm(&ours), fvm, "{name}: same field values");
    }
    let a3 = vector("A3");
    let fvm: FvmClientDealProposal = fvm_ipld_encoding::from_slice(&a3).unwrap();
    assert_eq!(to_vec(&fvm).unwrap(), a3);
    // The cid crate's CID over the proposal's blake2b-256 matches ours.
    let ours = wire::ClientDealProposal::from_cbor(&a3).unwrap();
    let mh = cid::multihash::Multihash::<64>::wrap(
        0xb220,
        blake2b_simd::Params::new()
            .hash_length(32)
            .hash(&vector("A1"))
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        cid::Cid::new_v1(0x71, mh).to_string(),
        ours.proposal.cid().to_string()
    );
}

#[test]
fn address_strings_agree_with_the_fvm() {
    for s in [
        "f01000",
        "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna",
        "f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a",
    ] {
        let ours = wire::Address::parse(s).unwrap();
        let fvm = FvmAddress::from_bytes(ours.as_bytes()).unwrap();
        assert_eq!(fvm.to_string(), s);
    }
}

proptest! {
    #[test]
    fn primitives_match_the_fvm(
        id in 0u64..=i64::MAX as u64,
        key in any::<[u8; 20]>(),
        mag in proptest::collection::vec(any::<u8>(), 0..40),
        neg in any::<bool>(),
        digest in any::<[u8; 32]>(),
        ns in 0u64..100_000,
        sub in proptest::collection::vec(any::<u8>(), 0..=54),
    ) {
        // Address bytes, CBOR and string form.
        let mut f4 = vec![4];
        wire::varint::put(&mut f4, ns);
        f4.extend_from_slice(&sub);
        for ours in [wire::Address::new_id(id), wire::Address::new_secp256k1(key), wire::Address::from_bytes(&f4).unwrap()] {
            let fvm = FvmAddress::from_bytes(ours.as_bytes()).unwrap();
            prop_assert_eq!(to_vec(&fvm).unwrap(), ours.to_cbor());
            prop_assert_eq!(fvm.to_string(), ours.to_string());
        }
        // TokenAmount.
        let sign = if neg { num_bigint::Sign::Minus } else { num_bigint::Sign::Plus };
        let ours = wire::TokenAmount(num_bigint::BigInt::from_bytes_be(sign, &mag));
        let fvm = FvmToken::from_atto(BigInt::from_signed_bytes_be(&ours.0.to_signed_bytes_be()));
        prop_assert_eq!(to_vec(&fvm).unwrap(), ours.to_cbor());
        // CID (tag 42 with the leading zero byte).
        let ours = wire::Cid::v1(0xf101, 0x1012, &digest);
        let fvm = cid::Cid::try_from(ours.as_bytes()).unwrap();
        prop_assert_eq!(to_vec(&fvm).unwrap(), ours.to_cbor());
        prop_assert_eq!(fvm.to_string(), ours.to_string());
    }
}
