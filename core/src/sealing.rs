//! The lotus-miner hand-off, decided over values: given a deal, the add-piece intent
//! recorded for it, what lotus-miner just reported, the chain head and now, what to do
//! next. Owns the texts the deal's client reads in `SealingStatus` and `Error` during
//! sealing. Uses only `deal` and `publish` (Curio's start-epoch message); no I/O, no
//! clock (time is passed in as Unix milliseconds).
//!
//! The order of things (the node carries the actions out):
//! 1. `PublishConfirmed`, no intent: fail if `head + buffer > StartEpoch` (Curio's
//!    message), else record the intent, then call `SectorAddPieceToAny`.
//! 2. An intent whose call may have reached lotus-miner (a crash, a timeout): look for
//!    the deal in the miner's sectors first; found = `AddedPiece`, never a second call.
//!    Not found: wait `intent_grace` after the last call (a call still running inside
//!    lotus-miner can place the piece late), then call again.
//! 3. Back-pressure: unreachable / 401 are retried every `retry` with a sentence in
//!    `SealingStatus`; "too many sectors sealing" every `too_many_backoff` for at most
//!    `too_many_give_up` since the first call (Boost: 5 minutes, 6 hours); any other
//!    refusal fails the deal with lotus-miner's text.
//! 4. `AddedPiece`: poll the sector; `Proving`/`Available` with the deal ID in its
//!    deals = `Complete`; a terminal failure state fails the deal naming the state.
use std::time::Duration;

use crate::deal::{Checkpoint, DealRecord};
use crate::publish::expired_error;

/// Recorded before every `SectorAddPieceToAny`, kept until the deal leaves
/// `PublishConfirmed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Intent {
    /// The first call for this deal (bounds the "too many sectors" retries).
    pub first_at_ms: u64,
    /// The latest call.
    pub last_at_ms: u64,
    /// Whether the latest call may have reached lotus-miner (false only once it was
    /// answered with a refusal or never connected).
    pub may_have_arrived: bool,
}

/// Where lotus-miner put a piece (`SectorAddPieceToAny`'s `SectorOffset`, or found in
/// `SectorsStatus(…).Pieces`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub sector: u64,
    /// Padded offset in the sector.
    pub offset: u64,
}

/// A sector as `SectorsStatus(sector, false)` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorReport {
    pub state: String,
    /// `Deals`: the deal IDs in the sector.
    pub deals: Vec<u64>,
}

/// How a lotus-miner call failed, as far as the decision cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinerError {
    /// No answer. `may_have_arrived`: the request may have been taken (a timeout or a
    /// connection broken after sending), as opposed to never connecting.
    Unreachable {
        detail: String,
        may_have_arrived: bool,
    },
    /// HTTP 401: the token is missing, wrong or lacks the `admin` permission.
    Unauthorized,
    /// lotus's "too many sectors sealing" refusal (its text).
    TooManySectors(String),
    /// Any other JSON-RPC error (its text).
    Rejected(String),
}

/// lotus `storage/pipeline` `ErrTooManySectorsSealing`; Boost matches on this text.
pub const TOO_MANY_SECTORS: &str = "too many sectors sealing";

impl MinerError {
    /// Classify a JSON-RPC error message from `SectorAddPieceToAny`.
    pub fn from_rpc_message(message: &str) -> MinerError {
        if message.contains(TOO_MANY_SECTORS) {
            MinerError::TooManySectors(message.to_owned())
        } else {
            MinerError::Rejected(message.to_owned())
        }
    }
}

/// What lotus-miner said this round (or nothing yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Nothing asked yet this round.
    Nothing,
    /// The deal looked up in the miner's sectors: where it is, if anywhere.
    Searched(Result<Option<Placement>, MinerError>),
    /// The answer to `SectorAddPieceToAny`.
    Added(Result<Placement, MinerError>),
    /// The answer to `SectorsStatus` on the deal's sector.
    Sector(Result<SectorReport, MinerError>),
}

/// Timings of the hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Retry after an unreachable miner or a 401, and sector polling.
    pub retry: Duration,
    /// Between "too many sectors sealing" retries (Boost: 5 minutes).
    pub too_many_backoff: Duration,
    /// Give up on "too many sectors sealing" this long after the first call (Boost: 6 h).
    pub too_many_give_up: Duration,
    /// After a call that may have arrived and no sector holds the deal: wait this long
    /// since that call before calling again.
    pub intent_grace: Duration,
}

