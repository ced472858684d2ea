//! A lease holder that listens on plain TCP only (as Boost serves, and as Spade-style
//! clients dial) serves everything but the WebSocket relay; and the import client shows
//! a standby's refusal verbatim, not a transport error.
use std::{path::Path, process::Command, time::Duration};

use dealport_core::wire::{Cbor, DealStatusResponse};

use crate::{
    execution_transfer::{checkpoint, data, piece_of, propose, status},
    harness::{
        cluster::{member, one_leader, Member},
        config,
        golden::{golden, A4_CLIENT_KEY_FILE},
        http::{request, request_raw},
        postgres::PgServer,
        process::{DataDir, Node, READY_LINE},
    },
};

const TOKEN: &str = "tcp-only-secret";
const OFFLINE_UUID: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a63";

/// `dealport deals import <uuid> <file> --node <node>`: exit success, stdout, stderr.
fn import(bin: &str, dir: &Path, uuid: &str, file: &Path, node: &str) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(["deals", "import", uuid])
        .arg(file)
        .arg("--data-dir")
        .arg(dir)
        .args(["--node", node])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run deals import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn tcp_only_holder_serves_everything_but_the_relay(bin: &str) {
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        t["libp2p"]["listen"] = config::value(r#"["/ip4/127.0.0.1/tcp/0"]"#);
        t["api"]["token"] = TOKEN.into();
    });
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    let mut node = Node::start(bin, &d.path);
    node.wait_for(READY_LINE, Duration::from_secs(30));
    let http = node.http_addr();
    let tcp = node
        .wait_for("listening on /ip4/127.0.0.1/tcp/", Duration::from_secs(1))
        .split("listening on ")
        .nth(1)
        .expect("an address")
        .trim()
        .to_owned();
    assert!(!tcp.contains("/ws"), "TCP only: {tcp}");

    // Health: the holder of the lease, running its host.
    let health = request(http, "GET", "/health", None, None);
    assert_eq!(
        health.status,
        200,
        "{}",
        String::from_utf8_lossy(&health.body)
    );
    let h = health.json();
    assert_eq!(h["role"], "leader", "{h}");
    assert_eq!(h["libp2p_host"], true, "{h}");

    // MK12 over HTTP answers as over libp2p.
    let answer = request_raw(
        http,
        "GET",
        "/market/mk12/status",
        &[("Content-Type", "application/cbor")],
        &golden("S1"),
    );
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    DealStatusResponse::from_cbor(&answer.body).expect("a DealStatusResponse");

    // An offline deal over TCP, its data imported through the API.
    let offline = data(200_000, 3);
    let piece = piece_of(&offline);
    propose(bin, &tcp, &wallet, OFFLINE_UUID, &piece, &["--offline"]);
    let file = d.path.join("offline.car");
    std::fs::write(&file, &offline).expect("write the file");
    let (ok, said, err) = import(bin, &d.path, OFFLINE_UUID, &file, &format!("http://{http}"));
    assert!(ok && said.contains("imported"), "{said} {err}");
    let done = status(bin, &tcp, &wallet, OFFLINE_UUID);
    assert_eq!(checkpoint(&done), "Transferred", "{done}");

    // The relay is the one thing it cannot serve, and it says why.
    let upgrade = request_raw(
        http,
        "GET",
        "/",
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        b"",
    );
    let why = String::from_utf8_lossy(&upgrade.body);
    assert_eq!(upgrade.status, 503, "{why}");
    assert!(why.contains("without a WebSocket listener"), "{why}");
}

/// Two nodes on one PostgreSQL: an import sent to the standby gets its 503 and sentence.
pub fn import_to_a_standby_shows_its_refusal(bin: &str) {
    let pg = PgServer::start();
    let url = pg.url();
    let mut members: Vec<Member> = ["a", "b"].iter().map(|n| member(bin, n)).collect();
    for m in &mut members {
        config::edit(&m.dir.path, |t| t["api"]["token"] = TOKEN.into());
        m.start(bin, &url);
    }
    let leader = one_leader(&members, Duration::from_secs(15));
    let peer = members[leader].peer();
    let standby = &members[1 - leader];
    let wallet = standby.dir.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    let offline = data(100_000, 4);
    let relay = standby.relay(&peer).to_string();
    propose(
        bin,
        &relay,
        &wallet,
        OFFLINE_UUID,
        &piece_of(&offline),
        &["--offline"],
    );
    let file = standby.dir.path.join("offline.car");
    std::fs::write(&file, &offline).expect("write the file");
    let node = format!("http://{}", standby.http.expect("started"));
    let (ok, said, err) = import(bin, &standby.dir.path, OFFLINE_UUID, &file, &node);
    assert!(!ok, "an import to a standby succeeded: {said}");
    assert!(
        err.contains("HTTP 503")
            && err.contains(
                "this node is standing by: deal execution runs on the node that holds the lease"
            ),
        "the standby's answer, verbatim: {err}"
    );
    assert!(!err.contains("connection closed"), "{err}");
}
