//! `dealport bench`: an MK12 load generator over the client's libp2p stack.
//!
//! N connections (one swarm and one fresh identity each, so every connection is a distinct
//! peer to the provider), M workers per connection, each worker opening one stream per
//! request as Boost's client does: write the request, read exactly one CBOR item, close.
//! Deal proposals are built and signed before the clock starts, so client-side signing
//! never limits the measurement. Everything runs on the [`Runtime`] it is given (async-io
//! sockets and timers, no tokio).
//!
//! ```text
//! prepare(&BenchConfig)            -> Prepared (request bytes, signed up front)
//! run(runtime, &BenchConfig, prep) -> Report (throughput, p50/p90/p99/max latency)
//! ```

use std::{
    io::Write as _,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_io::Timer;
use dealport_core::wire::{
    protocols, Address, AskRequest, AskResponse, Cbor, Cid, DealResponse, DealStatusResponse,
    TokenAmount,
};
use futures::{channel::oneshot, AsyncWriteExt, StreamExt};
use libp2p::{
    core::multiaddr::Protocol,
    swarm::{self, dial_opts::DialOpts, NetworkBehaviour, SwarmEvent},
    Multiaddr, PeerId, StreamProtocol, Swarm,
};

use crate::{
    self as client, p2p::read_one_item, transport::build_client_transport, DataTransfer,
    DealProtocol, DealSpec, Wallet,
};
use dealport_node::runtime::Runtime;

/// `lotus wallet export` of the golden secp256k1 client (secret = sha256("mk12 example
/// secp256k1 client")), address f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna.
pub const GOLDEN_SECP_KEY: &str = "7b2254797065223a22736563703235366b31222c22507269766174654b6579223a22796a53616f35564348517534644b6132794953484f4b32357331772b424261674942723845396249786d633d227d";
/// `lotus wallet export` of the golden BLS client (scalar = sha256("mk12 example bls
/// client") mod r), address f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a.
pub const GOLDEN_BLS_KEY: &str = "7b2254797065223a22626c73222c22507269766174654b6579223a224f312b475878566c4179326d304846747736664b775455626453786659376c6b6b44364b723336713755633d227d";
/// Golden vector S1: the status of deal 8f1c7b1e-… signed by the secp256k1 client.
pub const S1_HEX: &str = "a2684465616c55554944508f1c7b1e6a0e4c4b9b7e2a4d3c5e6f70695369676e617475726558420106ca357e3cfe40a96bf94e3685587317fbe58d28336f2904bb87f361ec0078df6fd29f93a09bb5dfef3998d5ad64517ccfad0b28c5bea8f5c5d7b637f5c19e5501";

/// What each request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// A fixed DealStatusRequest (CBOR bytes) on `/fil/storage/status/1.2.0`.
    Status(Vec<u8>),
    /// An AskRequest for this miner on `/fil/storage/ask/1.1.0`.
    Ask(Address),
    /// A new deal per request (new UUID, new label), signed by the golden secp256k1 client.
    DealSecp,
    /// The same with the golden BLS client.
    DealBls,
    /// Open the connections, hold them idle for the duration, send nothing.
    Idle,
    /// Bulk upload: one signed deal of about this many bytes (its transfer headers padded),
    /// resent as an identical retry; measures bytes per second through the transport.
    Bulk(usize),
}

/// The bulk workload's request size bounds: the padding sits in `Transfer.Params`, a byte
/// string capped at 2 MiB (cbor-gen's `ByteArrayMaxLen`).
pub const BULK_MIN: usize = 4 << 10;
pub const BULK_MAX: usize = 2_000_000;

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Status(_) => "status",
            Workload::Ask(_) => "ask",
            Workload::DealSecp => "deal-secp",
            Workload::DealBls => "deal-bls",
            Workload::Idle => "idle",
            Workload::Bulk(_) => "bulk",
        }
    }

    fn protocol(&self) -> &'static str {
        match self {
            Workload::Status(_) => protocols::STATUS_1_2_0,
            Workload::Ask(_) => protocols::ASK_1_1_0,
            Workload::DealSecp | Workload::DealBls | Workload::Bulk(_) => protocols::DEAL_1_2_1,
            Workload::Idle => protocols::ASK_1_1_0,
        }
    }
}

