//! Owns the database-failover scenario: a primary with a synchronous standby (real
//! servers, `initdb` + `pg_basebackup -R`), three `dealport run` nodes on a multi-host
//! `target_session_attrs=read-write` URL, clients proposing fresh deals through the
//! relays; the primary is killed (-9), the standby promoted, the old primary brought back
//! read-only on its old port. Uses the cluster harness, the deal minter and testkit's
//! PostgreSQL servers; the checks are on what clients were told against what the new
//! primary holds.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use dealport_client::{propose_with, DealProtocol, Target, Timeouts};
use dealport_core::wire::{Cbor, DealUuid};
use dealport_node::{
    p2p::Multiaddr,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        Store,
    },
};

use super::{
    cluster::{self, health, Member},
    mint::{a4_wallet, fresh_deal},
    postgres::{replica::SYNC_PRIMARY_OPTS, PgServer},
};

/// How a proposal ended, as its client saw it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Accepted,
    /// An answer that was not `Accepted` (`server error: …`, not the holder, …).
    Refused(String),
    /// No answer (connection lost, time-out): either outcome is allowed.
    Unknown,
}

#[derive(Debug, Clone)]
struct Sent {
    bytes: Vec<u8>,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

/// What one trial measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// From `kill -9` of the primary until the first deal sent after it was accepted.
    pub accepting_again: Duration,
    /// From the end of `pg_ctl promote` until then.
    pub after_promote: Duration,
    /// Slowest `/health` answer seen during the trial.
    pub worst_health: Duration,
    /// Slowest `/health` answer while the database answered nothing.
    pub partition_health: Duration,
    pub accepted: usize,
    pub refused: usize,
    pub unknown: usize,
    pub stored_unacknowledged: usize,
}

