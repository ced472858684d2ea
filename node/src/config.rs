//! The TOML configuration: every key has a default, unknown keys are errors, and every
//! error is one sentence naming the file, the line and the key.
//!
//! Layer: configuration: uses `p2p` and `http` for their config types only.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use dealport_core::{
    facts::{AskTerms, ClientFilter, Policy},
    wire::{Address, Network, Protocol, TokenAmount},
};
use libp2p::Multiaddr;
use serde::{de, Deserialize, Deserializer};

use crate::p2p::{HostConfig, Limits};

/// Unix time of mainnet's genesis block (2020-08-24 22:00:00 UTC).
pub const MAINNET_GENESIS_UNIX: i64 = 1_598_306_400;
/// Unix time of calibnet's genesis block (2021-02-19 23:10:00 UTC).
pub const CALIBNET_GENESIS_UNIX: i64 = 1_613_776_200;
/// Seconds per epoch on every Filecoin network.
pub const EPOCH_SECONDS: i64 = 30;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the store lives. `--data-dir` wins over this.
    pub data_dir: Option<PathBuf>,
    /// `"sled"` (the embedded store in the data dir) or a `postgres://…` URL (cluster
    /// mode). `dealport run --store` wins over this.
    pub store: String,
    pub cluster: ClusterConfig,
    pub libp2p: Libp2pConfig,
    pub http: HttpConfig,
    pub chain: ChainConfig,
    pub miners: Vec<MinerConfig>,
    pub policy: PolicyConfig,
    pub limits: LimitsConfig,
    pub transfer: TransferConfig,
    pub api: ApiConfig,
    pub publish: PublishConfig,
    /// `[sealing]`: who takes published deals on (see `crate::sealing`).
    pub sealing: SealingConfig,
    pub retrieval: RetrievalConfig,
    pub ipni: IpniConfig,
    /// `[ui]`: the operator's dashboard at `/ui/` (behind `[api] token`).
    pub ui: UiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: None,
            store: "sled".to_owned(),
            cluster: ClusterConfig::default(),
            libp2p: Libp2pConfig::default(),
            http: HttpConfig::default(),
            chain: ChainConfig::default(),
            miners: Vec::new(),
            policy: PolicyConfig::default(),
            limits: LimitsConfig::default(),
            transfer: TransferConfig::default(),
            api: ApiConfig::default(),
            publish: PublishConfig::default(),
            sealing: Default::default(),
            retrieval: RetrievalConfig::default(),
            ipni: IpniConfig::default(),
            ui: UiConfig::default(),
        }
    }
}

/// `[transfer]`: downloading online deals' data and importing offline deals' data.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    /// Where partial and finished downloads live. Default `<data dir>/staging`.
    pub staging_dir: Option<PathBuf>,
    /// Downloads running at once.
    pub max_concurrent: usize,
    /// Cap on all downloads together, bytes per second (0: no cap).
    pub max_bytes_per_sec: u64,
    /// Allow URLs that resolve to loopback, private, link-local, CGNAT or other
    /// non-public addresses (SSRF protection off; for tests and private networks).
    pub allow_private_addresses: bool,
    /// Bound on connecting (and the TLS handshake) to a data server.
    pub connect_timeout_secs: u64,
    /// A download that receives nothing for this long counts as a dropped connection.
    pub idle_timeout_secs: u64,
    /// Dropped connections retried (with `Range`) before the deal fails.
    pub max_retries: u32,
    /// First back-off between retries; doubled each time, at most a minute.
    pub retry_backoff_ms: u64,
    /// Keep staging files after the deal no longer needs them.
    pub keep_staging: bool,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            staging_dir: None,
            max_concurrent: 4,
            max_bytes_per_sec: 0,
            allow_private_addresses: false,
            connect_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_retries: 5,
            retry_backoff_ms: 1000,
            keep_staging: false,
        }
    }
}

impl TransferConfig {
    /// The staging directory: the configured one, else `<data_dir>/staging`.
    pub fn staging_dir(&self, data_dir: &Path) -> PathBuf {
        self.staging_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("staging"))
    }
}

/// `[ipni]`: advertising each deal's blocks to IPNI, the network indexer (`ipni/`,
/// docs/ipni.md).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IpniConfig {
    /// Advertise indexed deals and serve the chain under `/ipni/v1/ad/`; the deal then
    /// reaches `IndexedAndAnnounced` before `Complete`.
    pub enable: bool,
    /// Indexers' announce endpoints (`https://cid.contact/announce`); a URL without a
    /// path gets `/announce`. Empty: nobody is told; indexers that know this publisher
    /// still poll the head.
    pub announce_urls: Vec<String>,
    /// The topic the signed head names.
    pub topic: String,
    /// Where indexers fetch the chain and clients fetch blocks (`/ipfs/`), as
    /// multiaddrs (`/dns/sp.example.com/tcp/443/https`). Empty: this node's HTTP address
    /// as `[retrieval]` works it out.
    pub addresses: Vec<Multiaddr>,
    /// Bound on one announce request.
    pub announce_timeout_secs: u64,
    /// Attempts per announcement (the first included), with doubling back-off.
    pub announce_attempts: u32,
    /// How often the lease holder looks for deals to advertise or remove.
    pub poll_secs: u64,
}

impl Default for IpniConfig {
    fn default() -> Self {
        IpniConfig {
            enable: false,
            announce_urls: Vec::new(),
            topic: dealport_core::ipni::DEFAULT_TOPIC.to_owned(),
            addresses: Vec::new(),
            announce_timeout_secs: 10,
            announce_attempts: 5,
            poll_secs: 10,
        }
    }
}

/// `[retrieval]`: the endpoints the retrieval transports answer lists, and `/piece/`
/// (`retrieval/`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Serve `GET`/`HEAD /piece/<pieceCid>` on the HTTP server.
    pub serve_pieces: bool,
    /// When a deal's piece is in a sector, move its staged data into `piece_dir` instead
    /// of deleting it, so `/piece/` can still serve it.
    pub keep_pieces: bool,
    /// Where kept pieces live (`<piece CID>` files). Default `<data dir>/pieces`.
    pub piece_dir: Option<PathBuf>,
    /// This node's HTTP server as clients reach it (listed as `http` when serving pieces
    /// and no `http` endpoint is configured). Unset: see `retrieval::transports::own_http`.
    pub http_announce: Option<Multiaddr>,
    /// `http` retrieval endpoints (`/dns/sp.example.com/tcp/443/https`): booster-http,
    /// Curio, or this node behind a TLS proxy.
    pub http: Vec<Multiaddr>,
    /// `libp2p` (graphsync) endpoints of another retrieval server. dealport serves none.
    pub libp2p: Vec<Multiaddr>,
    /// `bitswap` endpoints of another retrieval server. dealport serves none.
    pub bitswap: Vec<Multiaddr>,
}

