//! Crash consistency: a client proposes fresh, validly signed deals in a loop while the
//! real `dealport` binary is SIGKILLed at random moments (during start-up too) and
//! restarted. At the end every deal the client saw `Accepted` for is in the store with
//! its exact DealParams bytes, and nothing else or half-written is: the store opens,
//! every record decodes (`dealport deals list --json`), every stored deal is one the
//! client sent, byte for byte, at `Accepted`. For sled and for PostgreSQL.
//!
//! CI runs [`DEFAULT_KILLS`] kills per backend. The recorded campaign (RELIABILITY.md):
//! `DEALPORT_CRASH_KILLS=200 cargo test -p dealport-tests --test crash_consistency -- --nocapture`.
//! `DEALPORT_CRASH_SEED=<n>` replays the kill moments of a run (each run prints its seed).

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use dealport_client::{propose_with, DealProtocol, Target, Timeouts};
use dealport_core::wire::{Cbor, DealUuid};
use dealport_node::p2p::Multiaddr;
use dealport_tests::harness::{
    binary::dealport_bin,
    cluster, config,
    mint::{a4_wallet, fresh_deal},
    postgres::PgServer,
    process::{dealport, DataDir, Node},
};

/// Kills per backend in CI.
const DEFAULT_KILLS: usize = 12;
/// Client threads proposing at once.
const CLIENTS: usize = 4;

