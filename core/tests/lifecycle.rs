//! The deal lifecycle: every legal transition, a table of illegal ones, failures.
use dealport_core::deal::{
    Checkpoint, DealEvent, DealRecord, DealState, EventKind, TransitionError, UNSPECIFIED_FAILURE,
};
use dealport_core::wire::{Cbor, Cid, DealParams};

mod common;
use common::vector;

const SIZE: u64 = 30_000_000_000;

/// The A4 deal (online, http, Transfer.Size 30 000 000 000), just accepted.
fn a4() -> DealRecord {
    let bytes = vector("A4");
    let params = DealParams::from_cbor(&bytes).expect("A4 decodes");
    DealRecord::new_accepted(
        bytes,
        params,
        "12D3KooWclient".into(),
        1_700_000_000_000_000_000,
    )
}

/// The same deal as an offline deal (zero Transfer).
fn offline() -> DealRecord {
    let bytes = vector("A4");
    let mut params = DealParams::from_cbor(&bytes).expect("A4 decodes");
    params.is_offline = true;
    params.transfer = Default::default();
    let bytes = params.to_cbor();
    DealRecord::new_accepted(bytes, params, String::new(), 0)
}

fn publish_cid() -> Cid {
    Cid::dag_cbor_blake2b(b"PublishStorageDeals message")
}

/// The event that moves a deal from `cp`'s predecessor to `cp`.
fn step_to(cp: Checkpoint) -> DealEvent {
    match cp {
        Checkpoint::Accepted => unreachable!("nothing steps to Accepted"),
        Checkpoint::Transferred => DealEvent::Transferred { bytes: SIZE },
        Checkpoint::Published => DealEvent::Published {
            publish_cid: publish_cid(),
        },
        Checkpoint::PublishConfirmed => DealEvent::PublishConfirmed { chain_deal_id: 77 },
        Checkpoint::AddedPiece => DealEvent::AddedPiece {
            sector_number: 12,
            offset: 34_359_738_368,
        },
        Checkpoint::IndexedAndAnnounced => DealEvent::IndexedAndAnnounced,
        Checkpoint::Complete => DealEvent::Complete,
    }
}

const ORDER: [Checkpoint; 7] = [
    Checkpoint::Accepted,
    Checkpoint::Transferred,
    Checkpoint::Published,
    Checkpoint::PublishConfirmed,
    Checkpoint::AddedPiece,
    Checkpoint::IndexedAndAnnounced,
    Checkpoint::Complete,
];

/// The A4 deal driven through the legal path up to `cp`.
fn at(cp: Checkpoint) -> DealRecord {
    let mut d = a4();
    for &next in ORDER.iter().skip(1).take_while(|&&c| c <= cp) {
        d.apply(step_to(next)).expect("legal step");
    }
    assert_eq!(d.checkpoint, cp);
    d
}

#[test]
fn new_accepted_computes_both_cids_and_starts_clean() {
    let d = a4();
    assert_eq!(d.uuid.to_string(), "8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70");
    assert_eq!(
        d.signed_proposal_cid.to_string(),
        "bafyreigbkt7mcd233igmdgiblgkdxbiszmzd3sdfaqvho3aq5urhbf7a2u"
    );
    assert_eq!(
        d.proposal_cid.to_string(),
        "bafy2bzaced27apdpqdell5sqerfdhwclmbp3gqm4xd43rapvttridu24zntok"
    );
    assert_eq!(d.params_bytes, vector("A4"));
    assert_eq!(d.client_peer_id, "12D3KooWclient");
    assert_eq!(d.created_at_unix_nanos, 1_700_000_000_000_000_000);
    assert_eq!(d.checkpoint, Checkpoint::Accepted);
    assert_eq!(d.error, None);
    assert_eq!(d.n_bytes_received, 0);
    assert_eq!(d.publish_cid, None);
    assert_eq!(d.chain_deal_id, 0);
    assert_eq!((d.sector_number, d.sector_offset), (None, None));
    assert_eq!(d.sealing_status, "");
    assert!(!d.is_failed() && !d.is_terminal());
    assert_eq!(d.state(), DealState::At(Checkpoint::Accepted));
}

