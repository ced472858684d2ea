//! The MK12 stream service: decode, decide with the core, persist, answer.
//!
//! One [`DealService`] serves all five protocols for the libp2p host. Every proposal is
//! answered within the configured budget: if the chain or the store is slower the client
//! gets a `server error: …` rejection rather than a silent reset (DESIGN.md point 4).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_io::Timer;
use dealport_core::{
    accept::{self, Rejection},
    ask::answer_ask,
    deal::DealRecord,
    facts::Policy,
    status::{answer_status_on, VerifyCache},
    wire::{
        protocols, AskRequest, Cbor, DealParams, DealResponse, DealStatusRequest,
        DealStatusResponse, Network, TransportProtocol, TransportsResponse,
    },
};
use futures::future::{self, Either};
use libp2p::{multiaddr::Protocol as MaProtocol, Multiaddr, PeerId};

use crate::{
    chain::ChainFactsSource,
    p2p::{Reply, StreamFailure, StreamService},
    store::{Inserted, Store, StoreError},
};

/// Counters for the Prometheus export (later). All monotonic.
#[derive(Debug, Default)]
pub struct Metrics {
    pub deals_accepted: AtomicU64,
    /// Identical resends of a deal already accepted, accepted again.
    pub deals_accepted_again: AtomicU64,
    /// Rejections by `Rule::label()`, plus `server_error_store` / `server_error_budget`.
    pub deals_rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests that did not decode, by protocol.
    pub undecodable: Mutex<BTreeMap<String, u64>>,
    /// Status answers by `StatusOutcome::as_str()` (plus `store_error`).
    pub status: Mutex<BTreeMap<&'static str, u64>>,
    pub asks_answered: AtomicU64,
    pub transports_answered: AtomicU64,
    pub stream_failures: AtomicU64,
}

/// A copy of [`Metrics`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    pub deals_accepted: u64,
    pub deals_accepted_again: u64,
    pub deals_rejected: BTreeMap<String, u64>,
    pub undecodable: BTreeMap<String, u64>,
    pub status: BTreeMap<String, u64>,
    pub asks_answered: u64,
    pub transports_answered: u64,
    pub stream_failures: u64,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    *m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(k)
        .or_default() += 1;
}

fn copy<K: ToString>(m: &Mutex<BTreeMap<K, u64>>) -> BTreeMap<String, u64> {
    m.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect()
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            deals_accepted: self.deals_accepted.load(Ordering::Relaxed),
            deals_accepted_again: self.deals_accepted_again.load(Ordering::Relaxed),
            deals_rejected: copy(&self.deals_rejected),
            undecodable: copy(&self.undecodable),
            status: copy(&self.status),
            asks_answered: self.asks_answered.load(Ordering::Relaxed),
            transports_answered: self.transports_answered.load(Ordering::Relaxed),
            stream_failures: self.stream_failures.load(Ordering::Relaxed),
        }
    }
}

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
    /// The addresses listed by the transports protocol (set once the host listens).
    transport_addrs: RwLock<Vec<Multiaddr>>,
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

/// The message a client gets when its proposal could not be saved.
pub const SAVE_FAILED: &str = "server error: save to db";

impl DealService {
    pub fn new(
        store: Arc<dyn Store>,
        chain: Arc<dyn ChainFactsSource>,
        config: ServiceConfig,
    ) -> DealService {
        let cache = VerifyCache::new(config.verify_cache_capacity.max(1));
        DealService(Arc::new(Inner {
            store,
            chain,
            config,
            metrics: Arc::new(Metrics::default()),
            verify_cache: Mutex::new(cache),
            transport_addrs: RwLock::new(Vec::new()),
        }))
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.0.metrics.clone()
    }

    /// Set the addresses the transports protocol lists (any `/p2p/…` is dropped).
    pub fn set_transport_addrs(&self, addrs: Vec<Multiaddr>) {
        let addrs = addrs
            .into_iter()
            .map(|a| {
                a.into_iter()
                    .filter(|p| !matches!(p, MaProtocol::P2p(_)))
                    .collect()
            })
            .collect();
        *self
            .0
            .transport_addrs
            .write()
            .unwrap_or_else(|e| e.into_inner()) = addrs;
    }

