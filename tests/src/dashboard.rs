//! The dashboard (`/ui/`) in a real headless browser: Debian's Chromium driven by
//! `tests/ui-js/drive.mjs` (playwright-core), against the real `dealport` binary.
//!
//! - One node (sled): a deal proposed over libp2p with the binary's client, its data
//!   served slowly by testkit's data server and a label holding a `<script>`; the browser
//!   is refused with a wrong token, logs in, sees the deal in the list (the label as
//!   text, its script not run), filters and searches, opens the deal, watches the
//!   download bar move and the state turn `Transferred` without a reload, sees the
//!   timeline with times and the node page, and logs out.
//! - Two nodes on one throwaway PostgreSQL: a deal through a standby's relay, then the
//!   standby's pages name the holder and list the deal; a short `[ui] session_ttl_secs`
//!   on the holder ends a session on its own.
//!
//! Screenshots of every page go to `target/ui-screenshots/`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use dealport_testkit::data_server::{DataServer, Serve};
use serde_json::{json, Value};

use crate::{
    execution_transfer::{data, piece_of, propose},
    harness::{
        cluster::{self, deal_and_status, one_leader},
        config,
        golden::{A4_CLIENT_KEY_FILE, A4_UUID},
        postgres::PgServer,
        process::{DataDir, Node},
    },
};

const TOKEN: &str = "dashboard-secret";
const UUID: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a90";
const LABEL: &str = "<script>window.__pwned=1</script><b>label</b>";

/// `tests/ui-js`.
pub fn ui_js_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/ui-js"))
}

/// Where the screenshots go.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/ui-screenshots"
    ))
}

/// Run one browser job; panics (never skips) when Chromium or the driver is missing, or
/// when a check in the page failed. The checks that passed.
pub fn browse(job: &Value) -> Vec<String> {
    browse_with(job, |_| {})
}

/// [`browse`], handing each line the driver prints to `on_line` as it comes (the driver
/// says where it is, e.g. `progress-moved`).
pub fn browse_with(job: &Value, mut on_line: impl FnMut(&str)) -> Vec<String> {
    let dir = ui_js_dir();
    assert!(
        dir.join("node_modules").is_dir(),
        "the browser driver is not installed: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: `apt-get install chromium` (scripts/test does)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("drive.mjs"))
        .arg(job.to_string())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node for the browser driver: {e}"));
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        on_line(&line);
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the browser driver: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("drive.mjs printed no JSON: {stdout} {stderr}"));
    let v: Value = serde_json::from_str(line).expect("drive.mjs JSON");
    let checks: Vec<String> = v["checks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for c in &checks {
        eprintln!("[browser] ok: {c}");
    }
    assert_eq!(v["ok"], true, "browser: {} (stderr {stderr})", v["error"]);
    checks
}

/// The shell's name for screenshot files (`dealport`, `dealport-async-std`).
fn shell(bin: &str) -> String {
    Path::new(bin)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn dashboard_in_a_browser(bin: &str) {
    let d = DataDir::for_a4(bin);
    config::edit(&d.path, |t| {
        t["transfer"]["allow_private_addresses"] = true.into();
        t["api"]["token"] = TOKEN.into();
        t.insert("ui".into(), config::value("{ refresh_ms = 300 }"));
    });
    let wallet = d.path.join("client.key");
    std::fs::write(&wallet, A4_CLIENT_KEY_FILE).expect("write the key file");
    // 3 MiB, the first 256 KiB fast and the rest at 16 KiB/s (three minutes) until the
    // browser has seen the progress bar move, then at full speed: the download is under
    // way whenever the browser gets there, however slowly it started.
    let bytes = data(3 << 20, 9);
    let piece = piece_of(&bytes);
    let server = DataServer::start(Serve::new(bytes.clone()).slow_after(256 << 10, 16 << 10));
    let mut node = Node::start(bin, &d.path);
    let ready = node.ready();
    let size = bytes.len().to_string();
    let url = server.url("/deal.car");
    propose(
        bin,
        &ready.tcp.to_string(),
        &wallet,
        UUID,
        &piece,
        &["--car-size", &size, "--url", &url, "--label", LABEL],
    );
    let checks = browse_with(
        &json!({
            "base": format!("http://{}", ready.http),
            "token": TOKEN,
            "uuid": UUID,
            "label": LABEL,
            "piece": piece.0,
            "expect_download": true,
            "shots": screenshot_dir(),
            "prefix": format!("{}-single", shell(bin)),
        }),
        |line| {
            if line == "progress-moved" {
                server.set(|s| s.fast_bytes = u64::MAX);
            }
        },
    );
    assert!(checks
        .iter()
        .any(|c| c == "the state turned Transferred without a reload"));
    for page in ["login-refused", "deals", "deal-downloading", "deal", "node"] {
        let f = screenshot_dir().join(format!("{}-single-{page}.png", shell(bin)));
        assert!(f.is_file(), "screenshot {} missing", f.display());
    }
    drop(node);
}

pub fn dashboard_on_a_standby_names_the_holder(bin: &str) {
    let pg = PgServer::start();
    let url = pg.url();
    let mut members = vec![cluster::member(bin, "ui-a"), cluster::member(bin, "ui-b")];
    for m in &members {
        let ttl = if m.name == "ui-a" { 3 } else { 3600 };
        config::edit(&m.dir.path, |t| {
            t["api"]["token"] = TOKEN.into();
            t.insert(
                "ui".into(),
                config::value(&format!("{{ session_ttl_secs = {ttl}, refresh_ms = 300 }}")),
            );
        });
    }
    // ui-a first, so it takes the lease; ui-b stands by.
    members[0].start(bin, &url);
    one_leader(&members[..1], Duration::from_secs(20));
    members[1].start(bin, &url);
    let leader = one_leader(&members, Duration::from_secs(20));
    assert_eq!(members[leader].name, "ui-a");
    let peer = members[1].peer();
    let (reply, _) = deal_and_status(&members[1].relay(&peer));
    assert!(reply.accepted, "A4 through the standby's relay: {reply:?}");
    let standby = format!("http://{}", members[1].http.expect("started"));
    browse(&json!({
        "base": standby,
        "token": TOKEN,
        "uuid": A4_UUID,
        "holder": "ui-a",
        "standby": true,
        "shots": screenshot_dir(),
        "prefix": format!("{}-standby", shell(bin)),
    }));
    // The holder's sessions last 3 s.
    let holder = format!("http://{}", members[0].http.expect("started"));
    browse(&json!({
        "base": holder,
        "token": TOKEN,
        "uuid": A4_UUID,
        "expect_expiry_ms": 3000,
        "shots": screenshot_dir(),
        "prefix": format!("{}-expiry", shell(bin)),
    }));
    drop(members);
    drop(pg);
}
