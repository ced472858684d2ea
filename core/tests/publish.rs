//! Batching transferred deals into PublishStorageDeals messages.
use std::time::Duration;

use dealport_core::{
    publish::{expired_error, plan, Waiting},
    wire::{Address, DealUuid},
};

const PERIOD: Duration = Duration::from_secs(300);

fn uuid(n: u8) -> DealUuid {
    DealUuid([n; 16])
}

fn waiting(n: u8, provider: u64, start: i64, waited_secs: u64) -> Waiting {
    Waiting {
        uuid: uuid(n),
        provider: Address::new_id(provider),
        start_epoch: start,
        waited: Duration::from_secs(waited_secs),
    }
}

#[test]
fn a_partial_batch_waits_for_the_period() {
    let w: Vec<Waiting> = (1..=3).map(|n| waiting(n, 1000, 10_000, 10)).collect();
    assert!(plan(&w, 100, 2880, 8, PERIOD).batches.is_empty());
    let mut w = w;
    w[1].waited = PERIOD;
    let p = plan(&w, 100, 2880, 8, PERIOD);
    assert_eq!(
        p.batches,
        vec![(Address::new_id(1000), vec![uuid(1), uuid(2), uuid(3)])]
    );
    assert!(p.fail.is_empty());
}

#[test]
fn ten_deals_make_a_full_batch_of_eight_now_and_two_later() {
    let w: Vec<Waiting> = (1..=10)
        .map(|n| waiting(n, 1000, 10_000, u64::from(n)))
        .collect();
    let p = plan(&w, 100, 2880, 8, PERIOD);
    assert_eq!(p.batches.len(), 1);
    let (_, batch) = &p.batches[0];
    // The eight that waited longest, in UUID order.
    assert_eq!(batch, &(3..=10).map(uuid).collect::<Vec<_>>());
}

#[test]
fn batches_are_per_provider() {
    let w = vec![
        waiting(1, 1000, 10_000, 400),
        waiting(2, 2000, 10_000, 400),
        waiting(3, 1000, 10_000, 1),
    ];
    let p = plan(&w, 100, 2880, 8, PERIOD);
    assert_eq!(
        p.batches,
        vec![
            (Address::new_id(1000), vec![uuid(1), uuid(3)]),
            (Address::new_id(2000), vec![uuid(2)]),
        ]
    );
}

#[test]
fn a_deal_too_close_to_its_start_fails_with_curios_message() {
    let w = vec![waiting(1, 1000, 3000, 400), waiting(2, 1000, 2979, 400)];
    let p = plan(&w, 100, 2880, 8, PERIOD);
    assert_eq!(p.fail, vec![(uuid(2), expired_error(2979, 100))]);
    assert_eq!(
        p.fail[0].1,
        "deal proposal must be proven on chain by deal proposal start epoch 2979, but it has \
         expired: current chain height: 100"
    );
    assert_eq!(p.batches, vec![(Address::new_id(1000), vec![uuid(1)])]);
}
