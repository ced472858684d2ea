//! IndexerDouble: a TEST DOUBLE of an IPNI indexer (storetheindex's ingest side), since
//! no indexer runs here. It does the work an indexer's ingestion does, with its own
//! code (it shares no parsing or verification with dealport; only CID strings are read
//! with core's parser):
//!
//! - takes announcements: `PUT /announce` with the JSON announce message (go-libipni
//!   `announce/message.Message`: `Cid` as `{"/": cid}`, `Addrs` as base64 binary
//!   multiaddrs ending in `/p2p/<publisher>`; ipni/specs IPNI.md "HTTP" announcements);
//!   answers 204 (or 503 while told to fail);
//! - syncs from the announced publisher (ipni/specs IPNI_HTTP_PROVIDER.md): `GET
//!   /ipni/v1/ad/head`, checks its `sig` (Ed25519 over the head CID's bytes then the
//!   topic) against its `pubkey` and that the key is the announced publisher's; then
//!   walks `PreviousID` from the head, `GET /ipni/v1/ad/<cid>` for each advertisement,
//!   checking that the bytes hash to the CID, parsing the signature envelope (protobuf:
//!   public key 1, payload type 2, payload 3, signature 5), recomputing the payload
//!   (sha2-256 multihash of PreviousID, Entries, Provider, Addresses, Metadata, IsRm:
//!   go-libipni `signaturePayload`) and verifying the Ed25519 signature over the
//!   length-prefixed domain `indexer`, payload type and payload (go-libp2p record
//!   envelopes); and walks every entry chunk through `Next`.
use std::{
    collections::{BTreeSet, HashMap},
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use dealport_core::wire::Cid;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rpc_server::{listen, read_request, write_empty};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Most advertisements and entry chunks one sync walks (a loop guard).
const MAX_OBJECTS: usize = 100_000;

/// One announcement as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub cid: String,
    /// `ip:port` of the `/ip4/…/tcp/…/http` address.
    pub http: SocketAddr,
    /// The `/p2p/` peer ID, base58.
    pub publisher: String,
}

/// One advertisement as walked, with its entries.
#[derive(Debug, Clone)]
pub struct AdSeen {
    pub cid: String,
    pub previous: Option<String>,
    pub provider: String,
    pub addresses: Vec<String>,
    pub context_id: Vec<u8>,
    pub metadata: Vec<u8>,
    pub is_rm: bool,
    pub multihashes: Vec<Vec<u8>>,
    /// Entry chunks walked for it.
    pub chunks: usize,
}

/// What a sync found: the chain from the first advertisement to the head.
#[derive(Debug, Clone)]
pub struct Synced {
    pub head: String,
    pub topic: Option<String>,
    pub ads: Vec<AdSeen>,
}

impl Synced {
    /// The multihashes the indexer would serve now: each advertisement's entries under
    /// its context ID, a removal dropping its context ID's.
    pub fn live_multihashes(&self) -> BTreeSet<Vec<u8>> {
        let mut by_context: HashMap<Vec<u8>, BTreeSet<Vec<u8>>> = HashMap::new();
        for ad in &self.ads {
            if ad.is_rm {
                by_context.remove(&ad.context_id);
            } else {
                by_context
                    .entry(ad.context_id.clone())
                    .or_default()
                    .extend(ad.multihashes.iter().cloned());
            }
        }
        by_context.into_values().flatten().collect()
    }
}

#[derive(Default)]
struct State {
    announced: Vec<Announced>,
    fail_next: usize,
}

/// The double. See the module docs.
#[derive(Clone)]
pub struct IndexerDouble {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl IndexerDouble {
    pub fn start() -> IndexerDouble {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let addr = listen(move |conn| serve(conn, &s));
        IndexerDouble { addr, state }
    }

    /// The announce URL to configure (`[ipni] announce_urls`).
    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    /// Answer the next `n` announcements with 503.
    pub fn fail_next(&self, n: usize) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn announced(&self) -> Vec<Announced> {
        self.state.lock().unwrap().announced.clone()
    }

