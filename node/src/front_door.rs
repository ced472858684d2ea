//! What this node tells its HTTP server: where the libp2p host listens for relayed
//! WebSockets, whether the node is healthy, and its banner.
//!
//! With one node (sled), the host always runs here and the relay hands each connection
//! to it in-process (crate::handoff). In cluster mode every node relays to the current
//! lease holder's internal WebSocket address, read from the shared store (only while its
//! lease is live); the holder itself hands over instead of dialing its own address.
//!
//! Layer: what the HTTP server serves, above the routes: uses `api`, `ui`, `mk12_http`,
//! `http`, `p2p` (address helpers), `store`, `metrics`. The lease loop sets its [`Role`].
use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Instant,
};

use libp2p::PeerId;
use serde_json::json;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::{
    api::Api,
    handoff::HandOffs,
    http::{BoxFuture, HttpBackend, HttpResponse, RelayRoute, StreamRoute},
    metrics::Metrics,
    mk12_http::Mk12Http,
    p2p::addr::relay_socket_addr,
    store::Store,
    ui::{RoleView, Ui},
};

/// How long `/health` and the relay's holder lookup wait for the store: `/health`
/// answers within a second whatever the database does.
const HEALTH_STORE_BOUND: std::time::Duration = std::time::Duration::from_millis(700);

/// What this node is doing, as the lease loop last set it: the one answer to "does this
/// node hold the lease and run the libp2p host?" that health, MK12-HTTP, the API and the
/// relay all read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Role {
    /// The lease generation this node last held.
    pub generation: u64,
    /// `Some` while this node holds the lease and its libp2p host runs.
    pub host: Option<RunningHost>,
}

/// The libp2p host this node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningHost {
    /// The host's own WebSocket listener as recorded in the store for other nodes'
    /// relays; `None` when the host listens on TCP only (then the relay is the one thing
    /// this node cannot serve).
    pub relay: Option<SocketAddr>,
}

impl Role {
    /// Does this node hold the lease and run the libp2p host?
    pub fn serving(&self) -> bool {
        self.host.is_some()
    }
}

/// Why a holder without a WebSocket listener refuses relay upgrades.
pub const NO_WS_LISTENER: &str = "this node runs the libp2p host without a WebSocket listener \
     (no /ws address in [libp2p] listen): dial it over TCP, the relay is not available";

/// The single-node front door.
pub struct FrontDoor {
    peer: PeerId,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Set by the lease loop on every acquisition and step-down.
    role: RwLock<Role>,
    /// MK12 over plain HTTP, served where deals are taken.
    mk12: Mk12Http,
    /// Cluster mode: relay to the holder named by the store.
    cluster: bool,
    /// The HTTP API under `/api/v1/` (absent: every API path is 404).
    api: Option<Api>,
    /// The piece URLs lotus-miner fetches from (`[sealing] mode = "lotus-miner"`).
    pieces: Option<Arc<crate::sealing::piece_url::PieceUrls>>,
    /// `/piece/<cid>` (absent, `serve_pieces` off: 404). Any node serves it.
    retrieval: Option<Arc<crate::retrieval::PieceServer>>,
    /// `/ipfs/<cid>`: blocks of the pieces `retrieval` serves (absent with it).
    ipfs: Option<Arc<crate::retrieval::IpfsServer>>,
    /// The IPNI publisher under `/ipni/v1/ad/` (absent, `[ipni] enable` off: 404).
    ipni: Option<Arc<crate::ipni::http::IpniHttp>>,
    /// The dashboard under `/ui/` (absent: 404).
    ui: Option<Ui>,
    /// Relayed connections given to this node's own host (crate::handoff).
    handoffs: Arc<HandOffs>,
}

/// Relayed connections waiting for this node's host to take them; more get a 503.
const HANDOFF_QUEUE: usize = 128;

impl FrontDoor {
    pub fn new(peer: PeerId, store: Arc<dyn Store>, metrics: Arc<Metrics>, mk12: Mk12Http) -> Self {
        FrontDoor {
            peer,
            store,
            metrics,
            role: RwLock::new(Role::default()),
            mk12,
            cluster: false,
            api: None,
            pieces: None,
            ipfs: None,
            retrieval: None,
            ipni: None,
            ui: None,
            handoffs: Arc::new(HandOffs::new(HANDOFF_QUEUE)),
        }
    }

    /// The queue this node's relay hands connections to its own host through.
    pub fn handoffs(&self) -> Arc<HandOffs> {
        self.handoffs.clone()
    }

    /// Serve the piece URLs under `/piece/`.
    pub fn with_pieces(mut self, pieces: Arc<crate::sealing::piece_url::PieceUrls>) -> Self {
        self.pieces = Some(pieces);
        self
    }

    /// Serve the HTTP API under `/api/v1/`.
    pub fn with_api(mut self, api: Api) -> Self {
        self.api = Some(api);
        self
    }

