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

use std::{sync::Arc, time::Duration};

use async_executor::Executor;
use dealport_client::read_one_item;
use dealport_node::p2p::{
    transport::{build_transport, Security, TransportConfig},
    Multiaddr, PROTOCOL_STATUS,
};
use futures::{AsyncWriteExt, StreamExt};
use libp2p::{
    swarm::{self, SwarmEvent},
    Swarm,
};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let answer: Arc<[u8]> = hex::decode(args.next().ok_or("usage: floor_peer <answer hex> [listen]")?)
        .map_err(|e| format!("the answer is not hex: {e}"))?
        .into();
    let listen: Multiaddr = args
        .next()
        .unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into())
        .parse()
        .map_err(|e| format!("listen address: {e}"))?;

    let ex: &'static Executor<'static> = Box::leak(Box::new(Executor::new()));
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
    let behaviour = libp2p_stream::Behaviour::new();
    let config = swarm::Config::with_executor(move |f| ex.spawn(f).detach())
        .with_idle_connection_timeout(Duration::from_secs(3600));
    let mut swarm = Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
    let mut incoming = swarm
        .behaviour()
        .new_control()
        .accept(PROTOCOL_STATUS)
        .map_err(|e| e.to_string())?;
    swarm.listen_on(listen).map_err(|e| e.to_string())?;
    let peer = *swarm.local_peer_id();

    ex.spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let answer = answer.clone();
            ex.spawn(async move {
                if read_one_item(&mut stream).await.is_ok() {
                    let _ = stream.write_all(&answer).await;
                }
                let _ = stream.close().await;
            })
            .detach();
        }
    })
    .detach();

    async_io::block_on(ex.run(async move {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                println!("{address}/p2p/{peer}");
            }
        }
    }))
}
