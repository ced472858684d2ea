//! The lotus-miner hand-off decision (core::sealing::decide): every branch over values.
use std::time::Duration;

use dealport_core::deal::{Checkpoint, DealEvent, DealRecord};
use dealport_core::publish::expired_error;
use dealport_core::sealing::{
    decide, needs_intent, sector_status, Action, Intent, MinerError, Observed, Placement,
    SectorReport, Timing, AWAITING_EARLIER_CALL, UNAUTHORIZED_STATUS,
};
use dealport_core::wire::{Cbor, Cid, DealParams};

mod common;
use common::vector;

const T: Timing = Timing {
    retry: Duration::from_secs(10),
    too_many_backoff: Duration::from_secs(300),
    too_many_give_up: Duration::from_secs(6 * 3600),
    intent_grace: Duration::from_secs(120),
};
const BUFFER: i64 = 100;
const NOW: u64 = 1_700_000_000_000;
const DEAL_ID: u64 = 77;

fn deal_at(cp: Checkpoint) -> DealRecord {
    let bytes = vector("A4");
    let params = DealParams::from_cbor(&bytes).expect("A4 decodes");
    let mut d = DealRecord::new_accepted(bytes, params, "p".into(), 0);
    let size = d.params.transfer.size;
    let steps = [
        DealEvent::Transferred { bytes: size },
        DealEvent::Published {
            publish_cid: Cid::dag_cbor_blake2b(b"m"),
        },
        DealEvent::PublishConfirmed {
            chain_deal_id: DEAL_ID,
        },
        DealEvent::AddedPiece {
            sector_number: 12,
            offset: 2048,
        },
    ];
    for ev in steps {
        if d.checkpoint == cp {
            break;
        }
        d.apply(ev).unwrap();
    }
    assert_eq!(d.checkpoint, cp);
    d
}

fn start(d: &DealRecord) -> i64 {
    d.params.client_deal_proposal.proposal.start_epoch
}

/// A head comfortably before the start epoch.
fn head_ok(d: &DealRecord) -> Option<i64> {
    Some(start(d) - BUFFER - 1)
}

fn run(
    d: &DealRecord,
    intent: Option<&Intent>,
    o: Observed,
    head: Option<i64>,
    now: u64,
) -> Action {
    decide(d, intent, &o, head, BUFFER, now, &T)
}

fn arrived(last: u64) -> Intent {
    Intent {
        first_at_ms: NOW - 1000,
        last_at_ms: last,
        may_have_arrived: true,
    }
}

#[test]
fn a_confirmed_deal_is_added_after_recording_the_intent() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    assert_eq!(
        run(&d, None, Observed::Nothing, head_ok(&d), NOW),
        Action::RecordIntentAndAdd { first_at_ms: NOW }
    );
}

#[test]
fn start_epoch_too_close_fails_before_any_call_with_curios_text() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    // head + buffer == start is still fine; one more epoch is not.
    let edge = start(&d) - BUFFER;
    assert_eq!(
        run(&d, None, Observed::Nothing, Some(edge), NOW),
        Action::RecordIntentAndAdd { first_at_ms: NOW }
    );
    let Action::Fail(msg) = run(&d, None, Observed::Nothing, Some(edge + 1), NOW) else {
        panic!("expected a failure")
    };
    assert_eq!(msg, expired_error(start(&d), edge + 1));
    assert!(msg.starts_with("deal proposal must be proven on chain by deal proposal start epoch"));
}

#[test]
fn no_head_waits_instead_of_calling() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    assert!(matches!(
        run(&d, None, Observed::Nothing, None, NOW),
        Action::Wait { intent: None, .. }
    ));
}

#[test]
fn an_intent_that_may_have_arrived_means_search_before_any_call() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    let i = arrived(NOW - 5);
    assert_eq!(
        run(&d, Some(&i), Observed::Nothing, head_ok(&d), NOW),
        Action::Search
    );
    // Found: recorded, never added again.
    let p = Placement {
        sector: 4,
        offset: 1024,
    };
    assert_eq!(
        run(
            &d,
            Some(&i),
            Observed::Searched(Ok(Some(p))),
            head_ok(&d),
            NOW
        ),
        Action::RecordAdded(p)
    );
    // Not found within the grace: wait for the earlier call.
    assert_eq!(
        run(&d, Some(&i), Observed::Searched(Ok(None)), head_ok(&d), NOW),
        Action::Wait {
            status: AWAITING_EARLIER_CALL.into(),
            after: T.retry,
            intent: None
        }
    );
    // Not found after the grace: call again, keeping the first call's time.
    let later = NOW - 5 + 120_000;
    assert_eq!(
        run(
            &d,
            Some(&i),
            Observed::Searched(Ok(None)),
            head_ok(&d),
            later
        ),
        Action::RecordIntentAndAdd {
            first_at_ms: NOW - 1000
        }
    );
    // ... unless the start epoch came too close meanwhile.
    assert!(matches!(
        run(
            &d,
            Some(&i),
            Observed::Searched(Ok(None)),
            Some(start(&d)),
            later
        ),
        Action::Fail(_)
    ));
}

