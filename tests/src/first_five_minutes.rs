//! The first five minutes of a new user: the README's quickstart commands run in order
//! (the same commands, not their text), `dealport demo`, and `client commp` held against
//! the published commitments and an independent CommP.
use std::{path::Path, process::Command, time::Duration};

use dealport_testkit::commp::naive_commp;
use serde_json::Value;

use crate::harness::{config, process::Node};

/// `dealport <args…>` with the wallet dir at `wallets`: (success, stdout, stderr).
fn dealport(bin: &str, wallets: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env("DEALPORT_WALLET_DIR", wallets)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(bin: &str, wallets: &Path, args: &[&str]) -> String {
    let (done, stdout, stderr) = dealport(bin, wallets, args);
    assert!(done, "dealport {args:?} failed: {stdout} {stderr}");
    assert!(
        !stderr.contains("libp2p_swarm"),
        "a client command logged libp2p lines: {stderr}"
    );
    stdout
}

/// README "Quickstart": init (as `scripts/run` does), `init --miner`, run, `client wallet
/// new`, `client car`, `client commp`, `client deal`, `client status`.
pub fn quickstart_transcript(bin: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("dealport-data");
    let wallets = tmp.path().join("wallet");
    let d = data.to_str().expect("utf-8 path");
    ok(bin, &wallets, &["init", "--data-dir", d]);
    ok(
        bin,
        &wallets,
        &["init", "--data-dir", d, "--miner", "f01000"],
    );
    // The README's node listens on the default ports; a test takes free ones. The API
    // token lets `deals list|show` ask the running node (after the transcript).
    config::edit(&data, |t| {
        config::loopback_random_ports(t);
        t["api"]["token"] = "quickstart-token".into();
    });
    let mut node = Node::start(bin, &data);
    node.wait_for(crate::harness::process::READY_LINE, Duration::from_secs(30));
    let http = node.http_addr();

    let address = ok(bin, &wallets, &["client", "wallet", "new"]);
    assert!(address.trim().starts_with("f1"), "{address}");
    assert_eq!(ok(bin, &wallets, &["client", "wallet", "list"]), address);

    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, "hello from the dealport quickstart\n".repeat(1000)).expect("write");
    let car = tmp.path().join("hello.car");
    let f = file.to_str().expect("utf-8");
    let c = car.to_str().expect("utf-8");
    let payload = ok(bin, &wallets, &["client", "car", f, c]);
    let commp: Value =
        serde_json::from_str(&ok(bin, &wallets, &["client", "commp", c, "--json"])).expect("JSON");
    let peer = std::fs::read_to_string(data.join("peer-id")).expect("peer-id");
    let provider = format!("/ip4/127.0.0.1/tcp/{}/ws/p2p/{}", http.port(), peer.trim());
    let piece_cid = commp["piece_cid"].as_str().expect("piece_cid");
    let piece_size = commp["piece_size"].to_string();
    let deal: Value = serde_json::from_str(&ok(
        bin,
        &wallets,
        &[
            "client",
            "deal",
            "--provider",
            &provider,
            "--miner",
            "f01000",
            "--piece-cid",
            piece_cid,
            "--piece-size",
            &piece_size,
            "--payload-cid",
            payload.trim(),
            "--offline",
            "--json",
        ],
    ))
    .expect("JSON");
    assert_eq!(deal["accepted"], true, "{deal}");
    let uuid = deal["uuid"].as_str().expect("uuid");
    let status = ok(
        bin,
        &wallets,
        &["client", "status", "--provider", &provider, "--uuid", uuid],
    );
    assert!(
        status.contains("status:         Accepted")
            && status.contains("Awaiting Offline Data Import"),
        "{status}"
    );

    // While the node runs (and holds the sled store), `deals list|show` ask its API.
    let listed = ok(bin, &wallets, &["deals", "list", "--data-dir", d]);
    assert!(
        listed.contains(uuid) && listed.contains("Accepted"),
        "{listed}"
    );
    let shown: Value = serde_json::from_str(&ok(
        bin,
        &wallets,
        &["deals", "show", uuid, "--data-dir", d],
    ))
    .expect("JSON");
    assert_eq!(shown["uuid"], uuid, "{shown}");
    assert_eq!(shown["checkpoint"], "Accepted", "{shown}");
}

/// `dealport demo` reaches Transferred and leaves no directory behind.
pub fn demo_reaches_transferred_and_cleans_up(bin: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = ok(bin, tmp.path(), &["demo"]);
    assert!(out.contains("7. status: Transferred"), "{out}");
    let dir = out
        .split("a node in ")
        .nth(1)
        .and_then(|s| s.split(" for miner").next())
        .expect("the demo names its dir");
    assert!(!Path::new(dir).exists(), "{dir} is left behind");
}

/// `client commp` against the roots another implementation published (core's test
/// vectors) and against testkit's bit-by-bit CommP for a random-looking file.
pub fn client_commp_agrees_with_independent_commitments(bin: &str) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let sample = |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 7 + i / 251) as u8).collect() };
    let random: Vec<u8> = (0..300_001u64)
        .map(|i| {
            (i.wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 33) as u8
        })
        .collect();
    let cases = [
        (
            sample(127),
            Some("b3c22ed2e440d87a1dfcf2c7c21bc887742acfbba9d00954a0132b99445dc523"),
        ),
        (
            sample(128),
            Some("b2bba11fa929911e8a2f530c1a3838d65276f8f6d15f70ca298770f5dca4ca2b"),
        ),
        (random, None),
    ];
    for (i, (bytes, published)) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("f{i}"));
        std::fs::write(&file, bytes).expect("write");
        let out: Value = serde_json::from_str(&ok(
            bin,
            tmp.path(),
            &["client", "commp", file.to_str().expect("utf-8"), "--json"],
        ))
        .expect("JSON");
        let padded = out["piece_size"].as_u64().expect("piece_size");
        assert_eq!(out["car_size"].as_u64(), Some(bytes.len() as u64));
        let root = naive_commp(bytes, padded);
        let cid = dealport_core::wire::Cid::parse(out["piece_cid"].as_str().expect("cid"))
            .expect("a CID");
        assert_eq!(
            cid.digest(),
            root,
            "case {i}: the independent CommP differs"
        );
        if let Some(want) = published {
            assert_eq!(hex::encode(root), *want, "case {i}");
        }
    }
}