impl RetrievalConfig {
    /// The piece store directory, when pieces are kept.
    pub fn kept_piece_dir(&self, data_dir: &Path) -> Option<PathBuf> {
        self.keep_pieces.then(|| {
            self.piece_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("pieces"))
        })
    }
}

/// `[publish]`: PublishStorageDeals batching (Curio's `MK12.PublishMsgPeriod`,
/// `MaxDealsPerPublishMsg`, `MaxPublishDealFee`: 5 minutes, 8, 0.5 FIL).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// The wallet that sends PublishStorageDeals; empty: each miner's worker address.
    /// It must be the miner's worker or a control address (the market actor checks).
    #[serde(deserialize_with = "de_opt_address")]
    pub wallet: Option<Address>,
    /// Deals per message at most.
    pub max_deals_per_message: usize,
    /// A deal waits at most this long for others to share its message.
    pub period_secs: u64,
    /// Max fee of one PublishStorageDeals message, attoFIL.
    #[serde(deserialize_with = "de_amount")]
    pub max_fee: TokenAmount,
    /// How often waiting deals and sent messages are checked.
    pub poll_secs: u64,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            wallet: None,
            max_deals_per_message: 8,
            period_secs: 300,
            max_fee: TokenAmount(num_bigint::BigInt::from(500_000_000_000_000_000u64)),
            poll_secs: 30,
        }
    }
}

/// `[api]`: the HTTP API under `/api/v1/` (offline import, deal state, sealing hand-off).
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The bearer token every API request must carry. Empty: the API is off.
    pub token: String,
}

// By hand so that logging the config never shows the token.
impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ApiConfig").field("token", &token).finish()
    }
}

/// `[ui]`: the operator's dashboard at `/ui/`, on when `[api] token` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// How long a login lasts. Default 8 hours.
    pub session_ttl_secs: u64,
    /// How often the pages' live values are polled, in milliseconds. Default 2000.
    pub refresh_ms: u64,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            session_ttl_secs: 8 * 3600,
            refresh_ms: 2000,
        }
    }
}

/// Whether `store` names the cluster backend.
pub fn is_postgres_url(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// `[cluster]`: the leader lease (only matters with a `postgres://` store).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's name in the lease row. Default: `hostname:pid`.
    pub node_id: Option<String>,
    pub lease_ttl_ms: u64,
    pub renew_ms: u64,
    pub poll_ms: u64,
    /// The IP address other nodes' relays use to reach this node's WebSocket listener.
    pub internal_ws_host: std::net::IpAddr,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let d = dealport_core::lease::LeaseConfig::default();
        ClusterConfig {
            node_id: None,
            lease_ttl_ms: d.ttl.as_millis() as u64,
            renew_ms: d.renew_interval.as_millis() as u64,
            poll_ms: d.poll_interval.as_millis() as u64,
            internal_ws_host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }
}

