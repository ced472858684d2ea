//! Deal execution, transfers, black-box: the real `dealport` binary, its own client CLI
//! (real secp256k1 signatures), and testkit's local data server on 127.0.0.1.
//!
//! An online deal's data is served slowly: status over libp2p shows `NBytesReceived`
//! rising while `Accepted`; the node is SIGKILLed mid-download and restarted on the same
//! data dir, resumes with a Range request from its last snapshot and reaches
//! `Transferred`. An offline deal waits for its data ("Awaiting Offline Data Import")
//! until `dealport deals import` brings it in.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use dealport_core::{
    commp::{piece_cid, CommP},
    wire::primitives::padded_piece_size,
};
use dealport_testkit::data_server::{DataServer, Serve};
use serde_json::Value;

use crate::harness::{
    config,
    golden::A4_CLIENT_KEY_FILE,
    process::{DataDir, Node},
};

const MIB: usize = 1 << 20;
const TOKEN: &str = "import-secret";
const ONLINE_UUID: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a61";
const OFFLINE_UUID: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a62";

pub(crate) fn data(n: usize, seed: u64) -> Vec<u8> {
    (0..n as u64)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 7) as u8)
        .collect()
}

/// The piece CID and padded size of `bytes`, from core's CommP.
pub(crate) fn piece_of(bytes: &[u8]) -> (String, u64) {
    let padded = padded_piece_size(bytes.len() as u64).expect("a piece size");
    let mut c = CommP::new();
    c.update(bytes);
    (
        piece_cid(&c.finish(padded).expect("fits")).to_string(),
        padded,
    )
}

/// `dealport <args…>`: stdout as JSON when it succeeded.
fn run_json(bin: &str, args: &[&str]) -> Value {
    let out = Command::new(bin)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Propose a deal with the binary's client (A4's client key and terms).
pub(crate) fn propose(
    bin: &str,
    provider: &str,
    wallet: &Path,
    uuid: &str,
    piece: &(String, u64),
    how: &[&str],
) {
    let size = piece.1.to_string();
    let mut args = vec![
        "client",
        "deal",
        "--provider",
        provider,
        "--miner",
        "f01000",
        "--piece-cid",
        &piece.0,
        "--piece-size",
        &size,
        "--payload-cid",
        "bafybeidnuvej2fyjlvgo5ni7n2mfyfpillhwps6nhfphmo3bpjuvjvgnuy",
        "--start-epoch",
        "4500000",
        "--duration",
        "518400",
        "--provider-collateral",
        "8589934592000",
        "--uuid",
        uuid,
        "--wallet",
        wallet.to_str().expect("utf-8 path"),
        "--json",
    ];
    args.extend_from_slice(how);
    let r = run_json(bin, &args);
    assert_eq!(r["accepted"], true, "{r}");
}

pub(crate) fn status(bin: &str, provider: &str, wallet: &Path, uuid: &str) -> Value {
    run_json(
        bin,
        &[
            "client",
            "status",
            "--provider",
            provider,
            "--uuid",
            uuid,
            "--wallet",
            wallet.to_str().expect("utf-8 path"),
            "--json",
        ],
    )
}

