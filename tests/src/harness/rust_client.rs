//! A rust-libp2p client: dial, then one stream per request, lazily negotiated as go
//! clients do.

use std::{sync::Arc, time::Duration};

use dealport_node::{
    p2p::{
        transport::{build_transport, Security, TransportConfig},
        Keypair, Multiaddr, PeerId, StreamProtocol,
    },
    runtime::{Runtime, SwarmExecutor},
};
use dealport_testkit::node::{executor_runtime, isolated_executor_runtime, within};
use futures::{channel::mpsc, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    core::upgrade::Version,
    swarm::{self, SwarmEvent},
    Swarm,
};

pub struct Client {
    control: libp2p_stream::Control,
    connected: mpsc::UnboundedReceiver<Result<PeerId, String>>,
    dial: mpsc::UnboundedSender<Multiaddr>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client::on(executor_runtime())
    }

    /// A client on an executor thread of its own, so that an attacker's work in the same
    /// test process does not slow the honest client down (or the other way round).
    pub fn isolated() -> Client {
        Client::on(isolated_executor_runtime())
    }

    fn on(rt: Arc<dyn Runtime>) -> Client {
        let key = Keypair::generate_ed25519();
        let transport = build_transport(
            &key,
            &TransportConfig {
                security: Security::NoiseAndTls,
                version: Version::V1Lazy,
                ..TransportConfig::default()
            },
        )
        .expect("client transport");
        let behaviour = libp2p_stream::Behaviour::new();
        let config = swarm::Config::with_executor(SwarmExecutor(rt.clone()))
            .with_substream_upgrade_protocol_override(Version::V1Lazy)
            .with_idle_connection_timeout(Duration::from_secs(30));
        let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
        let control = swarm.behaviour().new_control();
        let (conn_tx, connected) = mpsc::unbounded();
        let (dial, mut dial_rx) = mpsc::unbounded::<Multiaddr>();
        rt.spawn(Box::pin(async move {
            loop {
                futures::select! {
                    addr = dial_rx.next() => match addr {
                        Some(addr) => if let Err(e) = swarm.dial(addr) {
                            let _ = conn_tx.unbounded_send(Err(e.to_string()));
                        },
                        None => return,
                    },
                    ev = swarm.select_next_some() => match ev {
                        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                            let _ = conn_tx.unbounded_send(Ok(peer_id));
                        }
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            let _ = conn_tx.unbounded_send(Err(error.to_string()));
                        }
                        _ => {}
                    },
                }
            }
        }));
        Client {
            control,
            connected,
            dial,
        }
    }

    /// Dial `addr` (with `/p2p/`) and wait for the connection.
    pub async fn connect(&mut self, addr: &Multiaddr) -> PeerId {
        self.try_connect(addr)
            .await
            .unwrap_or_else(|e| panic!("dial {addr}: {e}"))
    }

    /// Dial `addr` once more (each dial is a new connection): the peer, or why not.
    pub async fn try_connect(&mut self, addr: &Multiaddr) -> Result<PeerId, String> {
        self.dial
            .unbounded_send(addr.clone())
            .expect("client running");
        within(Duration::from_secs(15), self.connected.next())
            .await
            .expect("client running")
    }

    /// A handle that opens streams on this client's connections, usable from many tasks.
    pub fn opener(&self) -> Opener {
        Opener(self.control.clone())
    }

    /// One stream: write `request` (write side left open), read until the node closes.
    pub async fn request(
        &mut self,
        peer: PeerId,
        protocol: StreamProtocol,
        request: &[u8],
    ) -> Vec<u8> {
        within(Duration::from_secs(20), async {
            let mut s = self
                .control
                .open_stream(peer, protocol.clone())
                .await
                .unwrap_or_else(|e| panic!("open {protocol}: {e}"));
            s.write_all(request).await.expect("write request");
            s.flush().await.expect("flush request");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read response");
            out
        })
        .await
    }
}

/// Opens raw streams for attack tests.
#[derive(Clone)]
pub struct Opener(libp2p_stream::Control);

impl Opener {
    /// Open a stream on `protocol` and push the lazy protocol proposal out, sending no
    /// request: the stream then holds a slot on the node until a deadline frees it.
    pub async fn open_silent(
        &mut self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<libp2p::Stream, String> {
        let mut s = self
            .0
            .open_stream(peer, protocol)
            .await
            .map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        Ok(s)
    }
}