#[test]
fn transferring_records_progress_while_accepted() {
    let mut d = a4();
    d.apply(DealEvent::Transferring {
        bytes_received: 1_048_576,
    })
    .unwrap();
    d.apply(DealEvent::Transferring {
        bytes_received: 1_048_576,
    })
    .expect("an unchanged count is fine");
    d.apply(DealEvent::Transferring {
        bytes_received: SIZE,
    })
    .expect("up to Transfer.Size");
    assert_eq!(d.n_bytes_received, SIZE);
    assert_eq!(d.checkpoint, Checkpoint::Accepted);
}

#[test]
fn transferring_backwards_is_refused() {
    let mut d = a4();
    d.apply(DealEvent::Transferring {
        bytes_received: 500,
    })
    .unwrap();
    let before = d.clone();
    assert_eq!(
        d.apply(DealEvent::Transferring {
            bytes_received: 499
        }),
        Err(TransitionError::BytesWentBackwards {
            state: DealState::At(Checkpoint::Accepted),
            had: 500,
            got: 499
        })
    );
    assert_eq!(d, before);
}

#[test]
fn transferring_above_transfer_size_is_refused_for_online_deals() {
    let mut d = a4();
    let before = d.clone();
    assert_eq!(
        d.apply(DealEvent::Transferring {
            bytes_received: SIZE + 1
        }),
        Err(TransitionError::BytesAboveTransferSize {
            state: DealState::At(Checkpoint::Accepted),
            got: SIZE + 1,
            size: SIZE
        })
    );
    assert_eq!(d, before);
}

#[test]
fn offline_deals_count_imported_bytes_without_a_transfer_size() {
    let mut d = offline();
    d.apply(DealEvent::Transferring {
        bytes_received: 4096,
    })
    .unwrap();
    d.apply(DealEvent::Transferred { bytes: 8192 }).unwrap();
    assert_eq!(d.n_bytes_received, 8192);
    assert_eq!(d.checkpoint, Checkpoint::Transferred);
}

#[test]
fn accepted_to_transferred() {
    let mut d = a4();
    d.apply(DealEvent::Transferring { bytes_received: 10 })
        .unwrap();
    d.apply(DealEvent::Transferred { bytes: SIZE }).unwrap();
    assert_eq!(d.checkpoint, Checkpoint::Transferred);
    assert_eq!(d.n_bytes_received, SIZE);
}

#[test]
fn online_transfer_ending_short_is_refused() {
    let mut d = a4();
    let before = d.clone();
    assert_eq!(
        d.apply(DealEvent::Transferred { bytes: SIZE - 1 }),
        Err(TransitionError::TransferSizeMismatch {
            state: DealState::At(Checkpoint::Accepted),
            got: SIZE - 1,
            size: SIZE
        })
    );
    assert_eq!(d, before);
}

#[test]
fn transferred_to_published_records_the_message_cid() {
    let mut d = at(Checkpoint::Transferred);
    d.apply(DealEvent::Published {
        publish_cid: publish_cid(),
    })
    .unwrap();
    assert_eq!(d.checkpoint, Checkpoint::Published);
    assert_eq!(d.publish_cid, Some(publish_cid()));
}

#[test]
fn published_to_publish_confirmed_records_the_deal_id() {
    let mut d = at(Checkpoint::Published);
    d.apply(DealEvent::PublishConfirmed {
        chain_deal_id: 4242,
    })
    .unwrap();
    assert_eq!(d.checkpoint, Checkpoint::PublishConfirmed);
    assert_eq!(d.chain_deal_id, 4242);
}

#[test]
fn publish_confirmed_to_added_piece_records_the_sector() {
    let mut d = at(Checkpoint::PublishConfirmed);
    d.apply(DealEvent::AddedPiece {
        sector_number: 9,
        offset: 2048,
    })
    .unwrap();
    assert_eq!(d.checkpoint, Checkpoint::AddedPiece);
    assert_eq!((d.sector_number, d.sector_offset), (Some(9), Some(2048)));
}

#[test]
fn added_piece_to_indexed_and_announced() {
    let mut d = at(Checkpoint::AddedPiece);
    d.apply(DealEvent::IndexedAndAnnounced).unwrap();
    assert_eq!(d.checkpoint, Checkpoint::IndexedAndAnnounced);
}