fn kills() -> usize {
    std::env::var("DEALPORT_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_KILLS)
}

/// xorshift64*: kill moments reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn from_env_or_clock() -> Rng {
        let seed = std::env::var("DEALPORT_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("DEALPORT_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What the client saw: every proposal sent (UUID -> bytes) and those answered
/// `Accepted`.
#[derive(Default)]
struct Ledger {
    sent: HashMap<DealUuid, Vec<u8>>,
    accepted: Vec<DealUuid>,
    rejected: Vec<(DealUuid, String)>,
}

/// Propose fresh deals to `addr` until `stop`, recording everything in `ledger`.
/// Failures (the node is down or was killed mid-request) just mean trying again.
fn client_loop(addr: Multiaddr, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let wallet = a4_wallet();
    let target = Target::Libp2p(addr);
    let timeouts = Timeouts {
        connect: Duration::from_secs(3),
        identify: Duration::from_secs(3),
        write: Duration::from_secs(5),
        read: Duration::from_secs(10),
    };
    while !stop.load(Ordering::Acquire) {
        let deal = fresh_deal(&wallet);
        let bytes = deal.to_cbor();
        ledger
            .lock()
            .expect("ledger")
            .sent
            .insert(deal.deal_uuid, bytes);
        match async_io::block_on(propose_with(&target, &deal, DealProtocol::V121, timeouts)) {
            Ok(r) if r.accepted => ledger.lock().expect("ledger").accepted.push(deal.deal_uuid),
            Ok(r) => ledger
                .lock()
                .expect("ledger")
                .rejected
                .push((deal.deal_uuid, r.message)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One stored deal as `dealport deals list --json` prints it.
struct Stored {
    params_hex: String,
    checkpoint: String,
}

/// Every deal in the store of `dir` (the config's store), read by the CLI after the node
/// stopped. The command fails if the store does not open or a record does not decode.
fn stored_deals(dir: &Path) -> HashMap<String, Stored> {
    let out = dealport(dealport_bin(), &["deals", "list", "--json"], dir);
    assert!(
        out.status.success(),
        "deals list failed (the store does not open or a record does not decode): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("deals list JSON");
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|d| {
            let s = |k: &str| {
                d[k].as_str()
                    .unwrap_or_else(|| panic!("no {k} in {d}"))
                    .to_owned()
            };
            (
                s("uuid"),
                Stored {
                    params_hex: s("params"),
                    checkpoint: s("checkpoint"),
                },
            )
        })
        .collect()
}

/// Start, let the client work, SIGKILL at a random moment; `kills` times. Then check
/// the store against the ledger. `backend` names the run in the printed figures.
fn campaign(backend: &str, dir: &Path) {
    let bin = dealport_bin();
    let n = kills();
    let mut rng = Rng::from_env_or_clock();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    let mut during_startup = 0;
    for i in 0..n {
        let mut node = Node::start(bin, dir);
        // A quarter of the kills land during start-up (store recovery, lease, listeners).
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(400)));
            during_startup += 1;
        } else {
            let ready = node.ready();
            let stop = Arc::new(AtomicBool::new(false));
            // Several clients, so that a kill finds proposals at every stage in flight.
            let clients: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    let (a, l, s) = (ready.tcp.clone(), ledger.clone(), stop.clone());
                    std::thread::spawn(move || client_loop(a, l, s))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(50 + rng.below(1500)));
            node.signal("KILL");
            node.wait_exit(Duration::from_secs(30));
            stop.store(true, Ordering::Release);
            for c in clients {
                c.join().expect("client loop");
            }
            continue;
        }
        node.signal("KILL");
        let status = node.wait_exit(Duration::from_secs(30));
        assert!(
            !status.success(),
            "kill {i}: the node exited by itself: {status}"
        );
    }
    // The node starts on what the kills left, then stops cleanly.
    let mut node = Node::start(bin, dir);
    node.ready();
    node.signal("TERM");
    let status = node.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM after the campaign: {status}");
    drop(node);

    let stored = stored_deals(dir);
    let ledger = ledger.lock().expect("ledger");
    let mut lost = Vec::new();
    for uuid in &ledger.accepted {
        let want = hex::encode(&ledger.sent[uuid]);
        match stored.get(&uuid.to_string()) {
            None => lost.push(format!("{uuid}: missing")),
            Some(s) if s.params_hex != want => lost.push(format!("{uuid}: other bytes")),
            Some(_) => {}
        }
    }
    for (uuid, s) in &stored {
        let sent = DealUuid::parse(uuid)
            .ok()
            .and_then(|u| ledger.sent.get(&u))
            .unwrap_or_else(|| panic!("stored deal {uuid} was never sent"));
        assert_eq!(
            s.params_hex,
            hex::encode(sent),
            "stored deal {uuid} differs from what was sent"
        );
        assert_eq!(s.checkpoint, "Accepted", "stored deal {uuid}");
    }
    let acked_stored = ledger
        .accepted
        .iter()
        .filter(|u| stored.contains_key(&u.to_string()))
        .count();
    let unacked_stored = stored.len() - acked_stored;
    println!(
        "CRASH backend={backend} kills={n} (during start-up {during_startup}) sent={} accepted={} rejected={} stored={} stored_but_unacknowledged={unacked_stored} lost={} elapsed={:.0}s",
        ledger.sent.len(),
        ledger.accepted.len(),
        ledger.rejected.len(),
        stored.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "{backend}: acknowledged deals lost: {lost:#?}"
    );
    assert!(
        ledger.rejected.is_empty(),
        "{backend}: proposals rejected: {:?}",
        ledger.rejected
    );
    assert!(
        !ledger.accepted.is_empty(),
        "{backend}: no deal was accepted in {n} runs: the campaign tested nothing"
    );
}

#[test]
fn sled_keeps_every_accepted_deal_across_sigkills() {
    let dir = DataDir::for_a4(dealport_bin());
    campaign("sled", &dir.path);
}

#[test]
fn postgres_keeps_every_accepted_deal_across_sigkills() {
    let pg = PgServer::start();
    let url = pg.url();
    // A cluster member's config (short lease timings), with the database as its store
    // so `deals list` reads it too. A restarted node retakes its own lease at once.
    let member = cluster::member(dealport_bin(), "crash");
    config::edit(&member.dir.path, |t| {
        t.insert("store".into(), url.clone().into());
    });
    campaign("postgres", &member.dir.path);
}
