//! Sealing published deals through lotus-miner (`[sealing] mode = "lotus-miner"`):
//! the config, the lotus-miner client, the piece URLs it fetches data from, and the
//! hand-off leader task. The other mode (`"api"`) is `api/sealing.rs`. Uses `chain`
//! (JSON-RPC), `exec` (staging), `service`, `api` (file responses), `runtime`; nothing
//! here is used by those.
pub mod config;
pub mod handoff;
pub mod miner;
pub mod piece_url;

use std::{sync::Arc, time::Duration};

use dealport_core::sealing::Timing;

use crate::config::SealingMode;
use crate::{
    chain::lotus::LotusClient, config::Config, exec::Transfers, runtime::LeaderTask,
    service::DealService,
};
use config::miner_endpoint;
use handoff::{Handoff, HandoffSettings};
use miner::MinerClient;
use piece_url::PieceUrls;

/// What `dealport run` needs in lotus-miner mode: the piece URLs for the HTTP server and
/// the hand-off for the lease holder.
pub struct LotusMinerMode {
    pub pieces: Arc<PieceUrls>,
    pub task: LeaderTask,
    pub handoff: Arc<Handoff>,
}

/// The lotus-miner hand-off as `config` asks for it (`None` in `"api"` mode).
/// `miner_api_info`: the `MINER_API_INFO` environment variable.
pub fn lotus_miner_mode(
    config: &Config,
    miner_api_info: Option<&str>,
    service: DealService,
    transfers: Arc<Transfers>,
) -> Result<Option<LotusMinerMode>, String> {
    if config.sealing.mode != SealingMode::LotusMiner {
        return Ok(None);
    }
    let c = &config.sealing.lotus_miner;
    let endpoint = miner_endpoint(c, miner_api_info)
        .map_err(|e| format!("[sealing.lotus_miner] (or MINER_API_INFO): {e}"))?;
    let network = config.chain.network.address_network();
    let miner = Arc::new(MinerClient::new(
        LotusClient::new(endpoint, network, c.call_timeout()),
        network,
    ));
    let base = &c.piece_url_base;
    let pieces = PieceUrls::new(
        base,
        Duration::from_secs(c.piece_url_ttl_secs.max(1)),
        transfers.runtime(),
        transfers.staging.clone(),
    );
    let poll = Duration::from_secs(c.poll_secs.max(1));
    let settings = HandoffSettings {
        timing: Timing {
            retry: poll,
            too_many_backoff: Duration::from_secs(c.too_many_backoff_secs.max(1)),
            too_many_give_up: Duration::from_secs(c.too_many_give_up_secs),
            // A call still running inside lotus-miner ends within its timeout.
            intent_grace: c.call_timeout() * 2,
        },
        sealing_buffer_epochs: config.policy.sealing_buffer_epochs,
        max_concurrent_add_piece: c.max_concurrent_add_piece.max(1),
        poll,
        index_first: config.ipni.enable,
    };
    tracing::info!(miner = %miner.describe(), piece_url_base = %base, "sealing through lotus-miner");
    let handoff = Handoff::new(service, transfers, miner, pieces.clone(), settings);
    Ok(Some(LotusMinerMode {
        pieces,
        task: handoff::leader_task(handoff.clone()),
        handoff,
    }))
}