/// One bench run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The provider, with `/p2p/<id>`; `/tcp/…` or `/tcp/…/ws`.
    pub target: Multiaddr,
    pub workload: Workload,
    pub connections: usize,
    /// Concurrent streams (workers) per connection.
    pub streams: usize,
    /// Stop after this long (measured from the first request)…
    pub duration: Option<Duration>,
    /// …or after this many requests, whichever comes first.
    pub requests: Option<u64>,
    /// Deal workloads: how many proposals to sign up front (default: `requests`, else
    /// 20,000 secp / 6,000 BLS). A run that uses them all stops early and says so.
    pub pool: Option<usize>,
    /// Keep retrying the first dial for this long (start-up measurements).
    pub connect_retry: Duration,
    /// Print a one-line progress display on stderr about once a second.
    pub progress: bool,
    /// Per-request bound (open + write + read).
    pub request_timeout: Duration,
    /// The server's process (same machine): its CPU time over the measured phase is
    /// reported per request.
    pub server_pid: Option<u32>,
    /// Deal workloads: propose offline deals (data imported later, as Spade's and
    /// Singularity's are) instead of HTTP transfers.
    pub offline: bool,
}

impl BenchConfig {
    pub fn new(target: Multiaddr, workload: Workload) -> BenchConfig {
        BenchConfig {
            target,
            workload,
            connections: 1,
            streams: 1,
            duration: Some(Duration::from_secs(5)),
            requests: None,
            pool: None,
            connect_retry: Duration::ZERO,
            progress: false,
            request_timeout: Duration::from_secs(30),
            server_pid: None,
            offline: false,
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub workload: String,
    pub target: String,
    pub transport: String,
    pub connections: usize,
    pub streams_per_connection: usize,
    /// Requests answered (whatever the answer said).
    pub requests: u64,
    /// Requests that failed at the stream level (no answer, timeout, reset, undecodable).
    pub errors: u64,
    /// Answers that decoded but said no (deal rejected, status `Error` non-empty).
    pub rejected: u64,
    pub first_error: Option<String>,
    pub first_rejection: Option<String>,
    /// Wall time of the measured phase.
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    /// Bytes of the answered requests (client to provider), and their rate in MiB/s.
    pub request_bytes: u64,
    pub request_mib_per_s: f64,
    pub latency: Latency,
    /// Time to open all connections (before the clock started).
    pub connect_s: f64,
    /// Connections the provider closed during the run.
    pub connections_lost: u64,
    /// Unix time (ms) at which the first answer arrived.
    pub first_answer_unix_ms: Option<u128>,
    /// The first answer's bytes, hex (to give a comparison server the same answers).
    pub first_answer_hex: Option<String>,
    /// Deal workloads: the pre-signed pool ran out before the duration ended.
    pub pool_exhausted: bool,
    /// Deal workloads: proposals signed before the clock started, and how long that took.
    pub presigned: usize,
    pub presign_s: f64,
    /// With `--server-pid`: the server process's CPU time (user + system) over the
    /// measured phase, per answered request, and in cores (CPU seconds per second).
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_request: Option<f64>,
    pub server_cpu_cores: Option<f64>,
}

/// `/proc/<pid>/stat`'s clock ticks per second (USER_HZ: 100 on Linux for every
/// architecture's /proc interface).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// utime + stime, in clock ticks, from the text of `/proc/<pid>/stat` (fields 14 and 15;
/// the command name in field 2 may hold spaces and parentheses, so count from its end).
pub fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The CPU seconds process `pid` has used so far.
fn process_cpu_s(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let ticks = cpu_ticks(&text).ok_or_else(|| format!("{path} has no utime/stime fields"))?;
    Ok(ticks as f64 / CLOCK_TICKS_PER_S)
}

impl Report {
    /// One human-readable line.
    pub fn line(&self) -> String {
        format!(
            "{} {} conns={} streams/conn={}: {} req in {:.2} s = {:.0} req/s ({:.1} MiB/s up), p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, errors {}, rejected {}{}",
            self.workload,
            self.transport,
            self.connections,
            self.streams_per_connection,
            self.requests,
            self.elapsed_s,
            self.requests_per_s,
            self.request_mib_per_s,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
            self.errors,
            self.rejected,
            if self.pool_exhausted { " (pre-signed pool used up)" } else { "" }
        ) + &self
            .server_cpu_us_per_request
            .map(|us| format!(", server CPU {us:.0} µs/request"))
            .unwrap_or_default()
    }
}

/// Request bytes prepared before the clock starts.
pub struct Prepared {
    requests: Vec<Vec<u8>>,
    /// `true`: each request is used once (deals); `false`: cycled (status, ask).
    once: bool,
    presign_s: f64,
}

impl Prepared {
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// A deal like golden vector A4 (miner f01000, 32 GiB verified, start 4,500,000) with a
/// fresh UUID and a unique label, so every proposal (and its CID) is new.
pub fn bench_deal_spec(label: String) -> Result<DealSpec, String> {
    let parse_cid = |s: &str| Cid::parse(s).map_err(|e| e.to_string());
    Ok(DealSpec {
        uuid: client::random_uuid().map_err(|e| e.to_string())?,
        miner: Address::parse("f01000").map_err(|e| e.to_string())?,
        piece_cid: parse_cid("baga6ea4seaqd6rv4mrnqpi7kfqcpazxzhho7pytj3v3woh46dzq2hi3zpztfcjy")?,
        piece_size: 32 << 30,
        payload_cid: parse_cid("bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy")?,
        transfer: DataTransfer::Http {
            url: "https://example.com/data.car".into(),
            headers: Vec::new(),
            car_size: 30_000_000_000,
        },
        start_epoch: 4_500_000,
        end_epoch: 5_018_400,
        price_per_epoch: TokenAmount::zero(),
        provider_collateral: TokenAmount::from_u64(8_589_934_592_000),
        client_collateral: TokenAmount::zero(),
        verified: true,
        label: Some(label),
        skip_ipni_announce: false,
        remove_unsealed_copy: false,
    })
}

/// Build (and for deals sign, on every core) the request bytes.
pub fn prepare(config: &BenchConfig) -> Result<Prepared, String> {
    let start = Instant::now();
    let (requests, once) = match &config.workload {
        Workload::Status(bytes) => (vec![bytes.clone()], false),
        Workload::Ask(miner) => (
            vec![AskRequest {
                miner: miner.clone(),
            }
            .to_cbor()],
            false,
        ),
        Workload::Idle => (Vec::new(), false),
        Workload::Bulk(size) => (vec![bulk_deal(*size)?], false),
        w @ (Workload::DealSecp | Workload::DealBls) => {
            let bls = matches!(w, Workload::DealBls);
            let default_pool = if bls { 6_000 } else { 20_000 };
            let n = config
                .pool
                .or(config.requests.map(|r| r as usize))
                .unwrap_or(default_pool)
                .max(1);
            let key = if bls { GOLDEN_BLS_KEY } else { GOLDEN_SECP_KEY };
            let mut nonce = [0u8; 4];
            getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
            let run = hex::encode(nonce);
            let offline = config.offline;
            let threads = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(n);
            let per = n.div_ceil(threads);
            let chunks: Vec<Result<Vec<Vec<u8>>, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let run = &run;
                        s.spawn(move || {
                            let wallet =
                                Wallet::from_lotus_export(key).map_err(|e| e.to_string())?;
                            let lo = t * per;
                            let hi = ((t + 1) * per).min(n);
                            (lo..hi)
                                .map(|i| {
                                    let mut spec = bench_deal_spec(format!("bench-{run}-{i}"))?;
                                    if offline {
                                        spec.transfer = DataTransfer::Offline;
                                    }
                                    Ok(DealProtocol::V121
                                        .encode(&client::build_deal(&spec, &wallet)))
                                })
                                .collect()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err("a signing thread panicked".into()))
                    })
                    .collect()
            });
            let mut all = Vec::with_capacity(n);
            for c in chunks {
                all.extend(c?);
            }
            (all, true)
        }
    };
    Ok(Prepared {
        requests,
        once,
        presign_s: start.elapsed().as_secs_f64(),
    })
}

