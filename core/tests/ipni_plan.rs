//! The IPNI task's decisions: what a deal at AddedPiece gets, and when an announced deal
//! is withdrawn.
use dealport_core::deal::{Checkpoint, DealRecord};
use dealport_core::ipni::plan::{at_added_piece, removal, stands, Step};
use dealport_core::piece_index::IndexState;
use dealport_core::wire::{Cbor, DealParams};

mod common;
use common::vector;

fn deal(at: Checkpoint, skip: bool) -> DealRecord {
    let bytes = vector("A4");
    let mut params = DealParams::from_cbor(&bytes).expect("A4 decodes");
    params.skip_ipni_announce = skip;
    let mut d = DealRecord::new_accepted(params.to_cbor(), params, String::new(), 0);
    d.checkpoint = at;
    d
}

#[test]
fn a_deal_at_added_piece_is_advertised_once_indexed_unless_it_skips() {
    let indexed = IndexState::Indexed { blocks: 3 };
    let d = deal(Checkpoint::AddedPiece, false);
    assert_eq!(at_added_piece(&d, &IndexState::NotYet), Step::Wait);
    assert_eq!(at_added_piece(&d, &indexed), Step::Advertise);
    let Step::RecordOnly(why) = at_added_piece(&deal(Checkpoint::AddedPiece, true), &indexed)
    else {
        panic!("skip-announce deals are not advertised")
    };
    assert!(why.contains("SkipIPNIAnnounce"), "{why}");
    // A skip-announce deal still waits for its index.
    assert_eq!(
        at_added_piece(&deal(Checkpoint::AddedPiece, true), &IndexState::NotYet),
        Step::Wait
    );
    let not_car = IndexState::NotCar {
        reason: "no CAR header".into(),
    };
    let Step::RecordOnly(why) = at_added_piece(&d, &not_car) else {
        panic!("nothing to announce")
    };
    assert!(why.contains("not-a-car: no CAR header"), "{why}");
    // Not this task's deals.
    for c in [
        Checkpoint::PublishConfirmed,
        Checkpoint::IndexedAndAnnounced,
        Checkpoint::Complete,
    ] {
        assert_eq!(at_added_piece(&deal(c, false), &indexed), Step::Wait);
    }
    let mut failed = deal(Checkpoint::AddedPiece, false);
    failed.error = Some("x".into());
    assert_eq!(at_added_piece(&failed, &indexed), Step::Wait);
}

#[test]
fn announced_deals_are_withdrawn_when_they_fail_or_end_unless_the_piece_stands() {
    let d = deal(Checkpoint::IndexedAndAnnounced, false);
    let end = d.params.client_deal_proposal.proposal.end_epoch;
    assert_eq!(removal(&d, Some(end - 1), false), None);
    assert_eq!(removal(&d, None, false), None, "unknown height: keep");
    assert!(removal(&d, Some(end), false)
        .unwrap()
        .contains(&format!("ended at epoch {end}")));
    assert!(stands(&d, Some(end - 1)) && !stands(&d, Some(end)));
    let mut failed = d.clone();
    failed.error = Some("sector 3 failed".into());
    assert!(removal(&failed, Some(end - 1), false)
        .unwrap()
        .contains("sector 3 failed"));
    assert!(!stands(&failed, None));
    assert_eq!(
        removal(&failed, Some(end - 1), true),
        None,
        "another deal of the piece stands"
    );
}
