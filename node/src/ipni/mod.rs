//! IPNI on the lease holder: every deal whose piece is indexed gets an advertisement of
//! its blocks on the chain kept in the store, announced to `[ipni] announce_urls`; a
//! deal that fails or ends after being announced gets a removal. The chain is served
//! under `/ipni/v1/ad/` by [`http::IpniHttp`] on every node. Decisions are core's
//! `ipni::plan`; objects are core's `ipni` builders; this module reads the store, signs
//! with the node's libp2p key ([`KeySigner`]) and writes the chain through the fenced
//! [`Store::publish_ipni_ad`](crate::store::Store::publish_ipni_ad).
//!
//! Layer: beside `sealing`, above the service: uses `service`, `store`, `config`,
//! `runtime`, `api` (the HTTP error mapping), `outbound`.
pub mod announce;
pub mod http;
mod task;

use std::{sync::Arc, sync::RwLock, time::Duration};

use dealport_core::{
    ipni::{envelope::Signer, TRANSPORT_FILECOIN_PIECE_HTTP, TRANSPORT_IPFS_GATEWAY_HTTP},
    wire::Cid,
};
use libp2p::{identity::Keypair, multiaddr::Protocol, Multiaddr, PeerId};

use crate::{config::Config, runtime::LeaderTask, service::DealService};
use announce::{AnnounceSettings, Announcer};

/// The node's libp2p key as core's [`Signer`].
pub struct KeySigner(pub Keypair);

impl Signer for KeySigner {
    fn public_key(&self) -> Vec<u8> {
        self.0.public().encode_protobuf()
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        // Ed25519 signing cannot fail; other key types are never stored here.
        self.0.sign(msg).unwrap_or_default()
    }
}

/// `[ipni]` as the node uses it.
#[derive(Debug, Clone)]
pub struct IpniSettings {
    pub topic: String,
    /// Configured addresses; empty: [`Ipni::set_http_address`] gives them.
    pub addresses: Vec<Multiaddr>,
    pub announce: AnnounceSettings,
    pub poll: Duration,
    /// The transports the advertisements name (multicodec codes).
    pub transports: Vec<u64>,
}

impl IpniSettings {
    pub fn from_config(c: &Config) -> Result<IpniSettings, String> {
        let i = &c.ipni;
        // An advertisement names the transports that serve its blocks; both are this
        // node's `[retrieval]` routes, so without them it would point indexers at nothing.
        if !c.retrieval.serve_pieces {
            return Err(
                "[ipni] enable = true needs [retrieval] serve_pieces = true: an \
                 advertisement names the transports that serve its blocks (/ipfs/ and \
                 /piece/), and without serve_pieces this node serves neither"
                    .to_owned(),
            );
        }
        let transports = vec![TRANSPORT_IPFS_GATEWAY_HTTP, TRANSPORT_FILECOIN_PIECE_HTTP];
        Ok(IpniSettings {
            topic: i.topic.clone(),
            addresses: i.addresses.clone(),
            announce: AnnounceSettings {
                urls: announce::announce_urls(&i.announce_urls)?,
                timeout: Duration::from_secs(i.announce_timeout_secs.max(1)),
                attempts: i.announce_attempts.max(1),
            },
            poll: Duration::from_secs(i.poll_secs.max(1)),
            transports,
        })
    }
}

/// The IPNI publisher's shared state.
pub struct Ipni {
    service: DealService,
    signer: KeySigner,
    peer: PeerId,
    settings: IpniSettings,
    /// Where the chain and `/ipfs/` are reachable.
    addresses: RwLock<Vec<Multiaddr>>,
    announcer: Announcer,
}

impl Ipni {
    pub fn new(service: DealService, key: Keypair, settings: IpniSettings) -> Arc<Ipni> {
        Arc::new(Ipni {
            service,
            peer: key.public().to_peer_id(),
            signer: KeySigner(key),
            addresses: RwLock::new(settings.addresses.clone()),
            announcer: Announcer::new(settings.announce.clone()),
            settings,
        })
    }

    /// This node's HTTP address for clients, once known: used when `[ipni] addresses`
    /// is empty.
    pub fn set_http_address(&self, own: Option<Multiaddr>) {
        let mut a = self.addresses.write().unwrap_or_else(|e| e.into_inner());
        if self.settings.addresses.is_empty() {
            *a = own.into_iter().collect();
        }
    }

    fn addresses(&self) -> Vec<Multiaddr> {
        self.addresses
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The announce message's addresses: each address with `/p2p/<peer>` (how the
    /// publisher's ID travels over HTTP announcements).
    fn announce_addrs(&self) -> Vec<Vec<u8>> {
        self.addresses()
            .into_iter()
            .map(|a| a.with(Protocol::P2p(self.peer)).to_vec())
            .collect()
    }

    fn queue_announce(&self, ad: &Cid) {
        let msg = dealport_core::ipni::announce_json(ad, &self.announce_addrs());
        self.announcer.queue(ad.clone(), msg);
    }

    pub fn topic(&self) -> &str {
        &self.settings.topic
    }

    pub fn signer(&self) -> &KeySigner {
        &self.signer
    }
}

/// The publisher as a [`LeaderTask`].
pub fn leader_task(ipni: Arc<Ipni>) -> LeaderTask {
    Box::new(move || {
        let ipni = ipni.clone();
        Box::pin(async move { ipni.run().await })
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(extra: &str) -> Result<IpniSettings, String> {
        let text = format!("[ipni]\nenable = true\n{extra}");
        IpniSettings::from_config(&Config::parse(&text, Path::new("t.toml")).unwrap())
    }

    #[test]
    fn advertising_needs_the_routes_that_serve_the_blocks() {
        let e = settings("").unwrap_err();
        assert!(e.contains("[retrieval] serve_pieces = true"), "{e}");
        let s = settings("[retrieval]\nserve_pieces = true\n").unwrap();
        assert_eq!(
            s.transports,
            [TRANSPORT_IPFS_GATEWAY_HTTP, TRANSPORT_FILECOIN_PIECE_HTTP]
        );
    }
}
