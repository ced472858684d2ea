//! CommP throughput against raw SHA-256 over the same number of bytes on one core.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dealport_core::commp::CommP;
use sha2::{Digest, Sha256};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    const MIB: usize = 1 << 20;
    let data: Vec<u8> = (0..32 * MIB).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut g = c.benchmark_group("32 MiB of piece data");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("CommP (fr32 + sha254 tree, 64 MiB padded piece)", |b| {
        b.iter(|| {
            let mut cp = CommP::new();
            for chunk in data.chunks(MIB) {
                cp.update(black_box(chunk));
            }
            cp.finish(64 << 20).unwrap()
        })
    });
    g.bench_function("raw SHA-256 (streaming, same bytes)", |b| {
        b.iter(|| {
            let mut h = Sha256::new();
            for chunk in data.chunks(MIB) {
                h.update(black_box(chunk));
            }
            h.finalize()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