/// One golden-secp256k1 deal of about `size` bytes: the padding is an `X-Bulk-Pad` header
/// in its transfer, so the provider decodes, checks and (the first time) stores all of it.
fn bulk_deal(size: usize) -> Result<Vec<u8>, String> {
    if !(BULK_MIN..=BULK_MAX).contains(&size) {
        return Err(format!(
            "--bulk-bytes {size} is outside {BULK_MIN}..={BULK_MAX}"
        ));
    }
    let wallet = Wallet::from_lotus_export(GOLDEN_SECP_KEY).map_err(|e| e.to_string())?;
    // A label of its own per run: another run's deal with the same proposal would be a
    // duplicate under a new UUID, and rejected.
    let mut nonce = [0u8; 4];
    getrandom::fill(&mut nonce).map_err(|e| e.to_string())?;
    let mut spec = bench_deal_spec(format!("bench-bulk-{size}-{}", hex::encode(nonce)))?;
    let encode = |spec: &DealSpec| DealProtocol::V121.encode(&client::build_deal(spec, &wallet));
    let base = encode(&spec).len();
    if let DataTransfer::Http { headers, .. } = &mut spec.transfer {
        // JSON around the value plus the CBOR length header: a few bytes either way.
        let overhead = r#","Headers":{"X-Bulk-Pad":""}"#.len() + 4;
        headers.push((
            "X-Bulk-Pad".into(),
            "a".repeat(size.saturating_sub(base + overhead)),
        ));
    }
    Ok(encode(&spec))
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct BenchBehaviour {
    stream: libp2p_stream::Behaviour,
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// A live connection: its stream control and the handle that stops its swarm task.
struct Conn {
    control: libp2p_stream::Control,
    peer: PeerId,
    stop: oneshot::Sender<()>,
}

/// Dial once, on a swarm of its own; the swarm then runs as a task on `rt` until `stop`.
async fn connect_once(
    rt: &Arc<dyn Runtime>,
    addr: &Multiaddr,
    peer: PeerId,
    lost: Arc<AtomicU64>,
) -> Result<Conn, String> {
    let key = libp2p::identity::Keypair::generate_ed25519();
    let transport =
        build_client_transport(&key, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let behaviour = BenchBehaviour {
        stream: libp2p_stream::Behaviour::new(),
    };
    let config =
        swarm::Config::without_executor().with_idle_connection_timeout(Duration::from_secs(3600));
    let mut swarm: Swarm<BenchBehaviour> =
        Swarm::new(transport, behaviour, key.public().to_peer_id(), config);
    let control = swarm.behaviour().stream.new_control();
    swarm
        .dial(
            DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .build(),
        )
        .map_err(|e| client::dial_error_sentence(&e))?;
    let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
    let (stop, mut stop_rx) = oneshot::channel::<()>();
    rt.spawn(Box::pin(async move {
        let mut ready = Some(ready_tx);
        loop {
            let ev = futures::future::select(&mut stop_rx, swarm.select_next_some()).await;
            let ev = match ev {
                futures::future::Either::Left(_) => return,
                futures::future::Either::Right((ev, _)) => ev,
            };
            match ev {
                SwarmEvent::ConnectionEstablished { .. } => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Err(client::dial_error_sentence(&error)));
                        return;
                    }
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }));
    match dealport_node::runtime::timeout(Duration::from_secs(30), ready_rx).await {
        Some(Ok(Ok(()))) => Ok(Conn {
            control,
            peer,
            stop,
        }),
        Some(Ok(Err(e))) => Err(e),
        Some(Err(_)) => Err("the connection task ended".into()),
        None => Err("no connection within 30 s".into()),
    }
}

/// Open `n` connections, at most 128 dials in flight; the first dial is retried until
/// `retry` has passed (for start-up measurements).
async fn connect_all(
    rt: &Arc<dyn Runtime>,
    config: &BenchConfig,
    lost: &Arc<AtomicU64>,
) -> Result<Vec<Conn>, String> {
    let addr = &config.target;
    let peer = peer_of(addr).ok_or_else(|| {
        format!("{addr} has no /p2p/<peer id>: the bench needs the provider's id")
    })?;
    let deadline = Instant::now() + config.connect_retry;
    let first = loop {
        match connect_once(rt, addr, peer, lost.clone()).await {
            Ok(c) => break c,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot reach {addr}: {e}"))
            }
            Err(_) => Timer::after(Duration::from_millis(5)).await,
        };
    };
    let mut conns = vec![first];
    let rest: Vec<Result<Conn, String>> = futures::stream::iter(1..config.connections)
        .map(|_| connect_once(rt, addr, peer, lost.clone()))
        .buffer_unordered(128)
        .collect()
        .await;
    for c in rest {
        conns.push(c.map_err(|e| format!("cannot reach {addr}: {e}"))?);
    }
    Ok(conns)
}

/// One request on a new stream: the verdict (`None` answered, `Some(why)` answered "no")
/// and the answer's bytes.
async fn one_request(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
    workload: &Workload,
    request: &[u8],
) -> Result<(Option<String>, Vec<u8>), String> {
    let mut stream = control
        .open_stream(peer, protocol)
        .await
        .map_err(|e| format!("opening the stream: {e}"))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("writing the request: {e}"))?;
    let answer = read_one_item(&mut stream)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.close().await;
    let bad = |e: dealport_core::wire::WireError| format!("undecodable answer: {e}");
    let verdict = match workload {
        Workload::Status(_) => {
            let r = DealStatusResponse::from_cbor(&answer).map_err(bad)?;
            (!r.error.is_empty()).then_some(r.error)
        }
        Workload::Ask(_) => {
            AskResponse::from_cbor(&answer).map_err(bad)?;
            None
        }
        Workload::DealSecp | Workload::DealBls | Workload::Bulk(_) => {
            let r = DealResponse::from_cbor(&answer).map_err(bad)?;
            (!r.accepted).then_some(r.message)
        }
        Workload::Idle => None,
    };
    Ok((verdict, answer))
}

/// Shared by the workers.
struct Shared {
    requests: Vec<Vec<u8>>,
    once: bool,
    limit: u64,
    deadline: Mutex<Option<Instant>>,
    next: AtomicU64,
    done: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    exhausted: AtomicBool,
    first_error: Mutex<Option<String>>,
    first_rejection: Mutex<Option<String>>,
    first_answer: Mutex<Option<(u128, Vec<u8>)>>,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

async fn worker(
    shared: Arc<Shared>,
    mut control: libp2p_stream::Control,
    peer: PeerId,
    workload: Workload,
    timeout: Duration,
) -> Vec<u32> {
    let protocol = StreamProtocol::new(workload.protocol());
    let mut lat = Vec::new();
    let mut consecutive_errors = 0u32;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.limit {
            return lat;
        }
        if shared
            .deadline
            .lock()
            .expect("deadline")
            .is_some_and(|d| Instant::now() >= d)
        {
            return lat;
        }
        let request = if shared.once {
            match shared.requests.get(i as usize) {
                Some(r) => r,
                None => {
                    shared.exhausted.store(true, Ordering::Relaxed);
                    return lat;
                }
            }
        } else {
            &shared.requests[i as usize % shared.requests.len()]
        };
        let t = Instant::now();
        let out = dealport_node::runtime::timeout(
            timeout,
            one_request(&mut control, peer, protocol.clone(), &workload, request),
        )
        .await
        .unwrap_or_else(|| Err(format!("no answer within {} s", timeout.as_secs())));
        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match out {
            Ok((verdict, answer)) => {
                consecutive_errors = 0;
                lat.push(us);
                shared
                    .bytes
                    .fetch_add(request.len() as u64, Ordering::Relaxed);
                if shared.done.fetch_add(1, Ordering::Relaxed) == 0 {
                    *shared.first_answer.lock().expect("first") = Some((unix_ms(), answer));
                }
                if let Some(why) = verdict {
                    shared.rejected.fetch_add(1, Ordering::Relaxed);
                    shared
                        .first_rejection
                        .lock()
                        .expect("first")
                        .get_or_insert(why);
                }
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                shared.first_error.lock().expect("first").get_or_insert(e);
                consecutive_errors += 1;
                if consecutive_errors >= 100 {
                    return lat; // the connection is gone; do not spin
                }
                Timer::after(Duration::from_millis(10)).await;
            }
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn transport_of(addr: &Multiaddr) -> &'static str {
    if addr
        .iter()
        .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)))
    {
        "ws"
    } else {
        "tcp"
    }
}