#[test]
fn an_intent_known_not_to_have_arrived_is_called_again_without_search() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    let i = Intent {
        may_have_arrived: false,
        ..arrived(NOW)
    };
    assert_eq!(
        run(&d, Some(&i), Observed::Nothing, head_ok(&d), NOW + 1),
        Action::RecordIntentAndAdd {
            first_at_ms: NOW - 1000
        }
    );
}

#[test]
fn add_piece_answer_records_the_sector_and_offset() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    let p = Placement {
        sector: 12,
        offset: 0,
    };
    assert_eq!(
        run(
            &d,
            Some(&arrived(NOW)),
            Observed::Added(Ok(p)),
            head_ok(&d),
            NOW
        ),
        Action::RecordAdded(p)
    );
}

#[test]
fn unreachable_and_401_wait_with_their_sentence_and_never_fail() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    let i = arrived(NOW);
    let refused = MinerError::Unreachable {
        detail: "connection refused".into(),
        may_have_arrived: false,
    };
    match run(
        &d,
        Some(&i),
        Observed::Added(Err(refused)),
        head_ok(&d),
        NOW,
    ) {
        Action::Wait {
            status,
            after,
            intent: Some(kept),
        } => {
            assert_eq!(
                status,
                "Waiting for lotus-miner: unreachable (connection refused); retrying"
            );
            assert_eq!(after, T.retry);
            assert!(
                !kept.may_have_arrived,
                "a refused connection delivered nothing"
            );
            assert_eq!(kept.first_at_ms, i.first_at_ms);
        }
        a => panic!("{a:?}"),
    }
    let timeout = MinerError::Unreachable {
        detail: "no answer within 30s".into(),
        may_have_arrived: true,
    };
    match run(
        &d,
        Some(&i),
        Observed::Added(Err(timeout)),
        head_ok(&d),
        NOW,
    ) {
        Action::Wait {
            intent: Some(kept), ..
        } => assert!(
            kept.may_have_arrived,
            "a timeout may have delivered the call"
        ),
        a => panic!("{a:?}"),
    }
    match run(
        &d,
        Some(&i),
        Observed::Added(Err(MinerError::Unauthorized)),
        head_ok(&d),
        NOW,
    ) {
        Action::Wait { status, .. } => assert_eq!(status, UNAUTHORIZED_STATUS),
        a => panic!("{a:?}"),
    }
    // The search itself failing: wait, keep the intent as it is.
    match run(
        &d,
        Some(&i),
        Observed::Searched(Err(MinerError::Unauthorized)),
        head_ok(&d),
        NOW,
    ) {
        Action::Wait { status, intent, .. } => {
            assert_eq!(status, UNAUTHORIZED_STATUS);
            assert_eq!(intent, None);
        }
        a => panic!("{a:?}"),
    }
}

#[test]
fn too_many_sectors_backs_off_then_gives_up_after_the_bound() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    let msg = "too many sectors sealing (curSealing: 8, maxSealing: 8)";
    let e = MinerError::from_rpc_message(msg);
    assert_eq!(e, MinerError::TooManySectors(msg.into()));
    let i = Intent {
        first_at_ms: NOW,
        last_at_ms: NOW,
        may_have_arrived: true,
    };
    match run(
        &d,
        Some(&i),
        Observed::Added(Err(e.clone())),
        head_ok(&d),
        NOW + 1000,
    ) {
        Action::Wait {
            status,
            after,
            intent: Some(kept),
        } => {
            assert_eq!(
                status,
                format!("Waiting for lotus-miner: {msg}; retrying every 300 s")
            );
            assert_eq!(after, T.too_many_backoff);
            assert!(!kept.may_have_arrived);
            assert_eq!(kept.first_at_ms, NOW);
        }
        a => panic!("{a:?}"),
    }
    let six_hours = NOW + 6 * 3600 * 1000;
    assert_eq!(
        run(
            &d,
            Some(&i),
            Observed::Added(Err(e)),
            head_ok(&d),
            six_hours
        ),
        Action::Fail(format!("lotus-miner took no piece for 360 minutes: {msg}"))
    );
}

