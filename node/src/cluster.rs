//! Cluster mode: the lease loop that decides which node runs the libp2p host.
//!
//! Every node runs the HTTP server (relay, health, metrics); only the holder of the lease
//! row in the shared store runs the libp2p host and takes deals. The loop reads the row
//! with the store's clock, asks [`dealport_core::lease::decide`] what to do, and does it:
//!
//! - **Acquire**: take the row, start the host with the shared key, write its internal
//!   WebSocket address (fenced), and only then open the [`LeaseGate`] and tell the front
//!   door's [`Role`] that this node serves.
//! - **Renew**: extend the row; the gate stays open until [`lease::accept_until`] of the
//!   last successful renewal, measured on this node's monotonic clock, so a node that
//!   cannot reach the store stops taking deals by itself before the row can expire.
//! - **Step down**: close the gate at once, then close the host with the stream write
//!   deadline as grace (in-flight proposals are refused by the closed gate and by the
//!   store's fenced writes).
//! - **Shutdown** (SIGTERM/SIGINT): close the gate, ask `decide` with `shutting_down`
//!   and release the row as it says so a standby takes over at its next poll, then close
//!   the host.
//!
//! Sits above the service, execution and the HTTP routes: it may use all of them, and
//! none of them uses it.
//!
//! The embedded sled store keeps the same lease in memory, so a single node runs this very
//! loop and simply always holds the lease.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_io::Timer;
use dealport_core::lease::{self, Action, Belief, Inputs, LeaseConfig};
use futures::future::{self, AbortHandle, Either};
use libp2p::{identity::Keypair, PeerId};

use crate::{
    front_door::{FrontDoor, Role, RunningHost},
    metrics::Metrics,
    p2p::{
        addr::{internal_ws_multiaddr, with_p2p, ws_socket_addr},
        Host, HostConfig, HostHandle,
    },
    runtime::{LeaderTask, Runtime},
    service::DealService,
    signals::ShutdownSignal,
    store::{Fence, LeaseGate, Store, StoreError},
};

/// What a leader runs: the libp2p host and the leader-only background work.
pub struct Duties {
    pub runtime: Arc<dyn Runtime>,
    pub key: Keypair,
    pub host_config: HostConfig,
    pub service: DealService,
    pub front_door: Arc<FrontDoor>,
    /// The address other nodes' relays use to reach this node's WebSocket listener.
    pub internal_ws_host: IpAddr,
    pub leader_tasks: Vec<LeaderTask>,
    host: Mutex<Option<(HostHandle, Vec<AbortHandle>)>>,
}

impl Duties {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runtime: Arc<dyn Runtime>,
        key: Keypair,
        host_config: HostConfig,
        service: DealService,
        front_door: Arc<FrontDoor>,
        internal_ws_host: IpAddr,
        leader_tasks: Vec<LeaderTask>,
    ) -> Duties {
        Duties {
            runtime,
            key,
            host_config,
            service,
            front_door,
            internal_ws_host,
            leader_tasks,
            host: Mutex::new(None),
        }
    }

    fn peer(&self) -> PeerId {
        self.key.public().to_peer_id()
    }

    /// The running host's connection and stream counts (0, 0 when not running).
    pub fn host_counts(&self) -> (usize, usize) {
        match &*self.host.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((h, _)) => (h.active_connections(), h.active_streams()),
            None => (0, 0),
        }
    }

    /// Start the host and record its internal WebSocket address under `fence`; that
    /// address, if the host has a WebSocket listener.
    async fn start(&self, store: &dyn Store, fence: &Fence) -> Result<Option<SocketAddr>, String> {
        let peer = self.peer();
        let announce = self.host_config.announce.clone();
        let config = HostConfig {
            handoffs: Some(self.front_door.handoffs()),
            ..self.host_config.clone()
        };
        let host = Host::start(
            self.runtime.clone(),
            self.key.clone(),
            config,
            Arc::new(self.service.clone()),
        )
        .map_err(|e| e.to_string())?;
        let addrs = match host.listen_addrs().await {
            Ok(a) => a,
            Err(e) => {
                host.shutdown(Duration::ZERO).await;
                return Err(e.to_string());
            }
        };
        tracing::info!("PeerID {peer}");
        for a in &addrs {
            tracing::info!("listening on {}", with_p2p(a, peer));
        }
        for a in &announce {
            tracing::info!("announcing {}", with_p2p(a, peer));
        }
        // What other nodes' relays dial (and what this node's relay compares with the
        // holder the store names).
        let recorded =
            ws_socket_addr(&addrs).map(|s| SocketAddr::new(self.internal_ws_host, s.port()));
        let internal = recorded.map(|s| internal_ws_multiaddr(s.ip(), s.port()));
        if let Some(internal) = &internal {
            let announce: Vec<String> = announce.iter().map(ToString::to_string).collect();
            if let Err(e) = store
                .set_local_listen(fence, &internal.to_string(), &announce)
                .await
            {
                host.shutdown(Duration::ZERO).await;
                return Err(format!("cannot record the WebSocket address: {e}"));
            }
        } else {
            tracing::warn!("no WebSocket listener: the HTTP relays cannot reach this node");
        }
        let tasks = self
            .leader_tasks
            .iter()
            .map(|t| {
                let (task, handle) = future::abortable(t());
                self.runtime.spawn(Box::pin(async move {
                    let _ = task.await;
                }));
                handle
            })
            .collect();
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = Some((host, tasks));
        Ok(recorded)
    }

    /// Stop the leader-only work and close the host, letting streams in flight finish
    /// within `grace`.
    pub async fn stop(&self, grace: Duration) {
        let running = self.host.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((host, tasks)) = running {
            for t in tasks {
                t.abort();
            }
            host.shutdown(grace).await;
            // Connections handed over after the host stopped taking them.
            self.front_door.handoffs().clear();
            tracing::info!("libp2p host closed");
        }
    }
}