impl ClusterConfig {
    /// The lease timing; the safety margin is a fifth of the TTL, at most 3 s.
    pub fn lease_config(&self) -> dealport_core::lease::LeaseConfig {
        let ttl = Duration::from_millis(self.lease_ttl_ms);
        dealport_core::lease::LeaseConfig {
            ttl,
            renew_interval: Duration::from_millis(self.renew_ms),
            poll_interval: Duration::from_millis(self.poll_ms),
            safety_margin: (ttl / 5).min(Duration::from_secs(3)),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Libp2pConfig {
    #[serde(deserialize_with = "de_multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// What peers are told to dial (identify, transports). Empty: the listen addresses.
    #[serde(deserialize_with = "de_multiaddrs")]
    pub announce: Vec<Multiaddr>,
}

impl Default for Libp2pConfig {
    fn default() -> Self {
        Libp2pConfig {
            listen: HostConfig::default().listen,
            announce: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The HTTP server: WebSocket relay at `/libp2p` and `/`, `/health`, `/metrics`.
    pub listen: SocketAddr,
    /// A relayed WebSocket spliced to another node's host with no frame either way for
    /// this long is closed (a connection handed to this node's own host has the host's
    /// limits instead).
    pub relay_idle_timeout_secs: u64,
    /// Relayed WebSockets open at once; more upgrades get 503.
    pub max_relays: usize,
    /// MK12 over HTTP (`/market/mk12/…`): requests per second per client IP (Curio: 50).
    pub mk12_requests_per_second: u32,
    /// HTTP connections at once (relays included); more are closed on accept.
    pub max_connections: usize,
    /// Time for a request head to arrive (slowloris bound, also the keep-alive idle).
    pub header_timeout_secs: u64,
    /// Largest request head (request line and headers).
    pub max_header_bytes: usize,
    /// Time to read a routed request's body and answer it.
    pub request_timeout_secs: u64,
    /// Largest request body read for a route (MK12 over HTTP).
    pub max_body_bytes: usize,
    /// Bytes of such bodies held at once over all requests; more get 503.
    pub max_body_bytes_total: usize,
    /// TLS proxies (their IP addresses) whose `X-Forwarded-For` names the client: for the
    /// relay (the host's per-IP limits) and the routes. Default none.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// The least head buffer hyper accepts (its `MINIMUM_MAX_BUFFER_SIZE`).
const MIN_HEADER_BYTES: usize = 8192;

impl Default for HttpConfig {
    fn default() -> Self {
        let d = crate::http::HttpConfig::default();
        HttpConfig {
            listen: d.listen,
            relay_idle_timeout_secs: d.relay_idle_timeout.as_secs(),
            max_relays: d.max_relays,
            mk12_requests_per_second: 50,
            max_connections: d.max_connections,
            header_timeout_secs: d.header_timeout.as_secs(),
            max_header_bytes: d.max_header_bytes,
            request_timeout_secs: d.request_timeout.as_secs(),
            max_body_bytes: d.max_body,
            max_body_bytes_total: d.max_body_total,
            trusted_proxies: d.trusted_proxies,
        }
    }
}

impl HttpConfig {
    /// The server's settings: these knobs, the rest at their defaults.
    pub fn server_config(&self) -> crate::http::HttpConfig {
        crate::http::HttpConfig {
            listen: self.listen,
            relay_idle_timeout: Duration::from_secs(self.relay_idle_timeout_secs),
            max_relays: self.max_relays,
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            max_header_bytes: self.max_header_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            max_body: self.max_body_bytes,
            max_body_total: self.max_body_bytes_total,
            trusted_proxies: self.trusted_proxies.clone(),
            ..crate::http::HttpConfig::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChainMode {
    /// Epoch from the genesis time, facts from this file.
    #[default]
    Offline,
    /// Facts from a Lotus node over JSON-RPC v1 (`[chain.lotus]`).
    Lotus,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkName {
    #[default]
    Mainnet,
    Calibnet,
}

impl NetworkName {
    pub fn genesis_unix(self) -> i64 {
        match self {
            NetworkName::Mainnet => MAINNET_GENESIS_UNIX,
            NetworkName::Calibnet => CALIBNET_GENESIS_UNIX,
        }
    }
    /// The address prefix (`f` / `t`).
    pub fn address_network(self) -> Network {
        match self {
            NetworkName::Mainnet => Network::Mainnet,
            NetworkName::Calibnet => Network::Testnet,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            NetworkName::Mainnet => "mainnet",
            NetworkName::Calibnet => "calibnet",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    pub mode: ChainMode,
    pub network: NetworkName,
    pub offline: OfflineConfig,
    pub lotus: LotusConfig,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LotusConfig {
    /// Lotus JSON-RPC v1 endpoint, e.g. `http://127.0.0.1:1234/rpc/v1`. Empty: taken
    /// from `FULLNODE_API_INFO` (`<token>:/ip4/<ip>/tcp/<port>/http`).
    pub url: String,
    /// API token (`lotus auth create-token --perm sign`). Empty: from `FULLNODE_API_INFO`.
    pub token: String,
    /// Limit for one JSON-RPC call.
    pub call_timeout_ms: u64,
    /// All chain facts for one proposal are gathered within this budget; a fact not in
    /// by then becomes a `server error: …` rejection. Keep it below
    /// `limits.proposal_budget_ms`.
    pub facts_budget_ms: u64,
    /// The chain head is re-read at most this often.
    pub head_refresh_ms: u64,
    /// Max fee of a ChangePeerID / ChangeMultiaddrs message, attoFIL (Curio: 0.02 FIL).
    #[serde(deserialize_with = "de_amount")]
    pub max_fee: TokenAmount,
    /// How often the miners' on-chain PeerID and multiaddrs are checked (0: only at start).
    pub miner_info_check_secs: u64,
}

impl Default for LotusConfig {
    fn default() -> Self {
        LotusConfig {
            url: String::new(),
            token: String::new(),
            call_timeout_ms: 5000,
            facts_budget_ms: 6000,
            head_refresh_ms: 3000,
            max_fee: TokenAmount(num_bigint::BigInt::from(20_000_000_000_000_000u64)),
            miner_info_check_secs: 3600,
        }
    }
}

/// What the offline chain says about a client that is not in `clients`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownClient {
    /// No escrow, no datacap: only free, unverified deals pass.
    #[default]
    Zero,
    /// Unlimited escrow and datacap (testing only).
    Unlimited,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OfflineConfig {
    /// TESTING ONLY: pretend the chain head is at this epoch instead of the one computed
    /// from the genesis time (lets old proposals, e.g. golden vectors, be accepted).
    pub head_epoch_override: Option<i64>,
    /// StateDealProviderCollateralBounds min, attoFIL (one value for every piece size).
    #[serde(deserialize_with = "de_amount")]
    pub provider_collateral_min: TokenAmount,
    pub unknown_client: UnknownClient,
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client address as proposals carry it (f0, f1, f3 or f4).
    #[serde(deserialize_with = "de_address")]
    pub address: Address,
    /// Its key address (f1/f3). Default: `address` itself when that is f1/f3.
    #[serde(default, deserialize_with = "de_opt_address")]
    pub key: Option<Address>,
    /// Market escrow, attoFIL.
    #[serde(default, deserialize_with = "de_amount")]
    pub escrow: TokenAmount,
    /// Market locked funds, attoFIL.
    #[serde(default, deserialize_with = "de_amount")]
    pub locked: TokenAmount,
    /// Verified-client datacap in bytes. Absent: not a verified client.
    #[serde(default, deserialize_with = "de_opt_amount")]
    pub datacap: Option<TokenAmount>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MinerConfig {
    /// The miner actor's ID address (f0…).
    #[serde(deserialize_with = "de_address")]
    pub address: Address,
    /// Refuse its deals ("Libp2p is disabled for the provider").
    #[serde(default)]
    pub disabled: bool,
    /// Its asking terms; absent: no ask check.
    #[serde(default)]
    pub ask: Option<AskConfig>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AskConfig {
    /// attoFIL per GiB per epoch.
    #[serde(default, deserialize_with = "de_amount")]
    pub price: TokenAmount,
    /// attoFIL per GiB per epoch, verified deals.
    #[serde(default, deserialize_with = "de_amount")]
    pub verified_price: TokenAmount,
    #[serde(default = "default_min_piece")]
    pub min_piece_size: u64,
    #[serde(default = "default_max_piece")]
    pub max_piece_size: u64,
}

fn default_min_piece() -> u64 {
    256
}
fn default_max_piece() -> u64 {
    64 << 30
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub deny_online: bool,
    pub deny_offline: bool,
    /// Only these clients may make deals (empty: anyone not denied).
    #[serde(deserialize_with = "de_addresses")]
    pub allow_clients: Vec<Address>,
    /// These clients may not make deals.
    #[serde(deserialize_with = "de_addresses")]
    pub deny_clients: Vec<Address>,
    pub max_label_bytes: usize,
    pub sealing_buffer_epochs: i64,
    pub max_start_delay_epochs: i64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = Policy::default();
        PolicyConfig {
            deny_online: p.deny_online,
            deny_offline: p.deny_offline,
            allow_clients: Vec::new(),
            deny_clients: Vec::new(),
            max_label_bytes: p.max_label_bytes,
            sealing_buffer_epochs: p.sealing_buffer_epochs,
            max_start_delay_epochs: p.max_start_delay_epochs,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_streams_per_peer: usize,
    pub max_streams_total: usize,
    pub max_streams_per_ip: usize,
    pub max_connections_total: usize,
    pub max_connections_per_peer: usize,
    pub max_connections_per_ip: usize,
    /// Whether connections from loopback addresses (a TLS proxy on this machine whose
    /// forwarded-for is not trusted, local tools) are exempt from the per-IP limits.
    pub per_ip_exempt_loopback: bool,
    /// Inbound connections still in their security/muxer handshake.
    pub max_pending_connections: usize,
    pub handshake_timeout_ms: u64,
    /// Largest request item (the framer's cap: bytes buffered per stream).
    pub max_request_bytes: usize,
    /// Bytes buffered by all streams at once while reading requests.
    pub max_buffered_bytes_total: usize,
    /// The same for the streams of one peer.
    pub max_buffered_bytes_per_peer: usize,
    /// The same for the streams of one IP address (loopback exempt).
    pub max_buffered_bytes_per_ip: usize,
    pub first_byte_deadline_ms: u64,
    pub read_deadline_ms: u64,
    pub write_deadline_ms: u64,
    /// Every proposal is answered within this budget (a `server error: …` rejection if
    /// the chain or the store is slower).
    pub proposal_budget_ms: u64,
    /// Verified status-request signatures remembered.
    pub status_verify_cache: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        let h = HostConfig::default();
        LimitsConfig {
            max_streams_per_peer: l.max_streams_per_peer,
            max_streams_total: l.max_streams_total,
            max_streams_per_ip: l.max_streams_per_ip,
            max_connections_total: l.max_connections_total,
            max_connections_per_peer: l.max_connections_per_peer,
            max_connections_per_ip: l.max_connections_per_ip,
            per_ip_exempt_loopback: l.per_ip_exempt_loopback,
            max_pending_connections: l.max_pending_incoming,
            handshake_timeout_ms: h.handshake_timeout.as_millis() as u64,
            max_request_bytes: h.max_request_size,
            max_buffered_bytes_total: h.max_buffered_total,
            max_buffered_bytes_per_peer: h.max_buffered_per_peer,
            max_buffered_bytes_per_ip: h.max_buffered_per_ip,
            first_byte_deadline_ms: h.first_byte_deadline.as_millis() as u64,
            read_deadline_ms: h.read_deadline.as_millis() as u64,
            write_deadline_ms: h.write_deadline.as_millis() as u64,
            proposal_budget_ms: 8000,
            status_verify_cache: 4096,
        }
    }
}

// ------------------------------------------------------------------ value parsers

fn parse_amount(s: &str) -> Result<TokenAmount, String> {
    let s = s.trim();
    let v = num_bigint::BigInt::from_str(s)
        .map_err(|_| format!("{s:?} is not a whole number of attoFIL"))?;
    if v.sign() == num_bigint::Sign::Minus {
        return Err(format!("{s:?} is negative"));
    }
    Ok(TokenAmount(v))
}

/// An amount as a string (`"8589934592000"`, any size) or a TOML integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum AmountRepr {
    Int(u64),
    Str(String),
}

fn de_amount<'de, D: Deserializer<'de>>(d: D) -> Result<TokenAmount, D::Error> {
    match AmountRepr::deserialize(d)? {
        AmountRepr::Int(i) => Ok(TokenAmount::from_u64(i)),
        AmountRepr::Str(s) => parse_amount(&s).map_err(de::Error::custom),
    }
}

fn de_opt_amount<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TokenAmount>, D::Error> {
    de_amount(d).map(Some)
}

fn parse_address(s: &str) -> Result<Address, String> {
    Address::parse(s).map_err(|e| format!("{s:?} is not a Filecoin address: {e}"))
}

fn de_address<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
    parse_address(&String::deserialize(d)?).map_err(de::Error::custom)
}

fn de_opt_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
    de_address(d).map(Some)
}

fn de_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Address>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_address(s))
        .collect::<Result<_, _>>()
        .map_err(de::Error::custom)
}

fn de_multiaddrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            s.parse::<Multiaddr>()
                .map_err(|e| format!("{s:?} is not a multiaddr: {e}"))
        })
        .collect::<Result<_, _>>()
        .map_err(de::Error::custom)
}

// ------------------------------------------------------------------ loading

/// A configuration problem, as one sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text, path)
    }

    /// Parse and check TOML text; `path` is only used in error sentences.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError(describe_toml_error(&e, text, path)))?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: String, what: String| {
            Err(ConfigError(format!(
                "config file {}: key `{key}`: {what}",
                path.display()
            )))
        };
        for (i, m) in self.miners.iter().enumerate() {
            if m.address.protocol() != Some(Protocol::Id) {
                return bad(
                    format!("miners[{i}].address"),
                    format!("{} is not an ID address (f0…)", m.address),
                );
            }
            if let Some(a) = &m.ask {
                if a.min_piece_size > a.max_piece_size {
                    return bad(
                        format!("miners[{i}].ask.min_piece_size"),
                        format!(
                            "{} is above max_piece_size {}",
                            a.min_piece_size, a.max_piece_size
                        ),
                    );
                }
            }
        }
        if !self.policy.allow_clients.is_empty() && !self.policy.deny_clients.is_empty() {
            return bad(
                "policy.deny_clients".into(),
                "cannot be used together with policy.allow_clients".into(),
            );
        }
        for (i, c) in self.chain.offline.clients.iter().enumerate() {
            if let Some(k) = &c.key {
                if !matches!(k.protocol(), Some(Protocol::Secp256k1 | Protocol::Bls)) {
                    return bad(
                        format!("chain.offline.clients[{i}].key"),
                        format!("{k} is not a key address (f1… or f3…)"),
                    );
                }
            }
        }
        if self.store != "sled" && !is_postgres_url(&self.store) {
            return bad(
                "store".into(),
                format!("{:?} is neither \"sled\" nor a postgres:// URL", self.store),
            );
        }
        if self.cluster.node_id.as_deref().is_some_and(str::is_empty) {
            return bad("cluster.node_id".into(), "must not be empty".into());
        }
        if let Err(e) = self.cluster.lease_config().validate() {
            let key = match e {
                dealport_core::lease::LeaseConfigError::RenewTooSlow { .. } => "cluster.renew_ms",
                dealport_core::lease::LeaseConfigError::ZeroInterval
                    if self.cluster.renew_ms != 0 =>
                {
                    "cluster.poll_ms"
                }
                dealport_core::lease::LeaseConfigError::ZeroInterval => "cluster.renew_ms",
                _ => "cluster.lease_ttl_ms",
            };
            return bad(key.into(), e.to_string());
        }
        if self.libp2p.listen.is_empty() {
            return bad("libp2p.listen".into(), "needs at least one address".into());
        }
        for (key, v) in [
            ("limits.read_deadline_ms", self.limits.read_deadline_ms),
            (
                "limits.first_byte_deadline_ms",
                self.limits.first_byte_deadline_ms,
            ),
            ("limits.write_deadline_ms", self.limits.write_deadline_ms),
            (
                "limits.handshake_timeout_ms",
                self.limits.handshake_timeout_ms,
            ),
            ("limits.proposal_budget_ms", self.limits.proposal_budget_ms),
            ("http.header_timeout_secs", self.http.header_timeout_secs),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
            (
                "transfer.max_concurrent",
                self.transfer.max_concurrent as u64,
            ),
            (
                "transfer.connect_timeout_secs",
                self.transfer.connect_timeout_secs,
            ),
            (
                "transfer.idle_timeout_secs",
                self.transfer.idle_timeout_secs,
            ),
        ] {
            if v == 0 {
                return bad(key.into(), "must be above 0".into());
            }
        }
        // A cap of 0 would refuse everything; hyper needs 8 KiB of head buffer.
        for (key, v, min) in [
            ("limits.max_request_bytes", self.limits.max_request_bytes, 1),
            (
                "limits.max_buffered_bytes_total",
                self.limits.max_buffered_bytes_total,
                1,
            ),
            (
                "limits.max_buffered_bytes_per_peer",
                self.limits.max_buffered_bytes_per_peer,
                1,
            ),
            (
                "limits.max_buffered_bytes_per_ip",
                self.limits.max_buffered_bytes_per_ip,
                1,
            ),
            ("http.max_body_bytes", self.http.max_body_bytes, 1),
            (
                "http.max_body_bytes_total",
                self.http.max_body_bytes_total,
                1,
            ),
            (
                "http.max_header_bytes",
                self.http.max_header_bytes,
                MIN_HEADER_BYTES,
            ),
        ] {
            if v < min {
                return bad(key.into(), format!("{v} is below the minimum of {min}"));
            }
        }
        Ok(())
    }

    /// The core's policy.
    pub fn policy(&self) -> Policy {
        let p = &self.policy;
        Policy {
            miners: self.miners.iter().map(|m| m.address.clone()).collect(),
            disabled_miners: self
                .miners
                .iter()
                .filter(|m| m.disabled)
                .map(|m| m.address.clone())
                .collect(),
            asks: self
                .miners
                .iter()
                .filter_map(|m| {
                    m.ask.as_ref().map(|a| {
                        (
                            m.address.clone(),
                            AskTerms {
                                price: a.price.clone(),
                                verified_price: a.verified_price.clone(),
                                min_piece_size: a.min_piece_size,
                                max_piece_size: a.max_piece_size,
                            },
                        )
                    })
                })
                .collect(),
            deny_online: p.deny_online,
            deny_offline: p.deny_offline,
            clients: if !p.allow_clients.is_empty() {
                ClientFilter::Only(p.allow_clients.clone())
            } else if !p.deny_clients.is_empty() {
                ClientFilter::AllBut(p.deny_clients.clone())
            } else {
                ClientFilter::Anyone
            },
            max_label_bytes: p.max_label_bytes,
            sealing_buffer_epochs: p.sealing_buffer_epochs,
            max_start_delay_epochs: p.max_start_delay_epochs,
        }
    }

    /// The libp2p host's configuration.
    pub fn host_config(&self) -> HostConfig {
        let l = &self.limits;
        let d = HostConfig::default();
        HostConfig {
            listen: self.libp2p.listen.clone(),
            announce: self.libp2p.announce.clone(),
            read_deadline: Duration::from_millis(l.read_deadline_ms),
            first_byte_deadline: Duration::from_millis(l.first_byte_deadline_ms),
            write_deadline: Duration::from_millis(l.write_deadline_ms),
            handshake_timeout: Duration::from_millis(l.handshake_timeout_ms),
            max_request_size: l.max_request_bytes,
            max_buffered_total: l.max_buffered_bytes_total,
            max_buffered_per_peer: l.max_buffered_bytes_per_peer,
            max_buffered_per_ip: l.max_buffered_bytes_per_ip,
            limits: Limits {
                max_streams_per_peer: l.max_streams_per_peer,
                max_streams_total: l.max_streams_total,
                max_streams_per_ip: l.max_streams_per_ip,
                max_connections_total: l.max_connections_total,
                max_connections_per_peer: l.max_connections_per_peer,
                max_connections_per_ip: l.max_connections_per_ip,
                per_ip_exempt_loopback: l.per_ip_exempt_loopback,
                max_pending_incoming: l.max_pending_connections,
                ..d.limits.clone()
            },
            ..d
        }
    }

    pub fn proposal_budget(&self) -> Duration {
        Duration::from_millis(self.limits.proposal_budget_ms)
    }
}

/// `config file <path>, line N, key `a.b`: <what toml said>`.
fn describe_toml_error(e: &toml::de::Error, text: &str, path: &Path) -> String {
    let message = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return format!("config file {}: {message}", path.display());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let key = key_at(text, start);
    match key {
        Some(key) => format!(
            "config file {}, line {line_no}, key `{key}`: {message}",
            path.display()
        ),
        None => format!("config file {}, line {line_no}: {message}", path.display()),
    }
}

/// The dotted key whose `key = value` line holds byte `pos`, prefixed by its table.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i);
    let line = text[line_start..line_end].trim();
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned(),
        );
    }
    let key = line.split('=').next()?.trim().trim_matches('"');
    if key.is_empty() {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("#"))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
    });
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    })
}

