//! The Lotus chain: a Lotus JSON-RPC v1 client over HTTP, and the [`ChainFactsSource`]
//! that gathers a proposal's facts from it within a budget.
//!
//! HTTP/1.1 POST through hyper's client connection over an async-net `TcpStream`
//! (smol-hyper's `FuturesIo`), one connection per call, driven inside the call itself,
//! so no runtime is needed. JSON shapes follow Lotus (`api-methods-v1-stable.md`):
//! addresses as strings, big ints as decimal strings, CIDs as `{"/": "…"}`, bytes as
//! base64, tipset keys as arrays of CIDs (`null` = the head).

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use bytes::Bytes;
use dealport_core::{
    facts::{ChainFacts, MarketBalance},
    wire::{Address, Cbor, DealParams, Network, Protocol, Signature, TokenAmount},
};
use futures::future::{self, Either};
use http_body_util::{BodyExt, Full};
use num_bigint::BigInt;
use serde_json::{json, Value};
use smol_hyper::rt::FuturesIo;

use super::{ChainFactsSource, ChainFuture};
use crate::{config::LotusConfig, runtime};

/// The market actor, sender of the simulated `AuthenticateMessage` call.
pub const MARKET_ACTOR_ID: u64 = 5;
/// FRC-42 method number of `AuthenticateMessage`.
pub const METHOD_AUTHENTICATE_MESSAGE: u64 = 2_643_134_072;
/// Account keys remembered (the cache is emptied when full).
const ACCOUNT_KEY_CACHE: usize = 10_000;
/// Longest response body read.
const MAX_RESPONSE: usize = 16 << 20;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a Lotus call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("lotus endpoint: {0}")]
    Endpoint(String),
    #[error("connecting to lotus: {0}")]
    Connect(std::io::Error),
    #[error("lotus http: {0}")]
    Http(String),
    #[error("lotus answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("lotus {method}: {message} (code {code})")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("lotus {method}: unexpected answer: {what}")]
    Decode { method: String, what: String },
    #[error("lotus {method}: no answer within {limit:?}")]
    Timeout { method: String, limit: Duration },
}

/// Where Lotus is: `http://host:port/path` and the bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub token: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        write!(f, "Endpoint({})", self.url())
    }
}

