//! The piece URLs lotus-miner fetches from (`sealing::piece_url`), served by the node's
//! real HTTP server on 127.0.0.1 and read with a plain GET over a real socket: the staged
//! data then zeros up to the unpadded piece size, one Range (206/416), and 404 for a
//! wrong, foreign, expired or revoked token.
//!
//! `DEALPORT_PIECE_BENCH_MIB=<n> cargo test --release -p dealport-node --test piece_url
//! -- --ignored --nocapture` measures one connection's throughput from staging.
use std::{
    io::{Read, Write},
    net::TcpStream,
    sync::Arc,
    time::{Duration, Instant},
};

use ::http::{HeaderMap, Method};
use dealport_core::wire::DealUuid;
use dealport_node::{
    exec::staging::Staging,
    http::{self, BoxFuture, HttpBackend, HttpConfig, StreamRoute},
    metrics::Metrics,
    sealing::piece_url::PieceUrls,
};
use dealport_testkit::node::runtime;

const A: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a01";
const B: &str = "5b0e4f86-7c1d-4a7e-9a51-0d2c3e4f5a02";

struct Backend(Arc<PieceUrls>);

impl HttpBackend for Backend {
    fn relay_target(&self) -> BoxFuture<Result<dealport_node::http::RelayRoute, String>> {
        Box::pin(async { Err("no relay here".to_owned()) })
    }
    fn health(&self) -> BoxFuture<(bool, serde_json::Value)> {
        Box::pin(async { (true, serde_json::json!({})) })
    }
    fn banner(&self) -> String {
        "piece url test\n".into()
    }
    fn stream_route(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        _ip: std::net::IpAddr,
    ) -> Option<StreamRoute> {
        self.0.route(method, path, headers)
    }
}

struct Served {
    urls: Arc<PieceUrls>,
    _handle: http::HttpHandle,
    _dir: tempfile::TempDir,
}

/// Staged data for A (`data`), the HTTP server, the piece URLs with `ttl`.
fn serve(data: &[u8], ttl: Duration) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let staging = Staging::new(dir.path().to_path_buf());
    std::fs::write(staging.data_path(DealUuid::parse(A).unwrap()), data).unwrap();
    let urls = PieceUrls::new("", ttl, runtime(), staging);
    let config = HttpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..HttpConfig::default()
    };
    let handle = futures::executor::block_on(http::start(
        runtime(),
        config,
        Arc::new(Backend(urls.clone())),
        Arc::new(Metrics::new()),
    ))
    .expect("http server starts");
    urls.http_bound(handle.local_addr());
    Served {
        urls,
        _handle: handle,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// A plain HTTP/1.1 request, `Connection: close`, the whole answer.
fn get(url: &str, method: &str, range: Option<&str>) -> Answer {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut c = TcpStream::connect(host).unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(
        c,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{range}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: all[end + 4..].to_vec(),
    }
}

/// GET `url` and count the body's bytes without keeping them.
fn drain(url: &str) -> u64 {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut c = TcpStream::connect(host).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut head, mut body) = (Vec::new(), None::<u64>);
    loop {
        let n = c.read(&mut buf).unwrap();
        match body.as_mut() {
            _ if n == 0 => return body.expect("a whole head"),
            Some(b) => *b += n as u64,
            None => {
                head.extend_from_slice(&buf[..n]);
                if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                    assert!(head.starts_with(b"HTTP/1.1 200"), "{:?}", &head[..end]);
                    body = Some((head.len() - end - 4) as u64);
                }
            }
        }
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8 | 1).collect()
}

