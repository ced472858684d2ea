//! `dealport run`: open the store and the identity, wire the service, the execution,
//! the HTTP server and the lease loop, serve until SIGINT/SIGTERM, then stop in order.

use std::{path::Path, sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId};

use async_io::Timer;
use dealport_core::facts::AskTerms;
use dealport_node::{
    api::{Api, ApiContext},
    chain::{
        asks::AskSigner, lotus::LotusClient, ChainFactsSource, LotusChain, MinerInfoUpdater,
        OfflineChain,
    },
    cluster::{default_node_id, Duties, LeaseLoop},
    config::{is_postgres_url, ChainMode, Config},
    exec::{
        piece_store::PieceStore,
        publish::{PublishSettings, Publisher},
        TransferSettings, Transfers,
    },
    front_door::FrontDoor,
    http, identity,
    metrics::Metrics,
    mk12_http::Mk12Http,
    retrieval::{self, IpfsServer, PieceServer},
    runtime::LeaderTask,
    service::{DealService, ServiceConfig},
    signals::ShutdownSignal,
    store::{LeaseGate, Store},
    ui::{NodeFacts, Ui, UiContext},
};
use futures::future::{self, Either};

use crate::{
    files::{
        create_private_dir, locate, open_store_spec, refuse_readable_token,
        write_http_address_file, write_peer_id_file,
    },
    CmdResult, Fail, Location, Shell,
};

