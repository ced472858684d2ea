//! The publisher, a leader task in Lotus chain mode: `Transferred` -> `Published` ->
//! `PublishConfirmed` (or failed with a sentence).
//!
//! Each round it first settles the messages it sent: `StateSearchMsg` for every
//! publish CID that still has deals at `Published`; once landed, a non-zero exit code
//! fails those deals, else the return's deal IDs are matched to our deals through the
//! message's own params (read back with `ChainGetMessage`, so the order is the chain's,
//! whatever happened here in between). Then it plans the waiting deals with core's
//! [`publish::plan`]: fail the ones too close to their start epoch, send full or
//! overdue batches. `Published{cid}` is recorded right after the push, so a restart or a
//! new leader waits for that message instead of publishing again; the push carries a
//! message UUID derived from the batch, so Lotus answers a repeated push of the same
//! batch with the same message (lotus `MpoolPushMessage`: "Message already processed").
//! The batch is saved in the store ([`INTENT_STATE`]) before the push and cleared once
//! every deal of it is `Published`: a node that stopped in between (pushed, nothing
//! recorded) has its next holder push exactly that batch again first, which Lotus
//! answers with the message already sent, so no deal goes out in two messages.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    publish::{self, Waiting},
    wire::{
        market::{MARKET_ACTOR_ID, METHOD_PUBLISH_STORAGE_DEALS},
        Address, Cbor, Cid, DealUuid, PublishStorageDealsParams, PublishStorageDealsReturn,
        TokenAmount,
    },
};

use super::SCAN_PAGE;
use crate::{
    chain::lotus::{LotusClient, MsgLookup, UnsignedMessage},
    config::PublishConfig,
    runtime::LeaderTask,
    service::DealService,
    store::for_each_live_page,
};

/// The store key of the batch being pushed ([`crate::store::Store::leader_state`]).
pub const INTENT_STATE: &str = "publish_intent";

/// A batch about to be pushed: its provider and its deals, in message order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Intent {
    provider: String,
    deals: Vec<String>,
}

/// `[publish]` as the publisher uses it, plus the policy's sealing buffer.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    pub wallet: Option<Address>,
    pub max_deals_per_message: usize,
    pub period: Duration,
    pub max_fee: TokenAmount,
    pub poll: Duration,
    pub sealing_buffer_epochs: i64,
}

impl PublishSettings {
    pub fn from_config(c: &PublishConfig, sealing_buffer_epochs: i64) -> PublishSettings {
        PublishSettings {
            wallet: c.wallet.clone(),
            max_deals_per_message: c.max_deals_per_message.max(1),
            period: Duration::from_secs(c.period_secs),
            max_fee: c.max_fee.clone(),
            poll: Duration::from_secs(c.poll_secs.max(1)),
            sealing_buffer_epochs,
        }
    }
}

/// What one round did (logged, and read by tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Messages pushed: their CIDs and how many deals each.
    pub sent: Vec<(String, usize)>,
    pub confirmed: Vec<(DealUuid, u64)>,
    pub failed: Vec<(DealUuid, String)>,
}

pub struct Publisher {
    service: DealService,
    lotus: Arc<LotusClient>,
    settings: PublishSettings,
    /// When this node first saw each waiting deal (the period counts from there).
    first_seen: Mutex<HashMap<DealUuid, Instant>>,
}

/// The publisher as a [`LeaderTask`].
pub fn leader_task(p: Arc<Publisher>) -> LeaderTask {
    Box::new(move || {
        let p = p.clone();
        Box::pin(async move { p.run().await })
    })
}

impl Publisher {
    pub fn new(
        service: DealService,
        lotus: Arc<LotusClient>,
        settings: PublishSettings,
    ) -> Arc<Publisher> {
        Arc::new(Publisher {
            service,
            lotus,
            settings,
            first_seen: Mutex::new(HashMap::new()),
        })
    }

    /// Rounds every `poll` until dropped.
    pub async fn run(&self) {
        tracing::info!(
            max_deals = self.settings.max_deals_per_message,
            period = ?self.settings.period,
            "publisher started"
        );
        loop {
            let r = self.round().await;
            if r != Round::default() {
                tracing::info!(sent = ?r.sent, confirmed = r.confirmed.len(), failed = r.failed.len(), "publish round");
            }
            async_io::Timer::after(self.settings.poll).await;
        }
    }

