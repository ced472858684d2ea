//! Cluster-mode scenarios: one throwaway PostgreSQL, three `dealport run --store
//! postgres://…` processes on loopback with short lease timings, a rust-libp2p client
//! reaching the lease holder through any node's HTTP relay.
//!
//! A runtime shell runs them against its binary, e.g.
//! `dealport_tests::harness::cluster::failover(env!("CARGO_BIN_EXE_dealport"))`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use dealport_core::wire::{Cbor, DealResponse, DealStatusResponse};
use dealport_node::p2p::{Multiaddr, PROTOCOL_DEAL_1_2_1, PROTOCOL_STATUS};
use serde_json::Value;

use super::{
    config,
    golden::golden,
    postgres::PgServer,
    process::{DataDir, Node},
    rust_client::Client,
};

/// Lease timings of the test cluster (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub ttl: u64,
    pub renew: u64,
    pub poll: u64,
}

/// Short leases (TTL 3 s, renew 1 s, poll 500 ms), unless `DEALPORT_TEST_LEASE_MS` is
/// `ttl,renew,poll` (e.g. `15000,5000,2000`, the defaults of a real cluster).
pub fn timings() -> Timings {
    let parsed = std::env::var("DEALPORT_TEST_LEASE_MS").ok().map(|v| {
        let n: Vec<u64> = v
            .split(',')
            .map(|x| x.trim().parse().expect("DEALPORT_TEST_LEASE_MS: numbers"))
            .collect();
        assert_eq!(n.len(), 3, "DEALPORT_TEST_LEASE_MS is ttl,renew,poll");
        Timings {
            ttl: n[0],
            renew: n[1],
            poll: n[2],
        }
    });
    parsed.unwrap_or(Timings {
        ttl: 3000,
        renew: 1000,
        poll: 500,
    })
}
/// Time for a new holder's host to start and its relay target to be written.
const START_SLACK: Duration = Duration::from_secs(3);

/// `GET path` of the node at `http`: the body, `None` when unreachable.
fn get(http: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    Some(text.split_once("\r\n\r\n")?.1.to_owned())
}