/// The commented template `dealport init` writes. Parses to [`Config::default`].
pub fn template() -> String {
    TEMPLATE.to_owned()
}

const TEMPLATE: &str = r#"# dealport configuration.
#
# Every key is optional: a missing key takes the default shown here. Unknown keys are
# errors. Amounts are attoFIL, as strings or integers ("1000000000000000000" = 1 FIL).

# Where the store (identity key, deals) lives. `--data-dir` wins over this; by default
# it is the directory this file was written into.
# data_dir = "/var/lib/dealport"

# Where deals, the identity key and the leader lease live: "sled" (embedded, in the data
# dir, one node) or "postgres://user:password@host:5432/dealport" (cluster mode: every
# node sharing the database takes turns running the libp2p host, see [cluster]).
# `dealport run --store …` wins over this.
store = "sled"

[cluster]
# Only used with a postgres:// store. This node's name in the lease row; default
# "<hostname>:<pid>".
# node_id = "sp-node-1"
# The leader holds the lease this long per renewal, renews this often; standbys read
# the lease this often (a standby takes over within ttl + poll after a crash, within
# one poll after a graceful stop).
lease_ttl_ms = 15000
renew_ms = 5000
poll_ms = 2000
# The IP address the other nodes' HTTP relays use to reach this node's libp2p WebSocket
# listener (its port comes from [libp2p] listen).
internal_ws_host = "127.0.0.1"

