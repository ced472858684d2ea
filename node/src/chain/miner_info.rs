//! Keeping the miners' on-chain PeerID and multiaddrs right (docs/design.md §Promises,
//! point 7).
//!
//! The decision (what to send, the params bytes) is `dealport_core::miner_info`; this is
//! the I/O around it: `StateMinerInfo`, `MpoolPushMessage` from the worker, and the
//! messages in flight, checked with `StateSearchMsg` so nothing is sent twice while a
//! message for the same change is pending. Unlike Curio this runs at every start *and*
//! periodically (the caller schedules [`MinerInfoUpdater::check`]).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use dealport_core::{
    miner_info::{messages_needed, Change, MinerMessage, OnChainPeerInfo},
    wire::{Address, TokenAmount},
};
use libp2p::{Multiaddr, PeerId};

use super::lotus::{LotusClient, RpcError, UnsignedMessage};
use crate::store::{LeaseGate, Store, StoreError};

/// The store key of the messages in flight ([`Store::leader_state`]).
pub const IN_FLIGHT_STATE: &str = "miner_info_in_flight";

/// A pending message older than this (epochs, one day) is taken as lost and may be sent
/// again; a failed one is retried after this long too.
pub const DEFAULT_RESEND_AFTER_EPOCHS: i64 = 2880;

/// A message we pushed and have not yet seen land successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The signed message's CID, as Lotus returned it.
    pub cid: String,
    /// Its params: a different wanted value is not blocked by this message.
    pub params: Vec<u8>,
    /// Head epoch when it was pushed.
    pub sent_epoch: i64,
    /// It landed with a non-zero exit code.
    pub failed: bool,
}

/// What one check did for one miner and change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The miner is disabled in the config: not looked at.
    Disabled { miner: Address },
    /// The chain already says what we want.
    UpToDate { miner: Address, change: Change },
    /// A message was pushed.
    Sent {
        miner: Address,
        change: Change,
        cid: String,
    },
    /// A message for this very change is still pending (or failed recently): nothing sent.
    Pending {
        miner: Address,
        change: Change,
        cid: String,
    },
    /// A call failed; logged, retried at the next check.
    Error { miner: Address, what: String },
}

/// The I/O side of the peer-info decision.
pub struct MinerInfoUpdater {
    client: Arc<LotusClient>,
    max_fee: TokenAmount,
    resend_after_epochs: i64,
    sent: Mutex<HashMap<(Address, Change), SentMessage>>,
    /// Where the messages in flight outlive this process (the next holder reads them).
    persist: Option<(Arc<dyn Store>, Arc<LeaseGate>)>,
    /// What was last written there, to skip identical writes.
    saved: futures::lock::Mutex<Option<Vec<u8>>>,
}

impl std::fmt::Debug for MinerInfoUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MinerInfoUpdater")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// One message in flight as stored (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredMessage {
    miner: String,
    change: String,
    cid: String,
    params: String,
    sent_epoch: i64,
    failed: bool,
}

impl MinerInfoUpdater {
    pub fn new(client: Arc<LotusClient>, max_fee: TokenAmount) -> Self {
        MinerInfoUpdater {
            client,
            max_fee,
            resend_after_epochs: DEFAULT_RESEND_AFTER_EPOCHS,
            sent: Mutex::new(HashMap::new()),
            persist: None,
            saved: futures::lock::Mutex::new(None),
        }
    }

    /// Keep the messages in flight in `store` (written under `gate`'s fence), so a
    /// restart or the next lease holder does not send them again.
    pub fn with_store(mut self, store: Arc<dyn Store>, gate: Arc<LeaseGate>) -> Self {
        self.persist = Some((store, gate));
        self
    }