    /// Sync from the last announcement's publisher.
    pub fn sync_latest(&self) -> Result<Synced, String> {
        let a = self
            .announced()
            .last()
            .cloned()
            .ok_or("nothing announced yet")?;
        sync(&a)
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(conn);
    while let Ok(Some(req)) = read_request(&mut r) {
        let ok = req.line.starts_with("PUT /announce ");
        let parsed = ok.then(|| parse_announce(&req.body)).transpose();
        let mut s = state.lock().unwrap();
        let status = match parsed {
            _ if !ok => "404 Not Found",
            Err(_) => "400 Bad Request",
            Ok(_) if s.fail_next > 0 => {
                s.fail_next -= 1;
                "503 Service Unavailable"
            }
            Ok(a) => {
                s.announced.extend(a);
                "204 No Content"
            }
        };
        drop(s);
        if write_empty(&mut w, status).is_err() {
            return;
        }
    }
}

/// The announce message's CID and its first `/ip4/…/tcp/…/http/p2p/…` address.
fn parse_announce(body: &[u8]) -> Result<Announced, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let cid = v["Cid"]["/"].as_str().ok_or("no Cid")?.to_owned();
    for a in v["Addrs"].as_array().ok_or("no Addrs")? {
        let bytes = B64
            .decode(a.as_str().ok_or("an address that is not a string")?)
            .map_err(|e| e.to_string())?;
        if let Some((http, publisher)) = http_p2p(&bytes) {
            return Ok(Announced {
                cid,
                http,
                publisher,
            });
        }
    }
    Err("no /ip4/…/tcp/…/http/p2p/… address".into())
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &x) in b.iter().enumerate().take(9) {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A binary multiaddr `/ip4/<a>/tcp/<p>/http/p2p/<id>` (multicodec 4, 6, 480, 421).
fn http_p2p(mut b: &[u8]) -> Option<(SocketAddr, String)> {
    let (mut ip, mut port, mut http, mut peer) = (None, None, false, None);
    while !b.is_empty() {
        let (code, n) = uvarint(b)?;
        b = &b[n..];
        match code {
            4 => {
                ip = Some(std::net::Ipv4Addr::new(
                    *b.first()?,
                    *b.get(1)?,
                    *b.get(2)?,
                    *b.get(3)?,
                ));
                b = &b[4..];
            }
            6 => {
                port = Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
                b = &b[2..];
            }
            480 => http = true,
            421 => {
                let (len, n) = uvarint(b)?;
                let id = b.get(n..n + len as usize)?;
                peer = Some(bs58::encode(id).into_string());
                b = &b[n + len as usize..];
            }
            _ => return None,
        }
    }
    http.then_some(())?;
    Some((SocketAddr::from((ip?, port?)), peer?))
}

/// `GET path` on `addr`: status and body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the head")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, dechunk(&body)?));
    }
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&b[..line_end])
                .map_err(|e| e.to_string())?
                .trim(),
            16,
        )
        .map_err(|e| e.to_string())?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("short chunk")?);
        b = b.get(size + 2..).ok_or("short chunk")?;
    }
}

fn bytes_field(v: &Value, key: &str) -> Result<Vec<u8>, String> {
    let s = v[key]["/"]["bytes"]
        .as_str()
        .ok_or(format!("{key}: not bytes"))?;
    let engine = if s.ends_with('=') {
        base64::engine::general_purpose::STANDARD
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD
    };
    engine.decode(s).map_err(|e| format!("{key}: {e}"))
}

