//! The MK12 stream service: decode, decide with the core, persist, answer.
//!
//! One [`DealService`] serves all five protocols for the libp2p host. Every proposal is
//! answered within the configured budget: if the chain or the store is slower the client
//! gets a `server error: …` rejection rather than a silent reset (docs/design.md
//! §Promises, point 4).
//!
//! Layer: the deal service, above chain and store: uses `chain`, `store`, `p2p` (its
//! `StreamService` seam), `config`, `metrics`, `runtime`. Nothing below uses it.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dealport_core::{
    accept::{self, Rejection},
    ask::answer_ask,
    deal::{DealEvent, DealRecord, TransitionError},
    facts::Policy,
    status::{answer_status_on, VerifyCache},
    wire::{
        protocols, AskRequest, AskResponse, Cbor, DealParams, DealResponse, DealStatusRequest,
        DealStatusResponse, DealUuid, Network, TransportsResponse,
    },
};
use libp2p::{Multiaddr, PeerId};

use crate::{
    chain::{asks::AskSigner, ChainFactsSource},
    metrics::Metrics,
    p2p::{DenyReason, Reply, StreamFailure, StreamService},
    store::{Fence, Inserted, LeaseGate, Store, StoreError},
};

/// Outcome labels besides the rejection rules' own.
const ACCEPTED: &str = "accepted";
const ACCEPTED_AGAIN: &str = "accepted_again";
const SERVER_ERROR_STORE: &str = "server_error_store";
const SERVER_ERROR_BUDGET: &str = "server_error_budget";
const SERVER_ERROR_NOT_HOLDER: &str = "server_error_not_holder";

/// What the service needs besides the store and the chain.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub policy: Policy,
    /// Address prefix used in status error texts.
    pub network: Network,
    /// Bound on answering one proposal.
    pub proposal_budget: Duration,
    pub verify_cache_capacity: usize,
}

struct Inner {
    store: Arc<dyn Store>,
    chain: Arc<dyn ChainFactsSource>,
    config: ServiceConfig,
    metrics: Arc<Metrics>,
    verify_cache: Mutex<VerifyCache>,
    /// The transports answer, encoded (`[retrieval]`, set by the app; empty list until).
    transports: RwLock<Vec<u8>>,
    /// The lease gate (store/fence.rs): when set, every deal write is fenced with its current
    /// fence and refused without one. Unset (tests): unfenced writes.
    gate: RwLock<Option<Arc<LeaseGate>>>,
    /// Serializes [`DealService::apply_event`]'s read-modify-write of deal records.
    events: futures::lock::Mutex<()>,
    /// Told the UUID of every online deal accepted (the transfer runner); bounded, and
    /// a full queue drops the notice (the runner's rescan finds the deal).
    accepted: Mutex<Option<futures::channel::mpsc::Sender<DealUuid>>>,
    /// Signed asks (Lotus mode); unset: every ask is answered with `Ask: null`.
    asks: RwLock<Option<Arc<AskSigner>>>,
}

/// Why a lifecycle event was not recorded (the stored deal is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("deal {0}: {1}")]
    Transition(DealUuid, TransitionError),
    /// This node does not hold the lease (cluster): another node runs the deals now.
    #[error("this node does not hold the lease")]
    NotHolder,
}

/// A fenced write's outcome: a stale fence means this node no longer holds the lease.
fn holder_only(written: Result<(), StoreError>) -> Result<(), ApplyError> {
    match written {
        Err(StoreError::Fenced { .. }) => Err(ApplyError::NotHolder),
        r => r.map_err(ApplyError::from),
    }
}

/// The [`StreamService`] of a dealport node.
#[derive(Clone)]
pub struct DealService(Arc<Inner>);

impl std::fmt::Debug for DealService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DealService")
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The rejection a proposal gets on a node that does not (or no longer) hold the lease.
pub const NOT_HOLDER: &str = "server error: this node is not the lease holder, retry";

/// The message a client gets when its proposal could not be saved.
pub const SAVE_FAILED: &str = "server error: save to db";

impl DealService {
    pub fn new(
        store: Arc<dyn Store>,
        chain: Arc<dyn ChainFactsSource>,
        config: ServiceConfig,
        metrics: Arc<Metrics>,
    ) -> DealService {
        let cache = VerifyCache::new(config.verify_cache_capacity.max(1));
        DealService(Arc::new(Inner {
            store,
            chain,
            config,
            metrics,
            verify_cache: Mutex::new(cache),
            transports: RwLock::new(TransportsResponse::default().to_cbor()),
            gate: RwLock::new(None),
            events: futures::lock::Mutex::new(()),
            accepted: Mutex::new(None),
            asks: RwLock::new(None),
        }))
    }

