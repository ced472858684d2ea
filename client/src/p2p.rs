//! One libp2p session with a provider: dial, identify, then one stream per request.
//!
//! The swarm runs without an executor: its connection tasks are polled by whichever
//! future of this module is being awaited, so the client needs no runtime of its own.

use std::{future::Future, pin::pin, task::Poll, time::Duration};

use dealport_core::wire::framer::{Frame, Framer, DEFAULT_MAX_ITEM};
use futures::{future::poll_fn, AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{
    core::multiaddr::Protocol,
    identify,
    swarm::{self, dial_opts::DialOpts, NetworkBehaviour, SwarmEvent},
    Multiaddr, PeerId, StreamProtocol, Swarm,
};

use super::{transport::build_client_transport, ClientError, PeerInfo, Timeouts};
use dealport_node::{outbound::io_sentence, runtime::timeout};

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct ClientBehaviour {
    identify: identify::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// What the swarm reported while we were waiting for something else.
#[derive(Default)]
struct Seen {
    connected: Option<PeerId>,
    dial_error: Option<String>,
    identify: Option<identify::Info>,
    identify_error: Option<String>,
    closed: Option<String>,
}

impl Seen {
    fn record(&mut self, ev: SwarmEvent<ClientBehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => self.connected = Some(peer_id),
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                self.dial_error = Some(super::dial_error_sentence(&error));
            }
            SwarmEvent::ConnectionClosed { cause, .. } => {
                self.closed = Some(match cause {
                    Some(e) => e.to_string(),
                    None => "closed".to_string(),
                });
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(identify::Event::Received {
                info,
                ..
            })) => self.identify = Some(info),
            SwarmEvent::Behaviour(ClientBehaviourEvent::Identify(identify::Event::Error {
                error,
                ..
            })) => self.identify_error = Some(error.to_string()),
            _ => {}
        }
    }
}

/// Run `fut` while polling the swarm.
async fn drive<T>(
    swarm: &mut Swarm<ClientBehaviour>,
    seen: &mut Seen,
    fut: impl Future<Output = T>,
) -> T {
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(t) = fut.as_mut().poll(cx) {
            return Poll::Ready(t);
        }
        while let Poll::Ready(Some(ev)) = swarm.poll_next_unpin(cx) {
            seen.record(ev);
        }
        // Events may have completed `fut` (its waker was woken); poll it once more.
        fut.as_mut().poll(cx)
    })
    .await
}

/// A connection to one provider.
pub(crate) struct Session {
    swarm: Swarm<ClientBehaviour>,
    control: libp2p_stream::Control,
    seen: Seen,
    peer: PeerId,
    addr: Multiaddr,
    timeouts: Timeouts,
}