[libp2p]
# Listen addresses. Port 0 picks a random free port at every start.
listen = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/tcp/0/ws"]
# The addresses peers should dial (identify, and the retrieval transports answer),
# e.g. ["/dns/sp.example.com/tcp/443/wss"] behind the HTTP proxy, or a public TCP
# address. Empty: the listen addresses.
announce = []

[http]
# The HTTP server: WebSocket relay to the libp2p host at /libp2p and / (what a
# /dns/<domain>/tcp/443/wss announce address reaches through a TLS proxy), /health and
# /metrics. Every node serves it, also one that does not run the libp2p host.
listen = "0.0.0.0:12310"
# A relayed connection spliced to another node's host, idle this long in both
# directions, is closed (Curio: 15 s). On the node that runs the host, relayed
# connections are handed to it and its own idle limits apply.
relay_idle_timeout_secs = 600
# Relayed connections at once; further upgrades get 503.
max_relays = 1024
# MK12 over plain HTTP (POST /market/mk12/store, GET /market/mk12/status and /ask, as
# Curio serves them): requests per second per client IP; more get 429.
mk12_requests_per_second = 50
# HTTP connections at once (relays included); more are closed on accept.
max_connections = 4096
# Time for a request head to arrive; a slower (or idle keep-alive) connection is closed.
header_timeout_secs = 10
# Largest request head (request line and headers); larger gets 431.
max_header_bytes = 65536
# Time to read a request body and answer it (503 after it).
request_timeout_secs = 10
# Largest request body (POST /market/mk12/store); larger gets 413.
max_body_bytes = 4194304
# Bytes of request bodies held at once over all requests (the memory bound for them);
# a request that would go over it gets 503 with Retry-After.
max_body_bytes_total = 134217728
# TLS proxies in front of this port (IP addresses, e.g. ["127.0.0.1"] for one on this
# machine) whose X-Forwarded-For names the client. The relay tells the libp2p host that
# address, so its per-IP limits count each client; from any other peer the header is
# ignored. Default: none.
trusted_proxies = []

