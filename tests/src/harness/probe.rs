//! Looking at a running node from outside: its memory (`/proc/<pid>/status`), its
//! `/metrics` counters, plain HTTP requests, and bounded polling for a condition.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// Resident memory of a process, in KiB: now (`VmRSS`) and its peak (`VmHWM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// `VmRSS` and `VmHWM` of `pid` (Linux).
pub fn memory(pid: u32) -> Memory {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {path}"))
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// One HTTP/1.1 request with `Connection: close`: `(status code, body)`, `None` when the
/// server cannot be reached or answers nothing within a few seconds.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out);
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// The value of one sample of `GET /metrics`, e.g.
/// `dealport_limit_hits_total{limit="read_deadline"}`; 0 when absent.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// `dealport_limit_hits_total{limit="<limit>"}` from the node's `/metrics`.
pub fn limit_hits(http_addr: SocketAddr, limit: &str) -> u64 {
    let (code, body) = http(http_addr, "GET", "/metrics").expect("GET /metrics answered");
    assert_eq!(code, 200, "GET /metrics: {body}");
    metric(
        &body,
        &format!("dealport_limit_hits_total{{limit=\"{limit}\"}}"),
    ) as u64
}

/// Poll `cond` every 100 ms until it holds; panic naming `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