/// A counter or gauge of the node's `/metrics` at `http` (0 when absent).
pub fn metric(http: SocketAddr, name: &str) -> f64 {
    let body = get(http, "/metrics").expect("/metrics answers");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// `GET /health` of the node at `http`: the JSON body, `None` when unreachable.
pub fn health(http: SocketAddr) -> Option<Value> {
    let body = get(http, "/health")?;
    // The body may be chunked: take the JSON object in it.
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    serde_json::from_str(&body[start..=end]).ok()
}

/// One cluster member.
pub struct Member {
    pub dir: DataDir,
    pub node: Option<Node>,
    pub http: Option<SocketAddr>,
    pub name: String,
}

impl Member {
    pub fn start(&mut self, bin: &str, url: &str) {
        let mut node = Node::start_with(bin, &self.dir.path, &["--store", url]);
        node.wait_for(super::process::READY_LINE, Duration::from_secs(30));
        self.http = Some(node.http_addr());
        self.node = Some(node);
    }

    pub fn health(&self) -> Option<Value> {
        self.http.and_then(health)
    }

    pub fn is_leader(&self) -> bool {
        self.node.is_some()
            && self
                .health()
                .is_some_and(|h| h["role"] == "leader" && h["libp2p_host"] == true)
    }

    pub fn generation(&self) -> u64 {
        self.health()
            .and_then(|h| h["lease_generation"].as_u64())
            .unwrap_or(0)
    }

    pub fn peer(&mut self) -> String {
        let node = self.node.as_mut().expect("running");
        node.wait_for("PeerID ", Duration::from_secs(5))
            .split("PeerID ")
            .nth(1)
            .expect("PeerID")
            .trim()
            .to_owned()
    }

    /// The relay address of this node: `/ip4/127.0.0.1/tcp/<http>/ws/p2p/<peer>`.
    pub fn relay(&self, peer: &str) -> Multiaddr {
        format!(
            "/ip4/127.0.0.1/tcp/{}/ws/p2p/{peer}",
            self.http.expect("started").port()
        )
        .parse()
        .expect("a multiaddr")
    }
}

/// A data dir for a cluster member, configured for A4 and short leases.
pub fn member(bin: &str, name: &str) -> Member {
    let dir = DataDir::for_a4(bin);
    let name_owned = name.to_owned();
    let Timings { ttl, renew, poll } = timings();
    config::edit(&dir.path, move |t| {
        t.insert(
            "cluster".into(),
            config::value(&format!(
                r#"{{ node_id = "{name_owned}", lease_ttl_ms = {ttl}, renew_ms = {renew}, poll_ms = {poll}, internal_ws_host = "127.0.0.1" }}"#
            )),
        );
    });
    Member {
        dir,
        node: None,
        http: None,
        name: name.to_owned(),
    }
}

/// The indexes of the members whose health says leader.
pub fn leaders(members: &[Member]) -> Vec<usize> {
    (0..members.len())
        .filter(|&i| members[i].is_leader())
        .collect()
}

/// Wait until exactly one member leads; its index.
pub fn one_leader(members: &[Member], limit: Duration) -> usize {
    let started = Instant::now();
    loop {
        let l = leaders(members);
        if l.len() == 1 {
            return l[0];
        }
        assert!(
            started.elapsed() < limit,
            "no single leader within {limit:?}: leaders {l:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send A4 and S1 through `relay`: the deal reply and S1's status name.
pub fn deal_and_status(relay: &Multiaddr) -> (DealResponse, DealStatusResponse) {
    async_io::block_on(async {
        let mut c = Client::new();
        let peer = c.connect(relay).await;
        let reply = c.request(peer, PROTOCOL_DEAL_1_2_1, &golden("A4")).await;
        let status = c.request(peer, PROTOCOL_STATUS, &golden("S1")).await;
        (
            DealResponse::from_cbor(&reply).expect("a DealResponse"),
            DealStatusResponse::from_cbor(&status).expect("a DealStatusResponse"),
        )
    })
}

/// S1 through `relay`, retried until it answers (a new holder may still be starting).
pub fn status_via(relay: &Multiaddr, limit: Duration) -> DealStatusResponse {
    let started = Instant::now();
    loop {
        let r = std::panic::catch_unwind(|| {
            async_io::block_on(async {
                let mut c = Client::new();
                let peer = c.connect(relay).await;
                c.request(peer, PROTOCOL_STATUS, &golden("S1")).await
            })
        });
        if let Ok(bytes) = r {
            if let Ok(s) = DealStatusResponse::from_cbor(&bytes) {
                return s;
            }
        }
        assert!(
            started.elapsed() < limit,
            "no status answer through {relay} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn assert_accepted_status(s: &DealStatusResponse) {
    assert_eq!(s.error, "", "{s:?}");
    let status = s.deal_status.as_ref().expect("a DealStatus");
    assert_eq!(status.status, "Accepted", "{s:?}");
}

/// Wait until a member other than `not` leads; its index and how long it took.
fn takeover(members: &[Member], not: usize, limit: Duration) -> (usize, Duration) {
    let started = Instant::now();
    loop {
        let l: Vec<usize> = leaders(members).into_iter().filter(|&i| i != not).collect();
        if l.len() == 1 {
            return (l[0], started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "no takeover within {limit:?}: leaders {l:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The whole failover story: one leader, deals through any relay, kill -9 and SIGTERM
/// takeovers under the same PeerID, no accepted deal lost, a restarted node stands by.
/// Returns the measured takeover times (kill -9, SIGTERM).
pub fn failover(bin: &str) -> (Duration, Duration) {
    let t = timings();
    let pg = PgServer::start();
    let url = pg.url();
    let mut members: Vec<Member> = ["n0", "n1", "n2"].iter().map(|n| member(bin, n)).collect();
    for m in &mut members {
        m.start(bin, &url);
    }
    let peers: Vec<String> = members.iter_mut().map(Member::peer).collect();
    assert!(
        peers.iter().all(|p| p == &peers[0]),
        "every node uses the identity in the database: {peers:?}"
    );
    let peer = peers[0].clone();
    let leader = one_leader(&members, Duration::from_secs(10));
    assert_eq!(leaders(&members), vec![leader], "exactly one leader");
    for (i, m) in members.iter().enumerate() {
        let h = m.health().expect("health");
        assert_eq!(h["peer_id"], peer.as_str());
        if i != leader {
            assert_eq!(h["role"], "standby", "{h}");
        }
    }

    // A deal through a standby's relay reaches the holder.
    let standby = (leader + 1) % 3;
    let (reply, status) = deal_and_status(&members[standby].relay(&peer));
    assert!(
        reply.accepted,
        "A4 through {}'s relay: {reply:?}",
        members[standby].name
    );
    assert_accepted_status(&status);

    // kill -9 the holder: another node serves under the same PeerID within ttl + poll.
    let gen_before = members[leader].generation();
    members[leader]
        .node
        .as_ref()
        .expect("running")
        .signal("KILL");
    let _ = members[leader]
        .node
        .take()
        .map(|mut n| n.wait_exit(Duration::from_secs(5)));
    let limit = Duration::from_millis(t.ttl + t.poll) + START_SLACK;
    let (new_leader, kill_takeover) = takeover(&members, leader, limit);
    assert!(members[new_leader].generation() > gen_before);
    let other = (0..3).find(|&i| i != leader && i != new_leader).unwrap();
    let s = status_via(&members[other].relay(&peer), Duration::from_secs(10));
    assert_accepted_status(&s);
    let (reply, _) = deal_and_status(&members[other].relay(&peer));
    assert!(reply.accepted, "A4 again after the takeover: {reply:?}");
    // The holder's own relay hands the connection to its host in-process; a standby's
    // dials the holder.
    let s = status_via(&members[new_leader].relay(&peer), Duration::from_secs(10));
    assert_accepted_status(&s);
    let handed_off =
        |m: &Member| metric(m.http.expect("running"), "dealport_relay_handed_off_total");
    assert!(handed_off(&members[new_leader]) >= 1.0);
    assert_eq!(handed_off(&members[other]), 0.0);

    // The killed node restarted stands by.
    members[leader].start(bin, &url);
    std::thread::sleep(Duration::from_millis(t.poll * 3));
    assert_eq!(
        leaders(&members),
        vec![new_leader],
        "the restarted node stands by"
    );
    assert_eq!(members[leader].peer(), peer);

    // SIGTERM the holder: a standby takes over within one poll (+ start-up).
    let gen_before = members[new_leader].generation();
    members[new_leader]
        .node
        .as_ref()
        .expect("running")
        .signal("TERM");
    let limit = Duration::from_millis(t.poll) + START_SLACK;
    let (third, term_takeover) = takeover(&members, new_leader, limit);
    assert!(members[third].generation() > gen_before);
    let status = members[new_leader]
        .node
        .as_mut()
        .expect("running")
        .wait_exit(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");
    members[new_leader].node = None;
    let relay_node = (0..3).find(|&i| i != new_leader).unwrap();
    let s = status_via(&members[relay_node].relay(&peer), Duration::from_secs(10));
    assert_accepted_status(&s);
    drop(members);
    drop(pg);
    (kill_takeover, term_takeover)
}

/// The node's own WebSocket listener, from its latest `listening on …/ws/p2p/…` line.
fn own_ws(node: &mut Node) -> Multiaddr {
    node.drain();
    node.log
        .iter()
        .rev()
        .find(|l| l.contains("listening on /ip4/127.0.0.1/tcp/") && l.contains("/ws/"))
        .and_then(|l| l.split("listening on ").nth(1))
        .expect("a WS listen line")
        .trim()
        .parse()
        .expect("a multiaddr")
}

/// Wait until `members[i]` leads (others not asked: one may be stopped).
fn wait_leader(m: &Member, limit: Duration) -> Duration {
    let started = Instant::now();
    while !m.is_leader() {
        assert!(
            started.elapsed() < limit,
            "{} did not take over within {limit:?}",
            m.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Split brain and a database outage:
/// - SIGSTOP the holder past its TTL: the standby takes over; on SIGCONT the old holder
///   accepts no deal (a proposal sent straight to its own WebSocket listener is not
///   accepted, and no deal appears) and steps down to a stale generation.
/// - The database stopped for a few seconds: the leader steps down, the cluster recovers
///   by itself once it is back, and the deal accepted before is still there.
pub fn split_brain_and_db_outage(bin: &str) {
    let t = timings();
    let pg = PgServer::start();
    let url = pg.url();
    let mut members: Vec<Member> = ["s0", "s1"].iter().map(|n| member(bin, n)).collect();
    members[0].start(bin, &url);
    wait_leader(&members[0], Duration::from_secs(10));
    members[1].start(bin, &url);
    let peer = members[0].peer();
    let old_ws = own_ws(members[0].node.as_mut().unwrap());
    let old_gen = members[0].generation();

    // SIGSTOP the holder past its TTL.
    members[0].node.as_ref().unwrap().signal("STOP");
    wait_leader(
        &members[1],
        Duration::from_millis(t.ttl + t.poll) + START_SLACK,
    );
    let new_gen = members[1].generation();
    assert!(new_gen > old_gen, "{new_gen} > {old_gen}");
    members[0].node.as_ref().unwrap().signal("CONT");
    let resumed = Instant::now();
    // Straight to the old holder's own listener, right after SIGCONT.
    let reply = std::panic::catch_unwind(|| {
        async_io::block_on(async {
            let mut c = Client::new();
            let p = c.connect(&old_ws).await;
            c.request(p, PROTOCOL_DEAL_1_2_1, &golden("A4")).await
        })
    });
    if let Ok(bytes) = &reply {
        if let Ok(r) = DealResponse::from_cbor(bytes) {
            assert!(!r.accepted, "the stale holder accepted a deal: {r:?}");
        }
    }
    let s = status_via(&members[1].relay(&peer), Duration::from_secs(10));
    assert!(
        s.deal_status.is_none(),
        "the stale holder's deal must not exist: {s:?}"
    );
    let started = Instant::now();
    loop {
        let h = members[0].health();
        if h.as_ref()
            .is_some_and(|h| h["role"] == "standby" && h["libp2p_host"] == false)
        {
            let g = h.unwrap()["lease_generation"].as_u64().unwrap_or(0);
            assert!(g < new_gen, "stale generation {g} < {new_gen}");
            // Until here the stale node may still think it leads, but its lease gate
            // closed at its own deadline (before the TTL), so it accepted nothing.
            eprintln!(
                "split brain: the stale holder stood down {:?} after SIGCONT (a deal sent \
                 to it meanwhile was refused; deals accepted by both at once: 0)",
                resumed.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the old holder did not step down: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(leaders(&members), vec![1]);

    // A deal, then the database goes away for a few seconds.
    let (reply, status) = deal_and_status(&members[1].relay(&peer));
    assert!(reply.accepted, "{reply:?}");
    assert_accepted_status(&status);
    pg.stop();
    members[1]
        .node
        .as_mut()
        .unwrap()
        .wait_for("stepping down", Duration::from_millis(t.ttl) + START_SLACK);
    std::thread::sleep(Duration::from_secs(2));
    pg.restart();
    one_leader(&members, Duration::from_secs(20));
    let leader = leaders(&members)[0];
    let relay = members[(leader + 1) % 2].relay(&peer);
    let s = status_via(&relay, Duration::from_secs(10));
    assert_accepted_status(&s);
    drop(members);
    drop(pg);
}