#[test]
fn indexed_and_announced_to_complete_is_terminal() {
    let mut d = at(Checkpoint::IndexedAndAnnounced);
    d.apply(DealEvent::Complete).unwrap();
    assert_eq!(d.checkpoint, Checkpoint::Complete);
    assert!(d.is_terminal());
    assert!(!d.is_failed());
}

#[test]
fn sealing_status_is_taken_at_every_live_checkpoint() {
    for cp in &ORDER[..6] {
        let mut d = at(*cp);
        d.apply(DealEvent::SealingStatus("PreCommit1".into()))
            .unwrap_or_else(|e| panic!("{cp:?}: {e}"));
        assert_eq!(d.sealing_status, "PreCommit1");
        assert_eq!(
            d.checkpoint, *cp,
            "sealing status does not move the checkpoint"
        );
    }
}

#[test]
fn failed_keeps_the_checkpoint_at_every_live_checkpoint() {
    for cp in &ORDER[..6] {
        let mut d = at(*cp);
        d.apply(DealEvent::Failed("data transfer failed".into()))
            .unwrap_or_else(|e| panic!("{cp:?}: {e}"));
        assert_eq!(d.checkpoint, *cp);
        assert_eq!(d.error.as_deref(), Some("data transfer failed"));
        assert!(d.is_failed() && d.is_terminal());
        assert_eq!(d.state(), DealState::Failed(*cp));
    }
}

#[test]
fn failed_mid_transfer_keeps_the_byte_count() {
    let mut d = a4();
    d.apply(DealEvent::Transferring {
        bytes_received: 1_048_576,
    })
    .unwrap();
    d.apply(DealEvent::Failed("connection reset".into()))
        .unwrap();
    assert_eq!(d.n_bytes_received, 1_048_576);
}

#[test]
fn a_failure_without_text_still_reads_as_a_failure() {
    let mut d = a4();
    d.apply(DealEvent::Failed(String::new())).unwrap();
    assert_eq!(d.error.as_deref(), Some(UNSPECIFIED_FAILURE));
}

fn every_event() -> Vec<DealEvent> {
    vec![
        DealEvent::Transferring { bytes_received: 0 },
        DealEvent::Transferred { bytes: SIZE },
        DealEvent::Published {
            publish_cid: publish_cid(),
        },
        DealEvent::PublishConfirmed { chain_deal_id: 1 },
        DealEvent::AddedPiece {
            sector_number: 1,
            offset: 0,
        },
        DealEvent::IndexedAndAnnounced,
        DealEvent::Complete,
        DealEvent::SealingStatus("Proving".into()),
        DealEvent::Failed("again".into()),
    ]
}

#[test]
fn nothing_is_taken_after_complete() {
    let d = at(Checkpoint::Complete);
    for ev in every_event() {
        let mut e = d.clone();
        let kind = ev.kind();
        assert_eq!(
            e.apply(ev),
            Err(TransitionError::Illegal {
                from: DealState::At(Checkpoint::Complete),
                to: kind
            })
        );
        assert_eq!(e, d, "{kind} left the record unchanged");
    }
}

#[test]
fn nothing_is_taken_after_a_failure() {
    for cp in &ORDER[..6] {
        let mut d = at(*cp);
        d.apply(DealEvent::Failed("boom".into())).unwrap();
        for ev in every_event() {
            let mut e = d.clone();
            let kind = ev.kind();
            assert_eq!(
                e.apply(ev),
                Err(TransitionError::Illegal {
                    from: DealState::Failed(*cp),
                    to: kind
                }),
                "{kind} after failing at {cp:?}"
            );
            assert_eq!(e, d, "{kind} left the failed record unchanged");
        }
    }
}