/// The next thing to do for one deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (not this hand-off's deal, or nothing to do now).
    Idle,
    /// Fail the deal with this text.
    Fail(String),
    /// Look for the deal in the miner's sectors.
    Search,
    /// Record [`Intent`] `{first_at_ms, last_at_ms: now, may_have_arrived: true}`, then
    /// call `SectorAddPieceToAny`.
    RecordIntentAndAdd { first_at_ms: u64 },
    /// Record `AddedPiece` with this placement.
    RecordAdded(Placement),
    /// Ask `SectorsStatus` about this sector.
    Poll(u64),
    /// Show `status` in `SealingStatus` and come back after `after`. `intent` (when
    /// set) replaces the recorded one (the last call is known not to have arrived).
    Wait {
        status: String,
        after: Duration,
        intent: Option<Intent>,
    },
    /// The deal is in a proving sector: `Complete`.
    Complete,
}

/// Sector states (lotus `storage/pipeline/sector_state.go`) after which the sector will
/// never carry the deal.
pub const TERMINAL_SECTOR_STATES: &[&str] = &[
    "FailedUnrecoverable",
    "DealsExpired",
    "RecoverDealIDs",
    "AbortUpgrade",
    "FaultedFinal",
    "Terminating",
    "TerminateWait",
    "TerminateFinality",
    "TerminateFailed",
    "Removing",
    "RemoveFailed",
    "Removed",
];

/// States in which a sealed sector is being proven.
pub const PROVING_SECTOR_STATES: &[&str] = &["Proving", "Available"];

/// `SealingStatus` while the sector seals: `Sealing: PreCommit1 (sector 12)`.
pub fn sector_status(state: &str, sector: u64) -> String {
    format!("Sealing: {state} (sector {sector})")
}

/// `SealingStatus` while lotus-miner cannot be reached.
pub fn unreachable_status(detail: &str) -> String {
    format!("Waiting for lotus-miner: unreachable ({detail}); retrying")
}

/// `SealingStatus` on a 401.
pub const UNAUTHORIZED_STATUS: &str =
    "Waiting for lotus-miner: it refused the token (401; an admin token is needed); retrying";

/// `SealingStatus` while lotus-miner is busy.
pub fn too_many_status(detail: &str, after: Duration) -> String {
    format!(
        "Waiting for lotus-miner: {detail}; retrying every {} s",
        after.as_secs()
    )
}

/// `SealingStatus` while an earlier call may still place the piece.
pub const AWAITING_EARLIER_CALL: &str =
    "Waiting for lotus-miner: an earlier add-piece call may still place the piece; checking its sectors";

/// The deal's error when lotus-miner refused the piece.
pub fn rejected_error(detail: &str) -> String {
    format!("lotus-miner refused the piece: {detail}")
}

/// The deal's error when its sector will never carry it.
pub fn sector_failed_error(sector: u64, state: &str) -> String {
    format!("sector {sector} holding the deal's piece is {state}: the deal will not be sealed")
}

/// The deal's error when the sector is proving without the deal.
pub fn deal_missing_error(sector: u64, state: &str, deal_id: u64) -> String {
    format!("sector {sector} is {state} but does not carry deal {deal_id}")
}

/// The deal's error when lotus-miner stayed busy too long.
pub fn too_many_give_up_error(detail: &str, waited: Duration) -> String {
    format!(
        "lotus-miner took no piece for {} minutes: {detail}",
        waited.as_secs() / 60
    )
}

/// Does [`decide`] read the deal's add-piece intent? Only before the piece is in a
/// sector: a deal followed through sealing is decided from its sector alone, so the
/// hand-off reads no intent for it each round.
pub fn needs_intent(deal: &DealRecord) -> bool {
    deal.checkpoint == Checkpoint::PublishConfirmed && !deal.is_terminal()
}

/// The next step for `deal`, at chain height `head` (`None`: unknown) and time `now_ms`.
pub fn decide(
    deal: &DealRecord,
    intent: Option<&Intent>,
    observed: &Observed,
    head: Option<i64>,
    sealing_buffer_epochs: i64,
    now_ms: u64,
    t: &Timing,
) -> Action {
    if deal.is_terminal() {
        return Action::Idle;
    }
    match deal.checkpoint {
        Checkpoint::PublishConfirmed => before_sector(
            deal,
            intent,
            observed,
            head,
            sealing_buffer_epochs,
            now_ms,
            t,
        ),
        // After AddedPiece the sector is followed to Complete; with IPNI the deal is
        // indexed and announced in between (Boost's order), and followed from there.
        Checkpoint::AddedPiece | Checkpoint::IndexedAndAnnounced => in_sector(deal, observed, t),
        _ => Action::Idle,
    }
}