#[test]
fn any_other_refusal_fails_with_lotus_text() {
    let d = deal_at(Checkpoint::PublishConfirmed);
    let e = MinerError::from_rpc_message("piece size mismatch");
    assert_eq!(
        run(
            &d,
            Some(&arrived(NOW)),
            Observed::Added(Err(e)),
            head_ok(&d),
            NOW
        ),
        Action::Fail("lotus-miner refused the piece: piece size mismatch".into())
    );
}

#[test]
fn an_added_piece_polls_its_sector_and_shows_the_state() {
    let d = deal_at(Checkpoint::AddedPiece);
    assert_eq!(
        run(&d, None, Observed::Nothing, None, NOW),
        Action::Poll(12)
    );
    let report = |state: &str, deals: Vec<u64>| {
        Observed::Sector(Ok(SectorReport {
            state: state.into(),
            deals,
        }))
    };
    assert_eq!(
        run(&d, None, report("PreCommit1", vec![DEAL_ID]), None, NOW),
        Action::Wait {
            status: "Sealing: PreCommit1 (sector 12)".into(),
            after: T.retry,
            intent: None
        }
    );
    assert_eq!(sector_status("WaitSeed", 3), "Sealing: WaitSeed (sector 3)");
    // A recoverable failure state is shown, lotus-miner retries it.
    assert!(matches!(
        run(
            &d,
            None,
            report("PreCommitFailed", vec![DEAL_ID]),
            None,
            NOW
        ),
        Action::Wait { .. }
    ));
    assert_eq!(
        run(&d, None, report("Proving", vec![1, DEAL_ID]), None, NOW),
        Action::Complete
    );
    assert_eq!(
        run(&d, None, report("Available", vec![DEAL_ID]), None, NOW),
        Action::Complete
    );
    assert_eq!(
        run(&d, None, report("Proving", vec![1, 2]), None, NOW),
        Action::Fail("sector 12 is Proving but does not carry deal 77".into())
    );
    for state in [
        "FailedUnrecoverable",
        "Removed",
        "Removing",
        "TerminateWait",
    ] {
        assert_eq!(
            run(&d, None, report(state, vec![DEAL_ID]), None, NOW),
            Action::Fail(format!(
                "sector 12 holding the deal's piece is {state}: the deal will not be sealed"
            )),
            "{state}"
        );
    }
    let e = MinerError::Unreachable {
        detail: "connection refused".into(),
        may_have_arrived: false,
    };
    assert!(matches!(
        run(&d, None, Observed::Sector(Err(e)), None, NOW),
        Action::Wait { intent: None, .. }
    ));
}

#[test]
fn other_checkpoints_and_finished_deals_are_left_alone() {
    for cp in [Checkpoint::Transferred, Checkpoint::Published] {
        let d = deal_at(cp);
        assert_eq!(run(&d, None, Observed::Nothing, Some(0), NOW), Action::Idle);
    }
    let mut d = deal_at(Checkpoint::AddedPiece);
    d.apply(DealEvent::Complete).unwrap();
    assert_eq!(run(&d, None, Observed::Nothing, Some(0), NOW), Action::Idle);
    let mut d = deal_at(Checkpoint::PublishConfirmed);
    d.apply(DealEvent::Failed("x".into())).unwrap();
    assert_eq!(run(&d, None, Observed::Nothing, Some(0), NOW), Action::Idle);
}

#[test]
fn intent_round_trips_as_json() {
    let i = arrived(NOW);
    let s = serde_json::to_string(&i).unwrap();
    assert_eq!(serde_json::from_str::<Intent>(&s).unwrap(), i);
}

/// `needs_intent` is false exactly where `decide` gives the same action with an intent
/// and without, whatever it observed: the hand-off skips the store read only there.
#[test]
fn an_intent_is_read_only_where_the_decision_uses_it() {
    let observations = [
        Observed::Nothing,
        Observed::Sector(Ok(SectorReport {
            state: "PreCommit1".into(),
            deals: vec![DEAL_ID],
        })),
        Observed::Sector(Ok(SectorReport {
            state: "Proving".into(),
            deals: vec![DEAL_ID],
        })),
        Observed::Sector(Err(MinerError::Unauthorized)),
    ];
    for cp in [
        Checkpoint::Transferred,
        Checkpoint::Published,
        Checkpoint::PublishConfirmed,
        Checkpoint::AddedPiece,
    ] {
        let d = deal_at(cp);
        let uses_intent = observations.iter().any(|o| {
            let with = run(&d, Some(&arrived(NOW)), o.clone(), head_ok(&d), NOW);
            with != run(&d, None, o.clone(), head_ok(&d), NOW)
        });
        assert_eq!(needs_intent(&d), uses_intent, "{cp}");
    }
}