impl Endpoint {
    /// The URL, without the token.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            format!("http://{}:{}{}", self.host, self.port, self.path)
        }
    }

    /// An `http://host[:port][/path]` URL (path default `/rpc/v1`) and a token.
    pub fn from_url(url: &str, token: &str) -> Result<Endpoint, RpcError> {
        let bad = |why: &str| RpcError::Endpoint(format!("{url:?}: {why}"));
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("ws") => {}
            Some("https") | Some("wss") => {
                return Err(bad(
                    "TLS is not supported; reach Lotus over plain HTTP on a private network",
                ))
            }
            _ => return Err(bad("the URL must start with http://")),
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let path = match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => "/rpc/v1".to_owned(),
            Some(p) => p.to_owned(),
        };
        Ok(Endpoint {
            host,
            port: uri.port_u16().unwrap_or(80),
            path,
            token: token.to_owned(),
        })
    }

    /// Lotus's `FULLNODE_API_INFO`: `<token>:/ip4/<ip>/tcp/<port>/http` (also `/ip6`,
    /// `/dns`, `/dns4`, `/dns6`; a trailing `/ws` or nothing is taken as HTTP too), or
    /// `<token>:http://host:port`, or either without the token.
    pub fn from_api_info(info: &str) -> Result<Endpoint, RpcError> {
        let info = info.trim();
        let (token, addr) = if info.starts_with('/') || info.starts_with("http") {
            ("", info)
        } else {
            info.split_once(':').ok_or_else(|| {
                RpcError::Endpoint(
                    "FULLNODE_API_INFO is not <token>:/ip4/<ip>/tcp/<port>/http".into(),
                )
            })?
        };
        if !addr.starts_with('/') {
            let mut e = Endpoint::from_url(addr, token)?;
            if !e.path.starts_with("/rpc/") {
                e.path = "/rpc/v1".into();
            }
            return Ok(e);
        }
        let bad =
            |why: &str| RpcError::Endpoint(format!("FULLNODE_API_INFO address {addr:?}: {why}"));
        let parts: Vec<&str> = addr.split('/').skip(1).collect();
        let (host, port, rest) = match parts.as_slice() {
            [proto, host, "tcp", port, rest @ ..]
                if matches!(*proto, "ip4" | "ip6" | "dns" | "dns4" | "dns6") =>
            {
                (
                    host.to_string(),
                    port.parse::<u16>().map_err(|_| bad("bad port"))?,
                    rest,
                )
            }
            _ => return Err(bad("expected /ip4/<ip>/tcp/<port>/http")),
        };
        match rest {
            [] | ["http"] | ["ws"] => {}
            ["https"] | ["wss"] | ["tls", ..] => {
                return Err(bad("TLS is not supported; reach Lotus over plain HTTP"))
            }
            _ => return Err(bad("expected /http at the end")),
        }
        Ok(Endpoint {
            host,
            port,
            path: "/rpc/v1".into(),
            token: token.to_owned(),
        })
    }

    /// From `[chain.lotus]`: `url`/`token` when set, else `FULLNODE_API_INFO` (`env`).
    pub fn from_config(c: &LotusConfig, env: Option<&str>) -> Result<Endpoint, RpcError> {
        if !c.url.is_empty() {
            let token = if c.token.is_empty() {
                env.and_then(|i| Endpoint::from_api_info(i).ok())
                    .map(|e| e.token)
                    .unwrap_or_default()
            } else {
                c.token.clone()
            };
            return Endpoint::from_url(&c.url, &token);
        }
        let info = env.ok_or_else(|| {
            RpcError::Endpoint("chain.lotus.url is empty and FULLNODE_API_INFO is not set".into())
        })?;
        let mut e = Endpoint::from_api_info(info)?;
        if !c.token.is_empty() {
            e.token = c.token.clone();
        }
        Ok(e)
    }
}

/// A tipset key as Lotus writes it: the block CIDs, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TipsetKey(pub Vec<String>);

impl TipsetKey {
    fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(|c| json!({ "/": c })).collect())
    }
}

/// A tipset key argument: a given tipset, or the head (`null`).
fn tsk_json(tsk: Option<&TipsetKey>) -> Value {
    tsk.map(TipsetKey::to_json).unwrap_or(Value::Null)
}

/// What `ChainHead` tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub height: i64,
    pub key: TipsetKey,
}

/// The parts of `StateMinerInfo` dealport uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerInfo {
    pub owner: Address,
    pub worker: Address,
    /// The PeerID string (base58) as on chain, if any.
    pub peer_id: Option<String>,
    /// Multiaddr bytes as on chain.
    pub multiaddrs: Vec<Vec<u8>>,
}

/// `StateSearchMsg`: where and how a message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgLookup {
    /// The message that executed (may be a replacement of the one asked about).
    pub message: String,
    pub exit_code: i64,
    pub height: i64,
    /// The receipt's return value (CBOR), empty when there is none.
    pub return_bytes: Vec<u8>,
}

/// An unsigned message for `MpoolPushMessage` / `StateCall` (gas fields left to Lotus).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedMessage {
    pub to: Address,
    pub from: Address,
    pub nonce: u64,
    pub value: TokenAmount,
    pub method: u64,
    pub params: Vec<u8>,
}

/// A Lotus JSON-RPC v1 client.
#[derive(Debug)]
pub struct LotusClient {
    endpoint: Endpoint,
    network: Network,
    call_timeout: Duration,
    next_id: std::sync::atomic::AtomicU64,
}