    /// Serve `/ipfs/<cid>` (with `/piece/`: `[retrieval] serve_pieces`), on every node.
    pub fn with_block_retrieval(mut self, blocks: Arc<crate::retrieval::IpfsServer>) -> Self {
        self.ipfs = Some(blocks);
        self
    }

    /// Serve the dashboard under `/ui/`, on every node.
    pub fn with_ui(mut self, ui: Ui) -> Self {
        self.ui = Some(ui);
        self
    }

    /// Serve `/piece/<cid>` (`[retrieval] serve_pieces`), on every node.
    pub fn with_piece_retrieval(mut self, pieces: Arc<crate::retrieval::PieceServer>) -> Self {
        self.retrieval = Some(pieces);
        self
    }

    /// Serve the IPNI advertisement chain under `/ipni/v1/ad/`, on every node.
    pub fn with_ipni(mut self, ipni: crate::ipni::http::IpniHttp) -> Self {
        self.ipni = Some(Arc::new(ipni));
        self
    }

    /// Cluster mode: relay to whichever node holds the lease (from the store).
    pub fn with_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// The lease loop's view: set on every acquisition (with the running host) and
    /// every step-down (without).
    pub fn set_role(&self, role: Role) {
        *self.role.write().unwrap_or_else(|e| e.into_inner()) = role;
    }

    pub fn role(&self) -> Role {
        *self.role.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Does this node hold the lease and run the libp2p host now?
    fn serving(&self) -> bool {
        self.role().serving()
    }
}

impl HttpBackend for FrontDoor {
    fn relay_target(&self) -> BoxFuture<Result<RelayRoute, String>> {
        let role = self.role();
        let handoffs = self.handoffs.clone();
        if self.cluster && role.host != Some(RunningHost { relay: None }) {
            // The store names the holder; when that is this node's own listener, the
            // connection is handed over instead of dialed.
            let own = role.host.and_then(|h| h.relay);
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
                    Ok(Some(t)) if t.live => match relay_socket_addr(&t.local_listen) {
                        Some(addr) if Some(addr) == own => Ok(RelayRoute::HandOff(handoffs)),
                        Some(addr) => Ok(RelayRoute::Dial(addr)),
                        None => Err(format!(
                            "the lease holder's address {} is not usable",
                            t.local_listen
                        )),
                    },
                    Ok(_) => Err("no node holds the lease right now, retry".to_owned()),
                    Err(e) => Err(format!("cannot find the lease holder: {e}")),
                }
            });
        }
        let target = match role.host {
            Some(RunningHost { relay: Some(_) }) => Ok(RelayRoute::HandOff(handoffs)),
            Some(RunningHost { relay: None }) => Err(NO_WS_LISTENER.to_owned()),
            None => Err("the libp2p host is not running on this node".to_owned()),
        };
        Box::pin(async move { target })
    }

    fn health(&self) -> BoxFuture<(bool, serde_json::Value)> {
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let peer = self.peer.to_string();
        let role = self.role();
        let serving = role.serving();
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
                "role": if serving { "leader" } else { "standby" },
                "peer_id": peer,
                "lease_generation": role.generation,
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
        if let Some(r) = self
            .pieces
            .as_ref()
            .and_then(|p| p.route(method, path, headers))
        {
            return Some(r);
        }
        if crate::retrieval::PieceServer::is_piece_path(path) {
            return self
                .retrieval
                .as_ref()
                .map(|p| p.route(method, path, headers));
        }
        if crate::retrieval::IpfsServer::is_ipfs_path(path) {
            return self.ipfs.as_ref().map(|b| b.route(method, path, headers));
        }
        if crate::ipni::http::IpniHttp::is_ipni_path(path) {
            return self.ipni.as_ref().map(|p| p.route(method, path, headers));
        }
        if !Api::is_api_path(path) {
            return None;
        }
        let api = self.api.as_ref()?;
        Some(api.dispatch(method, path, headers, client_ip, self.serving()))
    }

    fn stream_route_with_query(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        client_ip: std::net::IpAddr,
    ) -> Option<StreamRoute> {
        if Ui::is_ui_path(path) {
            let ui = self.ui.as_ref()?;
            let role = self.role();
            let view = RoleView {
                serving: role.serving(),
                generation: role.generation,
            };
            return Some(ui.dispatch(method, path, query, headers, view));
        }
        // `/ipfs/` reads its query (`format`, `dag-scope`): it gets the request target.
        if crate::retrieval::IpfsServer::is_ipfs_path(path) && !query.is_empty() {
            let target = format!("{path}?{query}");
            return self
                .ipfs
                .as_ref()
                .map(|b| b.route(method, &target, headers));
        }
        self.stream_route(method, path, headers, client_ip)
    }

    fn banner(&self) -> String {
        format!(
            "dealport {}: Filecoin MK12 storage deals over libp2p\nPeerID {}\n",
            env!("CARGO_PKG_VERSION"),
            self.peer
        )
    }
}