impl Session {
    /// Dial `addr` and wait for the connection and (up to `timeouts.identify`) for the
    /// provider's identify message.
    pub(crate) async fn connect(
        addr: &Multiaddr,
        timeouts: Timeouts,
    ) -> Result<Session, ClientError> {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let transport = build_client_transport(&key, timeouts.connect)
            .map_err(|e| ClientError::Local(format!("cannot build the libp2p transport: {e}")))?;
        let identify = identify::Behaviour::new(
            identify::Config::new("ipfs/0.1.0".into(), key.public())
                .with_agent_version(concat!("dealport-client/", env!("CARGO_PKG_VERSION")).into()),
        );
        let behaviour = ClientBehaviour {
            identify,
            stream: libp2p_stream::Behaviour::new(),
        };
        let config = swarm::Config::without_executor()
            .with_idle_connection_timeout(Duration::from_secs(120));
        let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
        let control = swarm.behaviour().stream.new_control();
        let mut seen = Seen::default();

        let expected = addr.iter().find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        });
        let opts = match expected {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let unreachable = |reason: String| ClientError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        swarm
            .dial(opts)
            .map_err(|e| unreachable(super::dial_error_sentence(&e)))?;
        let outcome = timeout(
            timeouts.connect,
            wait_for(&mut swarm, &mut seen, |s| {
                s.connected.is_some() || s.dial_error.is_some()
            }),
        )
        .await;
        if outcome.is_none() {
            return Err(unreachable(format!(
                "no connection within {} s",
                timeouts.connect.as_secs()
            )));
        }
        let peer = match (seen.connected, seen.dial_error.take()) {
            (Some(p), _) => p,
            (None, Some(e)) => return Err(unreachable(e)),
            (None, None) => unreachable!("wait_for returned without an outcome"),
        };
        // Boost's client waits for identify before opening streams; so do we, briefly.
        let _ = timeout(
            timeouts.identify,
            wait_for(&mut swarm, &mut seen, |s| {
                s.identify.is_some() || s.identify_error.is_some() || s.closed.is_some()
            }),
        )
        .await;
        Ok(Session {
            swarm,
            control,
            seen,
            peer,
            addr: addr.clone(),
            timeouts,
        })
    }

    pub(crate) fn peer(&self) -> PeerId {
        self.peer
    }

    /// What identify told us (if it answered in time).
    pub(crate) fn info(&self) -> Option<PeerInfo> {
        self.seen.identify.as_ref().map(|i| PeerInfo {
            peer_id: self.peer.to_string(),
            agent_version: i.agent_version.clone(),
            protocol_version: i.protocol_version.clone(),
            protocols: i.protocols.iter().map(ToString::to_string).collect(),
            listen_addrs: i.listen_addrs.iter().map(ToString::to_string).collect(),
            observed_addr: i.observed_addr.to_string(),
        })
    }

    /// Fail early, as `boost deal` does, when identify says the protocol is not served.
    pub(crate) fn require(&self, protocol: &str) -> Result<(), ClientError> {
        match &self.seen.identify {
            Some(i) if !i.protocols.iter().any(|p| p.as_ref() == protocol) => {
                Err(ClientError::Unsupported {
                    peer: self.peer.to_string(),
                    protocol: protocol.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    /// One stream: write `request` (10 s), read exactly one CBOR item back (60 s).
    /// An empty `request` writes nothing (the transports protocol).
    pub(crate) async fn request(
        &mut self,
        protocol: &'static str,
        request: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let Session {
            swarm,
            control,
            seen,
            peer,
            timeouts,
            addr,
        } = self;
        let peer = *peer;
        let t = *timeouts;
        let proto = StreamProtocol::new(protocol);
        let addr = addr.to_string();
        let io = |what: &str, e: std::io::Error| ClientError::Stream {
            addr: addr.clone(),
            reason: format!("{what}: {}", io_sentence(&e)),
        };
        drive(swarm, seen, async {
            let mut stream = match timeout(t.write, control.open_stream(peer, proto)).await {
                None => {
                    return Err(ClientError::Timeout(format!(
                        "the provider did not open a {protocol} stream within {} s",
                        t.write.as_secs()
                    )))
                }
                Some(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))) => {
                    return Err(ClientError::Unsupported {
                        peer: peer.to_string(),
                        protocol: protocol.to_string(),
                    })
                }
                Some(Err(e)) => {
                    return Err(ClientError::Stream {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    })
                }
                Some(Ok(s)) => s,
            };
            let wrote = timeout(t.write, async {
                stream.write_all(request).await?;
                stream.flush().await
            })
            .await;
            match wrote {
                None => {
                    return Err(ClientError::Timeout(format!(
                        "could not send the request within {} s",
                        t.write.as_secs()
                    )))
                }
                Some(Err(e)) => return Err(io("sending the request", e)),
                Some(Ok(())) => {}
            }
            let read = timeout(t.read, read_one_item(&mut stream)).await;
            let out = match read {
                None => {
                    return Err(ClientError::Timeout(format!(
                        "no answer from the provider within {} s",
                        t.read.as_secs()
                    )))
                }
                Some(r) => r?,
            };
            let _ = timeout(Duration::from_secs(1), stream.close()).await;
            Ok(out)
        })
        .await
    }
}

/// Poll the swarm until `done(seen)` holds.
async fn wait_for(
    swarm: &mut Swarm<ClientBehaviour>,
    seen: &mut Seen,
    done: impl Fn(&Seen) -> bool,
) {
    while !done(seen) {
        let ev = swarm.select_next_some().await;
        seen.record(ev);
    }
}

/// Read until exactly one CBOR item has arrived; never waits for EOF after it. The one
/// reader of an MK12 answer, for the client and the load tool.
pub async fn read_one_item(stream: &mut libp2p::Stream) -> Result<Vec<u8>, ClientError> {
    let mut framer = Framer::new(DEFAULT_MAX_ITEM);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match framer.advance(&buf) {
            Ok(Frame::Complete(n)) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(Frame::NeedMore) => {}
            Err(e) => {
                return Err(ClientError::BadAnswer(format!(
                    "the provider's answer is not one CBOR item: {e}"
                )))
            }
        }
        let n = stream.read(&mut chunk).await.map_err(|e| {
            ClientError::NoAnswer(format!(
                "the stream failed before the answer arrived ({})",
                io_sentence(&e)
            ))
        })?;
        if n == 0 {
            return Err(ClientError::NoAnswer(if buf.is_empty() {
                "the provider closed the stream without answering (it could not decode the request or failed internally)".into()
            } else {
                format!(
                    "the provider closed the stream after {} bytes of an incomplete answer",
                    buf.len()
                )
            }));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
