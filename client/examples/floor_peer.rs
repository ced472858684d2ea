//! The floor peer: rust-libp2p as dealport's host runs it (the node's TCP transport,
//! Noise or TLS as the dialer picks, yamux, one stream per request, an executor thread per
//! core) answering every status request with the same fixed bytes and doing no other work.
//! `scripts/bench` drives it with `dealport bench` in the same run as dealport, so the
//! difference in server CPU per request is what dealport does beyond its libp2p stack.
//!
//! ```text
//! floor_peer <answer hex> [listen multiaddr, default /ip4/127.0.0.1/tcp/0]
//! ```
//! prints `<listen address>/p2p/<peer id>` on stdout once listening.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use async_executor::Executor;
use dealport_client::read_one_item;
use dealport_node::p2p::{
    transport::{build_transport, Security, TransportConfig},
    Multiaddr, PROTOCOL_STATUS,
};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{
    core::{
        transport::PortUse,
        upgrade::{DeniedUpgrade, ReadyUpgrade},
        Endpoint,
    },
    swarm::{
        self,
        handler::{ConnectionEvent, FullyNegotiatedInbound},
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, Stream, SubstreamProtocol, SwarmEvent, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
    PeerId, StreamProtocol, Swarm,
};

type Ex = &'static Executor<'static>;

/// One status stream: read the request item, write the fixed answer, close. Spawned on
/// the executor as dealport's host spawns each stream it serves.
async fn answer(mut stream: Stream, answer: Arc<[u8]>) {
    if read_one_item(&mut stream).await.is_ok() {
        let _ = stream.write_all(&answer).await;
    }
    let _ = stream.close().await;
}

/// Accepts every status stream on its connection and spawns its answer.
struct FloorHandler {
    ex: Ex,
    answer: Arc<[u8]>,
}

impl ConnectionHandler for FloorHandler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL_STATUS), ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, Infallible, Infallible>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, DeniedUpgrade, (), Infallible>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            self.ex.spawn(answer(stream, self.answer.clone())).detach();
        }
    }
}

struct Floor {
    ex: Ex,
    answer: Arc<[u8]>,
}

impl Floor {
    fn handler(&self) -> FloorHandler {
        FloorHandler {
            ex: self.ex,
            answer: self.answer.clone(),
        }
    }
}

impl NetworkBehaviour for Floor {
    type ConnectionHandler = FloorHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler())
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let answer: Arc<[u8]> = hex::decode(
        args.next()
            .ok_or("usage: floor_peer <answer hex> [listen]")?,
    )
    .map_err(|e| format!("the answer is not hex: {e}"))?
    .into();
    let listen: Multiaddr = args
        .next()
        .unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into())
        .parse()
        .map_err(|e| format!("listen address: {e}"))?;

    let ex: Ex = Box::leak(Box::new(Executor::new()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    for _ in 1..threads {
        std::thread::spawn(|| async_io::block_on(ex.run(futures::future::pending::<()>())));
    }

    let key = libp2p::identity::Keypair::generate_ed25519();
    let transport = build_transport(
        &key,
        &TransportConfig {
            security: Security::NoiseAndTls,
            websocket: false,
            ..TransportConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let behaviour = Floor { ex, answer };
    let config = swarm::Config::with_executor(move |f| ex.spawn(f).detach())
        .with_idle_connection_timeout(Duration::from_secs(3600));
    let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
    swarm.listen_on(listen).map_err(|e| e.to_string())?;
    let peer = *swarm.local_peer_id();

    async_io::block_on(ex.run(async move {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                println!("{address}/p2p/{peer}");
            }
        }
    }))
}