/// How long `run` lets streams in flight finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn run(shell: Shell, at: Location, store_flag: Option<String>) -> CmdResult {
    let (dir, path, config) = locate(&at)?;
    let config = config.ok_or_else(|| {
        Fail(format!(
            "no config file at {}; run `dealport init --data-dir {}` first",
            path.display(),
            dir.display()
        ))
    })?;
    create_private_dir(&dir)?;
    refuse_readable_token(&path, &config)?;
    log_open_file_limit();
    let store_spec = store_flag.unwrap_or_else(|| config.store.clone());
    let cluster = is_postgres_url(&store_spec);
    let store = open_store_spec(&shell, &dir, &store_spec).await?;
    let (key, created) = identity::load_or_create(&*store).await?;
    let peer = key.public().to_peer_id();
    // The relay signs whom each relayed connection is for; whichever node holds the lease
    // checks it with the same key (the identity is the cluster's).
    let relay_key = dealport_node::p2p::relay_key(&key);
    write_peer_id_file(&dir, &peer);
    if created {
        tracing::info!(%peer, "created a new identity");
    }
    tracing::info!(
        runtime = shell.runtime_name,
        config = %path.display(),
        store = %store.describe(),
        "dealport {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let (chain, lotus_client) = open_chain(&config, &path)?;

    let policy = config.policy();
    let policy_buffer = policy.sealing_buffer_epochs;
    if policy.miners.is_empty() {
        tracing::warn!("no [[miners]] configured: every proposal will be rejected; add one with `dealport init --miner f0…` and restart");
    } else {
        tracing::info!(miners = ?policy.miners.iter().map(ToString::to_string).collect::<Vec<_>>(), "taking deals");
    }
    let metrics = Arc::new(Metrics::new());
    let service = DealService::new(
        store.clone(),
        chain,
        ServiceConfig {
            policy,
            network: config.chain.network.address_network(),
            proposal_budget: config.proposal_budget(),
            verify_cache_capacity: config.limits.status_verify_cache,
        },
        metrics.clone(),
    );
    let gate = Arc::new(LeaseGate::new());
    let upkeep = lotus_client.clone().map(|c| {
        MinerInfoUpdater::new(c, config.chain.lotus.max_fee.clone())
            .with_store(store.clone(), gate.clone())
    });
    service.set_lease_gate(gate.clone());
    let mut stop = dealport_node::signals::sigint_or_sigterm()
        .map_err(|e| Fail(format!("cannot install the signal handlers: {e}")))?;
    let host_config = config.host_config();
    let step_down_grace = host_config.write_deadline;
    let announce = host_config.announce.clone();
    let mk12 = Mk12Http::new(service.clone(), config.http.mk12_requests_per_second);
    let mut transfer_settings = TransferSettings::from_config(&config.transfer);
    transfer_settings.keep_pieces_in = config.retrieval.kept_piece_dir(&dir);
    let transfers = Transfers::new(
        shell.runtime.clone(),
        service.clone(),
        transfer_settings,
        &config.transfer.staging_dir(&dir),
    );
    // The piece directory: every deal's CAR indexed once its data is in (docs/indexing.md).
    let (indexer, index_wake) = dealport_node::exec::index::Indexer::new(
        store.clone(),
        transfers.staging.clone(),
        Some(PieceStore::new(
            config
                .retrieval
                .piece_dir
                .clone()
                .unwrap_or_else(|| dir.join("pieces")),
        )),
        shell.runtime.clone(),
        metrics.clone(),
        dealport_node::exec::index::RESCAN,
    );
    transfers.set_index_notifier(index_wake);
    if config.api.token.is_empty() {
        tracing::info!("HTTP API off: no [api] token configured");
    }
    let api = Api::new(
        config.api.token.clone(),
        ApiContext {
            service: service.clone(),
            transfers: transfers.clone(),
        },
    );
    // [sealing] mode = "lotus-miner": piece URLs on the HTTP server, the hand-off on
    // the lease holder.
    let miner_api_info = std::env::var("MINER_API_INFO").ok();
    let lotus_miner = dealport_node::sealing::lotus_miner_mode(
        &config,
        miner_api_info.as_deref(),
        service.clone(),
        transfers.clone(),
    )
    .map_err(|e| Fail(format!("config file {}: {e}", path.display())))?;
    let node_id = config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(default_node_id);
    let ui = dashboard(&config, &service, &metrics, peer, &node_id, cluster);
    let mut front_door = FrontDoor::new(peer, store.clone(), metrics.clone(), mk12)
        .with_cluster(cluster)
        .with_api(api)
        .with_ui(ui);
    let piece_urls = lotus_miner.as_ref().map(|m| m.pieces.clone());
    if let Some(p) = &piece_urls {
        front_door = front_door.with_pieces(p.clone());
    }
    if config.retrieval.serve_pieces {
        let pieces = Arc::new(piece_server(
            &config, &dir, &store, &transfers, &shell, &metrics,
        ));
        let blocks = IpfsServer::new(
            store.clone(),
            pieces.clone(),
            shell.runtime.clone(),
            metrics.clone(),
        );
        front_door = front_door
            .with_piece_retrieval(pieces)
            .with_block_retrieval(Arc::new(blocks));
    }
    // [ipni] enable: the chain on the HTTP server of every node, the publisher on the
    // lease holder.
    let ipni = if config.ipni.enable {
        let settings = dealport_node::ipni::IpniSettings::from_config(&config)
            .map_err(|e| Fail(format!("config file {}: {e}", path.display())))?;
        let ipni = dealport_node::ipni::Ipni::new(service.clone(), key.clone(), settings);
        front_door = front_door.with_ipni(dealport_node::ipni::http::IpniHttp::new(ipni.clone()));
        Some(ipni)
    } else {
        None
    };
    let front_door = Arc::new(front_door);
    let mut leader_tasks = leader_tasks(
        &config,
        &service,
        transfers,
        lotus_client.as_ref(),
        upkeep,
        peer,
        &announce,
        policy_buffer,
    );
    leader_tasks.extend(lotus_miner.map(|m| m.task));
    leader_tasks.push(dealport_node::exec::index::leader_task(indexer));
    leader_tasks.extend(ipni.clone().map(dealport_node::ipni::leader_task));
    let duties = Arc::new(Duties::new(
        shell.runtime.clone(),
        key,
        host_config,
        service.clone(),
        front_door.clone(),
        config.cluster.internal_ws_host,
        leader_tasks,
    ));
    let lease_config = if cluster {
        config.cluster.lease_config()
    } else {
        dealport_core::lease::LeaseConfig::default()
    };
    let mut lease = LeaseLoop::new(
        store.clone(),
        node_id.clone(),
        lease_config,
        gate,
        duties.clone(),
        metrics.clone(),
        step_down_grace,
    );
    tracing::info!("PeerID {peer}");
    if cluster {
        tracing::info!(node = %node_id, ttl = ?lease_config.ttl, renew = ?lease_config.renew_interval, poll = ?lease_config.poll_interval, "cluster mode");
    }
    // The first decision before serving HTTP: a single node (or the first of a cluster)
    // starts its libp2p host here.
    let first_wait = lease.tick().await;
    if !cluster && !lease.is_leader() {
        duties.stop(Duration::ZERO).await;
        return Err(Fail(lease.start_error().unwrap_or_else(|| {
            "cannot take the single node's lease".to_owned()
        })));
    }
    let http = match http::start(
        shell.runtime.clone(),
        http::HttpConfig {
            relay_key: Some(relay_key),
            ..config.http.server_config()
        },
        front_door.clone(),
        metrics.clone(),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => {
            lease.release().await;
            duties.stop(Duration::ZERO).await;
            return Err(Fail(format!(
                "cannot serve HTTP on {} (config key `http.listen`): {e}",
                config.http.listen
            )));
        }
    };
    tracing::info!("http listening on {}", http.local_addr());
    if let Some(p) = &piece_urls {
        p.http_bound(http.local_addr());
    }
    write_http_address_file(&dir, http.local_addr());
    set_transports(&config, &service, http.local_addr(), &announce);
    if let Some(ipni) = &ipni {
        let own = retrieval::transports::own_http(&config.retrieval, http.local_addr(), &announce);
        if own.is_none() && config.ipni.addresses.is_empty() {
            tracing::warn!("IPNI: this node's HTTP address for clients is unknown: set [ipni] addresses (or [retrieval] http_announce); advertisements name no address until then");
        }
        ipni.set_http_address(own);
    }
    if cluster && !lease.is_leader() {
        tracing::info!("standing by: another node holds the lease");
    }
    tracing::info!("ready");
    let counted = Arc::downgrade(&duties);
    metrics.read_host_counts_from(Box::new(move || {
        counted.upgrade().map_or((0, 0), |d| d.host_counts())
    }));
    let signal = serve_until_stopped(&mut lease, &mut stop, first_wait).await;
    tracing::info!(signal = %signal, grace = ?SHUTDOWN_GRACE, "stopping");
    // Give the lease up first so a standby takes over at its next poll.
    lease.release().await;
    http.shutdown().await;
    duties.stop(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    drop(service);
    drop(store);
    Ok(())
}

/// The dashboard under `/ui/` (`[ui]`, behind `[api] token`).
fn dashboard(
    config: &Config,
    service: &DealService,
    metrics: &Arc<Metrics>,
    peer: PeerId,
    node_id: &str,
    cluster: bool,
) -> Ui {
    let strings = |v: &[Multiaddr]| v.iter().map(ToString::to_string).collect();
    Ui::new(UiContext {
        token: config.api.token.clone(),
        session_ttl: Duration::from_secs(config.ui.session_ttl_secs),
        refresh_ms: config.ui.refresh_ms.max(250),
        store: service.store(),
        chain: service.chain(),
        metrics: metrics.clone(),
        node: NodeFacts {
            peer_id: peer.to_string(),
            node_id: node_id.to_owned(),
            listen: strings(&config.libp2p.listen),
            announce: strings(&config.libp2p.announce),
            http_listen: config.http.listen.to_string(),
            cluster,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        started: std::time::Instant::now(),
    })
}

/// `/piece/<cid>` from the staging directory and the piece store (`[retrieval]`).
fn piece_server(
    config: &Config,
    dir: &Path,
    store: &Arc<dyn Store>,
    transfers: &Transfers,
    shell: &Shell,
    metrics: &Arc<Metrics>,
) -> PieceServer {
    let piece_dir = config
        .retrieval
        .piece_dir
        .clone()
        .unwrap_or_else(|| dir.join("pieces"));
    tracing::info!(staging = %transfers.staging.dir().display(), pieces = %piece_dir.display(), "serving GET /piece/<pieceCid> and /ipfs/<cid>");
    PieceServer::new(
        store.clone(),
        transfers.staging.clone(),
        PieceStore::new(piece_dir),
        shell.runtime.clone(),
        metrics.clone(),
    )
}

/// The retrieval transports answer, once the HTTP server's address is known.
fn set_transports(
    config: &Config,
    service: &DealService,
    http: std::net::SocketAddr,
    announce: &[Multiaddr],
) {
    let r = &config.retrieval;
    let own = r
        .serve_pieces
        .then(|| retrieval::transports::own_http(r, http, announce))
        .flatten();
    if r.serve_pieces && r.http.is_empty() && own.is_none() {
        tracing::warn!("serving /piece/ but this node's HTTP address for clients is unknown (HTTP listens on all addresses and [libp2p] announce names no host): set [retrieval] http_announce; the retrieval transports answer lists no http entry until then");
    }
    let answer = retrieval::transports::answer(r, own.as_ref());
    let listed: Vec<String> = answer
        .protocols
        .iter()
        .map(|p| format!("{} x{}", p.name, p.addresses.len()))
        .collect();
    tracing::info!(?listed, "retrieval transports answer");
    service.set_transports(&answer);
}

/// The chain facts and, in Lotus mode, the client to the Lotus node.
type Chain = (Arc<dyn ChainFactsSource>, Option<Arc<LotusClient>>);

/// The chain facts: offline (from the config) or a Lotus node, whose client the
/// publisher, the ask signer and the on-chain upkeep also use.
fn open_chain(config: &Config, path: &Path) -> Result<Chain, Fail> {
    Ok(match config.chain.mode {
        ChainMode::Offline => {
            let chain = OfflineChain::new(config.chain.network, config.chain.offline.clone());
            tracing::warn!("{}", chain.describe());
            tracing::warn!("offline chain: transferred deals are not published");
            (Arc::new(chain), None)
        }
        ChainMode::Lotus => {
            let lotus = lotus_chain(config, path)?;
            tracing::info!("{}", lotus.describe());
            let client = lotus.client();
            (Arc::new(lotus), Some(client))
        }
    })
}

/// What only the lease holder runs: downloads always; with Lotus, signed asks,
/// publishing and the miners' on-chain peer info.
#[allow(clippy::too_many_arguments)]
fn leader_tasks(
    config: &Config,
    service: &DealService,
    transfers: Arc<Transfers>,
    lotus_client: Option<&Arc<LotusClient>>,
    upkeep: Option<MinerInfoUpdater>,
    peer: PeerId,
    announce: &[Multiaddr],
    policy_buffer: i64,
) -> Vec<LeaderTask> {
    let mut leader_tasks: Vec<LeaderTask> =
        vec![dealport_node::exec::runner::leader_task(transfers)];
    if let Some(lotus) = lotus_client {
        let terms = ask_terms(config);
        if !terms.is_empty() {
            let signer = AskSigner::new(lotus.clone(), terms);
            service.set_ask_signer(signer.clone());
            leader_tasks.push(dealport_node::chain::asks::leader_task(signer));
        }
        let settings = PublishSettings::from_config(&config.publish, policy_buffer);
        let publisher = Publisher::new(service.clone(), lotus.clone(), settings);
        leader_tasks.push(dealport_node::exec::publish::leader_task(publisher));
    }
    leader_tasks.extend(upkeep.map(|u| {
        let u = Arc::new(u);
        let miners = miner_list(config);
        let every = Duration::from_secs(config.chain.lotus.miner_info_check_secs);
        let announce = announce.to_vec();
        Box::new(move || -> dealport_node::runtime::BoxTask {
            let (u, miners, announce) = (u.clone(), miners.clone(), announce.clone());
            Box::pin(async move { u.run(&miners, &peer, &announce, every).await })
        }) as LeaderTask
    }));
    leader_tasks
}

/// Serve until SIGINT or SIGTERM: the lease loop (its first wait already decided); the
/// signal's name.
async fn serve_until_stopped(
    lease: &mut LeaseLoop,
    stop: &mut ShutdownSignal,
    first_wait: Duration,
) -> String {
    let first = Timer::after(first_wait);
    if let Either::Left((s, _)) = future::select(stop.as_mut(), first).await {
        return s;
    }
    lease.run(stop).await
}

/// The Lotus chain from `[chain.lotus]` or `FULLNODE_API_INFO`.
pub(crate) fn lotus_chain(config: &Config, path: &Path) -> Result<LotusChain, Fail> {
    let env = std::env::var("FULLNODE_API_INFO").ok();
    LotusChain::from_config(
        &config.chain.lotus,
        config.chain.network.address_network(),
        env.as_deref(),
    )
    .map_err(|e| {
        Fail(format!(
            "config file {}: [chain.lotus] (or FULLNODE_API_INFO): {e}",
            path.display()
        ))
    })
}

/// The configured miners as `(address, disabled)`.
pub(crate) fn miner_list(config: &Config) -> Vec<(dealport_core::wire::Address, bool)> {
    config
        .miners
        .iter()
        .map(|m| (m.address.clone(), m.disabled))
        .collect()
}

/// The asking terms of the enabled miners that have `[miners.ask]`.
fn ask_terms(config: &Config) -> Vec<(dealport_core::wire::Address, AskTerms)> {
    let disabled = |a: &dealport_core::wire::Address| {
        config.miners.iter().any(|m| &m.address == a && m.disabled)
    };
    config
        .policy()
        .asks
        .into_iter()
        .filter(|(a, _)| !disabled(a))
        .collect()
}

/// Raise the soft open-file limit to the hard one and say what it is: the connection
/// limits only hold if the node does not run out of descriptors first.
fn log_open_file_limit() {
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
    match dealport_node::fd_limit::raise_nofile() {
        Ok(r) if r.before != r.after => tracing::info!(
            "raised the open-file limit from {} to {}",
            show(r.before),
            show(r.after)
        ),
        Ok(r) => tracing::info!("open-file limit {}", show(r.after)),
        Err(e) => tracing::warn!("{e}"),
    }
}