[chain]
# "offline": the epoch comes from the network's genesis time (30 s per epoch) and every
# other fact from [chain.offline] below (for trying dealport out). "lotus": every fact
# from a Lotus node's JSON-RPC API ([chain.lotus] or FULLNODE_API_INFO), and the miners'
# on-chain PeerID and multiaddrs kept right (see `dealport chain check`).
mode = "offline"
# "mainnet" or "calibnet".
network = "mainnet"

[chain.offline]
# TESTING ONLY: pretend the chain head is at this epoch instead of the real one.
# head_epoch_override = 4490000
# StateDealProviderCollateralBounds minimum (attoFIL); proposals must offer between this
# and twice this.
provider_collateral_min = "0"
# What the chain says about clients not listed below: "zero" (no escrow, no datacap)
# or "unlimited" (testing only).
unknown_client = "zero"

[chain.lotus]
# Lotus JSON-RPC v1 endpoint and API token (a "sign" token: dealport pushes the
# ChangePeerID / ChangeMultiaddrs messages). Empty: both are read from
# FULLNODE_API_INFO ("<token>:/ip4/127.0.0.1/tcp/1234/http").
url = ""
token = ""
# Limit for one JSON-RPC call.
call_timeout_ms = 5000
# All chain facts for one proposal are gathered within this budget; a slower node gives
# a "server error: ..." rejection. Keep it below limits.proposal_budget_ms.
facts_budget_ms = 6000
# The chain head is re-read at most this often.
head_refresh_ms = 3000
# Max fee for a ChangePeerID / ChangeMultiaddrs message, attoFIL (0.02 FIL, as Curio).
max_fee = "20000000000000000"
# How often the miners' on-chain PeerID and multiaddrs are re-checked (0: only at start).
miner_info_check_secs = 3600

# One block per known client:
# [[chain.offline.clients]]
# address = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna"   # as proposals carry it
# key = "f1…"                   # its key address; default: `address` if it is f1/f3
# escrow = "1000000000000000000"   # market escrow
# locked = "0"                     # market locked funds
# datacap = "1125899906842624"     # verified datacap in bytes; absent = not verified

# One block per miner actor this provider takes deals for (ID addresses):
# [[miners]]
# address = "f01000"
# disabled = false          # true: refuse its deals ("Libp2p is disabled for the provider")
# [miners.ask]              # absent: no ask check
# price = "0"               # attoFIL per GiB per epoch
# verified_price = "0"      # attoFIL per GiB per epoch, verified deals
# min_piece_size = 256
# max_piece_size = 68719476736

[policy]
deny_online = false
deny_offline = false
# Only these clients (addresses as proposed, or their key addresses); empty = anyone.
allow_clients = []
# These clients never (cannot be combined with allow_clients).
deny_clients = []
max_label_bytes = 256
# Epochs needed to seal a deal before its start epoch: later starts are rejected.
sealing_buffer_epochs = 2880
# Latest start accepted, in epochs after head + sealing buffer (online deals).
max_start_delay_epochs = 40320

