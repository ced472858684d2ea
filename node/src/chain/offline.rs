//! The offline chain: the epoch from the network's genesis time at 30 s per epoch, every
//! other fact from `[chain.offline]` in the config. Nothing is checked against the real
//! chain, so start-up says so loudly.

use std::time::{SystemTime, UNIX_EPOCH};

use dealport_core::{
    facts::{ChainFacts, MarketBalance},
    wire::{Address, DealParams, Protocol, TokenAmount},
};
use num_bigint::BigInt;

use super::{ChainFactsSource, ChainFuture};
use crate::config::{ClientConfig, NetworkName, OfflineConfig, UnknownClient, EPOCH_SECONDS};

/// [`ChainFactsSource`] from configuration.
#[derive(Debug, Clone)]
pub struct OfflineChain {
    network: NetworkName,
    config: OfflineConfig,
}

/// The epoch at `unix_secs` on a network whose genesis was at `genesis_unix`.
pub fn epoch_at(genesis_unix: i64, unix_secs: i64) -> i64 {
    (unix_secs - genesis_unix).div_euclid(EPOCH_SECONDS)
}

/// "Unlimited" funds or datacap: 2^128 attoFIL / bytes.
fn unlimited() -> TokenAmount {
    TokenAmount(BigInt::from(1u8) << 128u32)
}

impl OfflineChain {
    pub fn new(network: NetworkName, config: OfflineConfig) -> OfflineChain {
        OfflineChain { network, config }
    }

    fn now_epoch(&self) -> i64 {
        if let Some(e) = self.config.head_epoch_override {
            return e;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        epoch_at(self.network.genesis_unix(), now)
    }

    fn client(&self, addr: &Address) -> Option<&ClientConfig> {
        self.config
            .clients
            .iter()
            .find(|c| &c.address == addr || c.key.as_ref() == Some(addr))
    }

    fn key_of(&self, addr: &Address) -> Option<Address> {
        if let Some(c) = self.client(addr) {
            if let Some(k) = &c.key {
                return Some(k.clone());
            }
        }
        match addr.protocol() {
            Some(Protocol::Secp256k1 | Protocol::Bls | Protocol::Delegated) => Some(addr.clone()),
            _ => None,
        }
    }

    /// The facts, without awaiting (the offline chain never waits).
    pub fn facts_now(&self, params: &DealParams) -> ChainFacts {
        let client = &params.client_deal_proposal.proposal.client;
        let known = self.client(client);
        let (balance, datacap) = match (known, self.config.unknown_client) {
            (Some(c), _) => (
                MarketBalance {
                    escrow: c.escrow.clone(),
                    locked: c.locked.clone(),
                },
                c.datacap.clone(),
            ),
            (None, UnknownClient::Zero) => (MarketBalance::default(), None),
            (None, UnknownClient::Unlimited) => (
                MarketBalance {
                    escrow: unlimited(),
                    locked: TokenAmount::zero(),
                },
                Some(unlimited()),
            ),
        };
        let client_key = self.key_of(client);
        // f4 clients would need the AuthenticateMessage call, which only a real chain can
        // make: the core answers `server error: validating signature` for them.
        ChainFacts {
            head_epoch: Some(self.now_epoch()),
            client_key,
            f4_authenticated: None,
            provider_collateral_min: Some(self.config.provider_collateral_min.clone()),
            client_balance: Some(balance),
            client_datacap: Some(datacap),
        }
    }
}

impl ChainFactsSource for OfflineChain {
    fn facts_for<'a>(&'a self, params: &'a DealParams) -> ChainFuture<'a, ChainFacts> {
        let facts = self.facts_now(params);
        Box::pin(async move { facts })
    }

    fn head_epoch(&self) -> ChainFuture<'_, Option<i64>> {
        let e = self.now_epoch();
        Box::pin(async move { Some(e) })
    }

    fn account_key<'a>(&'a self, addr: &'a Address) -> ChainFuture<'a, Option<Address>> {
        let k = self.key_of(addr);
        Box::pin(async move { k })
    }

    fn describe(&self) -> String {
        let head = match self.config.head_epoch_override {
            Some(e) => format!(
                "head epoch fixed at {e} by chain.offline.head_epoch_override (TESTING ONLY)"
            ),
            None => format!("head epoch {} from the genesis time", self.now_epoch()),
        };
        format!(
            "OFFLINE chain mode ({}): nothing is checked against the real chain; {head}; {} known client(s), unknown clients: {:?}",
            self.network.name(),
            self.config.clients.len(),
            self.config.unknown_client
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_from_genesis() {
        use crate::config::{CALIBNET_GENESIS_UNIX, MAINNET_GENESIS_UNIX};
        assert_eq!(epoch_at(MAINNET_GENESIS_UNIX, MAINNET_GENESIS_UNIX), 0);
        assert_eq!(epoch_at(MAINNET_GENESIS_UNIX, MAINNET_GENESIS_UNIX + 59), 1);
        // 2024-01-01 00:00:00 UTC: 105,760,800 s after genesis.
        assert_eq!(epoch_at(MAINNET_GENESIS_UNIX, 1_704_067_200), 3_525_360);
        assert_eq!(
            epoch_at(CALIBNET_GENESIS_UNIX, CALIBNET_GENESIS_UNIX + 30),
            1
        );
    }
}
