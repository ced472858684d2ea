//! What the IPNI task does with a deal: pure decisions over the deal, what indexing its
//! piece found, and what the chain already says about it.
use crate::deal::{Checkpoint, DealRecord};
use crate::piece_index::IndexState;

/// The step for a deal at `AddedPiece`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not this task's deal, or nothing to do yet (the piece is not indexed yet).
    Wait,
    /// Advertise the piece's blocks (idempotent per deal and part), then record
    /// `IndexedAndAnnounced`.
    Advertise,
    /// Record `IndexedAndAnnounced` without an advertisement, for this reason.
    RecordOnly(String),
}

/// The step for `deal` now that indexing its piece found `index`.
pub fn at_added_piece(deal: &DealRecord, index: &IndexState) -> Step {
    if deal.is_terminal() || deal.checkpoint != Checkpoint::AddedPiece {
        return Step::Wait;
    }
    match index {
        IndexState::NotYet => Step::Wait,
        IndexState::Indexed { .. } if deal.params.skip_ipni_announce => {
            Step::RecordOnly("indexed; not announced: the client asked for SkipIPNIAnnounce".into())
        }
        IndexState::Indexed { .. } => Step::Advertise,
        IndexState::NotCar { reason } | IndexState::Malformed { reason } => {
            Step::RecordOnly(format!(
                "not indexed ({}: {reason}): nothing to announce",
                index.name()
            ))
        }
    }
}

/// Why an announced deal's blocks should be withdrawn, if they should: it failed, or
/// its deal ended (`head`: the chain height, `None` when unknown). `other_live`: another
/// deal of the same piece (the same ContextID) still stands, whose advertisement a
/// removal would withdraw too.
pub fn removal(deal: &DealRecord, head: Option<i64>, other_live: bool) -> Option<String> {
    if other_live {
        return None;
    }
    if let Some(e) = &deal.error {
        return Some(format!("the deal failed: {e}"));
    }
    let end = deal.params.client_deal_proposal.proposal.end_epoch;
    match head {
        Some(h) if h >= end => Some(format!("the deal ended at epoch {end}")),
        _ => None,
    }
}

/// Does `deal` still stand for its piece's advertisement (not failed, not ended)?
pub fn stands(deal: &DealRecord, head: Option<i64>) -> bool {
    !deal.is_failed()
        && head.is_none_or(|h| h < deal.params.client_deal_proposal.proposal.end_epoch)
}
