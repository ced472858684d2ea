//! Where chain facts come from: a Lotus node or the offline configuration.
//!
//! Layer: chain facts, above the store: uses `store`, `config`, `runtime`.

pub mod asks;
pub mod check;
pub mod lotus;
pub mod market;
pub mod miner_info;
pub mod offline;

use std::{future::Future, pin::Pin};

use dealport_core::{
    facts::ChainFacts,
    wire::{Address, DealParams},
};

pub use lotus::{LotusChain, LotusClient};
pub use miner_info::MinerInfoUpdater;
pub use offline::OfflineChain;

/// The future every chain method returns.
pub type ChainFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The chain state a deal decision and a status answer need. A fact the chain could not
/// supply is `None`; the core turns it into the matching `server error: …`.
pub trait ChainFactsSource: Send + Sync + 'static {
    /// Every fact `accept::decide` needs for this proposal, as of one head.
    fn facts_for<'a>(&'a self, params: &'a DealParams) -> ChainFuture<'a, ChainFacts>;

    /// The current head epoch.
    fn head_epoch(&self) -> ChainFuture<'_, Option<i64>>;

    /// StateAccountKey: the key address (f1/f3) behind `addr`; f1/f3 give themselves.
    fn account_key<'a>(&'a self, addr: &'a Address) -> ChainFuture<'a, Option<Address>>;

    /// One line for the start-up log, e.g. `offline (mainnet, epoch from genesis time)`.
    fn describe(&self) -> String;
}
