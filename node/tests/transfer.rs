//! Deal execution, transfers: the runner downloads online deals' data from a local data
//! server the test controls (testkit's `DataServer`, real sockets on 127.0.0.1) into a
//! real staging dir on a real sled store, and offline data comes in through the real
//! HTTP API. Every case waits for the deal's outcome with bounded polling.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use dealport_core::{
    commp::{piece_cid, CommP},
    deal::{Checkpoint, DealEvent, DealRecord},
    status::status_response,
    wire::{primitives::padded_piece_size, Cbor, Cid, DealParams, DealUuid, HttpRequest, Transfer},
};
use dealport_node::{
    api::{Api, ApiContext},
    exec::{runner, TransferSettings, Transfers},
    front_door::{FrontDoor, Role, RunningHost},
    http,
    mk12_http::Mk12Http,
};
use dealport_testkit::data_server::{DataServer, Declare, Serve};
use dealport_testkit::node::{
    a4_config, executor_runtime, golden, run, service_on_sled, ServiceOnSled,
};
use futures::future::{AbortHandle, Abortable};

const MIB: usize = 1 << 20;

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u64)
                .wrapping_mul(2654435761)
                .wrapping_add(seed as u64) as u8
                ^ (i >> 13) as u8
        })
        .collect()
}

fn piece_of(bytes: &[u8]) -> (Cid, u64) {
    let padded = padded_piece_size(bytes.len() as u64).unwrap();
    let mut c = CommP::new();
    c.update(bytes);
    (piece_cid(&c.finish(padded).unwrap()), padded)
}

fn settings() -> TransferSettings {
    TransferSettings {
        max_concurrent: 4,
        max_bytes_per_sec: 0,
        // Everything here is on 127.0.0.1.
        allow_private_addresses: true,
        connect_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(20),
        max_retries: 3,
        retry_backoff: Duration::from_millis(50),
        keep_staging: false,
        rescan: Duration::from_secs(30),
    }
}

/// A deal service on sled, its transfer executor, and the staging dir.
struct Exec {
    svc: ServiceOnSled,
    transfers: Arc<Transfers>,
    _staging: tempfile::TempDir,
}

fn exec(settings: TransferSettings) -> Exec {
    let svc = service_on_sled(&a4_config());
    let staging = tempfile::tempdir().unwrap();
    let transfers = Transfers::new(
        executor_runtime(),
        svc.service.clone(),
        settings,
        &staging.path().join("staging"),
    );
    Exec {
        svc,
        transfers,
        _staging: staging,
    }
}

static NEXT: AtomicU8 = AtomicU8::new(1);

/// Store a deal (golden A4 with this piece and transfer); its UUID.
async fn store_deal(e: &Exec, piece: (Cid, u64), transfer: Transfer, offline: bool) -> DealUuid {
    let mut p = DealParams::from_cbor(&golden("A4")).unwrap();
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    p.deal_uuid = DealUuid([n; 16]);
    p.is_offline = offline;
    p.transfer = transfer;
    let prop = &mut p.client_deal_proposal.proposal;
    prop.piece_cid = piece.0;
    prop.piece_size = piece.1;
    prop.start_epoch += i64::from(n); // a distinct proposal CID per deal
    let bytes = p.to_cbor();
    let record = DealRecord::new_accepted(bytes, p.clone(), String::new(), 0);
    e.svc.store.insert_new_deal(&record).await.unwrap();
    p.deal_uuid
}

fn http_transfer(url: &str, size: usize, headers: &[(&str, &str)]) -> Transfer {
    let mut req = HttpRequest::new(url);
    req.headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    Transfer {
        transfer_type: "http".into(),
        client_id: String::new(),
        params: req.to_json(),
        size: size as u64,
    }
}

async fn online_deal(e: &Exec, server: &DataServer, good: &[u8]) -> DealUuid {
    let t = http_transfer(&server.url("/piece.car"), good.len(), &[]);
    store_deal(e, piece_of(good), t, false).await
}

/// The runner, spawned on the test executor; dropped (aborted) with the handle.
struct Runner(AbortHandle);

