//! `FakeMiner`: a TEST DOUBLE of lotus-miner's JSON-RPC v0 endpoint on 127.0.0.1 (no
//! lotus-miner runs here). It does the work a check needs: `SectorAddPieceToAny` really
//! GETs the piece from the `{"Type":"http","Info":<url>}` reader it is handed, checks the
//! byte count equals the unpadded size, computes the piece commitment of what it received
//! with testkit's bit-by-bit CommP (`crate::commp`, no code shared with dealport's) and refuses a mismatch as lotus does;
//! each accepted piece opens a sector that walks through lotus's sealing states over time
//! (or into `FailedUnrecoverable` for deals marked failing); a test may also open a sector
//! already holding several deals. It counts add-piece calls per deal and
//! `SectorsStatus` calls. JSON shapes from filecoin-project/lotus
//! `documentation/en/api-v0-methods-miner.md` (`### SectorAddPieceToAny`,
//! `### SectorsStatus`, `### SectorsList`, `### SectorsListInStates`).
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::rpc_server;

/// The states a good sector walks through, one per `step` (lotus sector_state.go names).
pub const GOOD_WALK: &[&str] = &[
    "WaitDeals",
    "PreCommit1",
    "PreCommit2",
    "WaitSeed",
    "Committing",
    "Proving",
];
/// A failing sector's walk.
pub const FAILING_WALK: &[&str] = &["WaitDeals", "PreCommit1", "FailedUnrecoverable"];
/// lotus's refusal while its sealing pipeline is full.
pub const TOO_MANY: &str = "too many sectors sealing";

#[derive(Debug, Clone)]
struct Sector {
    opened: Instant,
    failing: bool,
    pieces: Vec<Piece>,
}

/// A deal's piece in a sector.
#[derive(Debug, Clone)]
pub struct Piece {
    pub deal_id: u64,
    pub padded: u64,
    pub piece_cid: String,
}

#[derive(Default)]
struct State {
    token: Option<String>,
    step: Duration,
    too_many: u32,
    lose_answers: u32,
    hold_answers: u32,
    failing: HashSet<u64>,
    next_sector: u64,
    sectors: BTreeMap<u64, Sector>,
    add_calls: HashMap<u64, u32>,
    status_calls: u32,
    errors: Vec<String>,
    urls: Vec<String>,
}

impl State {
    /// A new sector holding `pieces`, walking the states from now (the failing walk if
    /// any of its deals is marked failing). Its number.
    fn open_sector(&mut self, pieces: Vec<Piece>) -> u64 {
        let n = self.next_sector;
        self.next_sector += 1;
        let failing = pieces.iter().any(|p| self.failing.contains(&p.deal_id));
        let opened = Instant::now();
        self.sectors.insert(
            n,
            Sector {
                opened,
                failing,
                pieces,
            },
        );
        n
    }
}

/// TEST DOUBLE of lotus-miner (see the module doc).
#[derive(Clone)]
pub struct FakeMiner {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    released: Arc<Released>,
}

/// Held answers wait here until [`FakeMiner::release`] (or the double is dropped).
#[derive(Default)]
struct Released {
    yes: Mutex<bool>,
    cv: Condvar,
}

