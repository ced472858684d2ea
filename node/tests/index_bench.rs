//! Indexing throughput (BENCHMARKS.md, "Piece indexing"): a CAR of `CAR_MIB` MiB
//! (default 1024) of small blocks and one of 1 MiB blocks, each measured in one run as
//! (1) a raw read of the file in 1 MiB chunks, (2) core's `CarReader` alone (parse and
//! hash every block), (3) the indexer end to end (`Indexer::index_piece`: read, parse,
//! hash, entries written in batches, final state) into a sled store, then into a
//! throwaway PostgreSQL. The file is written
//! first and is in the page cache for all three, so the ratios compare CPU work. Also
//! prints the process's peak RSS (VmHWM) after each case: indexing memory is bounded.
//!
//! Run: `cargo test --release -p dealport-node --test index_bench -- --ignored --nocapture`
//! (`CAR_MIB=256` for a shorter run; `SMALL_BLOCK=4096` to change the small block size).
use std::{
    fs::File,
    io::{BufWriter, Read, Write},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use dealport_core::{
    car::{section_prefix, v1_header, CarItem, CarReader},
    piece_index::IndexState,
    wire::{
        cid::{CODEC_RAW, MH_SHA2_256},
        Cid,
    },
};
use dealport_node::{
    exec::{index::Indexer, staging::Staging},
    metrics::Metrics,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        Store,
    },
};
use dealport_testkit::{node::runtime, postgres::PgServer};
use sha2::{Digest, Sha256};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A CARv1 of about `total` bytes of distinct raw blocks of `block` bytes; the block
/// count.
fn write_car(path: &Path, total: u64, block: usize) -> u64 {
    let mut w = BufWriter::with_capacity(4 << 20, File::create(path).unwrap());
    let mut data = vec![0u8; block];
    let cid_of = |d: &[u8]| Cid::v1(CODEC_RAW, MH_SHA2_256, &Sha256::digest(d));
    w.write_all(&v1_header(&[cid_of(&data)])).unwrap();
    let n = total / block as u64;
    for i in 0..n {
        data[..8].copy_from_slice(&i.to_le_bytes());
        let cid = cid_of(&data);
        w.write_all(&section_prefix(&cid, block as u64)).unwrap();
        w.write_all(&data).unwrap();
    }
    w.flush().unwrap();
    n
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn raw_read(path: &Path) -> Duration {
    let t = Instant::now();
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut sum = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sum = sum.wrapping_add(u64::from(buf[n - 1]));
    }
    std::hint::black_box(sum);
    t.elapsed()
}

fn parse_only(path: &Path) -> (Duration, u64) {
    let t = Instant::now();
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut r = CarReader::new();
    let mut blocks = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        r.push(&buf[..n], &mut |i| {
            if let CarItem::Block(b) = i {
                assert!(b.verified);
                blocks += 1;
            }
        })
        .unwrap();
    }
    assert_eq!(r.finish().unwrap().blocks, blocks);
    (t.elapsed(), blocks)
}

fn index(path: &Path, dir: &Path, store: Arc<dyn Store>) -> (Duration, u64) {
    let (ix, _wake) = Indexer::new(
        store,
        Staging::new(dir.join("staging")),
        None,
        runtime(),
        Arc::new(Metrics::new()),
        Duration::from_secs(3600),
    );
    let piece = Cid::v1(0xf101, 0x1012, &[9; 32]);
    let t = Instant::now();
    let state = futures::executor::block_on(ix.index_piece(&piece, vec![path.to_path_buf()]))
        .expect("indexed");
    let took = t.elapsed();
    let IndexState::Indexed { blocks } = state else {
        panic!("{state}")
    };
    (took, blocks)
}

#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn indexing_throughput_beside_raw_read() {
    let total = env_u64("CAR_MIB", 1024) << 20;
    let small = env_u64("SMALL_BLOCK", 1024) as usize;
    let tmp = tempfile::tempdir().unwrap();
    println!(
        "| CAR of {} MiB, block size | blocks | raw read MiB/s | CarReader MiB/s (blocks/s) | indexer into PostgreSQL MiB/s (blocks/s) | indexer into sled MiB/s (blocks/s) | peak RSS MiB: before / after PostgreSQL / after sled |",
        total >> 20
    );
    println!("|---|---|---|---|---|---|---|");
    for block in [small, 1 << 20] {
        let path = tmp.path().join(format!("b{block}.car"));
        let n = write_car(&path, total, block);
        let len = std::fs::metadata(&path).unwrap().len() as f64 / (1u64 << 20) as f64;
        raw_read(&path); // page cache warm
        let raw = raw_read(&path);
        let (parse, pb) = parse_only(&path);
        assert_eq!(pb, n);
        let rss_before = peak_rss_mib();
        // PostgreSQL first (a throwaway server: its memory is its own processes'), so
        // the peak RSS after it is the indexer's own; then sled, whose memory is ours.
        let server = PgServer::start();
        let pg: Arc<dyn Store> = Arc::new(
            futures::executor::block_on(PostgresStore::connect(
                &server.url(),
                PostgresOptions::default(),
            ))
            .unwrap(),
        );
        let store_dir = tmp.path().join(format!("store{block}"));
        let (pg_ix, pb) = index(&path, &store_dir, pg);
        assert_eq!(pb, n);
        drop(server);
        let rss_pg = peak_rss_mib();
        let sled: Arc<dyn Store> = Arc::new(SledStore::open(&store_dir, runtime()).unwrap());
        let (ix, ib) = index(&path, &store_dir, sled);
        assert_eq!(ib, n);
        let mibs = |d: Duration| len / d.as_secs_f64();
        let bps = |d: Duration| n as f64 / d.as_secs_f64();
        println!(
            "| {} B | {n} | {:.0} | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.0} ({:.0}) | {} / {} / {} |",
            block,
            mibs(raw),
            mibs(parse),
            bps(parse),
            mibs(pg_ix),
            bps(pg_ix),
            mibs(ix),
            bps(ix),
            rss_before,
            rss_pg,
            peak_rss_mib()
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_dir_all(&store_dir).unwrap();
    }
}
