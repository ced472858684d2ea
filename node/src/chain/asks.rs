//! Signed storage asks in Lotus chain mode.
//!
//! Boost (`storagemarket/storedask/storedask.go`) signs the CBOR of the StorageAsk with
//! the miner's worker key (`WalletSign`). The ask stream must answer within its deadline,
//! so signing never happens on it: a leader task signs each configured miner's ask at
//! start and again before it expires, and the stream answers from the last signed ask
//! (`Ask: null` until one exists, as Boost and Curio do without an ask).
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use dealport_core::{
    ask::{bytes_to_sign, signed_ask, storage_ask},
    facts::AskTerms,
    wire::{Address, SignedStorageAsk},
};

use super::lotus::{LotusClient, RpcError};
use crate::runtime::LeaderTask;

/// How long a signed ask stays valid, in epochs (go-fil-markets' `DefaultDuration`).
pub const ASK_DURATION_EPOCHS: i64 = 1_000_000;
/// An ask this close to its expiry (epochs, one day) is signed again.
pub const RESIGN_BEFORE_EPOCHS: i64 = 2880;
/// How often the task looks at the asks.
const CHECK_EVERY: Duration = Duration::from_secs(600);
/// After a failure (Lotus down, no wallet key), the next try.
const RETRY_AFTER: Duration = Duration::from_secs(30);

pub struct AskSigner {
    lotus: Arc<LotusClient>,
    terms: Vec<(Address, AskTerms)>,
    signed: RwLock<HashMap<Address, SignedStorageAsk>>,
}

impl AskSigner {
    /// `terms`: the miners that have an ask (`[miners.ask]`), disabled ones left out.
    pub fn new(lotus: Arc<LotusClient>, terms: Vec<(Address, AskTerms)>) -> Arc<AskSigner> {
        Arc::new(AskSigner {
            lotus,
            terms,
            signed: RwLock::new(HashMap::new()),
        })
    }

    /// The last signed ask of `miner`.
    pub fn current(&self, miner: &Address) -> Option<SignedStorageAsk> {
        self.signed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(miner)
            .cloned()
    }

    /// Sign every ask that is missing or near its expiry. `Err` names what failed.
    pub async fn refresh(&self) -> Result<usize, String> {
        if self.terms.is_empty() {
            return Ok(0);
        }
        let head = self
            .lotus
            .chain_head()
            .await
            .map_err(|e| format!("cannot sign asks: {e}"))?
            .height;
        let mut signed = 0;
        for (miner, terms) in &self.terms {
            let fresh = self
                .current(miner)
                .and_then(|s| s.ask)
                .is_some_and(|a| a.expiry - head > RESIGN_BEFORE_EPOCHS);
            if fresh {
                continue;
            }
            self.sign(miner, terms, head)
                .await
                .map_err(|e| format!("cannot sign the ask of {miner}: {e}"))?;
            signed += 1;
        }
        Ok(signed)
    }

    async fn sign(&self, miner: &Address, terms: &AskTerms, head: i64) -> Result<(), RpcError> {
        let worker = self.lotus.state_miner_info(miner, None).await?.worker;
        // The head epoch as sequence number: it grows with every new ask.
        let seq_no = u64::try_from(head).unwrap_or(0);
        let ask = storage_ask(
            miner.clone(),
            terms,
            head,
            head + ASK_DURATION_EPOCHS,
            seq_no,
        );
        let signature = self
            .lotus
            .wallet_sign(&worker, &bytes_to_sign(&ask))
            .await?;
        tracing::info!(%miner, %worker, expiry = ask.expiry, "storage ask signed");
        self.signed
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(miner.clone(), signed_ask(ask, signature));
        Ok(())
    }

    /// Refresh now and then, until dropped.
    pub async fn run(&self) {
        loop {
            let wait = match self.refresh().await {
                Ok(_) => CHECK_EVERY,
                Err(e) => {
                    tracing::warn!("{e}; asks answer with the last signed ask (or null)");
                    RETRY_AFTER
                }
            };
            async_io::Timer::after(wait).await;
        }
    }
}

/// The signer as a [`LeaderTask`].
pub fn leader_task(s: Arc<AskSigner>) -> LeaderTask {
    Box::new(move || {
        let s = s.clone();
        Box::pin(async move { s.run().await })
    })
}
