//! `dealport chain check`: what the node would change in its miners' on-chain peer info,
//! and why, without sending anything (so an operator can look before it acts).
use dealport_core::{
    miner_info::{messages_needed, OnChainPeerInfo},
    wire::Address,
};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use super::lotus::LotusClient;

/// One miner's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct MinerPlan {
    pub miner: String,
    pub disabled: bool,
    pub on_chain_peer_id: Option<String>,
    pub on_chain_multiaddrs: Vec<String>,
    /// Messages that would be sent: `(method name, method number, from, params hex)`.
    pub would_send: Vec<PlannedMessage>,
    /// Why the chain could not be read, if it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedMessage {
    pub change: &'static str,
    pub method: u64,
    pub from: String,
    pub to: String,
    pub params_hex: String,
}

/// Read each miner's info and decide, as the upkeep task would, without sending.
pub async fn plan(
    client: &LotusClient,
    miners: &[(Address, bool)],
    peer: &PeerId,
    announce: &[Multiaddr],
) -> Vec<MinerPlan> {
    let ours: Vec<Vec<u8>> = announce.iter().map(|a| a.to_vec()).collect();
    let mut out = Vec::new();
    for (miner, disabled) in miners {
        let mut plan = MinerPlan {
            miner: miner.to_string(),
            disabled: *disabled,
            on_chain_peer_id: None,
            on_chain_multiaddrs: Vec::new(),
            would_send: Vec::new(),
            error: None,
        };
        match client.state_miner_info(miner, None).await {
            Err(e) => plan.error = Some(e.to_string()),
            Ok(info) => {
                plan.on_chain_peer_id = info.peer_id.clone();
                plan.on_chain_multiaddrs = info
                    .multiaddrs
                    .iter()
                    .map(|b| {
                        Multiaddr::try_from(b.clone())
                            .map(|m| m.to_string())
                            .unwrap_or_else(|_| format!("unreadable 0x{}", hex::encode(b)))
                    })
                    .collect();
                let chain = OnChainPeerInfo {
                    worker: info.worker,
                    peer_id: info
                        .peer_id
                        .as_deref()
                        .and_then(|s| s.parse::<PeerId>().ok())
                        .map(|p| p.to_bytes()),
                    multiaddrs: info.multiaddrs,
                };
                if !disabled {
                    plan.would_send = messages_needed(miner, &chain, &peer.to_bytes(), &ours)
                        .into_iter()
                        .map(|m| PlannedMessage {
                            change: m.change.reason(),
                            method: m.method,
                            from: m.from.to_string(),
                            to: m.to.to_string(),
                            params_hex: hex::encode(&m.params),
                        })
                        .collect();
                }
            }
        }
        out.push(plan);
    }
    out
}