fn decode_err(method: &str, what: impl Into<String>) -> RpcError {
    RpcError::Decode {
        method: method.to_owned(),
        what: what.into(),
    }
}

fn as_address(method: &str, v: &Value) -> Result<Address, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| decode_err(method, format!("expected an address string, got {v}")))?;
    Address::parse(s).map_err(|e| decode_err(method, format!("address {s:?}: {e}")))
}

fn as_amount(method: &str, v: &Value) -> Result<TokenAmount, RpcError> {
    let s = v
        .as_str()
        .ok_or_else(|| decode_err(method, format!("expected a decimal string, got {v}")))?;
    BigInt::from_str(s)
        .map(TokenAmount)
        .map_err(|_| decode_err(method, format!("{s:?} is not a number")))
}

fn as_cid(method: &str, v: &Value) -> Result<String, RpcError> {
    v.get("/")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| decode_err(method, format!("expected a CID {{\"/\": …}}, got {v}")))
}

fn as_bytes(method: &str, v: &Value) -> Result<Vec<u8>, RpcError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => B64
            .decode(s)
            .map_err(|_| decode_err(method, format!("{s:?} is not base64"))),
        _ => Err(decode_err(
            method,
            format!("expected base64 bytes, got {v}"),
        )),
    }
}

fn field<'a>(method: &str, v: &'a Value, key: &str) -> Result<&'a Value, RpcError> {
    v.get(key)
        .ok_or_else(|| decode_err(method, format!("no {key:?} in {v}")))
}