/// Propose fresh deals through `relay` until `stop`.
fn client_loop(
    relay: Multiaddr,
    ledger: Arc<Mutex<BTreeMap<DealUuid, Sent>>>,
    stop: Arc<AtomicBool>,
) {
    let wallet = a4_wallet();
    let target = Target::Libp2p(relay);
    let timeouts = Timeouts {
        connect: Duration::from_secs(3),
        identify: Duration::from_secs(3),
        write: Duration::from_secs(5),
        read: Duration::from_secs(15),
    };
    while !stop.load(Ordering::Acquire) {
        let deal = fresh_deal(&wallet);
        let bytes = deal.to_cbor();
        let sent = Instant::now();
        let outcome =
            match async_io::block_on(propose_with(&target, &deal, DealProtocol::V121, timeouts)) {
                Ok(r) if r.accepted => Outcome::Accepted,
                Ok(r) => Outcome::Refused(r.message),
                Err(_) => Outcome::Unknown,
            };
        let answered = Instant::now();
        let pause = !matches!(outcome, Outcome::Accepted);
        ledger.lock().expect("ledger").insert(
            deal.deal_uuid,
            Sent {
                bytes,
                sent,
                answered,
                outcome,
            },
        );
        if pause {
            // Not a synchronisation: only keeps a failing loop from spinning.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One health sample of every node.
struct Sample {
    at: Instant,
    /// (leader?, generation, db_host) per node; `None` when it did not answer.
    nodes: Vec<Option<(bool, u64, String)>>,
    slowest: Duration,
}

fn monitor(https: Vec<SocketAddr>, samples: Arc<Mutex<Vec<Sample>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let mut slowest = Duration::ZERO;
        let nodes = https
            .iter()
            .map(|&h| {
                let started = Instant::now();
                let v = health(h);
                slowest = slowest.max(started.elapsed());
                v.map(|v| {
                    (
                        v["role"] == "leader" && v["libp2p_host"] == true,
                        v["lease_generation"].as_u64().unwrap_or(0),
                        v["db_host"].as_str().unwrap_or("").to_owned(),
                    )
                })
            })
            .collect();
        samples.lock().expect("samples").push(Sample {
            at: Instant::now(),
            nodes,
            slowest,
        });
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /metrics` of the node at `http`.
fn metrics_text(http: SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Wait (bounded) until `pred` holds of the ledger.
fn wait_ledger(
    ledger: &Mutex<BTreeMap<DealUuid, Sent>>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&BTreeMap<DealUuid, Sent>) -> bool,
) {
    let started = Instant::now();
    while !pred(&ledger.lock().expect("ledger")) {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accepted_sent_after(l: &BTreeMap<DealUuid, Sent>, t: Instant) -> usize {
    l.values()
        .filter(|s| s.outcome == Outcome::Accepted && s.sent >= t)
        .count()
}

/// Bound on deals being accepted again after the primary is killed (promotion is done
/// at once here; a real HA manager adds its own detection time). The measured figures
/// are in RELIABILITY.md.
pub const ACCEPTING_AGAIN_BOUND: Duration = Duration::from_secs(20);

/// The whole scenario; panics on any broken promise, returns the figures.
pub fn db_failover(bin: &str) -> Figures {
    let primary = PgServer::start_with(SYNC_PRIMARY_OPTS);
    // The standby runs without synchronous_standby_names: once promoted it has no
    // standby of its own, and a synchronous setting would stall every commit.
    let standby = PgServer::standby_of(&primary, "");
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write&connect_timeout=2",
        primary.port(),
        standby.port()
    );
    let old_host = format!("127.0.0.1:{}", primary.port());
    let new_host = format!("127.0.0.1:{}", standby.port());

    let mut members: Vec<Member> = ["d0", "d1", "d2"]
        .iter()
        .map(|n| cluster::member(bin, n))
        .collect();
    for m in &mut members {
        m.start(bin, &url);
    }
    let peer = members[0].peer();
    let leader = cluster::one_leader(&members, Duration::from_secs(15));
    for m in &members {
        let h = m.health().expect("health");
        assert_eq!(h["db_host"], old_host.as_str(), "on the primary first: {h}");
        assert_eq!(h["db_writable"], true, "{h}");
    }
    let gen_before = members[leader].generation();

    let ledger = Arc::new(Mutex::new(BTreeMap::new()));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let https: Vec<SocketAddr> = members.iter().map(|m| m.http.expect("started")).collect();
    let mon = {
        let (s, st) = (samples.clone(), stop.clone());
        std::thread::spawn(move || monitor(https, s, st))
    };
    // Two clients through two different nodes' relays.
    let clients: Vec<_> = [0usize, 1]
        .iter()
        .map(|&i| {
            let (r, l, s) = (members[i].relay(&peer), ledger.clone(), stop.clone());
            std::thread::spawn(move || client_loop(r, l, s))
        })
        .collect();
    let t0 = Instant::now();
    wait_ledger(
        &ledger,
        Duration::from_secs(20),
        "5 deals before the failover",
        |l| accepted_sent_after(l, t0) >= 5,
    );

    // The primary dies; the standby is promoted at once.
    let killed = Instant::now();
    primary.kill9();
    standby.promote();
    let promoted = Instant::now();
    wait_ledger(
        &ledger,
        ACCEPTING_AGAIN_BOUND,
        "a deal accepted after the failover",
        |l| accepted_sent_after(l, killed) >= 1,
    );
    let first_after = {
        let l = ledger.lock().expect("ledger");
        l.values()
            .filter(|s| s.outcome == Outcome::Accepted && s.sent >= killed)
            .map(|s| s.answered)
            .min()
            .expect("one")
    };
    let after_kill = Instant::now();
    wait_ledger(
        &ledger,
        Duration::from_secs(20),
        "5 deals after the failover",
        |l| accepted_sent_after(l, after_kill) >= 5,
    );

    // The old primary comes back, read-only, on its old port: nodes stay off it.
    primary.restart_as_stale_standby();
    let back = Instant::now();
    wait_ledger(
        &ledger,
        Duration::from_secs(20),
        "5 deals with the old primary back",
        |l| accepted_sent_after(l, back) >= 5,
    );
    // A fresh connection walks the hosts from the first: it must pass the stale server.
    let probe = async_io::block_on(PostgresStore::connect(&url, PostgresOptions::default()))
        .expect("the multi-host URL connects with the old primary back");
    assert_eq!(
        probe.server(),
        (new_host.clone(), true),
        "a fresh connection skips the read-only old primary"
    );

    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().expect("client");
    }
    mon.join().expect("monitor");

    // Every node moves to the new primary (bounded), healthy.
    let started = Instant::now();
    for m in &members {
        loop {
            let h = m.health().expect("health");
            if h["db_host"] == new_host.as_str()
                && h["db_writable"] == true
                && h["store_ok"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{} is not on the new primary: {h}",
                m.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // /metrics names the server too (refreshed by the lease loop).
    let want = format!("dealport_db_server{{host=\"{new_host}\",writable=\"true\"}} 1");
    let started = Instant::now();
    loop {
        let text = metrics_text(members[2].http.expect("started")).unwrap_or_default();
        if text.lines().any(|l| l == want) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no `{want}` in /metrics:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // What the new primary holds against what clients were told.
    let stored: HashMap<DealUuid, Vec<u8>> = async_io::block_on(probe.list_deals())
        .expect("list deals on the new primary")
        .into_iter()
        .map(|d| (d.uuid, d.params_bytes))
        .collect();
    let ledger = ledger.lock().expect("ledger").clone();
    let mut lost = Vec::new();
    let (mut accepted, mut refused, mut unknown, mut unacked) = (0, 0, 0, 0);
    for (uuid, s) in &ledger {
        match (&s.outcome, stored.get(uuid)) {
            (Outcome::Accepted, Some(b)) if *b == s.bytes => accepted += 1,
            (Outcome::Accepted, Some(_)) => lost.push(format!("{uuid}: other bytes")),
            (Outcome::Accepted, None) => lost.push(format!("{uuid}: missing")),
            (Outcome::Refused(m), Some(_)) => {
                panic!("{uuid} is stored but its client was told: {m}")
            }
            (Outcome::Refused(m), None) => {
                assert!(
                    m.starts_with("server error") || m.contains("lease") || m.contains("holder"),
                    "{uuid}: an unexpected refusal: {m}"
                );
                assert!(
                    s.answered.duration_since(s.sent) < Duration::from_secs(10),
                    "{uuid}: refused only after {:?}",
                    s.answered.duration_since(s.sent)
                );
                refused += 1;
            }
            (Outcome::Unknown, Some(b)) => {
                assert_eq!(*b, s.bytes, "{uuid}: stored with other bytes");
                unknown += 1;
                unacked += 1;
            }
            (Outcome::Unknown, None) => unknown += 1,
        }
    }
    for uuid in stored.keys() {
        assert!(
            ledger.contains_key(uuid),
            "stored deal {uuid} was never sent"
        );
    }
    assert!(lost.is_empty(), "acknowledged deals lost: {lost:#?}");

    // One leader at a time: no sample with two, generations never go back.
    let samples = samples.lock().expect("samples");
    let mut last_gen = 0;
    let mut worst_health = Duration::ZERO;
    for s in samples.iter() {
        worst_health = worst_health.max(s.slowest);
        let leading: Vec<u64> = s
            .nodes
            .iter()
            .flatten()
            .filter(|n| n.0)
            .map(|n| n.1)
            .collect();
        assert!(leading.len() <= 1, "two leaders at {:?}: {leading:?}", s.at);
        if let Some(&g) = leading.first() {
            assert!(g >= last_gen, "generation went back: {g} after {last_gen}");
            last_gen = g;
        }
    }
    assert!(
        worst_health < Duration::from_secs(1),
        "/health took {worst_health:?}"
    );
    // The deals' writer generations, in order of acknowledgement, never go back: no two
    // leaders acknowledged in the same interval.
    let gens = standby
        .psql("SELECT uuid::text || ' ' || writer_generation FROM deals")
        .expect("writer generations");
    let gen_of: HashMap<String, u64> = gens
        .lines()
        .filter_map(|l| {
            let (u, g) = l.split_once(' ')?;
            Some((u.to_owned(), g.parse().ok()?))
        })
        .collect();
    let mut acks: Vec<(Instant, Instant, u64)> = ledger
        .iter()
        .filter(|(_, s)| s.outcome == Outcome::Accepted)
        .map(|(u, s)| (s.sent, s.answered, gen_of[&u.to_string()]))
        .collect();
    acks.sort_by_key(|a| a.1);
    for (i, a) in acks.iter().enumerate() {
        for b in &acks[i + 1..] {
            // b was acknowledged after a; if b was also sent after a's answer, b's
            // commit follows a's, so b's writer generation is not older.
            if b.0 > a.1 {
                assert!(b.2 >= a.2, "generation {} wrote after {}", b.2, a.2);
            }
        }
    }
    let gen_after = members.iter().map(Member::generation).max().unwrap_or(0);
    // The lease carried on from the row the new primary holds: never an older
    // generation (equal when the leader renewed in time, higher after a takeover).
    assert!(
        gen_after >= gen_before,
        "the lease generation went back: {gen_after} < {gen_before}"
    );
    // The database stops answering without refusing: /health still answers, in time,
    // with store_ok false.
    standby.freeze(true);
    let frozen = Instant::now();
    let mut partition_health = Duration::ZERO;
    for m in &members {
        let started = Instant::now();
        let h = m.health().expect("health while the database is frozen");
        partition_health = partition_health.max(started.elapsed());
        assert_eq!(h["store_ok"], false, "{}: {h}", m.name);
    }
    standby.freeze(false);
    assert!(
        partition_health < Duration::from_secs(1),
        "/health took {partition_health:?} with the database frozen"
    );
    eprintln!(
        "database frozen for {:?}: /health answered within {partition_health:?}",
        frozen.elapsed()
    );
    let stale_deals = primary
        .psql("SELECT count(*) FROM deals")
        .unwrap_or_default();
    eprintln!("old primary holds {stale_deals} deals (read-only, written before the kill)");

    let figures = Figures {
        accepting_again: first_after.duration_since(killed),
        after_promote: first_after.saturating_duration_since(promoted),
        worst_health,
        partition_health,
        accepted,
        refused,
        unknown,
        stored_unacknowledged: unacked,
    };
    assert!(accepted > 0 && figures.accepting_again < ACCEPTING_AGAIN_BOUND);
    drop(probe);
    drop(members);
    drop(standby);
    drop(primary);
    figures
}