/// An Ed25519 libp2p public key (protobuf `08 01 12 20 <32 bytes>`), and its peer ID.
fn ed25519_key(proto: &[u8]) -> Result<(VerifyingKey, String), String> {
    let raw: [u8; 32] = match proto {
        [0x08, 0x01, 0x12, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().unwrap(),
        _ => return Err("not an Ed25519 libp2p public key".into()),
    };
    let key = VerifyingKey::from_bytes(&raw).map_err(|e| e.to_string())?;
    let mut mh = vec![0x00, proto.len() as u8];
    mh.extend_from_slice(proto);
    Ok((key, bs58::encode(mh).into_string()))
}

fn verify(key: &VerifyingKey, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    let sig = Signature::from_slice(sig).map_err(|e| e.to_string())?;
    key.verify(msg, &sig)
        .map_err(|_| "bad signature".to_owned())
}

/// Fetch `cid` and check its bytes hash to it (dag-json, sha2-256).
fn fetch(http: SocketAddr, cid: &str) -> Result<Value, String> {
    let (status, body) = get(http, &format!("/ipni/v1/ad/{cid}"))?;
    if status != 200 {
        return Err(format!("GET {cid}: {status}"));
    }
    let c = Cid::parse(cid).map_err(|e| format!("{cid}: {e}"))?;
    let want = {
        let mut b = vec![0x01, 0xa9, 0x02, 0x12, 0x20];
        b.extend_from_slice(&Sha256::digest(&body));
        b
    };
    if c.as_bytes() != want {
        return Err(format!(
            "{cid}: the body does not hash to the CID (dag-json, sha2-256)"
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{cid}: {e}"))
}

/// The protobuf fields 1, 2, 3, 5 of an envelope (all length-delimited).
fn envelope(b: &[u8]) -> Result<HashMap<u64, Vec<u8>>, String> {
    let mut out = HashMap::new();
    let mut at = 0;
    while at < b.len() {
        let (key, n) = uvarint(&b[at..]).ok_or("envelope key")?;
        at += n;
        if key & 7 != 2 {
            return Err("envelope: unexpected wire type".into());
        }
        let (len, n) = uvarint(&b[at..]).ok_or("envelope length")?;
        at += n;
        let v = b.get(at..at + len as usize).ok_or("envelope truncated")?;
        out.insert(key >> 3, v.to_vec());
        at += len as usize;
    }
    Ok(out)
}

fn check_ad_signature(ad: &Value, sig_bytes: &[u8]) -> Result<String, String> {
    let env = envelope(sig_bytes)?;
    let field = |n| {
        env.get(&n)
            .cloned()
            .ok_or(format!("envelope field {n} missing"))
    };
    let (pubkey, ptype, payload, sig) = (field(1)?, field(2)?, field(3)?, field(5)?);
    if ptype != b"/indexer/ingest/adSignature" {
        return Err("envelope: not an advertisement signature".into());
    }
    let link = |k: &str| -> Result<Vec<u8>, String> {
        match ad[k]["/"].as_str() {
            Some(s) => Ok(Cid::parse(s)
                .map_err(|e| e.to_string())?
                .as_bytes()
                .to_vec()),
            None => Ok(Vec::new()),
        }
    };
    let mut h = Sha256::new();
    h.update(link("PreviousID")?);
    h.update(link("Entries")?);
    h.update(ad["Provider"].as_str().unwrap_or("").as_bytes());
    for a in ad["Addresses"].as_array().ok_or("Addresses")? {
        h.update(a.as_str().unwrap_or("").as_bytes());
    }
    h.update(bytes_field(ad, "Metadata")?);
    h.update([u8::from(ad["IsRm"].as_bool().ok_or("IsRm")?)]);
    let mut want = vec![0x12, 0x20];
    want.extend_from_slice(&h.finalize());
    if payload != want {
        return Err("envelope: the payload is not this advertisement's".into());
    }
    let mut signed = Vec::new();
    for f in [&b"indexer"[..], &ptype, &payload] {
        signed.push(f.len() as u8);
        signed.extend_from_slice(f);
    }
    let (key, peer) = ed25519_key(&pubkey)?;
    verify(&key, &signed, &sig)?;
    Ok(peer)
}

/// Sync the chain `a` announced. See the module docs.
pub fn sync(a: &Announced) -> Result<Synced, String> {
    let (status, body) = get(a.http, "/ipni/v1/ad/head")?;
    if status != 200 {
        return Err(format!("GET head: {status}"));
    }
    let head: Value = serde_json::from_slice(&body).map_err(|e| format!("head: {e}"))?;
    let head_cid = head["head"]["/"]
        .as_str()
        .ok_or("head: no link")?
        .to_owned();
    let topic = head["topic"].as_str().map(str::to_owned);
    let (key, peer) = ed25519_key(&bytes_field(&head, "pubkey")?)?;
    if peer != a.publisher {
        return Err(format!(
            "head signed by {peer}, announced by {}",
            a.publisher
        ));
    }
    let mut signed = Cid::parse(&head_cid)
        .map_err(|e| e.to_string())?
        .as_bytes()
        .to_vec();
    signed.extend_from_slice(topic.as_deref().unwrap_or("").as_bytes());
    verify(&key, &signed, &bytes_field(&head, "sig")?).map_err(|e| format!("head: {e}"))?;
    let no_entries = {
        let mut b = vec![0x01, 0x55, 0x12, 0x10];
        b.extend_from_slice(&Sha256::digest(b"")[..16]);
        Cid::from_bytes(&b).unwrap().to_string()
    };
    let mut ads = Vec::new();
    let mut next = Some(head_cid.clone());
    let mut walked = 0;
    while let Some(cid) = next {
        walked += 1;
        if walked > MAX_OBJECTS {
            return Err("the chain does not end".into());
        }
        let ad = fetch(a.http, &cid)?;
        let signer = check_ad_signature(&ad, &bytes_field(&ad, "Signature")?)
            .map_err(|e| format!("{cid}: {e}"))?;
        let provider = ad["Provider"].as_str().ok_or("Provider")?.to_owned();
        if signer != provider {
            return Err(format!("{cid}: signed by {signer}, provider {provider}"));
        }
        let entries = ad["Entries"]["/"].as_str().ok_or("Entries")?.to_owned();
        let mut multihashes = Vec::new();
        let mut chunks = 0;
        let mut chunk = (entries != no_entries).then_some(entries);
        while let Some(c) = chunk {
            walked += 1;
            if walked > MAX_OBJECTS {
                return Err("an entries chain does not end".into());
            }
            let v = fetch(a.http, &c)?;
            for e in v["Entries"].as_array().ok_or("Entries")? {
                let s = e["/"]["bytes"]
                    .as_str()
                    .ok_or("an entry that is not bytes")?;
                multihashes.push(
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(s.trim_end_matches('='))
                        .map_err(|e| e.to_string())?,
                );
            }
            chunks += 1;
            chunk = v["Next"]["/"].as_str().map(str::to_owned);
        }
        let previous = ad["PreviousID"]["/"].as_str().map(str::to_owned);
        ads.push(AdSeen {
            cid,
            previous: previous.clone(),
            provider,
            addresses: ad["Addresses"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            context_id: bytes_field(&ad, "ContextID")?,
            metadata: bytes_field(&ad, "Metadata")?,
            is_rm: ad["IsRm"].as_bool().unwrap_or(false),
            multihashes,
            chunks,
        });
        next = previous;
    }
    ads.reverse();
    Ok(Synced {
        head: head_cid,
        topic,
        ads,
    })
}
