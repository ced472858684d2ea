//! Moving a sled node to PostgreSQL through the binary (`dealport store copy`, then
//! `store` in the config): the node keeps its PeerID and its deals, a second run writes
//! nothing, and a `--to` that is not a database is refused with what it takes.
use std::path::Path;

use dealport_testkit::postgres::PgServer;
use serde_json::Value;

use crate::harness::process::dealport;

/// `dealport <args…> --data-dir <data>`: (success, stdout, stderr).
fn run(bin: &str, data: &Path, args: &[&str]) -> (bool, String, String) {
    let out = dealport(bin, args, data);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(bin: &str, data: &Path, args: &[&str]) -> String {
    let (done, stdout, stderr) = run(bin, data, args);
    assert!(done, "dealport {args:?} failed: {stdout} {stderr}");
    stdout
}

fn info_peer(bin: &str, data: &Path) -> Value {
    let v: Value = serde_json::from_str(&ok(bin, data, &["info", "--json"])).expect("info --json");
    v["peer_id"].clone()
}

/// The config's `store` line set to `url`.
fn point_config_at(data: &Path, url: &str) {
    let path = data.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| {
            !l.trim_start()
                .trim_start_matches('#')
                .trim_start()
                .starts_with("store =")
        })
        .map(str::to_owned)
        .collect();
    lines.insert(0, format!("store = \"{url}\""));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

pub fn sled_node_moves_to_postgres(bin: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let peer = ok(bin, &data, &["init"]).trim().to_owned();
    assert!(peer.starts_with("12D3KooW"), "{peer}");
    ok(bin, &data, &["deals", "populate", "40"]);

    let (done, _, stderr) = run(bin, &data, &["store", "copy", "--to", "sled"]);
    assert!(!done);
    assert!(
        stderr.contains("--to takes a PostgreSQL database"),
        "{stderr}"
    );

    let pg = PgServer::start();
    let url = pg.url();
    let first = ok(bin, &data, &["store", "copy", "--to", &url]);
    assert!(
        first.contains("identity copied, 40 of 40 deals written"),
        "{first}"
    );
    let again = ok(bin, &data, &["store", "copy", "--to", &url]);
    assert!(
        again.contains("identity already there, 0 of 40 deals written"),
        "{again}"
    );

    // The same node on the database: the PeerID and the deals are there.
    assert_eq!(info_peer(bin, &data), Value::String(peer.clone()));
    point_config_at(&data, &url);
    assert_eq!(info_peer(bin, &data), Value::String(peer));
    let list: Value = serde_json::from_str(&ok(bin, &data, &["deals", "list", "--json"])).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(40), "{list}");
}
