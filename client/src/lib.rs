//! dealport-client: a real MK12 storage-deal client (`dealport client`), the load tool
//! (`dealport bench`, [`bench`]) and the node API's import client ([`import`]). Uses the
//! node library (its transport, runtime seam and MK12-HTTP paths); the node never uses
//! this crate, so the server library carries no client keys.
//!
//! Builds and signs `DealParams` the way `boost deal` does, and speaks to a provider over
//! libp2p (TCP, `/ws`, `/dns/<host>/tcp/443/wss`) or MK12-over-HTTP (Curio's
//! `/market/mk12/*` routes). The CLI in [`cli`] is a thin layer over this API:
//!
//! ```text
//! build_deal(&DealSpec, &Wallet)            -> DealParams
//! status_request(uuid, &Wallet)             -> DealStatusRequest
//! propose(&Target, &DealParams, protocol)   -> DealResponse
//! status(&Target, &DealStatusRequest)       -> DealStatusResponse
//! ask(&Target, miner)                       -> AskResponse
//! info(&Multiaddr)                          -> PeerInfo (identify)
//! ```
//! Deadlines follow Boost's client: 10 s to write a request, 60 s to read the answer.

pub mod bench;
pub mod car;
pub mod cli;
pub mod commp;
pub mod http;
pub mod keystore;
pub mod node_api;
mod p2p;
pub mod transport;
pub mod wallet;

use std::time::Duration;

use dealport_core::wire::{
    protocols, Address, AskRequest, AskResponse, Cbor, Cid, ClientDealProposal, DealLabel,
    DealParams, DealProposal, DealResponse, DealStatusRequest, DealStatusResponse, DealUuid,
    HttpRequest, TokenAmount, Transfer,
};
use dealport_node::outbound::io_sentence;
use libp2p::{swarm::DialError, Multiaddr};

pub use p2p::read_one_item;
pub use wallet::{Wallet, WalletError};

/// A failed client operation, as one sentence for the user.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("provider {peer} does not support {protocol}")]
    Unsupported { peer: String, protocol: String },
    #[error("the stream to {addr} failed: {reason}")]
    Stream { addr: String, reason: String },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    NoAnswer(String),
    #[error("{0}")]
    BadAnswer(String),
    #[error("provider answered HTTP {code}: {body}")]
    Http { code: u16, body: String },
    #[error("provider rejected the deal: {0}")]
    Rejected(String),
    #[error("status request failed: {0}")]
    StatusError(String),
    #[error("{0}")]
    Local(String),
}

/// Where the provider is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A libp2p multiaddr, normally ending in `/p2p/<peer id>`.
    Libp2p(Multiaddr),
    /// MK12 over HTTP at this base URL (`https://host`).
    Http(http::HttpTarget),
}

impl Target {
    /// `http(s)://…` is an HTTP target; anything else must be a multiaddr.
    pub fn parse(s: &str) -> Result<Target, ClientError> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return http::HttpTarget::parse(s).map(Target::Http);
        }
        s.parse::<Multiaddr>().map(Target::Libp2p).map_err(|e| {
            ClientError::Usage(format!(
                "{s:?} is neither a multiaddr (/ip4/…/tcp/…/p2p/<id>) nor an https:// URL: {e}"
            ))
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Libp2p(a) => write!(f, "{a}"),
            Target::Http(h) => f.write_str(&h.url("")),
        }
    }
}

/// The deal proposal protocol to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DealProtocol {
    /// `/fil/storage/mk/1.2.0` with the 5-key `DealParamsV120` map.
    V120,
    /// `/fil/storage/mk/1.2.1` with the 7-key `DealParams` map.
    #[default]
    V121,
}

impl DealProtocol {
    pub fn id(self) -> &'static str {
        match self {
            DealProtocol::V120 => protocols::DEAL_1_2_0,
            DealProtocol::V121 => protocols::DEAL_1_2_1,
        }
    }

    /// The request bytes for this protocol version.
    pub fn encode(self, params: &DealParams) -> Vec<u8> {
        match self {
            DealProtocol::V120 => params.to_cbor_v120(),
            DealProtocol::V121 => params.to_cbor(),
        }
    }
}

