//! The honest client of the attack tests: a fresh signed deal, then its status, over one
//! libp2p connection, each answer checked.

use std::time::{Duration, Instant};

use dealport_client::{status_request, Wallet};
use dealport_core::wire::{Cbor, DealResponse, DealStatusResponse};
use dealport_node::p2p::{PeerId, PROTOCOL_DEAL_1_2_1, PROTOCOL_STATUS};

use super::{mint::fresh_deal, rust_client::Client};

/// Propose a fresh deal and ask its status; both must succeed. The time both took.
pub async fn deal_and_status(client: &mut Client, peer: PeerId, wallet: &Wallet) -> Duration {
    let started = Instant::now();
    let deal = fresh_deal(wallet);
    let reply = client
        .request(peer, PROTOCOL_DEAL_1_2_1, &deal.to_cbor())
        .await;
    let r = DealResponse::from_cbor(&reply)
        .unwrap_or_else(|e| panic!("not a DealResponse ({e}): {}", hex::encode(&reply)));
    assert!(r.accepted, "honest deal not accepted: {r:?}");
    let reply = client
        .request(
            peer,
            PROTOCOL_STATUS,
            &status_request(deal.deal_uuid, wallet).to_cbor(),
        )
        .await;
    let s = DealStatusResponse::from_cbor(&reply)
        .unwrap_or_else(|e| panic!("not a DealStatusResponse ({e}): {}", hex::encode(&reply)));
    assert_eq!(s.error, "", "{s:?}");
    assert_eq!(s.deal_uuid, deal.deal_uuid);
    let status = s.deal_status.expect("a DealStatus");
    assert_eq!(status.status, "Accepted");
    assert_eq!(status.proposal, deal.client_deal_proposal.proposal);
    started.elapsed()
}

/// Latencies of honest deal+status rounds: count, median and worst.
#[derive(Debug, Default, Clone)]
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// `n=.. median=..ms max=..ms`.
    pub fn summary(&self) -> String {
        let mut v = self.0.clone();
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match v.len() {
            0 => "n=0".into(),
            n => format!(
                "n={n} median={:.1}ms max={:.1}ms",
                ms(v[n / 2]),
                ms(v[n - 1])
            ),
        }
    }

    pub fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}