impl Released {
    fn wait(&self) {
        let mut yes = self.yes.lock().unwrap_or_else(|e| e.into_inner());
        while !*yes {
            yes = self.cv.wait(yes).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What the double does with an add-piece call it took.
enum Taken {
    Answer(Value),
    /// Close the connection without answering.
    Lose,
    /// Say nothing until released, then close without answering.
    Hold,
}

impl FakeMiner {
    /// Sectors move one state per `step`.
    pub fn start(step: Duration) -> FakeMiner {
        let state = Arc::new(Mutex::new(State {
            step,
            next_sector: 12,
            ..State::default()
        }));
        let st = state.clone();
        let released = Arc::new(Released::default());
        let rel = released.clone();
        let addr = rpc_server::listen(move |conn| {
            let _ = serve(conn, st.clone(), &rel);
        });
        FakeMiner {
            addr,
            state,
            released,
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests must carry `Authorization: Bearer <token>` (else 401, as lotus-miner).
    pub fn require_token(&self, token: &str) {
        self.st().token = Some(token.to_owned());
    }
    /// Refuse the next `n` add-piece calls with lotus's "too many sectors sealing".
    pub fn refuse_too_many(&self, n: u32) {
        self.st().too_many = n;
    }
    /// Take the next `n` pieces, then close the connection without answering (a crash
    /// between lotus-miner taking the piece and dealport hearing of it).
    pub fn lose_answers(&self, n: u32) {
        self.st().lose_answers = n;
    }
    /// Take the next `n` pieces, then hold the answer (the connection open, nothing
    /// said) until [`FakeMiner::release`]: the window in which the caller may die.
    pub fn hold_answers(&self, n: u32) {
        self.st().hold_answers = n;
    }
    /// Let held answers go (their connections close unanswered).
    pub fn release(&self) {
        *self.released.yes.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.released.cv.notify_all();
    }
    /// Pieces of `deal_id` the double took into a sector.
    pub fn pieces_taken(&self, deal_id: u64) -> usize {
        self.st()
            .sectors
            .values()
            .flat_map(|s| &s.pieces)
            .filter(|p| p.deal_id == deal_id)
            .count()
    }
    /// The sector that takes `deal_id` will fail.
    pub fn fail_deal(&self, deal_id: u64) {
        self.st().failing.insert(deal_id);
    }
    /// Open a sector already holding `pieces` (as lotus packs several deals into one
    /// sector); it walks the states from now. Its number.
    pub fn open_sector(&self, pieces: Vec<Piece>) -> u64 {
        self.st().open_sector(pieces)
    }
    /// `SectorsStatus` calls seen.
    pub fn status_calls(&self) -> u32 {
        self.st().status_calls
    }
    /// `SectorAddPieceToAny` calls seen for `deal_id` (taken or refused).
    pub fn add_calls(&self, deal_id: u64) -> u32 {
        self.st().add_calls.get(&deal_id).copied().unwrap_or(0)
    }
    /// The errors the double answered add-piece calls with.
    pub fn errors(&self) -> Vec<String> {
        self.st().errors.clone()
    }
    /// The piece URLs handed to the double, in order.
    pub fn urls(&self) -> Vec<String> {
        self.st().urls.clone()
    }
    /// `token:/ip4/127.0.0.1/tcp/<port>/http`, as `MINER_API_INFO`.
    pub fn api_info(&self, token: &str) -> String {
        format!("{token}:/ip4/127.0.0.1/tcp/{}/http", self.addr.port())
    }
}

fn state_of(s: &Sector, step: Duration, now: Instant) -> &'static str {
    let walk = if s.failing { FAILING_WALK } else { GOOD_WALK };
    let i = (now.duration_since(s.opened).as_millis() / step.as_millis().max(1)) as usize;
    walk[i.min(walk.len() - 1)]
}

fn serve(conn: TcpStream, st: Arc<Mutex<State>>, released: &Released) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    while let Some(rpc_server::Request { line, auth, body }) = rpc_server::read_request(&mut r)? {
        let want = st.lock().unwrap().token.clone();
        if want.is_some_and(|t| auth.as_deref() != Some(&format!("Bearer {t}"))) {
            rpc_server::write_empty(&mut w, "401 Unauthorized")?;
            continue;
        }
        if !line.starts_with("POST /rpc/v0 ") {
            rpc_server::write_empty(&mut w, "404 Not Found")?;
            continue;
        }
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = req["method"].as_str().unwrap_or("").to_owned();
        let answer = match method.as_str() {
            "Filecoin.SectorAddPieceToAny" => match add_piece(&st, &req["params"]) {
                Ok(Taken::Answer(v)) => Ok(v),
                Ok(Taken::Lose) => return Ok(()),
                Ok(Taken::Hold) => {
                    released.wait();
                    return Ok(());
                }
                Err(e) => Err(e),
            },
            "Filecoin.SectorsStatus" => sectors_status(&st, &req["params"]),
            "Filecoin.SectorsList" => {
                Ok(json!(st.lock().unwrap().sectors.keys().collect::<Vec<_>>()))
            }
            "Filecoin.SectorsListInStates" => {
                let states: Vec<String> =
                    serde_json::from_value(req["params"][0].clone()).unwrap_or_default();
                let s = st.lock().unwrap();
                let now = Instant::now();
                Ok(json!(s
                    .sectors
                    .iter()
                    .filter(|(_, x)| states.iter().any(|w| w == state_of(x, s.step, now)))
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()))
            }
            _ => Err(format!("method '{method}' not found")),
        };
        let answer = match answer {
            Ok(v) => json!({"jsonrpc": "2.0", "id": req["id"], "result": v}),
            Err(m) => {
                json!({"jsonrpc": "2.0", "id": req["id"], "error": {"code": 1, "message": m}})
            }
        };
        rpc_server::write_json(&mut w, &answer)?;
    }
    Ok(())
}

fn add_piece(st: &Arc<Mutex<State>>, p: &Value) -> Result<Taken, String> {
    let size = p[0].as_u64().ok_or("size is not a number")?;
    let info = &p[2];
    let deal_id = info["DealID"].as_u64().ok_or("no DealID")?;
    let padded = info["DealProposal"]["PieceSize"]
        .as_u64()
        .ok_or("no PieceSize")?;
    let piece_cid = info["DealProposal"]["PieceCID"]["/"]
        .as_str()
        .ok_or("no PieceCID")?
        .to_owned();
    let result = (|| {
        {
            let mut s = st.lock().unwrap();
            *s.add_calls.entry(deal_id).or_default() += 1;
            if s.too_many > 0 {
                s.too_many -= 1;
                return Err(format!("{TOO_MANY} (curSealing: 8, maxSealing: 8)"));
            }
        }
        // lotus: the deal's padded size must be the unpadded size's padding.
        if padded - padded / 128 != size {
            return Err(format!(
                "piece size mismatch: size {size} is not the unpadded size of {padded}"
            ));
        }
        if p[1]["Type"] != "http" {
            return Err(format!("unsupported reader type {}", p[1]["Type"]));
        }
        let url = p[1]["Info"].as_str().ok_or("no reader URL")?;
        st.lock().unwrap().urls.push(url.to_owned());
        let data = http_get(url).map_err(|e| format!("reading piece: {e}"))?;
        if data.len() as u64 != size {
            return Err(format!(
                "reading piece: got {} bytes, expected {size}",
                data.len()
            ));
        }
        let got = commp_cid(&crate::commp::naive_commp(&data, padded));
        if got != piece_cid {
            return Err(format!(
                "got unexpected piece CID: expected:{piece_cid}, got:{got}"
            ));
        }
        let mut s = st.lock().unwrap();
        let n = s.open_sector(vec![Piece {
            deal_id,
            padded,
            piece_cid,
        }]);
        if s.lose_answers > 0 {
            s.lose_answers -= 1;
            return Ok(Taken::Lose);
        }
        if s.hold_answers > 0 {
            s.hold_answers -= 1;
            return Ok(Taken::Hold);
        }
        // `### SectorAddPieceToAny` Response: `{"Sector": 9, "Offset": 1032}`.
        Ok(Taken::Answer(json!({"Sector": n, "Offset": 0})))
    })();
    if let Err(e) = &result {
        st.lock().unwrap().errors.push(e.clone());
    }
    result
}

fn sectors_status(st: &Arc<Mutex<State>>, p: &Value) -> Result<Value, String> {
    let n = p[0].as_u64().ok_or("sector is not a number")?;
    let mut s = st.lock().unwrap();
    s.status_calls += 1;
    let x = s
        .sectors
        .get(&n)
        .ok_or_else(|| format!("sector {n} not found"))?;
    // `### SectorsStatus` Response (abridged to the fields read): `{"SectorID": 9,
    // "State": "Proving", "Deals": [5432], "Pieces": [{"Piece": {"Size": 1032,
    // "PieceCID": {...}}, "DealInfo": {...}}], ...}`.
    Ok(json!({
        "SectorID": n,
        "State": state_of(x, s.step, Instant::now()),
        "CommD": null, "CommR": null, "Proof": "",
        "Deals": x.pieces.iter().map(|p| p.deal_id).collect::<Vec<_>>(),
        "Pieces": x.pieces.iter().map(|p| json!(
            {"Piece": {"Size": p.padded, "PieceCID": {"/": p.piece_cid}},
             "DealInfo": {"PublishCid": null, "DealID": p.deal_id}})).collect::<Vec<_>>(),
        "Log": null, "SealProof": 8, "Activation": 0, "Expiration": 0,
        "DealWeight": "0", "VerifiedDealWeight": "0", "InitialPledge": "0",
        "OnTime": 0, "Early": 0
    }))
}

/// A plain GET (no headers beyond Host, as lotus-miner's http reader), the whole body.
pub fn http_get(url: &str) -> Result<Vec<u8>, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut c = TcpStream::connect(host).map_err(|e| e.to_string())?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    c.read_to_end(&mut all).map_err(|e| e.to_string())?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("HTTP {status}"));
    }
    Ok(all[end + 4..].to_vec())
}

/// The piece CID string (`baga6ea4sea…`): CIDv1, fil-commitment-unsealed (0xf101),
/// sha2-256-trunc254-padded (0x1012), base32 lowercase with the `b` prefix.
pub fn commp_cid(digest: &[u8; 32]) -> String {
    let mut bytes = vec![0x01, 0x81, 0xe2, 0x03, 0x92, 0x20, 0x20];
    bytes.extend_from_slice(digest);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::from("b");
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in &bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}
