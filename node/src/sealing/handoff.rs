//! The lotus-miner hand-off, a leader task: every `PublishConfirmed` deal goes to
//! lotus-miner (`SectorAddPieceToAny`) and its sector is followed to `Complete`. Owns
//! the add-piece intents in the store (leader state `sealing_intent/<uuid>`, written
//! fenced before every call, so a crash or a failover between the call and recording
//! `AddedPiece` makes the next holder search the miner's sectors instead of adding the
//! piece again). Every decision is core's `sealing::decide`; this file only carries
//! the actions out. Uses `service` (deal writes, leader state, chain head), `exec`
//! (staging removal), `sealing::{miner, piece_url}`, `runtime`.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    sealing::{
        decide, needs_intent, Action, Intent, MinerError, Observed, Placement, SectorReport, Timing,
    },
    wire::{primitives::unpadded, DealUuid},
};
use futures::{stream::FuturesUnordered, FutureExt, StreamExt};

use super::{miner::MinerClient, piece_url::PieceUrls};
use crate::{
    exec::{Transfers, SCAN_PAGE},
    runtime::LeaderTask,
    service::DealService,
    store::for_each_live_page,
};

/// Actions taken for one deal in one round at most (search, then add or record).
const MAX_STEPS: usize = 4;

/// The sectors asked about in one round, by number: a sector holds many deals, and each
/// is asked about once a round however many of them wait on it, so the calls to
/// lotus-miner follow the sectors being sealed, not the deals in them.
type SectorsSeen = HashMap<u64, Result<SectorReport, MinerError>>;

/// The hand-off's settings (from `[sealing.lotus_miner]` and the policy's buffer).
#[derive(Debug, Clone)]
pub struct HandoffSettings {
    pub timing: Timing,
    pub sealing_buffer_epochs: i64,
    pub max_concurrent_add_piece: usize,
    pub poll: Duration,
    /// `[ipni] enable`: a deal at `AddedPiece` waits for the IPNI task to index and
    /// announce it (`IndexedAndAnnounced`) before its sector is followed to `Complete`,
    /// Boost's order.
    pub index_first: bool,
}

pub struct Handoff {
    service: DealService,
    transfers: Arc<Transfers>,
    miner: Arc<MinerClient>,
    urls: Arc<PieceUrls>,
    settings: HandoffSettings,
    /// Deals with a `SectorAddPieceToAny` in flight from this node.
    adding: Mutex<HashSet<DealUuid>>,
    /// Deals told to wait: not looked at again before this.
    not_before: Mutex<HashMap<DealUuid, Instant>>,
}

/// The hand-off as a [`LeaderTask`].
pub fn leader_task(h: Arc<Handoff>) -> LeaderTask {
    Box::new(move || {
        let h = h.clone();
        Box::pin(async move { h.run().await })
    })
}

