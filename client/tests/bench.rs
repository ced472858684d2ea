//! `dealport bench` against a node in this process: about a second per workload, and the
//! report must be sane (answers, ordered percentiles, no errors, nothing rejected).

use std::{sync::Arc, time::Duration};

use dealport_client::bench::{self, BenchConfig, Report, Workload};
use dealport_core::{deal::Checkpoint, wire::Address};
use dealport_node::{
    config::Config,
    p2p::{Host, HostConfig, HostHandle, Keypair, Multiaddr},
    store::Store,
};
use libp2p::multiaddr::Protocol;

use dealport_testkit::node::{runtime, service_on_sled, within, ServiceOnSled};

/// Both golden clients known, miner f01000 taking deals, head such that A4-like deals fit.
fn config() -> Config {
    Config::parse(
        r#"
[chain.offline]
head_epoch_override = 4490000
provider_collateral_min = "8589934592000"
[[chain.offline.clients]]
address = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna"
escrow = "1000000000000000000"
datacap = "34359738368"
[[chain.offline.clients]]
address = "f3rd27rdpzmhfttvv3fqrtqgal7vun4s3z4yoiyhlw4qodzv4ed3egfsh2yxtqcvwn2m6ih6dtpjfvcqrtzi2a"
escrow = "1000000000000000000"
datacap = "34359738368"
[[miners]]
address = "f01000"
"#,
        "bench.toml".as_ref(),
    )
    .unwrap()
}

struct Node {
    host: Option<HostHandle>,
    tcp: Multiaddr,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(h) = self.host.take() {
            futures::executor::block_on(h.shutdown(Duration::ZERO));
        }
    }
}

fn start_node() -> Node {
    let config = config();
    let ServiceOnSled {
        service,
        dir,
        store,
        ..
    } = service_on_sled(&config);
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let host = Host::start(
        runtime(),
        key,
        HostConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            ..HostConfig::default()
        },
        Arc::new(service),
    )
    .unwrap();
    let addrs = futures::executor::block_on(host.listen_addrs()).unwrap();
    Node {
        host: Some(host),
        tcp: addrs[0].clone().with(Protocol::P2p(peer)),
        store,
        _dir: dir,
    }
}

fn measure(node: &Node, workload: Workload, connections: usize, streams: usize) -> Report {
    let config = BenchConfig {
        connections,
        streams,
        duration: Some(Duration::from_secs(1)),
        pool: Some(400),
        // The node runs in this process: its CPU time is this process's (client included).
        server_pid: Some(std::process::id()),
        ..BenchConfig::new(node.tcp.clone(), workload)
    };
    let prepared = bench::prepare(&config).unwrap();
    let report = async_io::block_on(within(
        Duration::from_secs(60),
        bench::run(runtime(), &config, prepared),
    ))
    .unwrap();
    eprintln!("{}", report.line());
    report
}

fn assert_sane(r: &Report) {
    assert!(r.requests > 0, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert_eq!(r.rejected, 0, "{r:?}");
    let l = &r.latency;
    assert!(l.p50_ms > 0.0, "{r:?}");
    assert!(
        l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
        "{r:?}"
    );
    assert!(r.requests_per_s > 0.0 && r.elapsed_s > 0.0, "{r:?}");
    assert_eq!(r.connections_lost, 0, "{r:?}");
    let cpu = r.server_cpu_s.expect("server CPU measured");
    assert!(cpu > 0.0, "{r:?}");
    let per = r.server_cpu_us_per_request.expect("CPU per request");
    assert!((per - cpu * 1e6 / r.requests as f64).abs() < 1e-6, "{r:?}");
}

#[test]
fn bench_reports_sane_numbers() {
    let node = start_node();
    // Fresh secp256k1 deals: every one accepted (new UUID and label each).
    let deals = measure(&node, Workload::DealSecp, 2, 2);
    assert_sane(&deals);
    assert!(deals.presigned == 400 && deals.requests <= 400, "{deals:?}");
    // Two BLS deals, counted, not timed.
    let bls = {
        let config = BenchConfig {
            duration: None,
            requests: Some(2),
            ..BenchConfig::new(node.tcp.clone(), Workload::DealBls)
        };
        let prepared = bench::prepare(&config).unwrap();
        futures::executor::block_on(bench::run(runtime(), &config, prepared)).unwrap()
    };
    assert_eq!(
        (bls.requests, bls.errors, bls.rejected),
        (2, 0, 0),
        "{bls:?}"
    );
    // The ask (offline mode answers `Ask: null`, still a decodable AskResponse).
    let ask = measure(
        &node,
        Workload::Ask(Address::parse("f01000").unwrap()),
        1,
        4,
    );
    assert_sane(&ask);
}

#[test]
fn bulk_resends_one_large_deal_and_counts_its_bytes() {
    let node = start_node();
    let size = 256 << 10;
    let bulk = measure(&node, Workload::Bulk(size), 1, 2);
    assert_sane(&bulk);
    // Every answer was `Accepted` (the first stores it, the rest are identical retries),
    // so the provider read and decoded every byte of every request.
    let per_request = bulk.request_bytes / bulk.requests;
    assert_eq!(bulk.request_bytes, per_request * bulk.requests, "{bulk:?}");
    assert!(
        per_request.abs_diff(size as u64) <= 16,
        "{per_request} vs {size}"
    );
    assert!(bulk.request_mib_per_s > 0.0, "{bulk:?}");
    // A second run is a deal of its own, not a duplicate of the first run's.
    assert_sane(&measure(&node, Workload::Bulk(size), 1, 1));
    // Sizes past what Transfer.Params may hold are refused before anything is sent.
    let too_big = BenchConfig::new(node.tcp.clone(), Workload::Bulk(bench::BULK_MAX + 1));
    let err = bench::prepare(&too_big).err().expect("refused");
    assert!(err.contains("--bulk-bytes"), "{err}");
}

/// The deals the node stored from a run, as (how many, how many of them offline).
fn stored(node: &Node) -> (usize, usize) {
    let deals =
        futures::executor::block_on(node.store.live_deals_at(Checkpoint::Accepted, None, 100))
            .unwrap();
    (
        deals.len(),
        deals.iter().filter(|d| d.params.is_offline).count(),
    )
}

#[test]
fn offline_proposes_deals_whose_data_comes_later() {
    let node = start_node();
    let run = |offline: bool| {
        let config = BenchConfig {
            duration: None,
            requests: Some(3),
            offline,
            ..BenchConfig::new(node.tcp.clone(), Workload::DealSecp)
        };
        let prepared = bench::prepare(&config).unwrap();
        let r = futures::executor::block_on(bench::run(runtime(), &config, prepared)).unwrap();
        assert_eq!((r.requests, r.errors, r.rejected), (3, 0, 0), "{r:?}");
    };
    run(false);
    assert_eq!(stored(&node), (3, 0), "HTTP transfers by default");
    run(true);
    assert_eq!(stored(&node), (6, 3), "three more, offline");
}