impl LotusClient {
    pub fn new(endpoint: Endpoint, network: Network, call_timeout: Duration) -> LotusClient {
        LotusClient {
            endpoint,
            network,
            call_timeout,
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// An address as Lotus on this network writes it.
    fn addr(&self, a: &Address) -> Value {
        Value::String(a.to_string_on(self.network))
    }

    fn message_json(&self, m: &UnsignedMessage) -> Value {
        json!({
            "Version": 0,
            "To": self.addr(&m.to),
            "From": self.addr(&m.from),
            "Nonce": m.nonce,
            "Value": m.value.to_string(),
            "GasLimit": 0,
            "GasFeeCap": "0",
            "GasPremium": "0",
            "Method": m.method,
            "Params": B64.encode(&m.params),
        })
    }

    /// One JSON-RPC call: `Filecoin.<method>` with `params`, its `result`.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let full = format!("Filecoin.{method}");
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "method": full, "params": params, "id": id });
        let limit = self.call_timeout;
        let answer = runtime::deadline(
            Instant::now() + limit,
            self.post(body.to_string().into_bytes()),
        )
        .await
        .ok_or_else(|| RpcError::Timeout {
            method: full.clone(),
            limit,
        })??;
        let v: Value = serde_json::from_slice(&answer)
            .map_err(|e| decode_err(&full, format!("not JSON: {e}")))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(RpcError::Rpc {
                method: full,
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            });
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| decode_err(&full, "no result and no error"))
    }

    async fn post(&self, body: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        let e = &self.endpoint;
        let stream = async_net::TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(RpcError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(FuturesIo::new(stream))
                .await
                .map_err(|e| RpcError::Http(e.to_string()))?;
        let host = if e.host.contains(':') {
            format!("[{}]:{}", e.host, e.port)
        } else {
            format!("{}:{}", e.host, e.port)
        };
        let mut req = http::Request::post(e.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json");
        if !e.token.is_empty() {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", e.token));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RpcError::Http(e.to_string()))?;
        let work = async move {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| RpcError::Http(e.to_string()))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| RpcError::Http(e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                return Err(RpcError::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                });
            }
            Ok(body.to_vec())
        };
        // The connection is driven right here, alongside the request.
        match future::select(std::pin::pin!(work), conn).await {
            Either::Left((out, _)) => out,
            Either::Right((_, work)) => work.await,
        }
    }

    /// `Filecoin.ChainHead`.
    pub async fn chain_head(&self) -> Result<Head, RpcError> {
        const M: &str = "Filecoin.ChainHead";
        let v = self.call("ChainHead", json!([])).await?;
        let height = field(M, &v, "Height")?
            .as_i64()
            .ok_or_else(|| decode_err(M, "Height is not a number"))?;
        let cids = field(M, &v, "Cids")?
            .as_array()
            .ok_or_else(|| decode_err(M, "Cids is not an array"))?
            .iter()
            .map(|c| as_cid(M, c))
            .collect::<Result<_, _>>()?;
        Ok(Head {
            height,
            key: TipsetKey(cids),
        })
    }

    /// `Filecoin.StateMinerInfo`.
    pub async fn state_miner_info(
        &self,
        miner: &Address,
        tsk: Option<&TipsetKey>,
    ) -> Result<MinerInfo, RpcError> {
        const M: &str = "Filecoin.StateMinerInfo";
        let v = self
            .call("StateMinerInfo", json!([self.addr(miner), tsk_json(tsk)]))
            .await?;
        let multiaddrs = match v.get("Multiaddrs") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.iter().map(|m| as_bytes(M, m)).collect::<Result<_, _>>()?,
            Some(other) => return Err(decode_err(M, format!("Multiaddrs: {other}"))),
        };
        Ok(MinerInfo {
            owner: as_address(M, field(M, &v, "Owner")?)?,
            worker: as_address(M, field(M, &v, "Worker")?)?,
            peer_id: v.get("PeerId").and_then(Value::as_str).map(str::to_owned),
            multiaddrs,
        })
    }

    /// `Filecoin.StateAccountKey`.
    pub async fn state_account_key(
        &self,
        addr: &Address,
        tsk: Option<&TipsetKey>,
    ) -> Result<Address, RpcError> {
        let v = self
            .call("StateAccountKey", json!([self.addr(addr), tsk_json(tsk)]))
            .await?;
        as_address("Filecoin.StateAccountKey", &v)
    }

    /// `Filecoin.StateLookupID`.
    pub async fn state_lookup_id(
        &self,
        addr: &Address,
        tsk: Option<&TipsetKey>,
    ) -> Result<Address, RpcError> {
        let v = self
            .call("StateLookupID", json!([self.addr(addr), tsk_json(tsk)]))
            .await?;
        as_address("Filecoin.StateLookupID", &v)
    }

    /// `Filecoin.StateDealProviderCollateralBounds`: (min, max).
    pub async fn state_deal_provider_collateral_bounds(
        &self,
        piece_size: u64,
        verified: bool,
        tsk: Option<&TipsetKey>,
    ) -> Result<(TokenAmount, TokenAmount), RpcError> {
        const M: &str = "Filecoin.StateDealProviderCollateralBounds";
        let v = self
            .call(
                "StateDealProviderCollateralBounds",
                json!([piece_size, verified, tsk_json(tsk)]),
            )
            .await?;
        Ok((
            as_amount(M, field(M, &v, "Min")?)?,
            as_amount(M, field(M, &v, "Max")?)?,
        ))
    }

    /// `Filecoin.StateMarketBalance`.
    pub async fn state_market_balance(
        &self,
        addr: &Address,
        tsk: Option<&TipsetKey>,
    ) -> Result<MarketBalance, RpcError> {
        const M: &str = "Filecoin.StateMarketBalance";
        let v = self
            .call(
                "StateMarketBalance",
                json!([self.addr(addr), tsk_json(tsk)]),
            )
            .await?;
        Ok(MarketBalance {
            escrow: as_amount(M, field(M, &v, "Escrow")?)?,
            locked: as_amount(M, field(M, &v, "Locked")?)?,
        })
    }

    /// `Filecoin.StateVerifiedClientStatus`: the datacap, `None` if not a verified client.
    pub async fn state_verified_client_status(
        &self,
        addr: &Address,
        tsk: Option<&TipsetKey>,
    ) -> Result<Option<TokenAmount>, RpcError> {
        let v = self
            .call(
                "StateVerifiedClientStatus",
                json!([self.addr(addr), tsk_json(tsk)]),
            )
            .await?;
        match v {
            Value::Null => Ok(None),
            v => as_amount("Filecoin.StateVerifiedClientStatus", &v).map(Some),
        }
    }

    /// `Filecoin.StateCall`: the receipt's exit code.
    pub async fn state_call(
        &self,
        msg: &UnsignedMessage,
        tsk: Option<&TipsetKey>,
    ) -> Result<i64, RpcError> {
        const M: &str = "Filecoin.StateCall";
        let v = self
            .call("StateCall", json!([self.message_json(msg), tsk_json(tsk)]))
            .await?;
        field(M, field(M, &v, "MsgRct")?, "ExitCode")?
            .as_i64()
            .ok_or_else(|| decode_err(M, "ExitCode is not a number"))
    }

    /// FRC-42 `AuthenticateMessage` on an f4 client, simulated as Boost and Curio do:
    /// From the market actor (f05), To the client, params `[signature data, message]`.
    /// Valid iff the call exits 0.
    pub async fn authenticate_message(
        &self,
        client: &Address,
        signature: &Signature,
        message: &[u8],
        tsk: Option<&TipsetKey>,
    ) -> Result<bool, RpcError> {
        let msg = UnsignedMessage {
            to: client.clone(),
            from: Address::new_id(MARKET_ACTOR_ID),
            nonce: 1,
            value: TokenAmount::zero(),
            method: METHOD_AUTHENTICATE_MESSAGE,
            params: authenticate_message_params(&signature.data, message),
        };
        Ok(self.state_call(&msg, tsk).await? == 0)
    }

    /// `Filecoin.MpoolPushMessage`: Lotus fills nonce and gas, signs with `msg.from`,
    /// and pushes; the signed message's CID.
    pub async fn mpool_push_message(
        &self,
        msg: &UnsignedMessage,
        max_fee: &TokenAmount,
        msg_uuid: Option<[u8; 16]>,
    ) -> Result<String, RpcError> {
        const M: &str = "Filecoin.MpoolPushMessage";
        let mut spec = json!({ "MaxFee": max_fee.to_string(), "MaximizeFeeCap": false });
        if let Some(u) = msg_uuid {
            spec["MsgUuid"] = Value::String(uuid_string(&u));
        }
        let v = self
            .call("MpoolPushMessage", json!([self.message_json(msg), spec]))
            .await?;
        as_cid(M, field(M, &v, "CID")?)
    }

    /// `Filecoin.StateSearchMsg` from the head, no look-back limit, replacements
    /// allowed: `None` while the message has not landed.
    pub async fn state_search_msg(&self, cid: &str) -> Result<Option<MsgLookup>, RpcError> {
        const M: &str = "Filecoin.StateSearchMsg";
        let v = self
            .call(
                "StateSearchMsg",
                json!([Value::Null, { "/": cid }, -1, true]),
            )
            .await?;
        if v.is_null() {
            return Ok(None);
        }
        let receipt = field(M, &v, "Receipt")?;
        Ok(Some(MsgLookup {
            message: as_cid(M, field(M, &v, "Message")?)?,
            exit_code: field(M, receipt, "ExitCode")?
                .as_i64()
                .ok_or_else(|| decode_err(M, "ExitCode is not a number"))?,
            height: field(M, &v, "Height")?.as_i64().unwrap_or(0),
            return_bytes: match receipt.get("Return") {
                Some(Value::String(b)) => B64
                    .decode(b)
                    .map_err(|e| decode_err(M, format!("Receipt.Return is not base64: {e}")))?,
                _ => Vec::new(),
            },
        }))
    }

    /// `Filecoin.WalletSign`: raw bytes signed by a wallet key of the node.
    pub async fn wallet_sign(&self, addr: &Address, data: &[u8]) -> Result<Signature, RpcError> {
        const M: &str = "Filecoin.WalletSign";
        let v = self
            .call("WalletSign", json!([self.addr(addr), B64.encode(data)]))
            .await?;
        let t = field(M, &v, "Type")?
            .as_u64()
            .and_then(|t| u8::try_from(t).ok())
            .ok_or_else(|| decode_err(M, "Type is not a signature type"))?;
        Ok(Signature {
            sig_type: t,
            data: as_bytes(M, field(M, &v, "Data")?)?,
        })
    }
}