/// Poll status until `done` (bounded); every answer seen on the way.
pub(crate) fn poll_until(
    bin: &str,
    provider: &str,
    wallet: &Path,
    uuid: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    loop {
        let s = status(bin, provider, wallet, uuid);
        let stop = done(&s);
        seen.push(s);
        if stop {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "deal {uuid} never {what}; last status {}",
            seen.last().expect("one")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn checkpoint(s: &Value) -> &str {
    s["deal_status"]["status"].as_str().unwrap_or("")
}

pub fn online_deal_resumes_after_sigkill_and_offline_deal_imports(bin: &str) {
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        // Everything here is on 127.0.0.1.
        t["transfer"]["allow_private_addresses"] = true.into();
        t["transfer"]["retry_backoff_ms"] = 100.into();
        t["api"]["token"] = TOKEN.into();
    });
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");

    // 6 MiB: past the first CommP snapshot (every 4 MiB) fast, the rest at 256 KiB/s.
    let online = data(6 * MIB, 1);
    let online_piece = piece_of(&online);
    let server =
        DataServer::start(Serve::new(online.clone()).slow_after(9 * MIB as u64 / 2, 256 << 10));

    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let p2p = ready.tcp.to_string();
    let car_size = online.len().to_string();
    let url = server.url("/deal.car");
    propose(
        bin,
        &p2p,
        &wallet,
        ONLINE_UUID,
        &online_piece,
        &[
            "--car-size",
            &car_size,
            "--url",
            &url,
            "--header",
            "X-Client=dealport-test",
        ],
    );
    // NBytesReceived rises while Accepted; kill the node once past the snapshot.
    let seen = poll_until(bin, &p2p, &wallet, ONLINE_UUID, "got past 4.75 MiB", |s| {
        s["n_bytes_received"].as_u64().unwrap_or(0) > (19 * MIB / 4) as u64
    });
    let partial: Vec<u64> = seen
        .iter()
        .filter(|s| checkpoint(s) == "Accepted")
        .filter_map(|s| s["n_bytes_received"].as_u64())
        .filter(|n| *n > 0 && *n < online.len() as u64)
        .collect();
    assert!(
        partial.windows(2).all(|w| w[0] <= w[1]) && partial.first() < partial.last(),
        "NBytesReceived did not rise while Accepted: {partial:?}"
    );
    assert_eq!(
        seen.last().map(|s| s["transfer_size"].as_u64()),
        Some(Some(online.len() as u64))
    );
    node.signal("KILL");
    node.wait_exit(Duration::from_secs(30));
    let before_restart = server.requests().len();

    // Restarted on the same data dir: resumes from the snapshot, the server fast now.
    server.set(|s| s.fast_bytes = u64::MAX);
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let p2p = ready.tcp.to_string();
    let seen = poll_until(bin, &p2p, &wallet, ONLINE_UUID, "Transferred", |s| {
        checkpoint(s) == "Transferred" || s["deal_status"]["error"] != ""
    });
    let last = seen.last().expect("one");
    assert_eq!(checkpoint(last), "Transferred", "{last}");
    assert_eq!(last["n_bytes_received"].as_u64(), Some(online.len() as u64));
    let reqs = server.requests();
    assert_eq!(reqs[0].header("x-client").as_deref(), Some("dealport-test"));
    let resumed = reqs[before_restart..]
        .iter()
        .find_map(|r| r.range_from)
        .expect("the restarted node asked for a Range");
    assert!(resumed >= 4 * MIB as u64, "resumed at byte {resumed}");
    assert!(server.bytes_served() < 2 * online.len() as u64);
    let staged = std::fs::read(d.path.join("staging").join(format!("{ONLINE_UUID}.data")))
        .expect("the staged data");
    assert!(staged == online, "the staged data is the served data");

    // Offline: waits for its data, then `dealport deals import` brings it in.
    let offline = data(300_000, 2);
    let offline_piece = piece_of(&offline);
    propose(
        bin,
        &p2p,
        &wallet,
        OFFLINE_UUID,
        &offline_piece,
        &["--offline"],
    );
    let waiting = status(bin, &p2p, &wallet, OFFLINE_UUID);
    assert_eq!(checkpoint(&waiting), "Accepted", "{waiting}");
    assert_eq!(
        waiting["deal_status"]["sealing_status"],
        "Awaiting Offline Data Import"
    );
    let file = d.path.join("offline.car");
    std::fs::write(&file, &offline).expect("write the file");
    let out = Command::new(bin)
        .args(["deals", "import", OFFLINE_UUID])
        .arg(&file)
        .arg("--data-dir")
        .arg(&d.path)
        .args(["--node", &format!("http://{}", ready.http)])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run deals import");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("imported") && said.contains(&offline_piece.0),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = status(bin, &p2p, &wallet, OFFLINE_UUID);
    assert_eq!(checkpoint(&done), "Transferred", "{done}");
    drop(node);
}
