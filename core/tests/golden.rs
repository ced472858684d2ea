//! Every golden vector decodes and re-encodes byte-identically, and the CIDs and
//! field values listed with the vectors are reproduced.
use dealport_core::wire::*;

mod common;
use common::vector;

fn roundtrip<T: Cbor + std::fmt::Debug>(name: &str) -> T {
    let bytes = vector(name);
    let value = T::from_cbor(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        hex::encode(value.to_cbor()),
        hex::encode(&bytes),
        "{name} re-encodes byte-identically"
    );
    value
}

#[test]
fn every_vector_roundtrips_byte_identically() {
    roundtrip::<DealProposal>("A1");
    roundtrip::<ClientDealProposal>("A3");
    roundtrip::<DealParams>("A4");
    roundtrip::<Transfer>("A6");
    roundtrip::<DealResponse>("R1");
    roundtrip::<DealResponse>("R2");
    roundtrip::<DealStatusRequest>("S1");
    roundtrip::<DealStatusRequest>("S2");
    roundtrip::<DealStatusResponse>("S3");
    roundtrip::<DealStatusResponse>("S4");
    roundtrip::<DealProposal>("B0");
    roundtrip::<DealParams>("B2");
    for sig in ["A2", "B1"] {
        let bytes = vector(sig);
        let s = Signature::from_bytes(&bytes).expect("signature");
        assert_eq!(s.to_bytes(), bytes, "{sig}");
    }
}

#[test]
fn v120_form_decodes_and_reencodes_as_five_keys() {
    let a5 = vector("A5");
    let p = DealParams::from_cbor(&a5).expect("A5 decodes");
    assert!(!p.remove_unsealed_copy && !p.skip_ipni_announce);
    assert_eq!(hex::encode(p.to_cbor_v120()), hex::encode(&a5));
    // The 5-key and 7-key forms carry the same deal.
    assert_eq!(p, DealParams::from_cbor(&vector("A4")).unwrap());
}

#[test]
fn a4_fields_match_the_documented_inputs() {
    let p: DealParams = roundtrip("A4");
    assert_eq!(
        p.deal_uuid.to_string(),
        "8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70"
    );
    assert_eq!(
        p.deal_data_root.to_string(),
        "bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy"
    );
    assert!(!p.is_offline);
    assert_eq!(p.transfer.transfer_type, "http");
    assert_eq!(p.transfer.size, 30_000_000_000);
    let req = HttpRequest::from_json(&p.transfer.params).unwrap();
    assert_eq!(req.url, "https://example.com/data.car");
    assert_eq!(req.to_json(), p.transfer.params, "Go-identical JSON");
    let d = &p.client_deal_proposal.proposal;
    assert_eq!(
        d.piece_cid.to_string(),
        "baga6ea4seaqd6rv4mrnqpi7kfqcpazxzhho7pytj3v3woh46dzq2hi3zpztfcjy"
    );
    assert_eq!(d.piece_size, 32 << 30);
    assert!(d.verified_deal);
    assert_eq!(
        d.client.to_string(),
        "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna"
    );
    assert_eq!(d.provider.to_string(), "f01000");
    assert_eq!(
        d.label,
        DealLabel::Text("bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy".into())
    );
    assert_eq!((d.start_epoch, d.end_epoch), (4_500_000, 5_018_400));
    assert_eq!(d.storage_price_per_epoch, TokenAmount::zero());
    assert_eq!(
        d.provider_collateral,
        TokenAmount::from_u64(8_589_934_592_000)
    );
    assert_eq!(d.client_collateral, TokenAmount::zero());
    assert_eq!(
        p.client_deal_proposal.client_signature.to_bytes(),
        vector("A2")
    );
    // The proposal inside A4 is A1, and the signed proposal is A3.
    assert_eq!(d.to_cbor(), vector("A1"));
    assert_eq!(p.client_deal_proposal.to_cbor(), vector("A3"));
}

#[test]
fn both_cids_are_reproduced() {
    let cdp: ClientDealProposal = roundtrip("A3");
    assert_eq!(
        cdp.signed_proposal_cid().to_string(),
        "bafyreigbkt7mcd233igmdgiblgkdxbiszmzd3sdfaqvho3aq5urhbf7a2u"
    );
    assert_eq!(
        cdp.proposal.cid().to_string(),
        "bafy2bzaced27apdpqdell5sqerfdhwclmbp3gqm4xd43rapvttridu24zntok"
    );
    // S4 carries the same SignedProposalCid.
    let s4: DealStatusResponse = roundtrip("S4");
    let st = s4.deal_status.expect("S4 has a DealStatus");
    assert_eq!(st.signed_proposal_cid, cdp.signed_proposal_cid());
    assert_eq!(st.status, "Accepted");
    assert_eq!(st.publish_cid, None);
}

#[test]
fn status_vectors_carry_the_documented_values() {
    let s3: DealStatusResponse = roundtrip("S3");
    assert_eq!(
        s3.error,
        "no storage deal found with deal UUID 8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70"
    );
    assert!(s3.deal_status.is_none());
    let s2: DealStatusRequest = roundtrip("S2");
    assert_eq!(s2.signature.sig_type, 2);
    assert_eq!(s2.signature.data.len(), 96);
    let bls = Address::parse(
        "f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a",
    )
    .unwrap();
    let b0: DealProposal = roundtrip("B0");
    assert_eq!(b0.client, bls);
    assert_eq!(
        hex::encode(bls.as_bytes()),
        "0388f5f88df961cb39d6bb2c2338180bfd68de4b79e61c8c1d76e41c3cd7841ec862c8fac5e70156cdd33c83f8737a4b51"
    );
}

#[test]
fn response_constructors_match_vectors() {
    assert_eq!(DealResponse::accepted().to_cbor(), vector("R1"));
    assert_eq!(
        DealResponse::rejected("failed validation: invalid signature").to_cbor(),
        vector("R2")
    );
    let uuid = DealUuid::parse("8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70").unwrap();
    assert_eq!(
        DealStatusResponse::error(uuid, format!("no storage deal found with deal UUID {uuid}"))
            .to_cbor(),
        vector("S3")
    );
}
