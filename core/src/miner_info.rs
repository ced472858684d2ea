//! Keeping a miner actor's on-chain peer info right: what to send, as values.
//!
//! Curio (`DealProvider.checkMinerInfos`) compares the miner's on-chain PeerID and
//! multiaddrs with its own and sends `ChangePeerID` (method 4) / `ChangeMultiaddrs`
//! (method 18) from the worker address, value 0, max fee 0.02 FIL. This module is the
//! decision; the node reads `StateMinerInfo`, pushes the messages and tracks them.
use crate::wire::cbor::Writer;
use crate::wire::{Address, TokenAmount};

/// builtin-actors miner `ChangePeerID`.
pub const METHOD_CHANGE_PEER_ID: u64 = 4;
/// builtin-actors miner `ChangeMultiaddrs`.
pub const METHOD_CHANGE_MULTIADDRS: u64 = 18;
/// Curio's `maintenanceMsgMaxFee`: 0.02 FIL in attoFIL.
pub const MAINTENANCE_MAX_FEE_ATTO: u64 = 20_000_000_000_000_000;

/// Curio's default max fee for peer-info messages.
pub fn default_max_fee() -> TokenAmount {
    TokenAmount::from_u64(MAINTENANCE_MAX_FEE_ATTO)
}

/// Which part of the peer info a message changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    PeerId,
    Multiaddrs,
}

impl Change {
    pub fn method(self) -> u64 {
        match self {
            Change::PeerId => METHOD_CHANGE_PEER_ID,
            Change::Multiaddrs => METHOD_CHANGE_MULTIADDRS,
        }
    }
    /// Curio's send reasons.
    pub fn reason(self) -> &'static str {
        match self {
            Change::PeerId => "libp2p-peerid",
            Change::Multiaddrs => "libp2p-multiaddr",
        }
    }
}

/// The parts of `StateMinerInfo` this decision needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnChainPeerInfo {
    pub worker: Address,
    /// The PeerID's bytes (a multihash); `None` when the chain has none or it is unreadable.
    pub peer_id: Option<Vec<u8>>,
    /// Each multiaddr's bytes, as stored.
    pub multiaddrs: Vec<Vec<u8>>,
}

/// One message to send: `from` → `to`, value 0, `method`, `params` (CBOR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerMessage {
    pub change: Change,
    pub from: Address,
    pub to: Address,
    pub method: u64,
    pub params: Vec<u8>,
}

/// `ChangePeerIDParams`: the tuple `[NewID bytes]`.
pub fn change_peer_id_params(peer_id: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(1).bytes(peer_id);
    w.into_bytes()
}

/// `ChangeMultiaddrsParams`: the tuple `[[multiaddr bytes, …]]`.
pub fn change_multiaddrs_params(addrs: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(1).array(addrs.len() as u64);
    for a in addrs {
        w.bytes(a);
    }
    w.into_bytes()
}

/// The messages that make `miner`'s on-chain info say `peer_id` and `multiaddrs`.
///
/// PeerID: sent when the chain has none or different bytes. Multiaddrs: sent when the
/// chain's list is not byte-for-byte the same list in the same order (Curio: skip only
/// when the single on-chain address equals the single announce address). An empty
/// `multiaddrs` never clears the chain's list.
pub fn messages_needed(
    miner: &Address,
    chain: &OnChainPeerInfo,
    peer_id: &[u8],
    multiaddrs: &[Vec<u8>],
) -> Vec<MinerMessage> {
    let msg = |change: Change, params: Vec<u8>| MinerMessage {
        change,
        from: chain.worker.clone(),
        to: miner.clone(),
        method: change.method(),
        params,
    };
    let mut out = Vec::new();
    if chain.peer_id.as_deref() != Some(peer_id) {
        out.push(msg(Change::PeerId, change_peer_id_params(peer_id)));
    }
    if !multiaddrs.is_empty() && chain.multiaddrs.as_slice() != multiaddrs {
        out.push(msg(
            Change::Multiaddrs,
            change_multiaddrs_params(multiaddrs),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_bytes() {
        // Ed25519 identity multihash: 00 24 08 01 12 20 ‖ 32-byte key = 38 bytes.
        let pid = [0u8; 38];
        let p = change_peer_id_params(&pid);
        assert_eq!(&p[..3], &[0x81, 0x58, 38]);
        assert_eq!(p.len(), 3 + 38);
        let a = change_multiaddrs_params(&[vec![1, 2], vec![3]]);
        assert_eq!(a, vec![0x81, 0x82, 0x42, 1, 2, 0x41, 3]);
        assert_eq!(change_multiaddrs_params(&[]), vec![0x81, 0x80]);
    }

    #[test]
    fn decides_only_what_differs() {
        let miner = Address::new_id(1000);
        let chain = OnChainPeerInfo {
            worker: Address::new_id(1001),
            peer_id: Some(vec![1, 2, 3]),
            multiaddrs: vec![vec![4]],
        };
        assert!(messages_needed(&miner, &chain, &[1, 2, 3], &[vec![4]]).is_empty());
        assert!(messages_needed(&miner, &chain, &[1, 2, 3], &[]).is_empty());
        let m = messages_needed(&miner, &chain, &[9], &[vec![4], vec![5]]);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].change, m[0].method), (Change::PeerId, 4));
        assert_eq!((m[1].change, m[1].method), (Change::Multiaddrs, 18));
        assert_eq!(m[0].from, Address::new_id(1001));
        assert_eq!(m[1].to, miner);
        let none = OnChainPeerInfo {
            peer_id: None,
            ..chain.clone()
        };
        assert_eq!(
            messages_needed(&miner, &none, &[1, 2, 3], &[vec![4]]).len(),
            1
        );
    }
}