    /// Answer one proposal (the bytes of one DealParams item). `None`: undecodable.
    pub async fn propose(&self, request: Vec<u8>, peer: String) -> Option<DealResponse> {
        let inner = self.0.clone();
        let params = match DealParams::from_cbor(&request) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable deal proposal");
                bump(&inner.metrics.undecodable, "deal".to_owned());
                return None;
            }
        };
        let budget = inner.config.proposal_budget;
        let uuid = params.deal_uuid;
        let work = std::pin::pin!(inner
            .clone()
            .decide_and_store(request, params, peer.clone()));
        let response = match future::select(work, Timer::after(budget)).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => {
                tracing::warn!(%peer, deal = %uuid, ?budget, "proposal not decided within its budget");
                bump(&inner.metrics.deals_rejected, "server_error_budget");
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
                bump(&inner.metrics.undecodable, "status".to_owned());
                return None;
            }
        };
        let deal = match inner.store.deal_by_uuid(req.deal_uuid).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(deal = %req.deal_uuid, error = %e, "status: reading the deal");
                bump(&inner.metrics.status, "store_error");
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
        bump(&inner.metrics.status, answer.outcome.as_str());
        tracing::debug!(deal = %req.deal_uuid, outcome = answer.outcome.as_str(), "status answered");
        Some(answer.response)
    }

    fn ask(&self, request: &[u8]) -> Option<Vec<u8>> {
        let inner = &self.0;
        let req = match AskRequest::from_cbor(request) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable ask request");
                bump(&inner.metrics.undecodable, "ask".to_owned());
                return None;
            }
        };
        // The ask must be signed by the miner's worker key, which only the Lotus mode can
        // reach; until then every ask is answered with `Ask: null`.
        tracing::debug!(miner = %req.miner, "ask answered with null: no worker key in offline mode");
        inner.metrics.asks_answered.fetch_add(1, Ordering::Relaxed);
        Some(answer_ask(&req, &inner.config.policy.miners, None).to_cbor())
    }

    fn transports(&self) -> Vec<u8> {
        let addrs = self
            .0
            .transport_addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.0
            .metrics
            .transports_answered
            .fetch_add(1, Ordering::Relaxed);
        TransportsResponse {
            protocols: vec![TransportProtocol {
                name: "libp2p".to_owned(),
                addresses: addrs.iter().map(|a| a.to_vec()).collect(),
            }],
        }
        .to_cbor()
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
        peer: &str,
        uuid: impl std::fmt::Display,
        e: &StoreError,
    ) -> DealResponse {
        tracing::error!(%peer, deal = %uuid, error = %e, "deal store failed");
        bump(&self.metrics.deals_rejected, "server_error_store");
        DealResponse::rejected(SAVE_FAILED)
    }

    fn reject(&self, peer: &str, params: &DealParams, r: Rejection) -> DealResponse {
        tracing::info!(%peer, deal = %params.deal_uuid, rule = r.rule.label(), reason = %r.message, "deal rejected");
        bump(&self.metrics.deals_rejected, r.rule.label());
        DealResponse::rejected(r.message)
    }

    fn accepted_again(&self, peer: &str, params: &DealParams) -> DealResponse {
        tracing::info!(%peer, deal = %params.deal_uuid, "identical resend of an accepted deal: accepted again");
        self.metrics
            .deals_accepted_again
            .fetch_add(1, Ordering::Relaxed);
        DealResponse::accepted()
    }

    async fn decide_and_store(
        self: Arc<Self>,
        bytes: Vec<u8>,
        params: DealParams,
        peer: String,
    ) -> DealResponse {
        let policy = &self.config.policy;
        if let Some(r) = accept::disabled_miner(&params, policy) {
            return self.reject(&peer, &params, r);
        }
        let by_uuid = match self.store.deal_by_uuid(params.deal_uuid).await {
            Ok(d) => d,
            Err(e) => return self.reject_store(&peer, params.deal_uuid, &e),
        };
        if accept::is_identical_retry(&params, by_uuid.as_ref()) {
            return self.accepted_again(&peer, &params);
        }
        let facts = self.chain.facts_for(&params).await;
        let proposal_cid = params.client_deal_proposal.proposal.cid();
        // Twice at most: a concurrent insert of the same UUID or proposal between our
        // lookups and our insert is decided again against what won.
        let mut by_uuid = by_uuid;
        for _ in 0..2 {
            let by_prop = match self.store.deal_by_proposal_cid(&proposal_cid).await {
                Ok(d) => d,
                Err(e) => return self.reject_store(&peer, params.deal_uuid, &e),
            };
            if let Err(r) = decide(&params, &facts, policy, by_uuid.as_ref(), by_prop.as_ref()) {
                return self.reject(&peer, &params, r);
            }
            if accept::is_identical_retry(&params, by_uuid.as_ref()) {
                return self.accepted_again(&peer, &params);
            }
            let record = DealRecord::new_accepted(
                bytes.clone(),
                params.clone(),
                peer.clone(),
                now_unix_nanos(),
            );
            match self.store.insert_new_deal(&record).await {
                Ok(Inserted::Yes) => {
                    tracing::info!(
                        %peer,
                        deal = %params.deal_uuid,
                        proposal = %record.proposal_cid,
                        piece = %params.client_deal_proposal.proposal.piece_cid,
                        size = params.client_deal_proposal.proposal.piece_size,
                        "deal accepted"
                    );
                    self.metrics.deals_accepted.fetch_add(1, Ordering::Relaxed);
                    return DealResponse::accepted();
                }
                Ok(Inserted::UuidExists | Inserted::ProposalExists(_)) => {
                    by_uuid = match self.store.deal_by_uuid(params.deal_uuid).await {
                        Ok(d) => d,
                        Err(e) => return self.reject_store(&peer, params.deal_uuid, &e),
                    };
                }
                Err(e) => return self.reject_store(&peer, params.deal_uuid, &e),
            }
        }
        self.reject_store(
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
            protocols::DEAL_1_2_0 | protocols::DEAL_1_2_1 => Box::pin(async move {
                this.propose(request, peer.to_string())
                    .await
                    .map(|r| r.to_cbor())
            }),
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

    fn on_stream_failure(&self, _protocol: &str, _peer: PeerId, _failure: &StreamFailure) {
        self.0
            .metrics
            .stream_failures
            .fetch_add(1, Ordering::Relaxed);
    }
}