#[test]
fn illegal_checkpoint_moves_are_refused_and_change_nothing() {
    // (current checkpoint, event) pairs: skipping ahead, going back, repeating a step,
    // and progress after the transfer.
    let table: Vec<(Checkpoint, DealEvent)> = vec![
        (Checkpoint::Accepted, step_to(Checkpoint::Published)),
        (Checkpoint::Accepted, step_to(Checkpoint::PublishConfirmed)),
        (Checkpoint::Accepted, step_to(Checkpoint::AddedPiece)),
        (
            Checkpoint::Accepted,
            step_to(Checkpoint::IndexedAndAnnounced),
        ),
        (Checkpoint::Accepted, step_to(Checkpoint::Complete)),
        (Checkpoint::Transferred, step_to(Checkpoint::Transferred)),
        (
            Checkpoint::Transferred,
            DealEvent::Transferring {
                bytes_received: SIZE,
            },
        ),
        (
            Checkpoint::Transferred,
            step_to(Checkpoint::PublishConfirmed),
        ),
        (Checkpoint::Transferred, step_to(Checkpoint::Complete)),
        (Checkpoint::Published, step_to(Checkpoint::Transferred)),
        (Checkpoint::Published, step_to(Checkpoint::Published)),
        (Checkpoint::Published, step_to(Checkpoint::AddedPiece)),
        (Checkpoint::PublishConfirmed, step_to(Checkpoint::Published)),
        (
            Checkpoint::PublishConfirmed,
            step_to(Checkpoint::IndexedAndAnnounced),
        ),
        (
            Checkpoint::PublishConfirmed,
            DealEvent::Transferring {
                bytes_received: SIZE,
            },
        ),
        (Checkpoint::AddedPiece, step_to(Checkpoint::AddedPiece)),
        (
            Checkpoint::AddedPiece,
            step_to(Checkpoint::PublishConfirmed),
        ),
        (
            Checkpoint::IndexedAndAnnounced,
            step_to(Checkpoint::IndexedAndAnnounced),
        ),
        (
            Checkpoint::IndexedAndAnnounced,
            step_to(Checkpoint::Transferred),
        ),
    ];
    for (cp, ev) in table {
        let d = at(cp);
        let mut e = d.clone();
        let kind = ev.kind();
        assert_eq!(
            e.apply(ev),
            Err(TransitionError::Illegal {
                from: DealState::At(cp),
                to: kind
            }),
            "{kind} at {cp:?}"
        );
        assert_eq!(e, d, "{kind} at {cp:?} left the record unchanged");
    }
}

#[test]
fn only_the_predecessor_steps_to_each_checkpoint() {
    // Exhaustive: for every live checkpoint and every checkpoint step, exactly the one
    // from the predecessor is legal, plus `AddedPiece -> Complete` (the lotus-miner
    // hand-off, which does no indexing).
    for (i, &from) in ORDER[..6].iter().enumerate() {
        for (j, &to) in ORDER.iter().enumerate().skip(1) {
            let mut d = at(from);
            let res = d.apply(step_to(to));
            let skip_indexing = from == Checkpoint::AddedPiece && to == Checkpoint::Complete;
            assert_eq!(
                res.is_ok(),
                j == i + 1 || skip_indexing,
                "{from:?} -> {to:?}: {res:?}"
            );
        }
    }
}

#[test]
fn illegal_transition_errors_name_both_states() {
    let mut d = at(Checkpoint::Published);
    let e = d.apply(DealEvent::Complete).unwrap_err();
    assert_eq!(
        e.to_string(),
        "illegal deal transition from Published to Complete"
    );
    d.apply(DealEvent::Failed("x".into())).unwrap();
    let e = d.apply(DealEvent::IndexedAndAnnounced).unwrap_err();
    assert_eq!(
        e.to_string(),
        "illegal deal transition from Failed (at Published) to IndexedAndAnnounced"
    );
    assert_eq!(
        DealEvent::SealingStatus(String::new()).kind(),
        EventKind::SealingStatus
    );
}

#[test]
fn staged_data_is_needed_until_the_piece_is_in_a_sector_or_the_deal_failed() {
    for cp in ORDER {
        let d = at(cp);
        assert_eq!(
            d.is_done_with_staged_data(),
            cp >= Checkpoint::AddedPiece,
            "{cp:?}"
        );
    }
    let mut failed = at(Checkpoint::Accepted);
    failed
        .apply(DealEvent::Failed("data transfer failed".into()))
        .unwrap();
    assert!(failed.is_done_with_staged_data());
}
