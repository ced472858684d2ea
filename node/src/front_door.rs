//! What this node tells its HTTP server: where the libp2p host listens for relayed
//! WebSockets, whether the node is healthy, and its banner.
//!
//! With one node (sled), the host always runs here and the relay goes to it. In cluster
//! mode every node relays to the current lease holder's internal WebSocket address, read
//! from the shared store (only while its lease is live).
use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Instant,
};

use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use serde_json::json;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::{
    api::Api,
    http::{BoxFuture, HttpBackend, HttpResponse, StreamRoute},
    metrics::Metrics,
    mk12_http::Mk12Http,
    store::Store,
};

/// How long `/health` and the relay's holder lookup wait for the store: `/health`
/// answers within a second whatever the database does.
const HEALTH_STORE_BOUND: std::time::Duration = std::time::Duration::from_millis(700);

/// The single-node front door.
pub struct FrontDoor {
    peer: PeerId,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// The host's own WebSocket listener, while the host runs.
    relay_target: RwLock<Option<SocketAddr>>,
    /// MK12 over plain HTTP, served where deals are taken.
    mk12: Mk12Http,
    /// Cluster mode: relay to the holder named by the store.
    cluster: bool,
    /// `(leader, generation)` as the lease loop last set it.
    lease: RwLock<Option<(bool, u64)>>,
    /// The HTTP API under `/api/v1/` (absent: every API path is 404).
    api: Option<Api>,
}

impl FrontDoor {
    pub fn new(peer: PeerId, store: Arc<dyn Store>, metrics: Arc<Metrics>, mk12: Mk12Http) -> Self {
        FrontDoor {
            peer,
            store,
            metrics,
            relay_target: RwLock::new(None),
            mk12,
            cluster: false,
            lease: RwLock::new(None),
            api: None,
        }
    }

    /// Serve the HTTP API under `/api/v1/`.
    pub fn with_api(mut self, api: Api) -> Self {
        self.api = Some(api);
        self
    }

    /// Does this node run the libp2p host (hold the lease) now?
    fn serving(&self) -> bool {
        self.relay_target
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Cluster mode: relay to whichever node holds the lease (from the store).
    pub fn with_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// The lease loop's view: whether this node leads, and the generation.
    pub fn set_lease(&self, leader: bool, generation: u64) {
        *self.lease.write().unwrap_or_else(|e| e.into_inner()) = Some((leader, generation));
    }

    /// The host started (`Some`, its WebSocket listener) or stopped (`None`).
    pub fn set_relay_target(&self, target: Option<SocketAddr>) {
        *self.relay_target.write().unwrap_or_else(|e| e.into_inner()) = target;
    }
}

/// The WebSocket listener to relay to, from the host's listen addresses: the loopback
/// one if there is one (the relay runs on this machine), else the first.
pub fn ws_socket_addr(listen: &[Multiaddr]) -> Option<SocketAddr> {
    let ws: Vec<SocketAddr> = listen
        .iter()
        .filter_map(|a| {
            let mut ip = None;
            let mut port = None;
            let mut is_ws = false;
            for p in a.iter() {
                match p {
                    Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(v)),
                    Protocol::Ip6(v) => ip = Some(std::net::IpAddr::V6(v)),
                    Protocol::Tcp(n) => port = Some(n),
                    Protocol::Ws(_) => is_ws = true,
                    _ => {}
                }
            }
            Some(SocketAddr::new(ip?, port?)).filter(|_| is_ws)
        })
        .collect();
    ws.iter()
        .find(|s| s.ip().is_loopback())
        .or(ws.first())
        .copied()
}

impl HttpBackend for FrontDoor {
    fn relay_target(&self) -> BoxFuture<Result<SocketAddr, String>> {
        let target = *self.relay_target.read().unwrap_or_else(|e| e.into_inner());
        if self.cluster {
            let store = self.store.clone();
            return Box::pin(async move {
                let found = crate::runtime::timeout(HEALTH_STORE_BOUND, store.relay_target())
                    .await
                    .unwrap_or_else(|| {
                        Err(crate::store::StoreError::Backend(
                            "the database did not answer in time".into(),
                        ))
                    });
                match found {
                    Ok(Some(t)) if t.live => crate::cluster::relay_socket_addr(&t.local_listen)
                        .ok_or_else(|| {
                            format!(
                                "the lease holder's address {} is not usable",
                                t.local_listen
                            )
                        }),
                    Ok(_) => Err("no node holds the lease right now, retry".to_owned()),
                    Err(e) => Err(format!("cannot find the lease holder: {e}")),
                }
            });
        }
        Box::pin(async move {
            target.ok_or_else(|| "the libp2p host is not running on this node".to_owned())
        })
    }

    fn health(&self) -> BoxFuture<(bool, serde_json::Value)> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let peer = self.peer.to_string();
        let serving = self
            .relay_target
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let lease = *self.lease.read().unwrap_or_else(|e| e.into_inner());
        let (leader, generation) = lease.unwrap_or((serving, 0));
        let cluster = self.cluster;
        Box::pin(async move {
            let started = Instant::now();
            // Bounded: a database that drops packets must not hold /health.
            let store_ok = crate::runtime::timeout(HEALTH_STORE_BOUND, store.identity())
                .await
                .is_some_and(|r| r.is_ok());
            metrics.store_latency("health", started.elapsed().as_secs_f64());
            let (db_host, db_writable) = store
                .server()
                .map_or((None, None), |(h, w)| (Some(h), Some(w)));
            metrics.set_db_server(db_host.as_deref(), db_writable);
            // A standby is healthy in a cluster: its relay reaches the holder.
            let ok = store_ok && (serving || cluster);
            let body = json!({
                "role": if leader { "leader" } else { "standby" },
                "peer_id": peer,
                "lease_generation": generation,
                "cluster": cluster,
                "store_ok": store_ok,
                "db_host": db_host,
                "db_writable": db_writable,
                "libp2p_host": serving,
            });
            (ok, body)
        })
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
        client_ip: std::net::IpAddr,
    ) -> Option<BoxFuture<HttpResponse>> {
        // Deals are taken only where the libp2p host runs (the lease holder); a standby
        // answers 503 with the reason rather than deciding with a stale view.
        if !self.serving() && crate::mk12_http::is_mk12_path(path) {
            let r = crate::mk12_http::standby_response();
            return Some(Box::pin(async move { r }));
        }
        self.mk12.route(method, path, headers, body, client_ip)
    }

    fn stream_route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        client_ip: std::net::IpAddr,
    ) -> Option<StreamRoute> {
        if !Api::is_api_path(path) {
            return None;
        }
        let api = self.api.as_ref()?;
        Some(api.dispatch(method, path, headers, client_ip, self.serving()))
    }

    fn banner(&self) -> String {
        format!(
            "dealport {}: Filecoin MK12 storage deals over libp2p\nPeerID {}\n",
            env!("CARGO_PKG_VERSION"),
            self.peer
        )
    }
}