/// `account.AuthenticateMessageParams`: the tuple `[signature bytes, message bytes]`.
pub fn authenticate_message_params(signature: &[u8], message: &[u8]) -> Vec<u8> {
    let mut w = dealport_core::wire::cbor::Writer::new();
    w.array(2).bytes(signature).bytes(message);
    w.into_bytes()
}

fn uuid_string(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Remembered answers.
#[derive(Debug, Default)]
struct Caches {
    head: Option<(Instant, Head)>,
    /// (piece size, verified) -> (epoch, min).
    bounds: HashMap<(u64, bool), (i64, TokenAmount)>,
    keys: HashMap<Address, Address>,
}

/// [`ChainFactsSource`] from a Lotus node.
#[derive(Debug)]
pub struct LotusChain {
    client: Arc<LotusClient>,
    budget: Duration,
    head_refresh: Duration,
    caches: Mutex<Caches>,
}

impl LotusChain {
    pub fn new(client: LotusClient, budget: Duration, head_refresh: Duration) -> LotusChain {
        LotusChain {
            client: Arc::new(client),
            budget,
            head_refresh,
            caches: Mutex::new(Caches::default()),
        }
    }

    /// From `[chain]`: endpoint from the config or `FULLNODE_API_INFO`.
    pub fn from_config(
        c: &LotusConfig,
        network: Network,
        api_info_env: Option<&str>,
    ) -> Result<LotusChain, RpcError> {
        let endpoint = Endpoint::from_config(c, api_info_env)?;
        Ok(LotusChain::new(
            LotusClient::new(endpoint, network, Duration::from_millis(c.call_timeout_ms)),
            Duration::from_millis(c.facts_budget_ms),
            Duration::from_millis(c.head_refresh_ms),
        ))
    }

    /// The client, to share with the [`super::MinerInfoUpdater`].
    pub fn client(&self) -> Arc<LotusClient> {
        self.client.clone()
    }

    fn caches(&self) -> std::sync::MutexGuard<'_, Caches> {
        self.caches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The head, re-read at most every `head_refresh`.
    pub async fn head(&self) -> Result<Head, RpcError> {
        if let Some((at, h)) = &self.caches().head {
            if at.elapsed() < self.head_refresh {
                return Ok(h.clone());
            }
        }
        let h = self.client.chain_head().await?;
        let mut c = self.caches();
        if c.head
            .as_ref()
            .is_none_or(|(_, old)| old.height != h.height)
        {
            c.bounds.retain(|_, (epoch, _)| *epoch == h.height);
        }
        c.head = Some((Instant::now(), h.clone()));
        Ok(h)
    }

    /// StateAccountKey, remembered; f1/f3 addresses are their own key.
    pub async fn key_of(
        &self,
        addr: &Address,
        tsk: Option<&TipsetKey>,
    ) -> Result<Address, RpcError> {
        if matches!(addr.protocol(), Some(Protocol::Secp256k1 | Protocol::Bls)) {
            return Ok(addr.clone());
        }
        if let Some(k) = self.caches().keys.get(addr) {
            return Ok(k.clone());
        }
        let k = self.client.state_account_key(addr, tsk).await?;
        let mut c = self.caches();
        if c.keys.len() >= ACCOUNT_KEY_CACHE {
            c.keys.clear();
        }
        c.keys.insert(addr.clone(), k.clone());
        Ok(k)
    }

    /// StateDealProviderCollateralBounds min, remembered per (size, verified) per epoch.
    async fn collateral_min(
        &self,
        size: u64,
        verified: bool,
        head: &Head,
    ) -> Result<TokenAmount, RpcError> {
        if let Some((epoch, min)) = self.caches().bounds.get(&(size, verified)) {
            if *epoch == head.height {
                return Ok(min.clone());
            }
        }
        let (min, _) = self
            .client
            .state_deal_provider_collateral_bounds(size, verified, Some(&head.key))
            .await?;
        self.caches()
            .bounds
            .insert((size, verified), (head.height, min.clone()));
        Ok(min)
    }

    /// The facts for `params`, each one `None` if its call failed or missed the budget.
    pub async fn gather(&self, params: &DealParams) -> ChainFacts {
        let deadline = Instant::now() + self.budget;
        let p = &params.client_deal_proposal.proposal;
        let log = |what: &str, r: Option<&RpcError>| {
            if let Some(e) = r {
                tracing::warn!(deal = %params.deal_uuid, "chain: {what}: {e}");
            }
        };
        let head = match runtime::deadline(deadline, self.head()).await {
            Some(Ok(h)) => h,
            Some(Err(e)) => {
                tracing::warn!(deal = %params.deal_uuid, "chain: head: {e}");
                return ChainFacts::default();
            }
            None => {
                tracing::warn!(deal = %params.deal_uuid, budget = ?self.budget, "chain: head not read within the budget");
                return ChainFacts::default();
            }
        };
        let tsk = Some(&head.key);
        let key_and_auth = async {
            let key = self.key_of(&p.client, tsk).await;
            log("StateAccountKey", key.as_ref().err());
            let key = key.ok()?;
            if key.protocol() != Some(Protocol::Delegated) {
                return Some((key, None));
            }
            let auth = self
                .client
                .authenticate_message(
                    &key,
                    &params.client_deal_proposal.client_signature,
                    &p.to_cbor(),
                    tsk,
                )
                .await;
            log("AuthenticateMessage (StateCall)", auth.as_ref().err());
            Some((key, auth.ok()))
        };
        let bounds = async {
            let r = self
                .collateral_min(p.piece_size, p.verified_deal, &head)
                .await;
            log("StateDealProviderCollateralBounds", r.as_ref().err());
            r.ok()
        };
        let balance = async {
            let r = self.client.state_market_balance(&p.client, tsk).await;
            log("StateMarketBalance", r.as_ref().err());
            r.ok()
        };
        let datacap = async {
            if !p.verified_deal {
                // Only verified deals look at the datacap (Curio calls it only for them).
                return Some(None);
            }
            let r = self
                .client
                .state_verified_client_status(&p.client, tsk)
                .await;
            log("StateVerifiedClientStatus", r.as_ref().err());
            r.ok()
        };
        let (ka, bounds, balance, datacap) = futures::join!(
            runtime::deadline(deadline, key_and_auth),
            runtime::deadline(deadline, bounds),
            runtime::deadline(deadline, balance),
            runtime::deadline(deadline, datacap),
        );
        if [
            ka.is_none(),
            bounds.is_none(),
            balance.is_none(),
            datacap.is_none(),
        ]
        .contains(&true)
        {
            tracing::warn!(deal = %params.deal_uuid, budget = ?self.budget, "chain: some facts were not read within the budget");
        }
        let (client_key, f4_authenticated) = match ka.flatten() {
            Some((k, a)) => (Some(k), a),
            None => (None, None),
        };
        ChainFacts {
            head_epoch: Some(head.height),
            client_key,
            f4_authenticated,
            provider_collateral_min: bounds.flatten(),
            client_balance: balance.flatten(),
            client_datacap: datacap.flatten(),
        }
    }
}

impl ChainFactsSource for LotusChain {
    fn facts_for<'a>(&'a self, params: &'a DealParams) -> ChainFuture<'a, ChainFacts> {
        Box::pin(self.gather(params))
    }

    fn head_epoch(&self) -> ChainFuture<'_, Option<i64>> {
        Box::pin(async move {
            match runtime::deadline(Instant::now() + self.budget, self.head()).await {
                Some(Ok(h)) => Some(h.height),
                Some(Err(e)) => {
                    tracing::warn!("chain: head: {e}");
                    None
                }
                None => None,
            }
        })
    }

    fn account_key<'a>(&'a self, addr: &'a Address) -> ChainFuture<'a, Option<Address>> {
        Box::pin(async move {
            match runtime::deadline(Instant::now() + self.budget, self.key_of(addr, None)).await {
                Some(Ok(k)) => Some(k),
                Some(Err(e)) => {
                    tracing::warn!(%addr, "chain: StateAccountKey: {e}");
                    None
                }
                None => None,
            }
        })
    }

    fn describe(&self) -> String {
        format!(
            "Lotus chain mode: JSON-RPC at {} (calls time out after {:?}, facts budget {:?})",
            self.client.endpoint.url(),
            self.client.call_timeout,
            self.budget
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_info_forms() {
        let e = Endpoint::from_api_info(
            "eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJyZWFkIl19.sig:/ip4/10.0.0.5/tcp/1234/http",
        )
        .unwrap();
        assert_eq!(e.host, "10.0.0.5");
        assert_eq!(e.port, 1234);
        assert_eq!(e.path, "/rpc/v1");
        assert_eq!(e.token, "eyJhbGciOiJIUzI1NiJ9.eyJBbGxvdyI6WyJyZWFkIl19.sig");
        assert_eq!(e.url(), "http://10.0.0.5:1234/rpc/v1");
        assert!(!format!("{e:?}").contains("eyJ"));
        let e = Endpoint::from_api_info("/dns/lotus.local/tcp/1234").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.token.as_str()),
            ("lotus.local", 1234, "")
        );
        let e = Endpoint::from_api_info("tok:/ip6/::1/tcp/1234/http").unwrap();
        assert_eq!(e.url(), "http://[::1]:1234/rpc/v1");
        let e = Endpoint::from_api_info("tok:http://127.0.0.1:1234").unwrap();
        assert_eq!(e.url(), "http://127.0.0.1:1234/rpc/v1");
        assert!(Endpoint::from_api_info("tok:/ip4/1.2.3.4/tcp/1234/https").is_err());
        assert!(Endpoint::from_api_info("tok:/ip4/1.2.3.4/udp/1234").is_err());
        assert!(Endpoint::from_api_info("garbage").is_err());
    }

    #[test]
    fn config_wins_over_env() {
        let c = LotusConfig {
            url: "http://127.0.0.1:9/rpc/v1".into(),
            ..LotusConfig::default()
        };
        let e = Endpoint::from_config(&c, Some("envtok:/ip4/10.0.0.5/tcp/1234/http")).unwrap();
        assert_eq!(e.url(), "http://127.0.0.1:9/rpc/v1");
        assert_eq!(e.token, "envtok");
        let e = Endpoint::from_config(&LotusConfig::default(), Some("t:/ip4/10.0.0.5/tcp/1/http"))
            .unwrap();
        assert_eq!(e.url(), "http://10.0.0.5:1/rpc/v1");
        assert!(Endpoint::from_config(&LotusConfig::default(), None).is_err());
        assert!(Endpoint::from_url("https://x/rpc/v1", "").is_err());
    }

    #[test]
    fn uuid_text() {
        assert_eq!(
            uuid_string(&[7; 16]),
            "07070707-0707-0707-0707-070707070707"
        );
    }
}