/// Run one measurement with requests already prepared.
pub async fn run(
    rt: Arc<dyn Runtime>,
    config: &BenchConfig,
    prepared: Prepared,
) -> Result<Report, String> {
    if config.connections == 0 || config.streams == 0 {
        return Err("--connections and --streams must be at least 1".into());
    }
    if config.duration.is_none() && config.requests.is_none() {
        return Err("give a --duration or a --requests count".into());
    }
    let lost = Arc::new(AtomicU64::new(0));
    let t_connect = Instant::now();
    let conns = connect_all(&rt, config, &lost).await?;
    let connect_s = t_connect.elapsed().as_secs_f64();
    if config.progress {
        eprintln!(
            "bench: {} connection(s) to {} open in {connect_s:.2} s",
            conns.len(),
            config.target
        );
    }
    let shared = Arc::new(Shared {
        limit: if config.workload == Workload::Idle {
            0
        } else {
            config.requests.unwrap_or(u64::MAX)
        },
        requests: prepared.requests,
        once: prepared.once,
        deadline: Mutex::new(None),
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        first_error: Mutex::new(None),
        first_rejection: Mutex::new(None),
        first_answer: Mutex::new(None),
    });
    let cpu_before = config.server_pid.map(process_cpu_s).transpose()?;
    let start = Instant::now();
    *shared.deadline.lock().expect("deadline") = config.duration.map(|d| start + d);

    let mut results = Vec::new();
    if config.workload != Workload::Idle {
        for c in &conns {
            for _ in 0..config.streams {
                let (tx, rx) = oneshot::channel();
                let w = worker(
                    shared.clone(),
                    c.control.clone(),
                    c.peer,
                    config.workload.clone(),
                    config.request_timeout,
                );
                rt.spawn(Box::pin(async move {
                    let _ = tx.send(w.await);
                }));
                results.push(rx);
            }
        }
    }
    let all = futures::future::join_all(results);
    let mut all = pin!(all);
    // Idle: hold the connections for the duration. Otherwise: progress until done.
    let lat: Vec<Vec<u32>> = loop {
        let tick = Timer::after(Duration::from_secs(1));
        if config.workload == Workload::Idle {
            let end = start + config.duration.unwrap_or(Duration::ZERO);
            if Instant::now() >= end {
                break Vec::new();
            }
            let left = end.saturating_duration_since(Instant::now());
            Timer::after(left.min(Duration::from_secs(1))).await;
        } else {
            match futures::future::select(all.as_mut(), tick).await {
                futures::future::Either::Left((r, _)) => {
                    break r.into_iter().map(Result::unwrap_or_default).collect()
                }
                futures::future::Either::Right(_) => {}
            }
        }
        if config.progress {
            let secs = start.elapsed().as_secs_f64();
            let done = shared.done.load(Ordering::Relaxed);
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{} {:>6.1} s  {:>9} done  {:>8.0}/s  errors {}  rejected {}  lost conns {}   ",
                config.workload.name(),
                secs,
                done,
                done as f64 / secs.max(1e-9),
                shared.errors.load(Ordering::Relaxed),
                shared.rejected.load(Ordering::Relaxed),
                lost.load(Ordering::Relaxed),
            );
            let _ = err.flush();
        }
    };
    let elapsed_s = start.elapsed().as_secs_f64();
    let server_cpu_s = match (config.server_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(process_cpu_s(pid)? - before),
        _ => None,
    };
    if config.progress {
        eprintln!();
    }
    for c in conns {
        let _ = c.stop.send(());
    }
    let mut sorted: Vec<u32> = lat.into_iter().flatten().collect();
    sorted.sort_unstable();
    let requests = sorted.len() as u64;
    let request_bytes = shared.bytes.load(Ordering::Relaxed);
    let first_error = shared.first_error.lock().expect("first").clone();
    let first_rejection = shared.first_rejection.lock().expect("first").clone();
    let (first_answer_unix_ms, first_answer_hex) =
        match shared.first_answer.lock().expect("first").take() {
            Some((t, bytes)) => (Some(t), Some(hex::encode(bytes))),
            None => (None, None),
        };
    Ok(Report {
        workload: config.workload.name().into(),
        target: config.target.to_string(),
        transport: transport_of(&config.target).into(),
        connections: config.connections,
        streams_per_connection: config.streams,
        requests,
        errors: shared.errors.load(Ordering::Relaxed),
        rejected: shared.rejected.load(Ordering::Relaxed),
        first_error,
        first_rejection,
        elapsed_s,
        requests_per_s: requests as f64 / elapsed_s.max(1e-9),
        request_bytes,
        request_mib_per_s: request_bytes as f64 / (1 << 20) as f64 / elapsed_s.max(1e-9),
        latency: Latency {
            p50_ms: percentile(&sorted, 0.50),
            p90_ms: percentile(&sorted, 0.90),
            p99_ms: percentile(&sorted, 0.99),
            max_ms: sorted.last().map_or(0.0, |&m| m as f64 / 1000.0),
        },
        connect_s,
        connections_lost: lost.load(Ordering::Relaxed),
        first_answer_unix_ms,
        first_answer_hex,
        pool_exhausted: shared.exhausted.load(Ordering::Relaxed),
        presigned: if prepared.once {
            shared.requests.len()
        } else {
            0
        },
        presign_s: prepared.presign_s,
        server_cpu_s,
        server_cpu_us_per_request: server_cpu_s
            .filter(|_| requests > 0)
            .map(|cpu| cpu * 1e6 / requests as f64),
        server_cpu_cores: server_cpu_s.map(|cpu| cpu / elapsed_s.max(1e-9)),
    })
}

