//! Starting, observing and stopping the host.

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use async_io::Timer;
use futures::{
    channel::{mpsc, oneshot},
    FutureExt, StreamExt,
};
use libp2p::{
    core::transport::{ListenerId, TransportError},
    identify, ping,
    swarm::{self, NetworkBehaviour, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};

use super::{
    serve::{ServeBehaviour, Shared, Stats, StatsSnapshot},
    transport::{build_transport, Security, TransportBuildError, TransportConfig},
    HostConfig, Keypair, StreamService,
};
use crate::runtime::{Runtime, SwarmExecutor};

/// How often the drain loop looks at the in-flight stream count during shutdown.
const DRAIN_TICK: Duration = Duration::from_millis(20);
/// How long shutdown waits for connections to close after disconnecting every peer.
const DISCONNECT_WAIT: Duration = Duration::from_millis(500);

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct HostBehaviour {
    serve: ServeBehaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// Why the host could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("building the transport: {0}")]
    Transport(#[from] TransportBuildError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: Multiaddr,
        #[source]
        source: TransportError<std::io::Error>,
    },
    #[error("no listen address configured")]
    NoListenAddr,
    #[error("not every listener reported its address within {waited:?}")]
    ListenTimeout { waited: Duration },
    #[error("listener {addr} failed: {reason}")]
    ListenerFailed { addr: Multiaddr, reason: String },
    #[error("the host has stopped")]
    Stopped,
}

/// The libp2p host. See [`Host::start`].
#[derive(Debug)]
pub struct Host;

impl Host {
    /// Bind every listen address, start the swarm on `runtime`, and serve
    /// `config.protocols` with `service`. Binding errors are returned here; the
    /// actual addresses come from [`HostHandle::listen_addrs`].
    pub fn start(
        runtime: Arc<dyn Runtime>,
        keypair: Keypair,
        config: HostConfig,
        service: Arc<dyn StreamService>,
    ) -> Result<HostHandle, HostError> {
        if config.listen.is_empty() {
            return Err(HostError::NoListenAddr);
        }
        let peer_id = keypair.public().to_peer_id();
        let transport = build_transport(
            &keypair,
            &TransportConfig {
                security: Security::NoiseAndTls,
                version: libp2p::core::upgrade::Version::V1,
                handshake_timeout: config.handshake_timeout,
                websocket: true,
                relayed: Some(super::tcp::RelayedAddrs {
                    key: super::relay_key(&keypair),
                    max_pending: config.limits.max_pending_incoming,
                    deadline: config.handshake_timeout,
                    handoffs: config.handoffs.clone(),
                }),
            },
        )?;
        let shared = Shared::new(runtime.clone(), service, &config);
        let stats = shared.stats.clone();
        let identify = identify::Behaviour::new(
            identify::Config::new(config.protocol_version.clone(), keypair.public())
                .with_agent_version(config.agent_version.clone())
                .with_hide_listen_addrs(!config.announce.is_empty()),
        );
        let behaviour = HostBehaviour {
            serve: ServeBehaviour::new(shared.clone()),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
        };
        let swarm_config = swarm::Config::with_executor(SwarmExecutor(runtime.clone()))
            .with_idle_connection_timeout(config.idle_connection_timeout)
            .with_max_negotiating_inbound_streams(config.limits.max_negotiating_streams);
        let mut swarm = Swarm::new(transport, behaviour, peer_id, swarm_config);

        let mut listeners = Vec::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|source| HostError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            listeners.push((id, addr.clone()));
        }
        for addr in &config.announce {
            swarm.add_external_address(addr.clone());
        }
        tracing::info!(%peer_id, listen = ?config.listen, announce = ?config.announce, "libp2p host started");

        let (commands, rx) = mpsc::unbounded();
        let driver = Driver {
            swarm,
            shared,
            unreported: listeners.iter().map(|(id, _)| *id).collect(),
            listeners,
            addrs: Vec::new(),
            failed: Vec::new(),
            waiters: Vec::new(),
        };
        runtime.spawn(Box::pin(driver.run(rx)));
        Ok(HostHandle {
            peer_id,
            commands,
            stats,
            listen_wait: config.listen_wait,
        })
    }
}

enum Command {
    ListenAddrs(oneshot::Sender<Result<Vec<Multiaddr>, HostError>>),
    Shutdown {
        grace: Duration,
        done: oneshot::Sender<()>,
    },
}

/// The running host. Dropping it stops the host at once (no grace period).
#[derive(Debug)]
pub struct HostHandle {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    stats: Arc<Stats>,
    listen_wait: Duration,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::ListenAddrs(_) => "ListenAddrs",
            Command::Shutdown { .. } => "Shutdown",
        })
    }
}

