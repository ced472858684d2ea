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

// ---- PublishStorageDeals (market actor method 4) and RLE+ bitfields --------------------

/// builtin-actors' `PublishStorageDealsParams`.
#[derive(Serialize_tuple, Deserialize_tuple, Debug, Clone, PartialEq)]
struct FvmPublishParams {
    deals: Vec<FvmClientDealProposal>,
}

/// builtin-actors' `PublishStorageDealsReturn`.
#[derive(Serialize_tuple, Deserialize_tuple, Debug, Clone, PartialEq)]
struct FvmPublishReturn {
    ids: Vec<u64>,
    valid_deals: fvm_ipld_bitfield::BitField,
}

#[test]
fn publish_params_decode_in_the_fvm_as_the_deals_sent() {
    let a3 = vector("A3");
    let cdp = wire::ClientDealProposal::from_cbor(&a3).unwrap();
    for n in [1usize, 2, 8] {
        let params = wire::PublishStorageDealsParams {
            deals: vec![cdp.clone(); n],
        };
        let bytes = params.to_cbor();
        let fvm: FvmPublishParams = fvm_ipld_encoding::from_slice(&bytes).unwrap();
        assert_eq!(fvm.deals.len(), n);
        assert_eq!(to_vec(&fvm.deals[n - 1]).unwrap(), a3);
        assert_eq!(to_vec(&fvm).unwrap(), bytes, "{n} deals: same bytes");
        assert_eq!(
            wire::PublishStorageDealsParams::from_cbor(&bytes).unwrap(),
            params
        );
    }
}

proptest! {
    /// Any set of valid deals in a batch: the FVM's return decodes to the same IDs per
    /// position, and our encoding of it is byte-identical.
    #[test]
    fn publish_return_matches_the_fvm(valid in proptest::collection::btree_set(0u64..40, 0..40),
                                      base in 0u64..1_000_000) {
        let ids: Vec<u64> = (0..valid.len() as u64).map(|i| base + i).collect();
        let fvm = FvmPublishReturn {
            ids: ids.clone(),
            valid_deals: fvm_ipld_bitfield::BitField::try_from_bits(valid.iter().copied()).unwrap(),
        };
        let bytes = to_vec(&fvm).unwrap();
        let ours = wire::PublishStorageDealsReturn::from_cbor(&bytes).unwrap();
        prop_assert_eq!(ours.to_cbor(), bytes);
        let per_deal = ours.deal_ids(40).unwrap();
        let mut next = ids.iter();
        for (i, got) in per_deal.iter().enumerate() {
            let want = if valid.contains(&(i as u64)) { next.next().copied() } else { None };
            prop_assert_eq!(*got, want);
        }
    }

    /// RLE+ encoding: ours equals fvm_ipld_bitfield's for any bit set.
    #[test]
    fn rle_encoding_matches_the_fvm(bits in proptest::collection::vec(0u64..5000, 0..200)) {
        let fvm = fvm_ipld_bitfield::BitField::try_from_bits(bits.iter().copied()).unwrap();
        let ours = wire::BitField::from_bits(bits.iter().copied());
        prop_assert_eq!(ours.to_rle(), fvm.to_bytes());
        prop_assert_eq!(wire::BitField::from_rle(&fvm.to_bytes()).unwrap(), ours);
    }

    /// RLE+ decoding of arbitrary bytes: accepted exactly when fvm_ipld_bitfield accepts,
    /// with the same bits; never a panic.
    #[test]
    fn rle_decoding_agrees_with_the_fvm(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
        let fvm = fvm_ipld_bitfield::BitField::from_bytes(&bytes);
        let ours = wire::BitField::from_rle(&bytes);
        prop_assert_eq!(ours.is_ok(), fvm.is_ok(), "bytes {:02x?}: ours {:?}", bytes, ours);
        if let (Ok(ours), Ok(fvm)) = (ours, fvm) {
            let theirs: Vec<(u64, u64)> = fvm.ranges().map(|r| (r.start, r.end)).collect();
            prop_assert_eq!(ours.ranges(), &theirs[..]);
        }
    }
}

#[test]
fn publish_return_that_does_not_fit_the_batch_is_refused() {
    let ret = |ids: Vec<u64>, bits: &[u64]| wire::PublishStorageDealsReturn {
        ids,
        valid_deals: wire::BitField::from_bits(bits.iter().copied()),
    };
    assert_eq!(
        ret(vec![7], &[0, 1]).deal_ids(2).unwrap_err(),
        "the return names 2 valid deals but carries 1 deal IDs"
    );
    assert_eq!(
        ret(vec![7], &[3]).deal_ids(2).unwrap_err(),
        "the return marks deal 3 valid in a message of 2 deals"
    );
    assert_eq!(
        ret(vec![7, 9], &[0, 2]).deal_ids(3).unwrap(),
        vec![Some(7), None, Some(9)]
    );
}

#[test]
fn publish_return_seed_corpus_decodes_as_written() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/publish_return/"
    );
    let read = |name: &str| std::fs::read(format!("{dir}{name}")).unwrap();
    let ids = |name: &str, batch| {
        wire::PublishStorageDealsReturn::from_cbor(&read(name))
            .unwrap()
            .deal_ids(batch)
            .unwrap()
    };
    assert_eq!(ids("one_valid", 1), vec![Some(7)]);
    assert_eq!(ids("two_of_three", 3), vec![Some(7), None, Some(9)]);
    assert_eq!(ids("none_valid", 2), vec![None, None]);
}