/// The store key of a deal's add-piece intent.
pub fn intent_key(uuid: DealUuid) -> String {
    format!("sealing_intent/{uuid}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A call to make outside the round: the deal and its intent as recorded.
struct AddJob {
    deal: DealRecord,
    intent: Intent,
}

impl Handoff {
    pub fn new(
        service: DealService,
        transfers: Arc<Transfers>,
        miner: Arc<MinerClient>,
        urls: Arc<PieceUrls>,
        settings: HandoffSettings,
    ) -> Arc<Handoff> {
        Arc::new(Handoff {
            service,
            transfers,
            miner,
            urls,
            settings,
            adding: Mutex::new(HashSet::new()),
            not_before: Mutex::new(HashMap::new()),
        })
    }

    fn adding(&self) -> std::sync::MutexGuard<'_, HashSet<DealUuid>> {
        self.adding.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_before(&self) -> std::sync::MutexGuard<'_, HashMap<DealUuid, Instant>> {
        self.not_before.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rounds every `poll` (and after each add-piece answer) until dropped; the calls
    /// in flight are driven here, so losing the lease drops them too.
    pub async fn run(self: Arc<Self>) {
        tracing::info!(miner = %self.miner.describe(), "lotus-miner hand-off started");
        let mut adds = FuturesUnordered::new();
        loop {
            for job in self.round().await {
                adds.push(self.clone().add(job).boxed());
            }
            let tick = async_io::Timer::after(self.settings.poll);
            if adds.is_empty() {
                tick.await;
            } else {
                futures::select! {
                    _ = adds.select_next_some() => {},
                    _ = FutureExt::fuse(tick) => {},
                }
            }
        }
    }

    /// One pass over the deals; returns the add-piece calls to start (intents recorded).
    pub async fn round(&self) -> Vec<AddJobHandle> {
        // Only the deals the hand-off acts on, from the store's live index a page at a time.
        let mut deals = Vec::new();
        for checkpoint in [
            Checkpoint::PublishConfirmed,
            Checkpoint::AddedPiece,
            Checkpoint::IndexedAndAnnounced,
        ] {
            let store = self.service.store();
            let read =
                for_each_live_page(&*store, checkpoint, SCAN_PAGE, |page| deals.extend(page)).await;
            if let Err(e) = read {
                tracing::warn!("sealing hand-off: cannot read the deals at {checkpoint}: {e}");
                return Vec::new();
            }
        }
        let head = self.service.chain().head_epoch().await;
        let mut jobs = Vec::new();
        let mut sectors = SectorsSeen::new();
        let now = Instant::now();
        for deal in deals {
            let followed = match deal.checkpoint {
                Checkpoint::PublishConfirmed | Checkpoint::IndexedAndAnnounced => true,
                Checkpoint::AddedPiece => !self.settings.index_first,
                _ => false,
            };
            if deal.is_terminal()
                || !followed
                || self.adding().contains(&deal.uuid)
                || self.not_before().get(&deal.uuid).is_some_and(|t| *t > now)
            {
                continue;
            }
            let room =
                jobs.len() + self.adding().len() < self.settings.max_concurrent_add_piece.max(1);
            let found = self
                .step(deal, head, Observed::Nothing, room, &mut sectors)
                .await;
            if let Some(job) = found {
                self.adding().insert(job.deal.uuid);
                jobs.push(AddJobHandle(job));
            }
        }
        jobs
    }

    async fn load_intent(&self, uuid: DealUuid) -> Option<Intent> {
        match self.service.store().leader_state(&intent_key(uuid)).await {
            Ok(Some(b)) if !b.is_empty() => serde_json::from_slice(&b).ok(),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(deal = %uuid, "cannot read the add-piece intent: {e}");
                None
            }
        }
    }

    async fn save_intent(&self, uuid: DealUuid, i: Option<&Intent>) -> bool {
        let bytes = i
            .map(|i| serde_json::to_vec(i).unwrap_or_default())
            .unwrap_or_default();
        match self
            .service
            .save_leader_state(&intent_key(uuid), &bytes)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(deal = %uuid, "cannot record the add-piece intent: {e}");
                false
            }
        }
    }

    /// Carry out core's decisions for one deal until one needs a call made outside the
    /// round (an add) or waiting.
    async fn step(
        &self,
        deal: DealRecord,
        head: Option<i64>,
        mut observed: Observed,
        room: bool,
        sectors: &mut SectorsSeen,
    ) -> Option<AddJob> {
        let uuid = deal.uuid;
        let intent = if needs_intent(&deal) {
            self.load_intent(uuid).await
        } else {
            None
        };
        let s = &self.settings;
        for _ in 0..MAX_STEPS {
            let now = now_ms();
            let action = decide(
                &deal,
                intent.as_ref(),
                &observed,
                head,
                s.sealing_buffer_epochs,
                now,
                &s.timing,
            );
            match action {
                Action::Idle => return None,
                Action::Fail(why) => {
                    self.fail(uuid, why).await;
                    return None;
                }
                Action::Search => {
                    observed = Observed::Searched(self.miner.find_deal(deal.chain_deal_id).await);
                }
                Action::Poll(sector) => {
                    let report = match sectors.get(&sector) {
                        Some(r) => r.clone(),
                        None => {
                            let r = self.miner.sector_status(sector).await.map(|s| s.report);
                            sectors.insert(sector, r.clone());
                            r
                        }
                    };
                    observed = Observed::Sector(report);
                }
                Action::RecordAdded(p) => {
                    self.record_added(uuid, p).await;
                    return None;
                }
                Action::RecordIntentAndAdd { first_at_ms } => {
                    if !room {
                        return None;
                    }
                    let i = Intent {
                        first_at_ms,
                        last_at_ms: now,
                        may_have_arrived: true,
                    };
                    // No record, no call: the intent must be durable first.
                    if !self.save_intent(uuid, Some(&i)).await {
                        return None;
                    }
                    return Some(AddJob { deal, intent: i });
                }
                Action::Wait {
                    status,
                    after,
                    intent: new,
                } => {
                    if let Some(i) = &new {
                        self.save_intent(uuid, Some(i)).await;
                    }
                    if deal.sealing_status != status {
                        if let Err(e) = self
                            .service
                            .apply_event(uuid, DealEvent::SealingStatus(status))
                            .await
                        {
                            tracing::warn!(deal = %uuid, "cannot record the sealing status: {e}");
                        }
                    }
                    self.not_before().insert(uuid, Instant::now() + after);
                    return None;
                }
                Action::Complete => {
                    match self.service.apply_event(uuid, DealEvent::Complete).await {
                        Ok(_) => tracing::info!(deal = %uuid, "deal sealed: Complete"),
                        Err(e) => tracing::warn!(deal = %uuid, "cannot record Complete: {e}"),
                    }
                    self.not_before().remove(&uuid);
                    return None;
                }
            }
        }
        None
    }

    /// Make the add-piece call for a recorded intent and act on the answer.
    pub async fn add(self: Arc<Self>, job: AddJobHandle) {
        let AddJob { deal, intent } = job.0;
        let uuid = deal.uuid;
        let size = unpadded(deal.params.client_deal_proposal.proposal.piece_size);
        let answer = match self.urls.grant(uuid, size, Instant::now()) {
            Ok(url) => {
                tracing::info!(deal = %uuid, size, "SectorAddPieceToAny");
                self.miner.add_piece(&deal, size, &url).await
            }
            Err(e) => Err(dealport_core::sealing::MinerError::Unreachable {
                detail: format!("no piece URL: {e}"),
                may_have_arrived: false,
            }),
        };
        self.urls.revoke(uuid);
        let head = self.service.chain().head_epoch().await;
        let _ = intent;
        let mut sectors = SectorsSeen::new();
        self.step(deal, head, Observed::Added(answer), true, &mut sectors)
            .await;
        self.adding().remove(&uuid);
    }

    async fn record_added(&self, uuid: DealUuid, p: Placement) {
        let ev = DealEvent::AddedPiece {
            sector_number: p.sector,
            offset: p.offset,
        };
        match self.service.apply_event(uuid, ev).await {
            Ok(deal) => {
                tracing::info!(deal = %uuid, sector = p.sector, offset = p.offset, "piece in a sector: AddedPiece");
                let status = dealport_core::sealing::sector_status("AddPiece", p.sector);
                let _ = self
                    .service
                    .apply_event(uuid, DealEvent::SealingStatus(status))
                    .await;
                // lotus-miner answers once it has written the piece into the sector.
                self.transfers.drop_staged(&deal);
                self.save_intent(uuid, None).await;
            }
            Err(e) => tracing::warn!(deal = %uuid, "cannot record AddedPiece: {e}"),
        }
    }

    async fn fail(&self, uuid: DealUuid, why: String) {
        tracing::warn!(deal = %uuid, reason = %why, "deal failed in sealing");
        match self.service.apply_event(uuid, DealEvent::Failed(why)).await {
            Ok(deal) => {
                self.urls.revoke(uuid);
                self.transfers.drop_staged(&deal);
                self.save_intent(uuid, None).await;
            }
            Err(e) => tracing::warn!(deal = %uuid, "cannot record the failure: {e}"),
        }
    }
}

/// An add-piece call to make (its intent already recorded).
pub struct AddJobHandle(AddJob);