impl HostHandle {
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the listeners are reachable on, once every listener has reported
    /// (waits at most `HostConfig::listen_wait`).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, HostError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .unbounded_send(Command::ListenAddrs(tx))
            .map_err(|_| HostError::Stopped)?;
        let wait = self.listen_wait;
        futures::select! {
            r = rx.fuse() => r.map_err(|_| HostError::Stopped)?,
            _ = FutureExt::fuse(Timer::after(wait)) => Err(HostError::ListenTimeout { waited: wait }),
        }
    }

    /// Established connections right now.
    pub fn active_connections(&self) -> usize {
        self.stats.active_connections()
    }

    /// Streams being served right now.
    pub fn active_streams(&self) -> usize {
        self.stats.active_streams()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stop accepting connections and streams, let streams in flight finish within
    /// `grace`, then close every connection and the swarm.
    pub async fn shutdown(self, grace: Duration) {
        let (done, rx) = oneshot::channel();
        if self
            .commands
            .unbounded_send(Command::Shutdown { grace, done })
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}

struct Driver {
    swarm: Swarm<HostBehaviour>,
    shared: Arc<Shared>,
    listeners: Vec<(ListenerId, Multiaddr)>,
    /// Listeners that have not reported an address yet.
    unreported: HashSet<ListenerId>,
    addrs: Vec<Multiaddr>,
    failed: Vec<(Multiaddr, String)>,
    waiters: Vec<oneshot::Sender<Result<Vec<Multiaddr>, HostError>>>,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            futures::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev),
                cmd = commands.next() => match cmd {
                    Some(Command::ListenAddrs(tx)) => {
                        self.waiters.push(tx);
                        self.answer_waiters();
                    }
                    Some(Command::Shutdown { grace, done }) => {
                        self.shutdown(grace).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown(Duration::ZERO).await;
                        return;
                    }
                },
            }
        }
    }

    fn listen_result(&self) -> Result<Vec<Multiaddr>, HostError> {
        if let Some((addr, reason)) = self.failed.first() {
            return Err(HostError::ListenerFailed {
                addr: addr.clone(),
                reason: reason.clone(),
            });
        }
        Ok(self.addrs.clone())
    }

    fn answer_waiters(&mut self) {
        if !self.unreported.is_empty() && self.failed.is_empty() {
            return;
        }
        for w in std::mem::take(&mut self.waiters) {
            let _ = w.send(self.listen_result());
        }
    }

    fn listener_addr(&self, id: ListenerId) -> Multiaddr {
        self.listeners
            .iter()
            .find(|(l, _)| *l == id)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(Multiaddr::empty)
    }

    fn on_event(&mut self, event: SwarmEvent<HostBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                if !self.addrs.contains(&address) {
                    self.addrs.push(address);
                }
                self.unreported.remove(&listener_id);
                self.answer_waiters();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.addrs.retain(|a| !addresses.contains(a));
                if self.unreported.remove(&listener_id) {
                    let why = match reason {
                        Ok(()) => "closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    self.failed.push((self.listener_addr(listener_id), why));
                    self.answer_waiters();
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                tracing::warn!(addr = %self.listener_addr(listener_id), %error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(%peer_id, remote = %endpoint.get_remote_address(), "connection established");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(%peer_id, ?cause, "connection closed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                tracing::debug!(remote = %send_back_addr, %error, "inbound connection failed");
            }
            SwarmEvent::Behaviour(HostBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                tracing::debug!(%peer_id, agent = %info.agent_version, "identified peer");
            }
            _ => {}
        }
    }

    /// Stop listening and taking streams, drain, then close every connection.
    async fn shutdown(&mut self, grace: Duration) {
        self.shared.draining.store(true, Ordering::Release);
        for (id, _) in std::mem::take(&mut self.listeners) {
            self.swarm.remove_listener(id);
        }
        let stats = self.shared.stats.clone();
        let deadline = Instant::now() + grace;
        while stats.active_streams() > 0 && Instant::now() < deadline {
            self.poll_for(DRAIN_TICK).await;
        }
        let left = stats.active_streams();
        if left > 0 {
            tracing::warn!(
                streams = left,
                "grace period over; closing streams in flight"
            );
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
        let deadline = Instant::now() + DISCONNECT_WAIT;
        while self.swarm.network_info().num_peers() > 0 && Instant::now() < deadline {
            self.poll_for(DRAIN_TICK).await;
        }
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(HostError::Stopped));
        }
        tracing::info!("libp2p host stopped");
    }

    /// Keep the swarm moving for `d`.
    async fn poll_for(&mut self, d: Duration) {
        let mut timer = FutureExt::fuse(Timer::after(d));
        loop {
            futures::select! {
                ev = self.swarm.select_next_some() => self.on_event(ev),
                _ = timer => return,
            }
        }
    }
}