/// Bounds on each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Dial plus security and muxer handshake.
    pub connect: Duration,
    /// How long to wait for the provider's identify message after connecting.
    pub identify: Duration,
    /// Opening the stream and writing the request (Boost: 10 s).
    pub write: Duration,
    /// Reading the answer (Boost: 60 s).
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            identify: Duration::from_secs(10),
            write: Duration::from_secs(10),
            read: Duration::from_secs(60),
        }
    }
}

/// What identify says about a provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub agent_version: String,
    pub protocol_version: String,
    pub protocols: Vec<String>,
    pub listen_addrs: Vec<String>,
    pub observed_addr: String,
}

/// How the provider gets the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataTransfer {
    /// The provider downloads `car_size` bytes from `url` with `headers`.
    Http {
        url: String,
        headers: Vec<(String, String)>,
        car_size: u64,
    },
    /// The client ships the data out of band (zero `Transfer`).
    Offline,
}

/// Everything a deal proposal needs besides the client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealSpec {
    pub uuid: DealUuid,
    pub miner: Address,
    pub piece_cid: Cid,
    pub piece_size: u64,
    pub payload_cid: Cid,
    pub transfer: DataTransfer,
    pub start_epoch: i64,
    pub end_epoch: i64,
    pub price_per_epoch: TokenAmount,
    pub provider_collateral: TokenAmount,
    pub client_collateral: TokenAmount,
    pub verified: bool,
    /// `None`: the payload CID's string, as `boost deal`.
    pub label: Option<String>,
    pub skip_ipni_announce: bool,
    pub remove_unsealed_copy: bool,
}

/// Build the proposal, sign its CBOR with `wallet` (the deal's `Client`), wrap it.
pub fn build_deal(spec: &DealSpec, wallet: &Wallet) -> DealParams {
    let proposal = DealProposal {
        piece_cid: spec.piece_cid.clone(),
        piece_size: spec.piece_size,
        verified_deal: spec.verified,
        client: wallet.address(),
        provider: spec.miner.clone(),
        label: DealLabel::Text(
            spec.label
                .clone()
                .unwrap_or_else(|| spec.payload_cid.to_string()),
        ),
        start_epoch: spec.start_epoch,
        end_epoch: spec.end_epoch,
        storage_price_per_epoch: spec.price_per_epoch.clone(),
        provider_collateral: spec.provider_collateral.clone(),
        client_collateral: spec.client_collateral.clone(),
    };
    let client_signature = wallet.sign(&proposal.to_cbor());
    let (transfer, is_offline) = match &spec.transfer {
        DataTransfer::Http {
            url,
            headers,
            car_size,
        } => {
            let mut req = HttpRequest::new(url.clone());
            req.headers = headers.iter().cloned().collect();
            (
                Transfer {
                    transfer_type: "http".into(),
                    client_id: String::new(),
                    params: req.to_json(),
                    size: *car_size,
                },
                false,
            )
        }
        DataTransfer::Offline => (Transfer::default(), true),
    };
    DealParams {
        deal_uuid: spec.uuid,
        is_offline,
        client_deal_proposal: ClientDealProposal {
            proposal,
            client_signature,
        },
        deal_data_root: spec.payload_cid.clone(),
        transfer,
        remove_unsealed_copy: spec.remove_unsealed_copy,
        skip_ipni_announce: spec.skip_ipni_announce,
    }
}

/// A status request signed over the 16 UUID bytes.
pub fn status_request(uuid: DealUuid, wallet: &Wallet) -> DealStatusRequest {
    DealStatusRequest {
        deal_uuid: uuid,
        signature: wallet.sign(&uuid.0),
    }
}

/// A random version-4 UUID.
pub fn random_uuid() -> Result<DealUuid, ClientError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|e| ClientError::Local(format!("no randomness for the deal UUID: {e}")))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(DealUuid(b))
}

fn decode<T: Cbor>(bytes: &[u8]) -> Result<T, ClientError> {
    T::from_cbor(bytes).map_err(|e| {
        ClientError::BadAnswer(format!(
            "the provider's answer is not a valid {}: {e}",
            T::NAME
        ))
    })
}