[limits]
max_streams_per_peer = 64
max_streams_total = 1024
# Streams at once from one IP address, over all its peer identities (loopback exempt).
max_streams_per_ip = 256
max_connections_total = 1024
max_connections_per_peer = 8
max_connections_per_ip = 32
# Loopback addresses are exempt from the per-IP limits (a local TLS proxy that is not in
# [http] trusted_proxies, local tools). Relayed clients are counted by their own address.
per_ip_exempt_loopback = true
# Inbound connections still in their Noise/TLS + yamux handshake, and the time allowed
# for it: idle sockets that never handshake hold no more than this.
max_pending_connections = 128
handshake_timeout_ms = 20000
# Largest request item (one CBOR item per stream); a longer one closes the stream.
max_request_bytes = 4194304
# Bytes all streams may buffer at once while reading requests (the memory bound for
# request reading); a stream that would go over it is closed.
max_buffered_bytes_total = 134217728
# The same for the streams of one peer, and of one IP address over all its peer
# identities (loopback exempt), so no one client can take all of it.
max_buffered_bytes_per_peer = 16777216
max_buffered_bytes_per_ip = 33554432
# Time for the first byte of a request to arrive on a new stream.
first_byte_deadline_ms = 5000
# Time for a client to send its request / for us to write the answer.
read_deadline_ms = 10000
write_deadline_ms = 10000
# Every proposal is answered within this budget, with a `server error: …` rejection
# when the chain or the store is slower.
proposal_budget_ms = 8000
# Verified status-request signatures remembered (a BLS check costs ~1.7 ms).
status_verify_cache = 4096

[transfer]
# Online deals' data is downloaded (HTTP or HTTPS GET of Transfer.Params' URL with its
# headers) into this directory, and offline deals' data imported into it. Default:
# "<data dir>/staging".
# staging_dir = "/var/lib/dealport/staging"
# Downloads at once, and a cap on all of them together in bytes per second (0: none).
max_concurrent = 4
max_bytes_per_sec = 0
# SSRF protection: URLs resolving to loopback, private (10/8, 172.16/12, 192.168/16),
# link-local, CGNAT (100.64/10), unspecified, multicast, IPv6 ULA or link-local
# addresses are refused unless this is true.
allow_private_addresses = false
# Bound on connecting to a data server; a download receiving nothing for
# idle_timeout_secs counts as a dropped connection.
connect_timeout_secs = 30
idle_timeout_secs = 60
# A dropped connection is resumed (HTTP Range) up to max_retries times, waiting
# retry_backoff_ms, then twice that, ... (at most a minute); then the deal fails.
max_retries = 5
retry_backoff_ms = 1000
# Keep staging files once the deal no longer needs them (for debugging).
keep_staging = false

[publish]
# Transferred deals are published in PublishStorageDeals messages (chain.mode = "lotus"
# only; with the offline chain they stay Transferred): at most max_deals_per_message
# deals per message, a deal waiting at most period_secs for others. Defaults as Curio.
# wallet: the sender; must be the miner's worker or a control address. Unset: the worker.
# wallet = "f3..."
max_deals_per_message = 8
period_secs = 300
# Max fee of one message, attoFIL (0.5 FIL).
max_fee = "500000000000000000"
# How often waiting deals and sent messages are checked.
poll_secs = 30

[api]
# Bearer token of the HTTP API under /api/v1/ (offline import with
# `dealport deals import`, deal state, the sealing hand-off). Empty: the API is off.
token = ""

[ui]
# The operator's dashboard at http://<[http] listen>/ui/ (read-only), on when the [api]
# token is set: log in with that token. A login lasts session_ttl_secs; open pages poll
# their live values every refresh_ms.
session_ttl_secs = 28800
refresh_ms = 2000

[sealing]
# Who takes PublishConfirmed deals on: "api" (a sealing system pulls them through
# /api/v1/sealing/...) or "lotus-miner" (dealport hands each deal to lotus-miner with
# SectorAddPieceToAny and follows its sector to Complete; needs chain.mode = "lotus").
mode = "api"

[sealing.lotus_miner]
# lotus-miner's JSON-RPC v0 and an admin token (`lotus-miner auth create-token --perm
# admin`). Empty: both from MINER_API_INFO (<token>:/ip4/<ip>/tcp/<port>/http). A
# config holding the token must be owner-only (chmod 600).
url = ""
token = ""
# Bound on one call (SectorAddPieceToAny returns once lotus-miner has read the piece).
call_timeout_secs = 1800
max_concurrent_add_piece = 4
# How often sectors and waiting deals are checked.
poll_secs = 60
# Where lotus-miner fetches pieces: this node's HTTP server as lotus-miner reaches it.
# Empty: the address [http] listen binds (127.0.0.1 for 0.0.0.0).
piece_url_base = ""
piece_url_ttl_secs = 3600
# "too many sectors sealing": retry every 5 minutes for at most 6 hours (as Boost).
too_many_backoff_secs = 300
too_many_give_up_secs = 21600
[retrieval]
# Serve GET and HEAD /piece/<pieceCid> on the HTTP server: a deal's data as received, while
# it is staged or, with keep_pieces, after sealing. Every node of a cluster serves it
# (the staging and piece directories must then be on storage every node sees).
serve_pieces = false
# Once a deal's piece is in a sector, move its staged data into piece_dir (default
# "<data dir>/pieces") instead of deleting it.
keep_pieces = false
# piece_dir = "/var/lib/dealport/pieces"
# This node's HTTP server as clients reach it, listed by the retrieval transports answer
# when serve_pieces is on and `http` below is empty. Unset: the HTTP listen address if it
# names an IP; else from [libp2p] announce (a /dns/<d>/tcp/443/wss address, the TLS proxy
# in front of this server, gives /dns/<d>/tcp/443/https).
# http_announce = "/dns/sp.example.com/tcp/443/https"
# What the /fil/retrieval/transports/1.0.0 answer lists. http: where /piece/<cid> is
# served (booster-http, Curio, or this node behind a proxy).
http = []
# dealport serves neither graphsync nor bitswap: list these only for a retrieval server
# you run beside it (e.g. booster-bitswap).
libp2p = []
bitswap = []
[ipni]
# Advertise every indexed deal's blocks to IPNI (the network indexer) and serve the
# advertisement chain at /ipni/v1/ad/head and /ipni/v1/ad/<cid>; a deal then goes
# AddedPiece -> IndexedAndAnnounced -> Complete. Deals with SkipIPNIAnnounce are indexed
# but not advertised. Signed with the node's libp2p identity (docs/ipni.md). Needs
# [retrieval] serve_pieces = true: the advertisements name /ipfs/ and /piece/ as the
# transports that serve the blocks.
enable = false
# Indexers to tell about each new advertisement (HTTP PUT of the announce message), e.g.
# ["https://cid.contact/announce"]. Empty: none (offline).
announce_urls = []
topic = "/indexer/ingest/mainnet"
# Where the chain and /ipfs/ are reachable, e.g. ["/dns/sp.example.com/tcp/443/https"].
# Empty: this node's HTTP address as [retrieval] works it out.
addresses = []
announce_timeout_secs = 10
announce_attempts = 5
poll_secs = 10
"#;

