//! Which transferred deals to publish now, and which can no longer be (pure).
//!
//! The market actor takes a PublishStorageDeals message only from the provider's worker
//! or a control address and only for that provider's deals, so batches are per provider.
//! A deal waits for others at most the publish period; a full batch goes at once. A deal
//! whose start epoch is nearer than the sealing buffer fails instead (Curio's
//! `task_psd.go` check and message).
use std::time::Duration;

use crate::wire::{Address, DealUuid};

/// A deal at `Transferred`, waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub uuid: DealUuid,
    pub provider: Address,
    pub start_epoch: i64,
    /// How long it has waited so far.
    pub waited: Duration,
}

/// What to do this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Deals to fail, with the error text.
    pub fail: Vec<(DealUuid, String)>,
    /// Messages to send now: one provider's deals each, in message order (by UUID).
    pub batches: Vec<(Address, Vec<DealUuid>)>,
}

/// Curio's error for a deal that can no longer be sealed before it must start.
pub fn expired_error(start_epoch: i64, head: i64) -> String {
    format!(
        "deal proposal must be proven on chain by deal proposal start epoch {start_epoch}, \
         but it has expired: current chain height: {head}"
    )
}

/// Plan one round at chain height `head`.
pub fn plan(
    waiting: &[Waiting],
    head: i64,
    sealing_buffer_epochs: i64,
    max_per_message: usize,
    period: Duration,
) -> Plan {
    let max = max_per_message.max(1);
    let mut out = Plan::default();
    let mut live: Vec<&Waiting> = Vec::new();
    for w in waiting {
        if head.saturating_add(sealing_buffer_epochs) > w.start_epoch {
            out.fail.push((w.uuid, expired_error(w.start_epoch, head)));
        } else {
            live.push(w);
        }
    }
    // Longest-waiting first, so a full batch never starves an old deal.
    live.sort_by(|a, b| b.waited.cmp(&a.waited).then(a.uuid.cmp(&b.uuid)));
    let mut providers: Vec<&Address> = Vec::new();
    for w in &live {
        if !providers.contains(&&w.provider) {
            providers.push(&w.provider);
        }
    }
    for p in providers {
        let mine: Vec<&Waiting> = live.iter().copied().filter(|w| &w.provider == p).collect();
        for chunk in mine.chunks(max) {
            let due = chunk.len() == max || chunk.iter().any(|w| w.waited >= period);
            if due {
                let mut uuids: Vec<DealUuid> = chunk.iter().map(|w| w.uuid).collect();
                uuids.sort();
                out.batches.push((p.clone(), uuids));
            }
        }
    }
    out
}