fn before_sector(
    deal: &DealRecord,
    intent: Option<&Intent>,
    observed: &Observed,
    head: Option<i64>,
    buffer: i64,
    now_ms: u64,
    t: &Timing,
) -> Action {
    let start = deal.params.client_deal_proposal.proposal.start_epoch;
    // A fresh call, unless the start epoch is too close (Curio's words).
    let add = |first_at_ms: u64| match head {
        None => Action::Wait {
            status: "Waiting for the chain head before adding the piece".to_owned(),
            after: t.retry,
            intent: None,
        },
        Some(h) if h.saturating_add(buffer) > start => Action::Fail(expired_error(start, h)),
        Some(_) => Action::RecordIntentAndAdd { first_at_ms },
    };
    match observed {
        Observed::Nothing => match intent {
            None => add(now_ms),
            Some(i) if i.may_have_arrived => Action::Search,
            Some(i) => add(i.first_at_ms),
        },
        Observed::Searched(Ok(Some(p))) | Observed::Added(Ok(p)) => Action::RecordAdded(*p),
        Observed::Searched(Ok(None)) => match intent {
            Some(i)
                if i.may_have_arrived
                    && now_ms < i.last_at_ms.saturating_add(ms(t.intent_grace)) =>
            {
                Action::Wait {
                    status: AWAITING_EARLIER_CALL.to_owned(),
                    after: t.retry,
                    intent: None,
                }
            }
            Some(i) => add(i.first_at_ms),
            None => add(now_ms),
        },
        Observed::Searched(Err(e)) => miner_trouble(e, None, t),
        Observed::Added(Err(e)) => {
            let first = intent.map_or(now_ms, |i| i.first_at_ms);
            let answered = Intent {
                first_at_ms: first,
                last_at_ms: now_ms,
                may_have_arrived: false,
            };
            match e {
                MinerError::Rejected(msg) => Action::Fail(rejected_error(msg)),
                MinerError::TooManySectors(msg) => {
                    let waited = Duration::from_millis(now_ms.saturating_sub(first));
                    if waited >= t.too_many_give_up {
                        Action::Fail(too_many_give_up_error(msg, waited))
                    } else {
                        Action::Wait {
                            status: too_many_status(msg, t.too_many_backoff),
                            after: t.too_many_backoff,
                            intent: Some(answered),
                        }
                    }
                }
                MinerError::Unauthorized => miner_trouble(e, Some(answered), t),
                MinerError::Unreachable {
                    may_have_arrived, ..
                } => {
                    let kept = Intent {
                        may_have_arrived: *may_have_arrived,
                        ..answered
                    };
                    miner_trouble(e, Some(kept), t)
                }
            }
        }
        Observed::Sector(_) => Action::Idle,
    }
}

fn in_sector(deal: &DealRecord, observed: &Observed, t: &Timing) -> Action {
    let Some(sector) = deal.sector_number else {
        return Action::Fail("the deal is at AddedPiece without a sector number".to_owned());
    };
    match observed {
        Observed::Sector(Ok(r)) => {
            let state = r.state.as_str();
            if PROVING_SECTOR_STATES.contains(&state) {
                if r.deals.contains(&deal.chain_deal_id) {
                    Action::Complete
                } else {
                    Action::Fail(deal_missing_error(sector, state, deal.chain_deal_id))
                }
            } else if TERMINAL_SECTOR_STATES.contains(&state) {
                Action::Fail(sector_failed_error(sector, state))
            } else {
                Action::Wait {
                    status: sector_status(state, sector),
                    after: t.retry,
                    intent: None,
                }
            }
        }
        Observed::Sector(Err(e)) => miner_trouble(e, None, t),
        _ => Action::Poll(sector),
    }
}

/// Unreachable or 401 (or a failed read-only call): show it and retry; never fails the
/// deal by itself.
fn miner_trouble(e: &MinerError, intent: Option<Intent>, t: &Timing) -> Action {
    let status = match e {
        MinerError::Unreachable { detail, .. } => unreachable_status(detail),
        MinerError::Unauthorized => UNAUTHORIZED_STATUS.to_owned(),
        MinerError::TooManySectors(m) | MinerError::Rejected(m) => {
            format!("Waiting for lotus-miner: {m}; retrying")
        }
    };
    Action::Wait {
        status,
        after: t.retry,
        intent,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
