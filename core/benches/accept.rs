//! Full proposal validation per second on one core: the golden deal with a secp256k1
//! client (A4) and with a BLS client (B2), signature check included.
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dealport_core::accept::decide;
use dealport_core::deal::DealRecord;
use dealport_core::facts::{ChainFacts, MarketBalance, Policy};
use dealport_core::status::{answer_status, VerifyCache};
use dealport_core::wire::{Address, Cbor, DealParams, DealStatusRequest, TokenAmount};
use std::hint::black_box;

#[path = "../tests/common/mod.rs"]
mod common;
use common::vector;

fn facts(p: &DealParams) -> ChainFacts {
    ChainFacts {
        head_epoch: Some(4_490_000),
        client_key: Some(p.client_deal_proposal.proposal.client.clone()),
        f4_authenticated: None,
        provider_collateral_min: Some(TokenAmount::from_u64(5_000_000_000_000)),
        client_balance: Some(MarketBalance::default()),
        client_datacap: Some(Some(TokenAmount::from_u64(64 << 30))),
    }
}

fn bench(c: &mut Criterion) {
    let policy = Policy {
        miners: vec![Address::new_id(1000)],
        ..Policy::default()
    };
    let mut g = c.benchmark_group("validate (decode + all rules + signature)");
    g.throughput(Throughput::Elements(1));
    for (name, which) in [("secp256k1 client (A4)", "A4"), ("BLS client (B2)", "B2")] {
        let bytes = vector(which);
        let p = DealParams::from_cbor(&bytes).unwrap();
        let f = facts(&p);
        assert_eq!(decide(&p, &f, &policy, None, None), Ok(()));
        g.bench_function(name, |b| {
            b.iter(|| {
                let p = DealParams::from_cbor(black_box(&bytes)).unwrap();
                decide(&p, &f, &policy, None, None)
            })
        });
    }
    g.finish();

    // Status: a BLS client polling (S2) and a secp256k1 client polling (S1).
    let mut g = c.benchmark_group("status verification");
    g.throughput(Throughput::Elements(1));
    for (name, deal, req) in [("secp256k1", "A4", "S1"), ("BLS", "B2", "S2")] {
        let params_bytes = vector(deal);
        let params = DealParams::from_cbor(&params_bytes).unwrap();
        let key = params.client_deal_proposal.proposal.client.clone();
        let record = DealRecord::new_accepted(params_bytes, params, String::new(), 0);
        let request = DealStatusRequest::from_cbor(&vector(req)).unwrap();
        // Capacity 0: every poll verifies (cold).
        let mut cold = VerifyCache::new(0);
        g.bench_function(format!("{name} cold (verify every poll)"), |b| {
            b.iter(|| answer_status(black_box(&request), Some(&record), Some(&key), &mut cold))
        });
        let mut warm = VerifyCache::new(1024);
        g.bench_function(format!("{name} warm (cached verification)"), |b| {
            b.iter(|| answer_status(black_box(&request), Some(&record), Some(&key), &mut warm))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