#[test]
fn the_piece_is_the_staged_data_then_zeros_with_one_range() {
    let bytes = data(1000);
    let s = serve(&bytes, Duration::from_secs(60));
    let a = DealUuid::parse(A).unwrap();
    let url = s.urls.grant(a, 2032, Instant::now()).unwrap();
    assert!(url.contains(&format!("/piece/{A}/")), "{url}");

    let whole = get(&url, "GET", None);
    assert_eq!(whole.status, 200, "{}", whole.head);
    assert!(
        whole.head.contains("content-length: 2032"),
        "{}",
        whole.head
    );
    assert_eq!(whole.body.len(), 2032);
    assert_eq!(&whole.body[..1000], &bytes[..]);
    assert!(whole.body[1000..].iter().all(|&b| b == 0));

    // Across the end of the data: 10 data bytes, 10 zeros.
    let part = get(&url, "GET", Some("bytes=990-1009"));
    assert_eq!(part.status, 206, "{}", part.head);
    assert!(
        part.head.contains("content-range: bytes 990-1009/2032"),
        "{}",
        part.head
    );
    assert_eq!(&part.body[..10], &bytes[990..]);
    assert_eq!(&part.body[10..], &[0u8; 10]);
    // Only zeros.
    let tail = get(&url, "GET", Some("bytes=2000-"));
    assert_eq!((tail.status, tail.body), (206, vec![0u8; 32]));
    let past = get(&url, "GET", Some("bytes=2032-"));
    assert_eq!(past.status, 416, "{}", past.head);
    assert!(
        past.head.contains("content-range: bytes */2032"),
        "{}",
        past.head
    );
    // GET only.
    assert_eq!(get(&url, "POST", None).status, 405);
    // The URL keeps working until it expires or is revoked.
    assert_eq!(get(&url, "GET", None).status, 200);
}

#[test]
fn wrong_foreign_expired_or_revoked_tokens_are_404() {
    let s = serve(&data(1000), Duration::from_secs(60));
    let (a, b) = (DealUuid::parse(A).unwrap(), DealUuid::parse(B).unwrap());
    let url = s.urls.grant(a, 2032, Instant::now()).unwrap();
    let token = url.rsplit('/').next().unwrap().to_owned();
    let base = url.trim_end_matches(&token).to_owned();
    // Wrong token for the right deal.
    let wrong = format!("{base}{}", "0".repeat(64));
    let r = get(&wrong, "GET", None);
    assert_eq!(r.status, 404);
    assert_eq!(r.body, br#"{"error":"no such piece"}"#);
    // A's token on B's path, B's token on A's path.
    let url_b = s.urls.grant(b, 2032, Instant::now()).unwrap();
    let token_b = url_b.rsplit('/').next().unwrap();
    assert_eq!(get(&url.replace(A, B), "GET", None).status, 404);
    assert_eq!(get(&format!("{base}{token_b}"), "GET", None).status, 404);
    // No token, a malformed path.
    assert_eq!(get(&base, "GET", None).status, 404);
    assert_eq!(get(&url.replace(A, "not-a-uuid"), "GET", None).status, 404);
    // Expired: granted a TTL ago (time is passed in; no waiting).
    let old = s
        .urls
        .grant(a, 2032, Instant::now() - Duration::from_secs(61))
        .unwrap();
    assert_eq!(get(&old, "GET", None).status, 404);
    // Revoked.
    assert_eq!(get(&url, "GET", None).status, 200);
    s.urls.revoke(a);
    assert_eq!(get(&url, "GET", None).status, 404);
    assert_eq!(
        get(&url_b, "GET", None).status,
        410,
        "B has no staged data: gone"
    );
}

#[test]
#[ignore = "measurement: run by hand with --release (BENCHMARKS.md)"]
fn piece_url_throughput() {
    let mib: usize = std::env::var("DEALPORT_PIECE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let bytes = data(mib << 20);
    let s = serve(&bytes, Duration::from_secs(600));
    let a = DealUuid::parse(A).unwrap();
    let size = bytes.len() as u64;
    let url = s.urls.grant(a, size, Instant::now()).unwrap();
    // Warm the page cache, then time one connection (the client drains into one
    // buffer, as a sealer writing to disk would not hold the piece in memory).
    assert_eq!(drain(&url), size);
    let t = Instant::now();
    let got = drain(&url);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, size);
    println!(
        "piece URL, one connection, {mib} MiB from staging: {secs:.3} s, {:.0} MiB/s",
        mib as f64 / secs
    );
}
