//! The `dealport` process under test: one-shot commands and a running node whose log
//! lines are collected from stderr.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use dealport_node::p2p::Multiaddr;
use libp2p::core::multiaddr::Protocol;
use tempfile::TempDir;

use super::config;

/// `<bin> <args…> --data-dir <dir>`, run to completion.
pub fn dealport(bin: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(bin)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

/// `dealport deals import <uuid> <file>` of `bytes` (written beside the data dir's files)
/// against the node at `http`: what it printed, stdout then stderr.
pub fn deals_import(
    bin: &str,
    dir: &Path,
    http: std::net::SocketAddr,
    uuid: &str,
    bytes: &[u8],
) -> String {
    let file = dir.join(format!("{uuid}.import"));
    std::fs::write(&file, bytes).expect("write the file");
    let file = file.to_str().expect("a UTF-8 path");
    let node = format!("http://{http}");
    let out = dealport(bin, &["deals", "import", uuid, file, "--node", &node], dir);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A fresh data dir (its own temp dir) after `dealport init`.
pub struct DataDir {
    _tmp: TempDir,
    pub path: PathBuf,
    /// The PeerID `init` printed.
    pub peer: String,
}

impl DataDir {
    /// `init` in a new temp dir, then listen on loopback with random ports only.
    pub fn init(bin: &str) -> DataDir {
        let tmp = tempfile::tempdir().expect("temp dir");
        let path = tmp.path().join("data");
        let out = dealport(bin, &["init"], &path);
        assert!(
            out.status.success(),
            "dealport init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let peer = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        assert!(peer.starts_with("12D3KooW"), "init printed {peer:?}");
        config::edit(&path, config::loopback_random_ports);
        DataDir {
            _tmp: tmp,
            path,
            peer,
        }
    }

    /// Like [`DataDir::init`], configured to accept the golden proposal A4.
    pub fn for_a4(bin: &str) -> DataDir {
        let d = DataDir::init(bin);
        config::edit(&d.path, config::accept_a4);
        d
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.toml")
    }
}

/// Where a started node listens (loopback), from its start-up log.
#[derive(Debug, Clone)]
pub struct Ready {
    pub peer: String,
    /// `/ip4/127.0.0.1/tcp/N/p2p/<peer>`
    pub tcp: Multiaddr,
    /// `/ip4/127.0.0.1/tcp/M/ws/p2p/<peer>`
    pub ws: Multiaddr,
    /// The HTTP server (relay, /health, /metrics, MK12 over HTTP).
    pub http: std::net::SocketAddr,
}

impl Ready {
    /// The node as a client reaches it through the HTTP server's WebSocket relay
    /// (`GET /` with an upgrade): `/ip4/127.0.0.1/tcp/<http port>/ws/p2p/<peer>`.
    pub fn relay(&self) -> Multiaddr {
        format!(
            "/ip4/127.0.0.1/tcp/{}/ws/p2p/{}",
            self.http.port(),
            self.peer
        )
        .parse()
        .expect("a multiaddr")
    }
}

/// `addr` without its `/p2p/…` suffix (what the transports answer lists).
pub fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// The `/ip4/…/tcp/…` part of `addr` as a socket address.
pub fn socket_addr(addr: &Multiaddr) -> std::net::SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(n) => port = Some(n),
            _ => {}
        }
    }
    match (ip, port) {
        (Some(ip), Some(port)) => (ip, port).into(),
        _ => panic!("{addr} has no ip and tcp port"),
    }
}

/// The log line `dealport run` ends its start-up with (the bare word would also match
/// PostgreSQL's "already exists" notices).
pub const READY_LINE: &str = "dealport_app::run: ready";

/// `dealport run`, killed on drop.
pub struct Node {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
    name: String,
}

impl Node {
    pub fn start(bin: &str, dir: &Path) -> Node {
        Node::start_with(bin, dir, &[])
    }

    /// `dealport run --data-dir <dir> <extra…>` (e.g. `--store postgres://…`).
    pub fn start_with(bin: &str, dir: &Path, extra: &[&str]) -> Node {
        let mut cmd = Command::new(bin);
        cmd.args(["run", "--data-dir"]).arg(dir).args(extra);
        Node::spawn(cmd)
    }

    /// Run `cmd` (a `dealport run`, possibly behind a wrapper such as `sh -c`) with its
    /// log collected.
    pub fn spawn(mut cmd: Command) -> Node {
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let name = format!("dealport {}", child.id());
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        let prefix = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("[{prefix}] {line}");
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Node {
            child,
            lines,
            log: Vec::new(),
            name,
        }
    }

    /// Wait for a log line containing `needle` (also among the lines already seen).
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: no log line with {needle:?} within {limit:?}; log: {:#?}",
                    self.name, self.log
                ),
            }
        }
    }

    /// Wait for `ready`; the PeerID and the loopback TCP and WS addresses from the log.
    pub fn ready(&mut self) -> Ready {
        self.wait_for(READY_LINE, Duration::from_secs(30));
        let peer = self
            .wait_for("PeerID ", Duration::from_secs(1))
            .split("PeerID ")
            .nth(1)
            .expect("PeerID")
            .trim()
            .to_owned();
        let listening = |ws: bool| -> Multiaddr {
            let line = self
                .log
                .iter()
                .find(|l| {
                    l.contains("listening on /ip4/127.0.0.1/tcp/") && l.contains("/ws/") == ws
                })
                .unwrap_or_else(|| panic!("no loopback listen line (ws: {ws}) in {:#?}", self.log));
            let addr: Multiaddr = line
                .split("listening on ")
                .nth(1)
                .expect("address")
                .trim()
                .parse()
                .expect("a multiaddr");
            assert!(
                matches!(addr.iter().last(), Some(Protocol::P2p(p)) if p.to_string() == peer),
                "{addr} does not end in /p2p/{peer}"
            );
            addr
        };
        let (tcp, ws) = (listening(false), listening(true));
        let http = self
            .log
            .iter()
            .find_map(|l| l.split("http listening on ").nth(1))
            .unwrap_or_else(|| panic!("no `http listening on` line in {:#?}", self.log))
            .trim()
            .parse()
            .expect("a socket address");
        Ready {
            peer,
            tcp,
            ws,
            http,
        }
    }

    /// Log lines that arrived so far (without waiting).
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
    }

    /// The HTTP server's address, from the `http listening on` line.
    pub fn http_addr(&mut self) -> std::net::SocketAddr {
        self.wait_for("http listening on ", Duration::from_secs(30))
            .split("http listening on ")
            .nth(1)
            .expect("address")
            .trim()
            .parse()
            .expect("a socket address")
    }

    /// Send a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {}", self.child.id());
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