    /// Replace the messages in flight with those in the store. The count restored.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let Some((store, _)) = &self.persist else {
            return Ok(0);
        };
        let Some(bytes) = store.leader_state(IN_FLIGHT_STATE).await? else {
            return Ok(0);
        };
        let corrupt = |message: String| StoreError::Corrupt {
            key: IN_FLIGHT_STATE.into(),
            message,
        };
        let stored: Vec<StoredMessage> =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut map = HashMap::new();
        for m in stored {
            let miner = Address::parse(&m.miner).map_err(|e| corrupt(e.to_string()))?;
            let change = match m.change.as_str() {
                "peer_id" => Change::PeerId,
                "multiaddrs" => Change::Multiaddrs,
                other => return Err(corrupt(format!("unknown change {other:?}"))),
            };
            let params = hex::decode(&m.params).map_err(|e| corrupt(e.to_string()))?;
            let sent = SentMessage {
                cid: m.cid,
                params,
                sent_epoch: m.sent_epoch,
                failed: m.failed,
            };
            map.insert((miner, change), sent);
        }
        let n = map.len();
        *self.sent_map() = map;
        *self.saved.lock().await = Some(bytes);
        Ok(n)
    }

    /// Write the messages in flight if they changed since the last write.
    async fn save(&self) {
        let Some((store, gate)) = &self.persist else {
            return;
        };
        let stored: Vec<StoredMessage> = self
            .in_flight()
            .into_iter()
            .map(|(miner, change, s)| StoredMessage {
                miner: miner.to_string(),
                change: match change {
                    Change::PeerId => "peer_id".into(),
                    Change::Multiaddrs => "multiaddrs".into(),
                },
                cid: s.cid,
                params: hex::encode(&s.params),
                sent_epoch: s.sent_epoch,
                failed: s.failed,
            })
            .collect();
        let bytes = serde_json::to_vec(&stored).expect("plain data serializes");
        let mut saved = self.saved.lock().await;
        if saved.as_deref() == Some(&bytes[..]) {
            return;
        }
        let Some(fence) = gate.current() else {
            tracing::warn!("not the lease holder: the miner-info messages in flight are not saved");
            return;
        };
        match store
            .put_leader_state(&fence, IN_FLIGHT_STATE, &bytes)
            .await
        {
            Ok(()) => *saved = Some(bytes),
            Err(e) => tracing::warn!("cannot save the miner-info messages in flight: {e}"),
        }
    }

    pub fn with_resend_after(mut self, epochs: i64) -> Self {
        self.resend_after_epochs = epochs;
        self
    }

    fn sent_map(&self) -> std::sync::MutexGuard<'_, HashMap<(Address, Change), SentMessage>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The messages in flight (to persist them, e.g. across restarts or fail-overs).
    pub fn in_flight(&self) -> Vec<(Address, Change, SentMessage)> {
        let mut v: Vec<_> = self
            .sent_map()
            .iter()
            .map(|((m, c), s)| (m.clone(), *c, s.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    /// Remember a message sent earlier (e.g. by the previous leader).
    pub fn restore(&self, miner: Address, change: Change, sent: SentMessage) {
        self.sent_map().insert((miner, change), sent);
    }

    /// [`Self::check`] now and then every `every` (0: only once), forever. Run it only
    /// while this node holds the lease, and drop the future when it loses it.
    pub async fn run(
        &self,
        miners: &[(Address, bool)],
        peer_id: &PeerId,
        announce: &[Multiaddr],
        every: Duration,
    ) {
        match self.load().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!("{n} miner-info message(s) in flight taken over from the store")
            }
            Err(e) => tracing::warn!("cannot read the miner-info messages in flight: {e}"),
        }
        loop {
            for o in self.check(miners, peer_id, announce).await {
                tracing::debug!(?o, "miner info check");
            }
            if every.is_zero() {
                return futures::future::pending().await;
            }
            async_io::Timer::after(every).await;
        }
    }

    /// Check every miner (`(address, disabled)`) against our PeerID and announce
    /// addresses and send what is missing.
    pub async fn check(
        &self,
        miners: &[(Address, bool)],
        peer_id: &PeerId,
        announce: &[Multiaddr],
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        let pid = peer_id.to_bytes();
        let addrs: Vec<Vec<u8>> = announce.iter().map(|a| a.to_vec()).collect();
        for (miner, disabled) in miners {
            if *disabled {
                out.push(Outcome::Disabled {
                    miner: miner.clone(),
                });
                continue;
            }
            if let Err(e) = self.check_one(miner, &pid, &addrs, &mut out).await {
                tracing::warn!(%miner, "miner info check: {e}");
                out.push(Outcome::Error {
                    miner: miner.clone(),
                    what: e.to_string(),
                });
            }
        }
        self.save().await;
        out
    }

    async fn check_one(
        &self,
        miner: &Address,
        pid: &[u8],
        addrs: &[Vec<u8>],
        out: &mut Vec<Outcome>,
    ) -> Result<(), RpcError> {
        let head = self.client.chain_head().await?;
        let info = self.client.state_miner_info(miner, Some(&head.key)).await?;
        let on_chain = OnChainPeerInfo {
            worker: info.worker.clone(),
            // An unreadable on-chain PeerID counts as a mismatch, as in Curio.
            peer_id: info
                .peer_id
                .as_deref()
                .and_then(|s| s.parse::<PeerId>().ok())
                .map(|p| p.to_bytes()),
            multiaddrs: info.multiaddrs.clone(),
        };
        let wanted = messages_needed(miner, &on_chain, pid, addrs);
        for change in [Change::PeerId, Change::Multiaddrs] {
            match wanted.iter().find(|m| m.change == change) {
                None => {
                    self.sent_map().remove(&(miner.clone(), change));
                    out.push(Outcome::UpToDate {
                        miner: miner.clone(),
                        change,
                    });
                }
                Some(m) => out.push(self.send_unless_pending(m, head.height).await?),
            }
        }
        Ok(())
    }

    async fn send_unless_pending(&self, m: &MinerMessage, head: i64) -> Result<Outcome, RpcError> {
        let key = (m.to.clone(), m.change);
        let previous = self.sent_map().get(&key).cloned();
        if let Some(prev) = previous.filter(|p| p.params == m.params) {
            let fresh = head - prev.sent_epoch < self.resend_after_epochs;
            let pending = |cid: String| Outcome::Pending {
                miner: m.to.clone(),
                change: m.change,
                cid,
            };
            if prev.failed && fresh {
                return Ok(pending(prev.cid));
            }
            if !prev.failed {
                match self.client.state_search_msg(&prev.cid).await? {
                    None if fresh => return Ok(pending(prev.cid)),
                    None => {
                        tracing::warn!(miner = %m.to, cid = %prev.cid, reason = m.change.reason(), "message not on chain after {} epochs: sending again", self.resend_after_epochs);
                    }
                    Some(l) if l.exit_code != 0 => {
                        tracing::error!(miner = %m.to, cid = %prev.cid, exit_code = l.exit_code, reason = m.change.reason(), "message failed on chain; retrying in {} epochs", self.resend_after_epochs);
                        self.sent_map().insert(
                            key,
                            SentMessage {
                                failed: true,
                                sent_epoch: l.height.max(prev.sent_epoch),
                                ..prev.clone()
                            },
                        );
                        return Ok(pending(prev.cid));
                    }
                    // Landed fine, yet the chain differs again: someone changed it back.
                    Some(_) => {}
                }
            }
        }
        let msg = UnsignedMessage {
            to: m.to.clone(),
            from: m.from.clone(),
            nonce: 0,
            value: TokenAmount::zero(),
            method: m.method,
            params: m.params.clone(),
        };
        // The same (miner, change, params, head) gives the same MsgUuid, so a retry of a
        // push whose answer was lost returns the message Lotus already signed.
        let mut h = blake2b_simd::Params::new().hash_length(16).to_state();
        h.update(m.to.as_bytes());
        h.update(&m.method.to_be_bytes());
        h.update(&m.params);
        h.update(&head.to_be_bytes());
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(h.finalize().as_bytes());
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        let cid = self
            .client
            .mpool_push_message(&msg, &self.max_fee, Some(uuid))
            .await?;
        tracing::info!(miner = %m.to, from = %m.from, %cid, reason = m.change.reason(), method = m.method, "pushed miner info message");
        self.sent_map().insert(
            key,
            SentMessage {
                cid: cid.clone(),
                params: m.params.clone(),
                sent_epoch: head,
                failed: false,
            },
        );
        Ok(Outcome::Sent {
            miner: m.to.clone(),
            change: m.change,
            cid,
        })
    }
}