    /// Send the UUID of every online deal accepted from now on to `tx`.
    pub fn set_accept_notifier(&self, tx: futures::channel::mpsc::Sender<DealUuid>) {
        *self.0.accepted.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    /// Fence every deal write with `gate`'s current fence (refuse without one).
    pub fn set_lease_gate(&self, gate: Arc<LeaseGate>) {
        *self.0.gate.write().unwrap_or_else(|e| e.into_inner()) = Some(gate);
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.0.metrics.clone()
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.0.store.clone()
    }

    pub fn chain(&self) -> Arc<dyn ChainFactsSource> {
        self.0.chain.clone()
    }

    /// Save leader-only state ([`Store::put_leader_state`]) under the fence the deal
    /// writes use. A service with no lease gate (outside a node, in tests) saves nothing.
    pub async fn save_leader_state(&self, name: &str, value: &[u8]) -> Result<(), ApplyError> {
        let Some(fence) = self.0.write_fence()? else {
            return Ok(());
        };
        holder_only(self.0.store.put_leader_state(&fence, name, value).await)
    }

    /// Record one lifecycle event of a stored deal (core's [`DealRecord::apply`]) and
    /// return the deal as now stored. The write is fenced like proposals' when a lease
    /// gate is set, so a node that lost the lease cannot move deals.
    pub async fn apply_event(
        &self,
        uuid: DealUuid,
        ev: DealEvent,
    ) -> Result<DealRecord, ApplyError> {
        let _one_at_a_time = self.0.events.lock().await;
        let mut deal = self
            .0
            .store
            .deal_by_uuid(uuid)
            .await?
            .ok_or(StoreError::NoSuchDeal(uuid))?;
        deal.apply(ev)
            .map_err(|e| ApplyError::Transition(uuid, e))?;
        let written = match self.0.write_fence()? {
            None => self.0.store.update_deal(&deal).await,
            Some(fence) => self.0.store.update_deal_fenced(&fence, &deal).await,
        };
        holder_only(written).map(|()| deal)
    }

    /// The fence of this node's lease now, for writes that exist only under a lease (the
    /// IPNI chain): [`ApplyError::NotHolder`] when it holds none or has no lease gate.
    pub fn holder_fence(&self) -> Result<Fence, ApplyError> {
        self.0.write_fence()?.ok_or(ApplyError::NotHolder)
    }

    /// What the transports protocol answers from now on (`retrieval::transports`).
    pub fn set_transports(&self, answer: &TransportsResponse) {
        *self.0.transports.write().unwrap_or_else(|e| e.into_inner()) = answer.to_cbor();
    }

    /// Answer one proposal (the bytes of one DealParams item) that arrived on
    /// `protocol`. `None`: undecodable.
    pub async fn propose(
        &self,
        protocol: &'static str,
        request: Vec<u8>,
        peer: String,
    ) -> Option<DealResponse> {
        let inner = self.0.clone();
        let params = match DealParams::from_cbor(&request) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable deal proposal");
                inner.metrics.undecodable(protocol);
                return None;
            }
        };
        let budget = inner.config.proposal_budget;
        let uuid = params.deal_uuid;
        let work = inner
            .clone()
            .decide_and_store(protocol, request, params, peer.clone());
        let response = match crate::runtime::timeout(budget, work).await {
            Some(r) => r,
            None => {
                tracing::warn!(%peer, deal = %uuid, ?budget, "proposal not decided within its budget");
                inner.metrics.proposal(protocol, SERVER_ERROR_BUDGET);
                DealResponse::rejected(format!(
                    "server error: the provider could not decide within {} s, try again",
                    budget.as_secs_f64()
                ))
            }
        };
        Some(response)
    }

    /// Answer one status request.
    pub async fn status(&self, request: &[u8]) -> Option<DealStatusResponse> {
        let inner = &self.0;
        let req = match DealStatusRequest::from_cbor(request) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable status request");
                inner.metrics.undecodable(protocols::STATUS_1_2_0);
                return None;
            }
        };
        // Bounded like a proposal: a database that stops answering must not hold the
        // stream.
        let read = crate::runtime::timeout(
            inner.config.proposal_budget,
            inner.store.deal_by_uuid(req.deal_uuid),
        )
        .await
        .unwrap_or_else(|| {
            Err(StoreError::Backend(
                "the database did not answer in time".into(),
            ))
        });
        let deal = match read {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(deal = %req.deal_uuid, error = %e, "status: reading the deal");
                inner.metrics.status("store_error");
                return Some(DealStatusResponse::error(
                    req.deal_uuid,
                    "server error: reading deal state",
                ));
            }
        };
        let key = match &deal {
            Some(d) => {
                inner
                    .chain
                    .account_key(&d.params.client_deal_proposal.proposal.client)
                    .await
            }
            None => None,
        };
        let answer = {
            let mut cache = inner.verify_cache.lock().unwrap_or_else(|e| e.into_inner());
            answer_status_on(
                inner.config.network,
                &req,
                deal.as_ref(),
                key.as_ref(),
                &mut cache,
            )
        };
        inner.metrics.status(answer.outcome.as_str());
        tracing::debug!(deal = %req.deal_uuid, outcome = answer.outcome.as_str(), "status answered");
        Some(answer.response)
    }

    fn ask(&self, request: &[u8]) -> Option<Vec<u8>> {
        let inner = &self.0;
        let req = match AskRequest::from_cbor(request) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable ask request");
                inner.metrics.undecodable(protocols::ASK_1_1_0);
                return None;
            }
        };
        Some(self.ask_response(&req).to_cbor())
    }

    /// Answer asks from `signer`'s signed asks.
    pub fn set_ask_signer(&self, signer: Arc<AskSigner>) {
        *self.0.asks.write().unwrap_or_else(|e| e.into_inner()) = Some(signer);
    }

    /// The answer to an ask request: the miner's last signed ask, or `Ask: null` (offline
    /// chain: no worker key to sign with; Lotus mode: none signed yet).
    pub fn ask_response(&self, req: &AskRequest) -> AskResponse {
        let signer = self
            .0
            .asks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let signed = signer.and_then(|s| s.current(&req.miner));
        if signed.is_none() {
            tracing::debug!(miner = %req.miner, "ask answered with null: no signed ask");
        }
        answer_ask(req, &self.0.config.policy.miners, signed)
    }

    fn transports(&self) -> Vec<u8> {
        self.0
            .transports
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn decide(
    params: &DealParams,
    facts: &dealport_core::facts::ChainFacts,
    policy: &Policy,
    by_uuid: Option<&DealRecord>,
    by_proposal_cid: Option<&DealRecord>,
) -> Result<(), Rejection> {
    accept::decide(params, facts, policy, by_uuid, by_proposal_cid)
}

impl Inner {
    fn reject_store(
        &self,
        protocol: &str,
        peer: &str,
        uuid: impl std::fmt::Display,
        e: &StoreError,
    ) -> DealResponse {
        tracing::error!(%peer, deal = %uuid, error = %e, "deal store failed");
        self.metrics.proposal(protocol, SERVER_ERROR_STORE);
        DealResponse::rejected(SAVE_FAILED)
    }

    fn not_holder(&self, protocol: &str, peer: &str, uuid: impl std::fmt::Display) -> DealResponse {
        tracing::warn!(%peer, deal = %uuid, "proposal refused: this node is not the lease holder");
        self.metrics.proposal(protocol, SERVER_ERROR_NOT_HOLDER);
        DealResponse::rejected(NOT_HOLDER)
    }

    fn reject(
        &self,
        protocol: &str,
        peer: &str,
        params: &DealParams,
        r: Rejection,
    ) -> DealResponse {
        tracing::info!(%peer, deal = %params.deal_uuid, rule = r.rule.label(), reason = %r.message, "deal rejected");
        self.metrics.proposal(protocol, r.rule.label());
        DealResponse::rejected(r.message)
    }

    fn accepted_again(&self, protocol: &str, peer: &str, params: &DealParams) -> DealResponse {
        tracing::info!(%peer, deal = %params.deal_uuid, "identical resend of an accepted deal: accepted again");
        self.metrics.proposal(protocol, ACCEPTED_AGAIN);
        DealResponse::accepted()
    }

    /// The fence writes go under: `None` without a lease gate (unfenced writes),
    /// [`ApplyError::NotHolder`] while the gate is closed.
    fn write_fence(&self) -> Result<Option<Fence>, ApplyError> {
        let gate = self.gate.read().unwrap_or_else(|e| e.into_inner()).clone();
        match gate {
            None => Ok(None),
            Some(gate) => gate.current().map(Some).ok_or(ApplyError::NotHolder),
        }
    }

    async fn decide_and_store(
        self: Arc<Self>,
        protocol: &'static str,
        bytes: Vec<u8>,
        params: DealParams,
        peer: String,
    ) -> DealResponse {
        let policy = &self.config.policy;
        if let Some(r) = accept::disabled_miner(&params, policy) {
            return self.reject(protocol, &peer, &params, r);
        }
        let proposal_cid = params.client_deal_proposal.proposal.cid();
        let lookup = || {
            self.store
                .deals_for_proposal(params.deal_uuid, &proposal_cid)
        };
        let (mut by_uuid, mut by_prop) = match lookup().await {
            Ok(found) => found,
            Err(e) => return self.reject_store(protocol, &peer, params.deal_uuid, &e),
        };
        if accept::is_identical_retry(&params, by_uuid.as_ref()) {
            return self.accepted_again(protocol, &peer, &params);
        }
        let facts = self.chain.facts_for(&params).await;
        // Twice at most: a concurrent insert of the same UUID or proposal between our
        // lookups and our insert is decided again against what won (the insert itself
        // refuses a duplicate atomically).
        for _ in 0..2 {
            // This very deal (a retry racing its first attempt) may have landed after the
            // UUID lookup: it is the UUID's record then, not another deal's duplicate.
            if by_uuid.is_none() {
                by_uuid = by_prop.clone().filter(|d| d.uuid == params.deal_uuid);
            }
            if let Err(r) = decide(&params, &facts, policy, by_uuid.as_ref(), by_prop.as_ref()) {
                return self.reject(protocol, &peer, &params, r);
            }
            if accept::is_identical_retry(&params, by_uuid.as_ref()) {
                return self.accepted_again(protocol, &peer, &params);
            }
            let record = DealRecord::new_accepted(
                bytes.clone(),
                params.clone(),
                peer.clone(),
                now_unix_nanos(),
            );
            let inserted = match self.write_fence() {
                Ok(None) => self.store.insert_new_deal(&record).await,
                Ok(Some(fence)) => self.store.insert_new_deal_fenced(&fence, &record).await,
                Err(_) => return self.not_holder(protocol, &peer, params.deal_uuid),
            };
            match inserted {
                Ok(Inserted::Yes) => {
                    tracing::info!(
                        %peer,
                        deal = %params.deal_uuid,
                        proposal = %record.proposal_cid,
                        piece = %params.client_deal_proposal.proposal.piece_cid,
                        size = params.client_deal_proposal.proposal.piece_size,
                        "deal accepted"
                    );
                    self.metrics.proposal(protocol, ACCEPTED);
                    if !params.is_offline {
                        if let Some(tx) =
                            &mut *self.accepted.lock().unwrap_or_else(|e| e.into_inner())
                        {
                            let _ = tx.try_send(params.deal_uuid);
                        }
                    }
                    return DealResponse::accepted();
                }
                Ok(Inserted::UuidExists | Inserted::ProposalExists(_)) => {
                    (by_uuid, by_prop) = match lookup().await {
                        Ok(found) => found,
                        Err(e) => return self.reject_store(protocol, &peer, params.deal_uuid, &e),
                    };
                }
                Err(StoreError::Fenced { .. }) => {
                    return self.not_holder(protocol, &peer, params.deal_uuid)
                }
                Err(e) => return self.reject_store(protocol, &peer, params.deal_uuid, &e),
            }
        }
        self.reject_store(
            protocol,
            &peer,
            params.deal_uuid,
            &StoreError::Backend("the deal kept conflicting with concurrent inserts".into()),
        )
    }
}

impl StreamService for DealService {
    fn handle(&self, protocol: &str, peer: PeerId, _remote: &Multiaddr, request: Vec<u8>) -> Reply {
        let this = self.clone();
        match protocol {
            protocols::DEAL_1_2_0 | protocols::DEAL_1_2_1 => {
                let protocol = if protocol == protocols::DEAL_1_2_0 {
                    protocols::DEAL_1_2_0
                } else {
                    protocols::DEAL_1_2_1
                };
                Box::pin(async move {
                    this.propose(protocol, request, peer.to_string())
                        .await
                        .map(|r| r.to_cbor())
                })
            }
            protocols::STATUS_1_2_0 => {
                Box::pin(async move { this.status(&request).await.map(|r| r.to_cbor()) })
            }
            protocols::ASK_1_1_0 => {
                let out = this.ask(&request);
                Box::pin(async move { out })
            }
            protocols::TRANSPORTS_1_0_0 => {
                let out = this.transports();
                Box::pin(async move { Some(out) })
            }
            other => {
                tracing::warn!(
                    protocol = other,
                    "stream on a protocol the service does not know"
                );
                Box::pin(async { None })
            }
        }
    }

    fn on_stream_failure(&self, protocol: &str, _peer: PeerId, failure: &StreamFailure) {
        // Bytes that are not one well-formed CBOR item never reach the service: the
        // host's framer refuses them. They are undecodable input all the same.
        if matches!(failure, StreamFailure::Framing(_)) {
            self.0.metrics.undecodable(protocol);
        }
        if let Some(limit) = failure.limit() {
            self.0.metrics.limit_hit(limit);
        }
    }

    fn on_connection_denied(&self, reason: DenyReason) {
        if let Some(limit) = reason.limit() {
            self.0.metrics.limit_hit(limit);
        }
    }
}