fn http_answer(code: u16, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    if code == 200 {
        return Ok(body);
    }
    Err(ClientError::Http {
        code,
        body: String::from_utf8_lossy(&body).trim().to_string(),
    })
}

/// One request/answer on `protocol` (libp2p) or `method path` (HTTP).
async fn exchange(
    target: &Target,
    protocol: &'static str,
    method: &str,
    path: &str,
    request: &[u8],
    timeouts: Timeouts,
) -> Result<Vec<u8>, ClientError> {
    match target {
        Target::Libp2p(addr) => {
            let mut s = p2p::Session::connect(addr, timeouts).await?;
            s.require(protocol)?;
            s.request(protocol, request).await
        }
        Target::Http(h) => {
            let (code, body) = http::request(h, method, path, request, timeouts).await?;
            http_answer(code, body)
        }
    }
}

/// Send a proposal; the provider's answer (accepted or not).
pub async fn propose(
    target: &Target,
    params: &DealParams,
    protocol: DealProtocol,
) -> Result<DealResponse, ClientError> {
    propose_with(target, params, protocol, Timeouts::default()).await
}

pub async fn propose_with(
    target: &Target,
    params: &DealParams,
    protocol: DealProtocol,
    timeouts: Timeouts,
) -> Result<DealResponse, ClientError> {
    let bytes = protocol.encode(params);
    let answer = exchange(
        target,
        protocol.id(),
        "POST",
        dealport_node::mk12_http::STORE_PATH,
        &bytes,
        timeouts,
    )
    .await?;
    decode(&answer)
}

/// Ask for a deal's status.
pub async fn status(
    target: &Target,
    request: &DealStatusRequest,
) -> Result<DealStatusResponse, ClientError> {
    let answer = exchange(
        target,
        protocols::STATUS_1_2_0,
        "GET",
        dealport_node::mk12_http::STATUS_PATH,
        &request.to_cbor(),
        Timeouts::default(),
    )
    .await?;
    decode(&answer)
}

/// Ask for a miner's storage ask.
pub async fn ask(target: &Target, miner: &Address) -> Result<AskResponse, ClientError> {
    let req = AskRequest {
        miner: miner.clone(),
    };
    let answer = exchange(
        target,
        protocols::ASK_1_1_0,
        "GET",
        dealport_node::mk12_http::ASK_PATH,
        &req.to_cbor(),
        Timeouts::default(),
    )
    .await?;
    decode(&answer)
}

/// Connect and report what identify says.
pub async fn info(addr: &Multiaddr) -> Result<PeerInfo, ClientError> {
    let timeouts = Timeouts::default();
    let s = p2p::Session::connect(addr, timeouts).await?;
    s.info().ok_or_else(|| {
        ClientError::NoAnswer(format!(
            "connected to {} but it sent no identify message within {} s",
            s.peer(),
            timeouts.identify.as_secs()
        ))
    })
}

/// The innermost cause of a libp2p dial failure.
pub(crate) fn dial_error_sentence(e: &DialError) -> String {
    match e {
        DialError::Transport(errs) => {
            let reasons: Vec<String> = errs
                .iter()
                .map(|(_, err)| innermost(err))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            if reasons.is_empty() {
                e.to_string()
            } else {
                reasons.join("; ")
            }
        }
        DialError::WrongPeerId { obtained, .. } => {
            format!("the peer there is {obtained}, not the one in the address")
        }
        other => other.to_string(),
    }
}

fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut known = None;
    loop {
        if let Some(io) = cur.downcast_ref::<std::io::Error>() {
            if known.is_none() && io.kind() != std::io::ErrorKind::Other {
                known = Some(io_sentence(io));
            }
        }
        // `io::Error::source` skips the error it wraps; step into it explicitly.
        let wrapped = cur
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        match wrapped.or_else(|| cur.source()) {
            Some(next) => cur = next,
            None => break,
        }
    }
    known.unwrap_or_else(|| {
        let s = cur.to_string();
        match s.find(" (os error") {
            Some(i) => s[..i].to_lowercase(),
            None => s,
        }
    })
}
