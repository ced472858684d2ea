//! Retrieval decisions over real deal records (A4) and the transports answer's bytes.
use dealport_core::deal::{Checkpoint, DealRecord};
use dealport_core::retrieval::{piece_sources, transports, Endpoints, PieceSource};
use dealport_core::wire::{Cbor, DealParams, DealUuid};

mod common;
use common::vector;

/// A4 under `uuid` at `checkpoint`, failed when `failed`.
fn deal(uuid: u8, checkpoint: Checkpoint, failed: bool) -> DealRecord {
    let mut params = DealParams::from_cbor(&vector("A4")).expect("A4 decodes");
    params.deal_uuid = DealUuid([uuid; 16]);
    let bytes = params.to_cbor();
    let mut d = DealRecord::new_accepted(bytes, params, String::new(), 0);
    d.checkpoint = checkpoint;
    if failed {
        d.error = Some("the data did not match".into());
    }
    d
}

#[test]
fn a_failed_deal_or_one_still_receiving_supplies_nothing() {
    let piece = deal(1, Checkpoint::Accepted, false)
        .params
        .client_deal_proposal
        .proposal
        .piece_cid;
    assert_eq!(
        piece_sources(&piece, &[deal(1, Checkpoint::Accepted, false)]),
        []
    );
    assert_eq!(
        piece_sources(&piece, &[deal(1, Checkpoint::Transferred, true)]),
        []
    );
    assert_eq!(
        piece_sources(&piece, &[deal(1, Checkpoint::AddedPiece, true)]),
        []
    );
    // The failed one is skipped, the live one supplies its staged data.
    assert_eq!(
        piece_sources(
            &piece,
            &[
                deal(1, Checkpoint::Transferred, true),
                deal(2, Checkpoint::PublishConfirmed, false)
            ]
        ),
        [PieceSource::Staged(DealUuid([2; 16]))]
    );
}

#[test]
fn a_sealed_deal_points_at_the_piece_store_first() {
    let piece = deal(1, Checkpoint::Accepted, false)
        .params
        .client_deal_proposal
        .proposal
        .piece_cid;
    assert_eq!(
        piece_sources(
            &piece,
            &[
                deal(3, Checkpoint::Complete, false),
                deal(4, Checkpoint::Transferred, false)
            ]
        ),
        [
            PieceSource::Kept,
            PieceSource::Staged(DealUuid([4; 16])),
            PieceSource::Staged(DealUuid([3; 16]))
        ]
    );
    // A record of another piece (a store bug) is never a source.
    let other = dealport_core::wire::Cid::dag_cbor_sha256(b"x");
    assert_eq!(
        piece_sources(&other, &[deal(3, Checkpoint::Complete, false)]),
        []
    );
}

#[test]
fn a_configured_http_endpoint_is_encoded_byte_for_byte() {
    // /dns/sp.example.com/tcp/443/https: dns (0x35) len 14, tcp (0x06) 0x01bb, https (0x01bb).
    let mut addr = vec![0x35, 14];
    addr.extend_from_slice(b"sp.example.com");
    addr.extend_from_slice(&[0x06, 0x01, 0xbb, 0xbb, 0x03]);
    let e = Endpoints {
        http: vec![addr.clone()],
        ..Endpoints::default()
    };
    let mut want = b"\xa1\x69Protocols\x81\xa2\x64Name\x64http\x69Addresses\x81".to_vec();
    want.push(0x40 + addr.len() as u8);
    want.extend_from_slice(&addr);
    assert_eq!(hex(&transports(&e, None).to_cbor()), hex(&want));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