// ------------------------------------------------------------------ CLI

/// `dealport bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// The provider: /ip4/…/tcp/<port>/p2p/<id>, or …/tcp/<port>/ws/p2p/<id> (direct
    /// WebSocket, or the HTTP port's relay).
    pub target: Multiaddr,
    /// status | ask | deal-secp | deal-bls | idle | bulk.
    #[arg(long, short = 'w', default_value = "status")]
    pub workload: String,
    /// Connections (each its own peer identity).
    #[arg(long, short = 'c', default_value_t = 1)]
    pub connections: usize,
    /// Concurrent streams per connection.
    #[arg(long, short = 's', default_value_t = 1)]
    pub streams: usize,
    /// Seconds to run (idle: to hold the connections). Default 5 unless --requests.
    #[arg(long, short = 'd')]
    pub duration: Option<f64>,
    /// Stop after this many requests.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// status: the DealStatusRequest as hex (default: golden vector S1).
    #[arg(long)]
    pub status_hex: Option<String>,
    /// ask: the miner.
    #[arg(long, default_value = "f01000")]
    pub miner: String,
    /// deal-*: proposals to sign before the clock starts (default: --requests, else
    /// 20000 secp / 6000 BLS).
    #[arg(long)]
    pub pool: Option<usize>,
    /// bulk: the size of the one deal resent (bytes, 4096..=2000000).
    #[arg(long, default_value_t = 1 << 20)]
    pub bulk_bytes: usize,
    /// Retry the first dial for up to this many seconds (start-up measurement).
    #[arg(long, default_value_t = 0.0)]
    pub connect_retry: f64,
    /// The server's process id (same machine): report its CPU time per request.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// deal-*: propose offline deals (the data imported later) instead of HTTP
    /// transfers.
    #[arg(long)]
    pub offline: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl BenchArgs {
    pub fn config(&self) -> Result<BenchConfig, String> {
        let workload = match self.workload.as_str() {
            "status" => Workload::Status(
                hex::decode(self.status_hex.as_deref().unwrap_or(S1_HEX).trim())
                    .map_err(|e| format!("--status-hex is not hex: {e}"))?,
            ),
            "ask" => Workload::Ask(
                Address::parse(&self.miner).map_err(|e| format!("--miner {}: {e}", self.miner))?,
            ),
            "deal-secp" => Workload::DealSecp,
            "deal-bls" => Workload::DealBls,
            "idle" => Workload::Idle,
            "bulk" => Workload::Bulk(self.bulk_bytes),
            other => {
                return Err(format!(
                    "unknown workload {other:?} (status, ask, deal-secp, deal-bls, idle, bulk)"
                ))
            }
        };
        let secs = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s).map_err(|_| format!("{what} {s} is not a duration"))
        };
        let duration = match (self.duration, self.requests) {
            (Some(d), _) => Some(secs(d, "--duration")?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(5)),
        };
        Ok(BenchConfig {
            duration,
            requests: self.requests,
            connections: self.connections,
            streams: self.streams,
            pool: self.pool,
            connect_retry: secs(self.connect_retry, "--connect-retry")?,
            progress: !self.quiet,
            server_pid: self.server_pid,
            offline: self.offline,
            ..BenchConfig::new(self.target.clone(), workload)
        })
    }
}

/// Run `dealport bench` and print the report.
pub async fn run_cli(rt: Arc<dyn Runtime>, args: BenchArgs) -> Result<(), String> {
    let config = args.config()?;
    let prepared = prepare(&config)?;
    if config.progress && prepared.once {
        eprintln!(
            "bench: signed {} proposals in {:.2} s (before the clock starts)",
            prepared.len(),
            prepared.presign_s
        );
    }
    let report = run(rt, &config, prepared).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!("{}", report.line());
        if let Some(e) = &report.first_error {
            println!("first error: {e}");
        }
        if let Some(e) = &report.first_rejection {
            println!("first rejection: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_from_proc_stat() {
        // A real line's shape (Linux proc(5)), with a command name holding ") (".
        let stat = "4242 (dealport) (x) S 1 4242 4242 0 -1 4194560 1234 0 0 0                     731 269 0 0 20 0 4 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(731 + 269));
        assert_eq!(cpu_ticks("4242 (x) S 1"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(cpu_ticks(&own).is_some());
    }
}