    /// One round: settle sent messages, then fail or send waiting deals.
    pub async fn round(&self) -> Round {
        let mut round = Round::default();
        // Only the deals the publisher acts on: waiting to publish, or sent and not yet
        // confirmed; read from the store's live index, a page at a time.
        let mut deals = Vec::new();
        for checkpoint in [Checkpoint::Transferred, Checkpoint::Published] {
            let store = self.service.store();
            let read =
                for_each_live_page(&*store, checkpoint, SCAN_PAGE, |page| deals.extend(page)).await;
            if let Err(e) = read {
                tracing::warn!("publisher: cannot read the deals at {checkpoint}: {e}");
                return round;
            }
        }
        self.settle(&deals, &mut round).await;
        let resumed = self.resume_intent(&deals, &mut round).await;
        self.publish_waiting(&deals, &resumed, &mut round).await;
        round
    }

    /// A batch saved before its push and not cleared after: this node (or the last
    /// holder) stopped between pushing it and recording it. Finish it before planning
    /// anything else. The deals it handled, which the round's list shows stale.
    async fn resume_intent(&self, deals: &[DealRecord], round: &mut Round) -> Vec<DealUuid> {
        let intent = match self.service.store().leader_state(INTENT_STATE).await {
            Ok(Some(bytes)) if !bytes.is_empty() => serde_json::from_slice::<Intent>(&bytes),
            Ok(_) => return Vec::new(),
            Err(e) => {
                tracing::warn!("publisher: cannot read the batch being pushed: {e}");
                return Vec::new();
            }
        };
        let intent = match intent {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("publisher: the saved batch is unreadable ({e}); dropping it");
                self.clear_intent().await;
                return Vec::new();
            }
        };
        let of_intent: Vec<&DealRecord> = intent
            .deals
            .iter()
            .filter_map(|u| deals.iter().find(|d| d.uuid.to_string() == *u))
            .collect();
        let handled = of_intent.iter().map(|d| d.uuid).collect();
        let waiting: Vec<&DealRecord> = of_intent
            .iter()
            .copied()
            .filter(|d| is_live_at(d, Checkpoint::Transferred))
            .collect();
        // Some of the batch recorded its message: the rest went out in the same one.
        let recorded = of_intent.iter().find_map(|d| d.publish_cid.clone());
        match (recorded, Address::parse(&intent.provider)) {
            (Some(cid), _) => {
                tracing::info!(message = %cid, deals = waiting.len(), "publisher: recording the rest of a batch already sent");
                self.record_published(&cid, &waiting).await;
                self.clear_intent().await;
            }
            (None, Ok(provider)) if !waiting.is_empty() => {
                // Under the saved batch's own name, even if some of it failed since:
                // Lotus answers with the message if it was sent, else sends this one.
                tracing::info!(%provider, deals = waiting.len(), "publisher: pushing an unrecorded batch again");
                self.send(&provider, &waiting, &intent.deals, round).await;
            }
            _ => self.clear_intent().await,
        }
        handled
    }

    async fn clear_intent(&self) {
        if let Err(e) = self.service.save_leader_state(INTENT_STATE, b"").await {
            tracing::warn!("publisher: cannot clear the batch being pushed: {e}");
        }
    }

    async fn settle(&self, deals: &[DealRecord], round: &mut Round) {
        let mut by_message: BTreeMap<String, Vec<&DealRecord>> = BTreeMap::new();
        for d in deals
            .iter()
            .filter(|d| is_live_at(d, Checkpoint::Published))
        {
            if let Some(cid) = &d.publish_cid {
                by_message.entry(cid.to_string()).or_default().push(d);
            }
        }
        for (cid, group) in by_message {
            match self.lotus.state_search_msg(&cid).await {
                Ok(None) => {}
                Ok(Some(landed)) => self.settle_one(&cid, &group, &landed, round).await,
                Err(e) => {
                    tracing::warn!(message = %cid, "publisher: cannot look the message up: {e}")
                }
            }
        }
    }

    async fn settle_one(
        &self,
        cid: &str,
        group: &[&DealRecord],
        landed: &MsgLookup,
        round: &mut Round,
    ) {
        let ids = if landed.exit_code != 0 {
            Err(RetryOr::Fail(format!(
                "publish message {cid} failed on chain with exit code {}",
                landed.exit_code
            )))
        } else {
            self.deal_ids(cid, landed).await
        };
        let ids = match ids {
            Ok(ids) => ids,
            Err(RetryOr::Fail(why)) => {
                for d in group {
                    self.fail(d.uuid, why.clone(), round).await;
                }
                return;
            }
            Err(RetryOr::Retry(why)) => {
                tracing::warn!(message = %cid, "publisher: {why}; will retry");
                return;
            }
        };
        for d in group {
            match ids.get(&d.proposal_cid) {
                Some(Some(id)) => {
                    let ev = DealEvent::PublishConfirmed { chain_deal_id: *id };
                    match self.service.apply_event(d.uuid, ev).await {
                        Ok(_) => {
                            tracing::info!(deal = %d.uuid, chain_deal_id = id, message = %cid, "deal published");
                            round.confirmed.push((d.uuid, *id));
                        }
                        Err(e) => tracing::warn!(deal = %d.uuid, "cannot record the deal ID: {e}"),
                    }
                }
                Some(None) => {
                    let why = format!(
                        "the market actor did not accept the deal in publish message {cid}"
                    );
                    self.fail(d.uuid, why, round).await;
                }
                None => {
                    let why = format!("the deal is not in publish message {cid}");
                    self.fail(d.uuid, why, round).await;
                }
            }
        }
    }

    /// Deal ID (or `None`: left out by the actor) per proposal CID of the landed message.
    async fn deal_ids(
        &self,
        cid: &str,
        landed: &MsgLookup,
    ) -> Result<HashMap<Cid, Option<u64>>, RetryOr> {
        let ret = PublishStorageDealsReturn::from_cbor(&landed.return_bytes).map_err(|e| {
            RetryOr::Fail(format!(
                "cannot read the return of publish message {cid}: {e}"
            ))
        })?;
        // The message that executed: the one sent or its replacement.
        let params = self
            .lotus
            .chain_get_message_params(&landed.message)
            .await
            .map_err(|e| RetryOr::Retry(e.to_string()))?;
        let params = PublishStorageDealsParams::from_cbor(&params).map_err(|e| {
            RetryOr::Fail(format!(
                "cannot read the params of publish message {}: {e}",
                landed.message
            ))
        })?;
        let ids = ret
            .deal_ids(params.deals.len())
            .map_err(|e| RetryOr::Fail(format!("publish message {cid}: {e}")))?;
        Ok(params
            .deals
            .iter()
            .map(|d| d.proposal.cid())
            .zip(ids)
            .collect())
    }

    async fn publish_waiting(&self, deals: &[DealRecord], skip: &[DealUuid], round: &mut Round) {
        let waiting: Vec<&DealRecord> = deals
            .iter()
            .filter(|d| is_live_at(d, Checkpoint::Transferred) && !skip.contains(&d.uuid))
            .collect();
        let now = Instant::now();
        let waited: Vec<Waiting> = {
            let mut seen = self.first_seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|u, _| waiting.iter().any(|d| d.uuid == *u));
            waiting
                .iter()
                .map(|d| {
                    let p = &d.params.client_deal_proposal.proposal;
                    Waiting {
                        uuid: d.uuid,
                        provider: p.provider.clone(),
                        start_epoch: p.start_epoch,
                        waited: now - *seen.entry(d.uuid).or_insert(now),
                    }
                })
                .collect()
        };
        if waited.is_empty() {
            return;
        }
        let head = match self.lotus.chain_head().await {
            Ok(h) => h.height,
            Err(e) => {
                tracing::warn!("publisher: cannot read the chain head: {e}");
                return;
            }
        };
        let plan = publish::plan(
            &waited,
            head,
            self.settings.sealing_buffer_epochs,
            self.settings.max_deals_per_message,
            self.settings.period,
        );
        for (uuid, why) in plan.fail {
            self.fail(uuid, why, round).await;
        }
        for (provider, batch) in plan.batches {
            let batch: Vec<&DealRecord> = batch
                .iter()
                .filter_map(|u| waiting.iter().copied().find(|d| d.uuid == *u))
                .collect();
            let name: Vec<String> = batch.iter().map(|d| d.uuid.to_string()).collect();
            self.send(&provider, &batch, &name, round).await;
        }
    }

    /// Push `batch` as one message named by the deal UUIDs in `name` (its message UUID
    /// comes from them), saving the batch first and clearing it once recorded.
    async fn send(
        &self,
        provider: &Address,
        batch: &[&DealRecord],
        name: &[String],
        round: &mut Round,
    ) {
        let intent = Intent {
            provider: provider.to_string(),
            deals: name.to_vec(),
        };
        let intent = serde_json::to_vec(&intent).expect("plain data serializes");
        if let Err(e) = self.service.save_leader_state(INTENT_STATE, &intent).await {
            tracing::warn!(%provider, "publisher: cannot save the batch before pushing it: {e}");
            return;
        }
        let pushed = async {
            let from = match &self.settings.wallet {
                Some(w) => w.clone(),
                None => self.lotus.state_miner_info(provider, None).await?.worker,
            };
            let params = PublishStorageDealsParams {
                deals: batch
                    .iter()
                    .map(|d| d.params.client_deal_proposal.clone())
                    .collect(),
            };
            let msg = UnsignedMessage {
                to: Address::new_id(MARKET_ACTOR_ID),
                from,
                nonce: 0,
                value: TokenAmount::zero(),
                method: METHOD_PUBLISH_STORAGE_DEALS,
                params: params.to_cbor(),
            };
            self.lotus
                .mpool_push_message(&msg, &self.settings.max_fee, Some(batch_uuid(name)))
                .await
        }
        .await;
        let cid = match pushed.map(|c| (Cid::parse(&c), c)) {
            Ok((Ok(cid), _)) => cid,
            Ok((Err(e), text)) => {
                tracing::warn!("publisher: Lotus answered an unreadable message CID {text:?}: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!(%provider, deals = batch.len(), "publisher: cannot push PublishStorageDeals: {e}");
                let text = format!("publishing failed, retrying: {e}");
                for d in batch {
                    if d.sealing_status != text {
                        let ev = DealEvent::SealingStatus(text.clone());
                        let _ = self.service.apply_event(d.uuid, ev).await;
                    }
                }
                return;
            }
        };
        tracing::info!(%provider, message = %cid, deals = batch.len(), "PublishStorageDeals sent");
        round.sent.push((cid.to_string(), batch.len()));
        if self.record_published(&cid, batch).await {
            self.clear_intent().await;
        }
    }

    /// Record `cid` as the publish message of every deal of `batch`; `true` if all were.
    async fn record_published(&self, cid: &Cid, batch: &[&DealRecord]) -> bool {
        let mut all = true;
        for d in batch {
            let ev = DealEvent::Published {
                publish_cid: cid.clone(),
            };
            if let Err(e) = self.service.apply_event(d.uuid, ev).await {
                tracing::warn!(deal = %d.uuid, message = %cid, "cannot record the publish message: {e}");
                all = false;
            }
        }
        all
    }

    async fn fail(&self, uuid: DealUuid, why: String, round: &mut Round) {
        tracing::warn!(deal = %uuid, reason = %why, "deal failed");
        match self
            .service
            .apply_event(uuid, DealEvent::Failed(why.clone()))
            .await
        {
            Ok(_) => round.failed.push((uuid, why)),
            Err(e) => tracing::warn!(deal = %uuid, "cannot record the failure: {e}"),
        }
    }
}

/// A landed message we cannot use yet (retry next round) or at all (fail its deals).
enum RetryOr {
    Retry(String),
    Fail(String),
}

fn is_live_at(d: &DealRecord, at: Checkpoint) -> bool {
    !d.is_failed() && d.checkpoint == at
}

/// The same batch always gets the same message UUID (Lotus returns the message it
/// already pushed for a UUID instead of pushing another).
fn batch_uuid(name: &[String]) -> [u8; 16] {
    let mut h = blake2b_simd::Params::new().hash_length(16).to_state();
    for u in name {
        h.update(u.as_bytes());
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(h.finalize().as_bytes());
    // RFC 4122 version 4 / variant bits, as a UUID parser expects.
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}