// ---- [sealing]: who seals published deals, and how dealport reaches lotus-miner

/// Who takes `PublishConfirmed` deals on.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SealingMode {
    /// A sealing system pulls deals through `/api/v1/sealing/…`.
    #[default]
    Api,
    /// dealport hands each deal to lotus-miner (`SectorAddPieceToAny`).
    LotusMiner,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SealingConfig {
    pub mode: SealingMode,
    pub lotus_miner: LotusMinerConfig,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LotusMinerConfig {
    /// lotus-miner JSON-RPC v0, e.g. `http://10.0.0.5:2345/rpc/v0`. Empty: from
    /// `MINER_API_INFO` (`<token>:/ip4/<ip>/tcp/<port>/http`).
    pub url: String,
    /// An admin token (`lotus-miner auth create-token --perm admin`). Empty: from
    /// `MINER_API_INFO`.
    pub token: String,
    /// Limit for one call (`SectorAddPieceToAny` returns once lotus-miner has read the
    /// piece, so this bounds reading the whole piece too).
    pub call_timeout_secs: u64,
    /// `SectorAddPieceToAny` calls in flight at once.
    pub max_concurrent_add_piece: usize,
    /// How often sectors and waiting deals are checked.
    pub poll_secs: u64,
    /// The base URL lotus-miner fetches pieces from (this node's HTTP server as
    /// lotus-miner reaches it). Empty: the address `[http] listen` binds (127.0.0.1
    /// for a wildcard address), right when lotus-miner runs on the same machine.
    pub piece_url_base: String,
    /// How long a piece URL works after it is handed out.
    pub piece_url_ttl_secs: u64,
    /// Between retries after "too many sectors sealing" (Boost: 5 minutes).
    pub too_many_backoff_secs: u64,
    /// Give up on "too many sectors sealing" after this long (Boost: 6 hours).
    pub too_many_give_up_secs: u64,
}

impl Default for LotusMinerConfig {
    fn default() -> Self {
        LotusMinerConfig {
            url: String::new(),
            token: String::new(),
            call_timeout_secs: 1800,
            max_concurrent_add_piece: 4,
            poll_secs: 60,
            piece_url_base: String::new(),
            piece_url_ttl_secs: 3600,
            too_many_backoff_secs: 300,
            too_many_give_up_secs: 6 * 3600,
        }
    }
}

// By hand so that logging the config never shows the token.
impl std::fmt::Debug for LotusMinerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LotusMinerConfig")
            .field("url", &self.url)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("call_timeout_secs", &self.call_timeout_secs)
            .field("max_concurrent_add_piece", &self.max_concurrent_add_piece)
            .field("poll_secs", &self.poll_secs)
            .field("piece_url_base", &self.piece_url_base)
            .finish_non_exhaustive()
    }
}

impl LotusMinerConfig {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_is_the_default() {
        let c = Config::parse(TEMPLATE, Path::new("t.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            Config::parse("", Path::new("t.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = Config::parse("[limits]\nmax_streams = 3\n", Path::new("/x/c.toml")).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/x/c.toml"), "{s}");
        assert!(s.contains("line 2"), "{s}");
        assert!(s.contains("limits.max_streams"), "{s}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = Config::parse("[[miners]]\naddress = \"f1abc\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("miners.address") && e.contains("line 2"), "{e}");
        let e = Config::parse(
            "[[miners]]\naddress = \"f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("miners[0].address") && e.contains("not an ID address"),
            "{e}"
        );
        let e = Config::parse("[policy]\nmax_label_bytes = \"x\"\n", Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("policy.max_label_bytes"), "{e}");
    }

    #[test]
    fn store_and_cluster_keys() {
        let c = Config::parse(
            "store = \"postgres://u@127.0.0.1:5432/db\"\n[cluster]\nnode_id = \"a\"\nlease_ttl_ms = 3000\nrenew_ms = 1000\npoll_ms = 500\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert!(is_postgres_url(&c.store));
        let l = c.cluster.lease_config();
        assert_eq!(l.safety_margin, Duration::from_millis(600));
        l.validate().unwrap();
        let e = Config::parse("store = \"mysql://x\"\n", Path::new("/x/c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`store`") && e.contains("/x/c.toml"), "{e}");
        let e = Config::parse(
            "[cluster]\nlease_ttl_ms = 3000\nrenew_ms = 2900\n",
            Path::new("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cluster.renew_ms"), "{e}");
    }

    #[test]
    fn amounts_accept_strings_and_integers() {
        let c = Config::parse(
            "[chain.offline]\nprovider_collateral_min = \"8589934592000\"\n[[chain.offline.clients]]\naddress = \"f01234\"\nescrow = 5\ndatacap = \"123456789012345678901234567890\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            c.chain.offline.provider_collateral_min,
            TokenAmount::from_u64(8_589_934_592_000)
        );
        assert_eq!(c.chain.offline.clients[0].escrow, TokenAmount::from_u64(5));
        assert!(c.chain.offline.clients[0].datacap.is_some());
    }

    #[test]
    fn mode_names() {
        #[derive(Deserialize)]
        struct W {
            sealing: SealingConfig,
        }
        let w: W = toml::from_str(
            "[sealing]\nmode = \"lotus-miner\"\n[sealing.lotus_miner]\npoll_secs = 5\n",
        )
        .unwrap();
        assert_eq!(w.sealing.mode, SealingMode::LotusMiner);
        assert_eq!(w.sealing.lotus_miner.poll_secs, 5);
        assert!(toml::from_str::<W>("[sealing]\nmode = \"boost\"\n").is_err());
    }
}
