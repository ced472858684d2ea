//! DealParams (golden vector A4) decode and encode on one core, with the FVM's
//! serde-based dag-cbor encoding of the same DealProposal as a reference.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dealport_core::wire::{Cbor, DealParams, DealProposal};
use fvm_ipld_encoding::tuple::*;
use std::hint::black_box;

#[path = "../tests/common/mod.rs"]
mod common;
use common::vector;

#[derive(Serialize_tuple, Deserialize_tuple)]
struct FvmDealProposal {
    piece_cid: cid::Cid,
    piece_size: u64,
    verified_deal: bool,
    client: fvm_shared::address::Address,
    provider: fvm_shared::address::Address,
    label: String,
    start_epoch: i64,
    end_epoch: i64,
    storage_price_per_epoch: fvm_shared::econ::TokenAmount,
    provider_collateral: fvm_shared::econ::TokenAmount,
    client_collateral: fvm_shared::econ::TokenAmount,
}

fn bench(c: &mut Criterion) {
    let a4 = vector("A4");
    let a1 = vector("A1");
    let params = DealParams::from_cbor(&a4).unwrap();
    let proposal = DealProposal::from_cbor(&a1).unwrap();
    let fvm: FvmDealProposal = fvm_ipld_encoding::from_slice(&a1).unwrap();

    let mut g = c.benchmark_group("DealParams A4");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode (dealport)", |b| {
        b.iter(|| DealParams::from_cbor(black_box(&a4)).unwrap())
    });
    g.bench_function("encode (dealport)", |b| {
        b.iter(|| black_box(&params).to_cbor())
    });
    g.finish();

    let mut g = c.benchmark_group("DealProposal A1");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode (dealport)", |b| {
        b.iter(|| DealProposal::from_cbor(black_box(&a1)).unwrap())
    });
    g.bench_function("decode (fvm serde_ipld_dagcbor)", |b| {
        b.iter(|| fvm_ipld_encoding::from_slice::<FvmDealProposal>(black_box(&a1)).unwrap())
    });
    g.bench_function("encode (dealport)", |b| {
        b.iter(|| black_box(&proposal).to_cbor())
    });
    g.bench_function("encode (fvm serde_ipld_dagcbor)", |b| {
        b.iter(|| fvm_ipld_encoding::to_vec(black_box(&fvm)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
