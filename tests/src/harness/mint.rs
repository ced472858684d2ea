//! Fresh, validly signed deals: golden vector A4's terms (accepted under
//! [`config::accept_a4`](super::config::accept_a4)) with a new UUID and label each, signed
//! by A4's secp256k1 client key.

use std::sync::atomic::{AtomicU64, Ordering};

use dealport_client::{build_deal, wallet::Wallet};
use dealport_core::wire::DealParams;

use super::golden::A4_CLIENT_KEY_FILE;

/// A4's client wallet.
pub fn a4_wallet() -> Wallet {
    let text = String::from_utf8(hex::decode(A4_CLIENT_KEY_FILE).expect("hex")).expect("utf-8");
    Wallet::from_lotus_export(&text).expect("A4's key file")
}

/// A new deal with a random UUID, signed by `wallet`.
pub fn fresh_deal(wallet: &Wallet) -> DealParams {
    static N: AtomicU64 = AtomicU64::new(0);
    let label = format!(
        "dealport test deal {} {}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let spec = dealport_client::bench::bench_deal_spec(label).expect("deal spec");
    build_deal(&spec, wallet)
}