/// A default node id: `hostname:pid`.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The lease loop of one node.
pub struct LeaseLoop {
    store: Arc<dyn Store>,
    me: String,
    config: LeaseConfig,
    gate: Arc<LeaseGate>,
    duties: Arc<Duties>,
    metrics: Arc<Metrics>,
    /// Grace for in-flight streams when stepping down (the stream write deadline).
    step_down_grace: Duration,
    belief: Belief,
    /// While leader: until when (local monotonic) deals may be accepted.
    until: Option<Instant>,
    generation: u64,
    start_error: Option<String>,
}

impl LeaseLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        me: String,
        config: LeaseConfig,
        gate: Arc<LeaseGate>,
        duties: Arc<Duties>,
        metrics: Arc<Metrics>,
        step_down_grace: Duration,
    ) -> LeaseLoop {
        LeaseLoop {
            store,
            me,
            config,
            gate,
            duties,
            metrics,
            step_down_grace,
            belief: Belief::Standby,
            until: None,
            generation: 0,
            start_error: None,
        }
    }

    /// Why the last start of the host failed, if it did.
    pub fn start_error(&self) -> Option<String> {
        self.start_error.clone()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.belief, Belief::Leader { .. })
    }

    fn fence(&self, generation: u64) -> Fence {
        Fence {
            node: self.me.clone(),
            generation,
        }
    }

    /// Tell the front door and the metrics what this node is now: serving with `host`
    /// (after an acquisition) or standing by (`None`).
    fn set_role(&self, host: Option<RunningHost>) {
        self.duties.front_door.set_role(Role {
            generation: self.generation,
            host,
        });
        let role = if host.is_some() { "leader" } else { "standby" };
        self.metrics.set_lease(role, self.generation as i64);
    }

    /// Run `op`; while leader, give up when the local accept deadline passes first.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Option<Result<T, StoreError>> {
        let Some(until) = self.until.filter(|_| self.is_leader()) else {
            return Some(op.await);
        };
        crate::runtime::deadline(until, op).await
    }

    async fn step_down(&mut self, why: &str) {
        self.gate.close();
        let was_leader = self.is_leader();
        self.belief = Belief::Standby;
        self.until = None;
        self.set_role(None);
        if was_leader {
            tracing::warn!(generation = self.generation, reason = why, "stepping down");
        }
        self.duties.stop(self.step_down_grace).await;
    }

    /// One decision; returns how long to wait before the next.
    pub async fn tick(&mut self) -> Duration {
        let poll = self.config.poll_interval;
        let short = poll.min(self.config.renew_interval);
        let read = match self.bounded(self.store.read_lease()).await {
            None => {
                self.step_down("no renewal before the local accept deadline")
                    .await;
                return poll;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the lease");
                return short;
            }
            Some(Ok(r)) => r,
        };
        let action = lease::decide(Inputs {
            me: &self.me,
            now: read.now,
            row: read.row.as_ref(),
            belief: self.belief,
            config: &self.config,
            shutting_down: false,
        });
        match action {
            Action::Acquire { expect_generation } => self.acquire(expect_generation).await,
            Action::Renew { generation } => self.renew(generation).await,
            Action::StandBy { next_check_after } => match self.until {
                Some(until) if self.is_leader() => {
                    next_check_after.min(until.saturating_duration_since(Instant::now()))
                }
                _ => next_check_after,
            },
            Action::StepDown { reason } => {
                self.step_down(&reason.to_string()).await;
                Duration::ZERO
            }
            Action::Release { .. } => poll,
        }
    }

    async fn acquire(&mut self, expect: Option<u64>) -> Duration {
        let poll = self.config.poll_interval;
        let sent = Instant::now();
        let grant = match self
            .store
            .try_acquire(&self.me, expect, self.config.ttl)
            .await
        {
            Ok(Some(g)) => g,
            Ok(None) => return poll,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the lease");
                return poll;
            }
        };
        let fence = self.fence(grant.generation);
        self.generation = grant.generation;
        let relay = match self.duties.start(&*self.store, &fence).await {
            Ok(relay) => relay,
            Err(e) => {
                tracing::error!(error = %e, "took the lease but cannot serve: giving it up");
                self.start_error = Some(e);
                self.duties.stop(Duration::ZERO).await;
                let _ = self.store.release(&fence).await;
                return poll;
            }
        };
        let until = lease::accept_until(sent, &self.config);
        self.belief = Belief::Leader {
            generation: grant.generation,
            renewed_at: grant.at,
        };
        self.until = Some(until);
        self.gate.open(fence, until);
        self.set_role(Some(RunningHost { relay }));
        tracing::info!(node = %self.me, generation = grant.generation, "holding the lease: serving libp2p");
        self.config.renew_interval.saturating_sub(sent.elapsed())
    }

    async fn renew(&mut self, generation: u64) -> Duration {
        let fence = self.fence(generation);
        let sent = Instant::now();
        match self
            .bounded(self.store.renew(&fence, self.config.ttl))
            .await
        {
            None => {
                self.step_down("no renewal before the local accept deadline")
                    .await;
                self.config.poll_interval
            }
            Some(Ok(Some(grant))) => {
                let until = lease::accept_until(sent, &self.config);
                self.belief = Belief::Leader {
                    generation,
                    renewed_at: grant.at,
                };
                self.until = Some(until);
                self.gate.open(fence, until);
                self.config.renew_interval
            }
            Some(Ok(None)) => {
                self.step_down("the renewal was refused").await;
                Duration::ZERO
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the lease");
                self.config.poll_interval.min(self.config.renew_interval)
            }
        }
    }

    /// Decide and act until `stop` resolves; returns its signal name. Does not release.
    pub async fn run(&mut self, stop: &mut ShutdownSignal) -> String {
        loop {
            let wait = self.tick().await;
            // The database server in use, for /metrics (also refreshed by /health).
            let (host, writable) = self.store.server().unzip();
            self.metrics.set_db_server(host.as_deref(), writable);
            let timer = Timer::after(wait.max(Duration::from_millis(10)));
            if let Either::Left((signal, _)) = future::select(stop.as_mut(), timer).await {
                return signal;
            }
        }
    }

    /// Graceful shutdown, first half: stop taking deals and give the lease up at once so
    /// a standby takes over at its next poll, as `decide` says with `shutting_down`. Then
    /// call [`Duties::stop`].
    pub async fn release(&mut self) {
        self.gate.close();
        let action = match crate::runtime::timeout(
            self.config.renew_interval,
            self.store.read_lease(),
        )
        .await
        {
            Some(Ok(read)) => lease::decide(Inputs {
                me: &self.me,
                now: read.now,
                row: read.row.as_ref(),
                belief: self.belief,
                config: &self.config,
                shutting_down: true,
            }),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the lease to release it: it expires by itself");
                Action::StandBy {
                    next_check_after: Duration::ZERO,
                }
            }
            None => {
                tracing::warn!("no answer reading the lease to release it: it expires by itself");
                Action::StandBy {
                    next_check_after: Duration::ZERO,
                }
            }
        };
        match action {
            Action::Release { generation } => {
                let fence = self.fence(generation);
                match self.store.release(&fence).await {
                    Ok(true) => tracing::info!(generation, "released the lease"),
                    Ok(false) => tracing::info!(generation, "the lease was no longer ours"),
                    Err(e) => tracing::warn!(error = %e, "cannot release the lease"),
                }
            }
            Action::StepDown { reason } => {
                tracing::info!(%reason, "the lease was no longer ours");
            }
            _ => {}
        }
        self.belief = Belief::Standby;
        self.until = None;
        self.set_role(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_node_id_names_this_process() {
        assert!(default_node_id().ends_with(&format!(":{}", std::process::id())));
    }
}