impl Runner {
    fn start(t: &Arc<Transfers>) -> Runner {
        let (handle, reg) = AbortHandle::new_pair();
        let fut = Abortable::new(runner::run(t.clone()), reg);
        dealport_node::runtime::Runtime::spawn(
            &*executor_runtime(),
            Box::pin(async move {
                let _ = fut.await;
            }),
        );
        Runner(handle)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn deal(e: &Exec, uuid: DealUuid) -> DealRecord {
    e.svc.store.deal_by_uuid(uuid).await.unwrap().unwrap()
}

/// Poll until `done(deal)` (bounded: a loaded 2-core machine gets a minute).
async fn wait_for(
    e: &Exec,
    uuid: DealUuid,
    what: &str,
    done: impl Fn(&DealRecord) -> bool,
) -> DealRecord {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deal(e, uuid).await;
        if done(&d) {
            return d;
        }
        assert!(
            Instant::now() < until,
            "deal {uuid} never became {what}: {d:?}"
        );
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
}

async fn outcome(e: &Exec, uuid: DealUuid) -> DealRecord {
    wait_for(e, uuid, "transferred or failed", |d| {
        d.is_failed() || d.checkpoint == Checkpoint::Transferred
    })
    .await
}

fn staged(e: &Exec, uuid: DealUuid) -> Vec<u8> {
    std::fs::read(e.transfers.staging.data_path(uuid)).unwrap()
}

#[test]
fn happy_path_checks_the_piece_and_sends_the_clients_headers() {
    run(Duration::from_secs(120), async {
        let good = data(300_000, 1);
        let server = DataServer::start(Serve::new(good.clone()));
        let e = exec(settings());
        let t = http_transfer(
            &server.url("/piece.car?token=abc"),
            good.len(),
            &[("Authorization", "Bearer client-secret"), ("X-Deal", "42")],
        );
        let uuid = store_deal(&e, piece_of(&good), t, false).await;
        let _r = Runner::start(&e.transfers);
        let d = outcome(&e, uuid).await;
        assert_eq!((d.checkpoint, &d.error), (Checkpoint::Transferred, &None));
        assert_eq!(d.n_bytes_received, good.len() as u64);
        let st = status_response(&d);
        assert_eq!(st.n_bytes_received, good.len() as u64);
        assert_eq!(staged(&e, uuid), good);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert!(
            reqs[0]
                .head
                .starts_with("GET /piece.car?token=abc HTTP/1.1"),
            "{}",
            reqs[0].head
        );
        assert_eq!(
            reqs[0].header("authorization").as_deref(),
            Some("Bearer client-secret")
        );
        assert_eq!(reqs[0].header("x-deal").as_deref(), Some("42"));
        assert_eq!(reqs[0].range_from, None);
        assert!(
            !e.transfers.staging.snapshot_path(uuid).exists(),
            "snapshot removed once complete"
        );
    });
}

#[test]
fn a_cut_connection_resumes_with_range() {
    run(Duration::from_secs(120), async {
        let good = data(2 * MIB + 12345, 2);
        let mut serve = Serve::new(good.clone());
        serve.cuts = [700_000u64, 500_000].into();
        let server = DataServer::start(serve);
        let e = exec(settings());
        let uuid = online_deal(&e, &server, &good).await;
        let _r = Runner::start(&e.transfers);
        let d = outcome(&e, uuid).await;
        assert_eq!((d.checkpoint, &d.error), (Checkpoint::Transferred, &None));
        assert_eq!(staged(&e, uuid), good);
        let ranges: Vec<_> = server.requests().iter().map(|r| r.range_from).collect();
        assert_eq!(ranges.len(), 3, "{ranges:?}");
        assert_eq!(ranges[0], None);
        let (k1, k2) = (ranges[1].unwrap(), ranges[2].unwrap());
        assert!(k1 > 0 && k1 <= 700_000 && k2 > k1, "{ranges:?}");
        assert!(
            server.bytes_served() < 2 * good.len() as u64,
            "served {}",
            server.bytes_served()
        );
    });
}

#[test]
fn a_server_ignoring_range_restarts_from_zero_and_the_piece_is_still_right() {
    run(Duration::from_secs(120), async {
        let good = data(MIB, 3);
        let mut serve = Serve::new(good.clone());
        serve.cuts = [400_000u64].into();
        serve.honour_range = false;
        let server = DataServer::start(serve);
        let e = exec(settings());
        let uuid = online_deal(&e, &server, &good).await;
        let _r = Runner::start(&e.transfers);
        let d = outcome(&e, uuid).await;
        assert_eq!((d.checkpoint, &d.error), (Checkpoint::Transferred, &None));
        assert_eq!(staged(&e, uuid), good);
        assert!(
            server.requests()[1].range_from.is_some(),
            "it asked for a range"
        );
    });
}

#[test]
fn a_runner_dropped_mid_download_resumes_from_its_snapshot() {
    run(Duration::from_secs(180), async {
        // Past the first snapshot (every 4 MiB), then slow so the runner is dropped
        // mid-way.
        let good = data(6 * MIB, 4);
        let server =
            DataServer::start(Serve::new(good.clone()).slow_after(5 * MIB as u64, 256 << 10));
        let e = exec(settings());
        let uuid = online_deal(&e, &server, &good).await;
        let r = Runner::start(&e.transfers);
        let d = wait_for(&e, uuid, "past 4.5 MiB", |d| {
            d.n_bytes_received > (9 * MIB / 2) as u64
        })
        .await;
        assert_eq!(d.checkpoint, Checkpoint::Accepted);
        drop(r);
        assert!(e.transfers.staging.snapshot_path(uuid).exists());
        // The next holder (or a restart) over the same staging dir.
        server.set(|s| s.fast_bytes = u64::MAX);
        let _r = Runner::start(&e.transfers);
        let d = outcome(&e, uuid).await;
        assert_eq!((d.checkpoint, &d.error), (Checkpoint::Transferred, &None));
        assert_eq!(staged(&e, uuid), good);
        let reqs = server.requests();
        let resumed = reqs
            .last()
            .unwrap()
            .range_from
            .expect("the second runner asked for a range");
        assert!(resumed >= 4 * MIB as u64, "resumed at {resumed}");
    });
}

/// Download `served` for a deal whose piece is `good`: the failed deal's error.
async fn failure(e: &Exec, server: &DataServer, good: &[u8]) -> String {
    let uuid = online_deal(e, server, good).await;
    let _r = Runner::start(&e.transfers);
    let d = outcome(e, uuid).await;
    assert_eq!(d.checkpoint, Checkpoint::Accepted);
    let err = d.error.clone().expect("the deal failed");
    let st = status_response(&d).deal_status.unwrap();
    assert_eq!(st.error, err, "status shows the error");
    // The runner records the failure first and removes the staged files right after.
    unstaged_within(
        e,
        uuid,
        Duration::from_secs(10),
        "a failed deal's staged data",
    )
    .await;
    err
}

/// Both of `uuid`'s staged files (data and snapshot) are gone within `limit`.
async fn unstaged_within(e: &Exec, uuid: DealUuid, limit: Duration, what: &str) {
    let staging = &e.transfers.staging;
    let until = Instant::now() + limit;
    while staging.data_path(uuid).exists() || staging.snapshot_path(uuid).exists() {
        assert!(Instant::now() < until, "{what} was not removed");
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
}

#[test]
fn one_changed_byte_fails_with_both_piece_cids() {
    run(Duration::from_secs(120), async {
        let good = data(200_000, 5);
        let mut bad = good.clone();
        bad[123_456] ^= 0x10;
        let server = DataServer::start(Serve::new(bad.clone()));
        let e = exec(settings());
        let err = failure(&e, &server, &good).await;
        let (want, got) = (piece_of(&good).0, piece_of(&bad).0);
        assert!(
            err.contains(&want.to_string()) && err.contains(&got.to_string()),
            "{err}"
        );
    });
}

#[test]
fn short_and_long_data_fail_with_the_sizes() {
    run(Duration::from_secs(120), async {
        let good = data(200_000, 6);
        let e = exec(settings());

        // Declared short: fails at once with both numbers.
        let server = DataServer::start(Serve::new(good[..199_000].to_vec()));
        let err = failure(&e, &server, &good).await;
        assert!(err.contains("199000") && err.contains("200000"), "{err}");
        assert_eq!(
            server.requests().len(),
            1,
            "no retry for a declared wrong size"
        );

        // Declared long.
        let mut long = good.clone();
        long.extend_from_slice(&[7; 1000]);
        let server = DataServer::start(Serve::new(long.clone()));
        let err = failure(&e, &server, &good).await;
        assert!(err.contains("201000") && err.contains("200000"), "{err}");

        // Undeclared long: caught when the extra bytes arrive.
        let mut serve = Serve::new(long);
        serve.declare = Declare::Nothing;
        let server = DataServer::start(serve);
        let err = failure(&e, &server, &good).await;
        assert!(
            err.contains("sent more than the transfer size 200000"),
            "{err}"
        );

        // Undeclared short: looks like a dropped connection, so it is resumed with
        // Range, and the answer's Content-Range gives the short total away.
        let mut serve = Serve::new(good[..150_000].to_vec());
        serve.declare = Declare::Nothing;
        let server = DataServer::start(serve);
        let err = failure(&e, &server, &good).await;
        assert!(
            err.contains("declares 150000 bytes") && err.contains("200000"),
            "{err}"
        );
        let ranges: Vec<_> = server.requests().iter().map(|r| r.range_from).collect();
        assert_eq!(ranges, [None, Some(150_000)]);

        // The same from a server that ignores Range: retried, then given up.
        let mut serve = Serve::new(good[..150_000].to_vec());
        serve.declare = Declare::Nothing;
        serve.honour_range = false;
        let server = DataServer::start(serve);
        let err = failure(&e, &server, &good).await;
        assert!(
            err.contains("closed after 150000 of 200000 bytes")
                && err.contains("gave up after 3 retries"),
            "{err}"
        );
        assert_eq!(server.requests().len(), 4);

        // Declared exactly but the server lies about Content-Length on a full answer.
        let mut serve = Serve::new(good.clone());
        serve.declare = Declare::Length(100);
        let server = DataServer::start(serve);
        let err = failure(&e, &server, &good).await;
        assert!(
            err.contains("declares 100 bytes") && err.contains("200000"),
            "{err}"
        );
    });
}

#[test]
fn an_unreachable_url_fails_after_the_bounded_retries() {
    run(Duration::from_secs(120), async {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let e = exec(settings());
        let good = data(1000, 7);
        let t = http_transfer(&format!("http://127.0.0.1:{port}/x"), good.len(), &[]);
        let uuid = store_deal(&e, piece_of(&good), t, false).await;
        let _r = Runner::start(&e.transfers);
        let d = outcome(&e, uuid).await;
        let err = d.error.unwrap();
        assert!(
            err.contains("cannot connect") && err.contains("gave up after 3 retries"),
            "{err}"
        );
    });
}

#[test]
fn staged_files_left_by_a_failed_deal_are_swept_when_the_runner_starts() {
    run(Duration::from_secs(60), async {
        let e = exec(settings());
        let good = data(1000, 9);
        // An offline deal (nothing to download) that failed, as if the node had stopped
        // between recording the failure and removing the files.
        let failed = store_deal(&e, piece_of(&good), Transfer::default(), true).await;
        e.svc
            .service
            .apply_event(failed, DealEvent::Failed("it broke".into()))
            .await
            .unwrap();
        let waiting = store_deal(&e, piece_of(&good), Transfer::default(), true).await;
        let unknown = DealUuid([0xee; 16]);
        let staging = &e.transfers.staging;
        std::fs::create_dir_all(staging.dir()).unwrap();
        for u in [failed, waiting, unknown] {
            std::fs::write(staging.data_path(u), b"partial").unwrap();
            std::fs::write(staging.snapshot_path(u), b"snapshot").unwrap();
        }
        let _r = Runner::start(&e.transfers);
        unstaged_within(
            &e,
            failed,
            Duration::from_secs(10),
            "the failed deal's files",
        )
        .await;
        // A deal still waiting for its data, and files the store cannot place, stay.
        for u in [waiting, unknown] {
            assert!(staging.data_path(u).exists() && staging.snapshot_path(u).exists());
        }
    });
}

#[test]
fn a_private_address_is_refused_without_the_switch() {
    run(Duration::from_secs(120), async {
        let good = data(1000, 8);
        let server = DataServer::start(Serve::new(good.clone()));
        let e = exec(TransferSettings {
            allow_private_addresses: false,
            ..settings()
        });
        let err = failure(&e, &server, &good).await;
        assert!(
            err.contains("refusing to download from 127.0.0.1") && err.contains("loopback"),
            "{err}"
        );
        assert!(server.requests().is_empty(), "nothing was sent to it");
    });
}

#[test]
fn a_redirect_is_refused_not_followed() {
    run(Duration::from_secs(60), async {
        let good = data(1000, 15);
        let elsewhere = DataServer::start(Serve::new(good.clone()));
        let mut serve = Serve::new(good.clone());
        serve.redirect = Some(elsewhere.url("/other.car"));
        let server = DataServer::start(serve);
        let e = exec(settings());
        let err = failure(&e, &server, &good).await;
        assert!(
            err.contains("redirects (302)") && err.contains(&elsewhere.url("/other.car")),
            "{err}"
        );
        assert!(elsewhere.requests().is_empty());
    });
}

#[test]
fn the_concurrency_bound_holds() {
    run(Duration::from_secs(120), async {
        let e = exec(TransferSettings {
            max_concurrent: 2,
            ..settings()
        });
        // One server for all: it sees every download, each about a second long.
        let good = data(256 << 10, 9);
        let server = DataServer::start(Serve::new(good.clone()).slow_after(0, 256 << 10));
        let mut uuids = Vec::new();
        for _ in 0..4 {
            uuids.push(online_deal(&e, &server, &good).await);
        }
        let _r = Runner::start(&e.transfers);
        for u in uuids {
            let d = outcome(&e, u).await;
            assert_eq!((d.checkpoint, &d.error), (Checkpoint::Transferred, &None));
        }
        assert_eq!(server.requests().len(), 4);
        assert_eq!(server.max_open(), 2, "two at a time, never more");
    });
}

#[test]
fn the_bandwidth_cap_holds() {
    run(Duration::from_secs(120), async {
        let e = exec(TransferSettings {
            max_bytes_per_sec: 256 << 10,
            ..settings()
        });
        let good = data(MIB, 10);
        let server = DataServer::start(Serve::new(good.clone()));
        let uuid = online_deal(&e, &server, &good).await;
        let started = Instant::now();
        let _r = Runner::start(&e.transfers);
        let d = outcome(&e, uuid).await;
        let took = started.elapsed();
        assert_eq!((d.checkpoint, &d.error), (Checkpoint::Transferred, &None));
        // 1 MiB at 256 KiB/s, less at most one second of burst the bucket may have
        // saved up before the download began: at least 3 s (uncapped: milliseconds).
        assert!(took >= Duration::from_millis(2950), "took {took:?}");
    });
}

#[test]
fn a_deal_accepted_while_running_is_picked_up_at_once() {
    run(Duration::from_secs(120), async {
        // The rescan is an hour away: only the service's notice can start the download.
        let e = exec(TransferSettings {
            rescan: Duration::from_secs(3600),
            max_retries: 0,
            allow_private_addresses: false,
            ..settings()
        });
        let _r = Runner::start(&e.transfers);
        // Golden A4 as a client proposes it: an online deal whose URL is
        // https://example.com/data.car. Whether or not this machine can reach it, the
        // download is attempted and the deal fails (no such data there / no network).
        let accepted = e
            .svc
            .service
            .propose("/fil/storage/mk/1.2.1", golden("A4"), "peer".into())
            .await
            .unwrap();
        assert!(accepted.accepted, "{accepted:?}");
        let uuid = DealParams::from_cbor(&golden("A4")).unwrap().deal_uuid;
        let d = wait_for(&e, uuid, "attempted", |d| d.is_failed()).await;
        assert!(d.error.unwrap().contains("example.com"));
    });
}

// ---------------------------------------------------------------- offline import

struct ApiNode {
    e: Exec,
    front: Arc<FrontDoor>,
    http: http::HttpHandle,
}

/// One request with an empty body over a plain socket: the status and the JSON answer.
fn raw(n: &ApiNode, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(n.http.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    (
        code,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}")),
    )
}

/// A GET over a plain socket with an optional `Range`: status, lower-cased head, body.
fn get_bytes(n: &ApiNode, path: &str, token: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(n.http.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{range}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let code = head[9..12].parse().unwrap();
    (code, head, answer[split + 4..].to_vec())
}

async fn api_node(token: &str) -> ApiNode {
    let e = exec(settings());
    let peer = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    let api = Api::new(
        token.to_owned(),
        ApiContext {
            service: e.svc.service.clone(),
            transfers: e.transfers.clone(),
        },
    );
    let front = Arc::new(
        FrontDoor::new(
            peer,
            e.svc.store.clone(),
            e.svc.metrics.clone(),
            Mk12Http::new(e.svc.service.clone(), 50),
        )
        .with_api(api),
    );
    // As the lease holder does once its host runs.
    front.set_role(Role {
        generation: 1,
        host: Some(RunningHost {
            relay: Some("127.0.0.1:9".parse().unwrap()),
        }),
    });
    let http = http::start(
        executor_runtime(),
        http::HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        front.clone(),
        e.svc.metrics.clone(),
    )
    .await
    .unwrap();
    ApiNode { e, front, http }
}

async fn import_err(n: &ApiNode, token: &str, uuid: DealUuid, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.car");
    std::fs::write(&file, bytes).unwrap();
    dealport_client::node_api::import_file(
        executor_runtime(),
        &format!("http://{}", n.http.local_addr()),
        token,
        uuid,
        &file,
        Duration::from_secs(10),
    )
    .await
    .unwrap_err()
}

async fn import(
    n: &ApiNode,
    token: &str,
    uuid: DealUuid,
    bytes: &[u8],
) -> (u16, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.car");
    std::fs::write(&file, bytes).unwrap();
    let (code, body) = dealport_client::node_api::import_file(
        executor_runtime(),
        &format!("http://{}", n.http.local_addr()),
        token,
        uuid,
        &file,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    (
        code,
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
    )
}

#[test]
fn offline_import_through_the_api() {
    run(Duration::from_secs(120), async {
        let n = api_node("s3cret").await;
        let good = data(5 * MIB + 99, 12);
        let uuid = store_deal(&n.e, piece_of(&good), Transfer::default(), true).await;
        let waiting = status_response(&deal(&n.e, uuid).await)
            .deal_status
            .unwrap();
        assert_eq!(waiting.sealing_status, "Awaiting Offline Data Import");

        let (code, body) = import(&n, "wrong", uuid, &good).await;
        assert_eq!(code, 401, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("bearer token"),
            "{body}"
        );
        assert_eq!(deal(&n.e, uuid).await.checkpoint, Checkpoint::Accepted);

        let (code, body) = import(&n, "s3cret", uuid, &good).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["checkpoint"], "Transferred");
        let d = deal(&n.e, uuid).await;
        assert_eq!(
            (d.checkpoint, d.n_bytes_received),
            (Checkpoint::Transferred, good.len() as u64)
        );
        assert_eq!(staged(&n.e, uuid), good);

        // The sealing system reads the piece, whole or from where it stopped (Range).
        let piece = format!("/api/v1/sealing/deals/{uuid}/piece");
        let (code, head, body) = get_bytes(&n, &piece, "s3cret", None);
        assert_eq!(code, 200, "{head}");
        assert!(body == good, "the whole piece");
        let (code, head, body) = get_bytes(&n, &piece, "s3cret", Some("bytes=3000000-"));
        assert_eq!(code, 206, "{head}");
        assert!(
            head.contains(&format!(
                "content-range: bytes 3000000-{}/{}",
                good.len() - 1,
                good.len()
            )),
            "{head}"
        );
        assert!(body == good[3_000_000..], "the rest from the offset");
        let past = format!("bytes={}-", good.len());
        let (code, head, _) = get_bytes(&n, &piece, "s3cret", Some(&past));
        assert_eq!(code, 416, "{head}");

        // Again: refused before any data is sent, nothing changes.
        let err = import_err(&n, "s3cret", uuid, &good).await;
        assert!(
            err.contains("not waiting for data") && err.contains("Transferred"),
            "{err}"
        );
        assert_eq!(deal(&n.e, uuid).await.checkpoint, Checkpoint::Transferred);

        // Data that is not the deal's fails the deal, with both piece CIDs.
        let other = store_deal(&n.e, piece_of(&good), Transfer::default(), true).await;
        let mut wrong = good.clone();
        wrong[4_000_000] ^= 1;
        let (code, body) = import(&n, "s3cret", other, &wrong).await;
        assert_eq!(code, 422, "{body}");
        let err = body["error"].as_str().unwrap();
        assert!(
            err.contains(&piece_of(&good).0.to_string())
                && err.contains(&piece_of(&wrong).0.to_string()),
            "{err}"
        );
        let d = deal(&n.e, other).await;
        assert!(
            d.error.as_deref().unwrap().contains("piece CID mismatch"),
            "{d:?}"
        );
        n.http.shutdown().await;
    });
}

#[test]
fn the_api_is_off_without_a_token() {
    run(Duration::from_secs(60), async {
        let n = api_node("").await;
        let good = data(1000, 13);
        let uuid = store_deal(&n.e, piece_of(&good), Transfer::default(), true).await;
        let (code, body) = import(&n, "anything", uuid, &good).await;
        assert_eq!(code, 404, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("API is off"),
            "{body}"
        );
        assert_eq!(deal(&n.e, uuid).await.checkpoint, Checkpoint::Accepted);
        n.http.shutdown().await;
    });
}

#[test]
fn api_routes_answer_json_and_a_standby_refuses_writes() {
    run(Duration::from_secs(60), async {
        let n = api_node("t").await;
        let good = data(1000, 14);
        let (cid, _) = piece_of(&good);
        let offline = store_deal(&n.e, piece_of(&good), Transfer::default(), true).await;
        let server = DataServer::start(Serve::new(good.clone()));
        let online = online_deal(&n.e, &server, &good).await;

        let (code, body) = raw(&n, "GET", &format!("/api/v1/deals/{offline}"), "t");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["uuid"], offline.to_string());
        assert_eq!(body["checkpoint"], "Accepted");
        assert_eq!(body["proposal"]["piece_cid"], cid.to_string());
        assert_eq!(body["is_offline"], true);

        let (code, body) = raw(&n, "GET", "/api/v1/deals/not-a-uuid", "t");
        assert_eq!(code, 400);
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("\"not-a-uuid\" is not a deal UUID"),
            "{body}"
        );
        let (code, _) = raw(&n, "GET", "/api/v1/nothing/here", "t");
        assert_eq!(code, 404);
        let (code, _) = raw(&n, "POST", &format!("/api/v1/deals/{offline}"), "t");
        assert_eq!(code, 405);
        let (code, _) = raw(&n, "GET", &format!("/api/v1/deals/{offline}"), "");
        assert_eq!(code, 401);

        // Online deals are downloaded, not imported.
        let (code, body) = raw(&n, "PUT", &format!("/api/v1/deals/{online}/data"), "t");
        assert_eq!(code, 409, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("online deal"),
            "{body}"
        );

        // A standby reads but does not write.
        n.front.set_role(Role::default());
        let (code, body) = raw(&n, "PUT", &format!("/api/v1/deals/{offline}/data"), "t");
        assert_eq!(code, 503, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("standing by"),
            "{body}"
        );
        let (code, _) = raw(&n, "GET", &format!("/api/v1/deals/{offline}"), "t");
        assert_eq!(code, 200);
        n.http.shutdown().await;
    });
}
