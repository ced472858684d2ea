//! `dealport deals populate <N>`: fill a store that no node runs on with N signed,
//! realistic deals (golden vector A4's terms, each with its own UUID and label, signed
//! by the golden secp256k1 client), most of them history: 90 % `Complete`, 5 % failed,
//! 5 % still at work spread over the live checkpoints, those at `Accepted` offline
//! deals waiting for their data (a backlog that waits, rather than downloads a node
//! without a network would keep retrying). For the benchmarks that compare a node on a
//! large history with one on an empty store. `--waiting W` makes W of the N (spread
//! evenly) offline deals at `Accepted` instead: a long live index, as while a provider
//! onboards a large dataset whose data comes later.

use std::time::Instant;

use dealport_client::{
    bench::{bench_deal_spec, GOLDEN_SECP_KEY},
    build_deal, DataTransfer, Wallet,
};
use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    wire::{Cbor, Cid},
};
use dealport_node::store::CHECKPOINTS;

use crate::Fail;

/// Deals written per store transaction.
const BATCH: usize = 5_000;

/// How many deals to write, and how many of them wait for their data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mix {
    count: u64,
    waiting: u64,
}

impl Mix {
    pub(crate) fn new(count: u64, waiting: u64) -> Result<Mix, Fail> {
        if waiting > count {
            return Err(Fail(format!(
                "--waiting {waiting} is more than the {count} deals to write"
            )));
        }
        Ok(Mix { count, waiting })
    }

    /// Whether deal `i` is one of the `waiting` spread evenly through `count`: exactly
    /// `waiting` of `0..count` are.
    fn waits(&self, i: u64) -> bool {
        let share = |k: u64| u128::from(k) * u128::from(self.waiting) / u128::from(self.count);
        share(i + 1) > share(i)
    }
}

/// Deal `i` of a populated store, moved to its place in the mix.
fn synthetic(i: u64, mix: &Mix, wallet: &Wallet) -> Result<DealRecord, Fail> {
    let mut spec = bench_deal_spec(format!("populate {i}")).map_err(Fail)?;
    let waits = mix.waits(i);
    if i % 100 == 95 || waits {
        spec.transfer = DataTransfer::Offline;
    }
    let params = build_deal(&spec, wallet);
    let created = 1_700_000_000_000_000_000 + i as i64 * 1_000_000_000;
    let mut d =
        DealRecord::new_accepted(params.to_cbor(), params, "12D3KooWpopulate".into(), created);
    let target = match i % 100 {
        _ if waits => Checkpoint::Accepted,
        0..=89 => Checkpoint::Complete,
        90..=94 => Checkpoint::Transferred, // then failed below
        n => CHECKPOINTS[(n as usize - 95) % 6],
    };
    let size = d.params.transfer.size;
    for c in CHECKPOINTS.iter().skip(1) {
        if *c > target {
            break;
        }
        let ev = match c {
            Checkpoint::Transferred => DealEvent::Transferred { bytes: size },
            Checkpoint::Published => DealEvent::Published {
                publish_cid: Cid::dag_cbor_blake2b(&i.to_be_bytes()),
            },
            Checkpoint::PublishConfirmed => DealEvent::PublishConfirmed { chain_deal_id: i },
            Checkpoint::AddedPiece => DealEvent::AddedPiece {
                sector_number: i / 16,
                offset: 0,
            },
            Checkpoint::IndexedAndAnnounced => DealEvent::IndexedAndAnnounced,
            Checkpoint::Complete => DealEvent::Complete,
            Checkpoint::Accepted => continue,
        };
        d.apply(ev).map_err(|e| Fail(e.to_string()))?;
    }
    if (90..=94).contains(&(i % 100)) && !waits {
        d.apply(DealEvent::Failed("populate: a failed deal".into()))
            .map_err(|e| Fail(e.to_string()))?;
    }
    Ok(d)
}

/// Write `n` deals in batches through `load`; print progress and the rate.
pub(crate) async fn populate<F, Fut>(mix: Mix, mut load: F) -> Result<u64, Fail>
where
    F: FnMut(Vec<DealRecord>) -> Fut,
    Fut: std::future::Future<Output = Result<usize, Fail>>,
{
    let wallet = Wallet::from_lotus_export(GOLDEN_SECP_KEY)?;
    let n = mix.count;
    let started = Instant::now();
    let mut written = 0u64;
    let mut i = 0u64;
    while i < n {
        let end = (i + BATCH as u64).min(n);
        let batch = (i..end)
            .map(|k| synthetic(k, &mix, &wallet))
            .collect::<Result<Vec<_>, _>>()?;
        written += load(batch).await? as u64;
        i = end;
        if i.is_multiple_of(100_000) || i == n {
            eprintln!(
                "{i} of {n} deals ({:.0}/s)",
                i as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::Mix;

    #[test]
    fn exactly_the_waiting_deals_wait_spread_evenly() {
        for (count, waiting) in [(10, 0), (10, 3), (10, 10), (1_000, 400), (7, 5)] {
            let mix = Mix::new(count, waiting).unwrap();
            let waits: Vec<u64> = (0..count).filter(|i| mix.waits(*i)).collect();
            assert_eq!(
                waits.len() as u64,
                waiting,
                "{count} deals, {waiting} waiting"
            );
            // No stretch of the history is left without its share.
            if waiting > 0 {
                let gap = count.div_ceil(waiting);
                assert!(waits.windows(2).all(|w| w[1] - w[0] <= gap), "{waits:?}");
            }
        }
        assert!(Mix::new(3, 4).is_err());
    }
}
