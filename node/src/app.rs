//! The `dealport` command line, shared by every runtime shell.
//!
//! A shell supplies a [`Shell`] (its [`Runtime`] and a way to wait for SIGINT/SIGTERM)
//! and blocks on [`main`]; everything else is here.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use async_io::Timer;
use clap::{Args, Parser, Subcommand};
use dealport_core::facts::AskTerms;
use dealport_core::wire::DealUuid;
use libp2p::{Multiaddr, PeerId};

use crate::{
    api::{Api, ApiContext},
    chain::{
        asks::AskSigner, lotus::LotusClient, ChainFactsSource, LotusChain, MinerInfoUpdater,
        OfflineChain,
    },
    cluster::{default_node_id, Duties, LeaseGate, LeaseLoop},
    config::{is_postgres_url, ChainMode, Config},
    exec::{
        publish::{PublishSettings, Publisher},
        TransferSettings, Transfers,
    },
    front_door::FrontDoor,
    http, identity,
    metrics::Metrics,
    mk12_http::Mk12Http,
    runtime::{LeaderTask, Runtime},
    service::{DealService, ServiceConfig},
    store::{sled::SledStore, Store, StoreError, StoredDeal},
};

/// What a runtime shell hands to the app.
pub struct Shell {
    pub runtime: Arc<dyn Runtime>,
    /// Shown in the start-up log, e.g. `smol`.
    pub runtime_name: &'static str,
}

/// How long `run` lets streams in flight finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "dealport",
    version,
    about = "A Filecoin MK12 storage-deal server for Boost and Curio clients"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Location {
    /// The data dir (store, default config). Default: $DEALPORT_DATA_DIR, else
    /// `data_dir` from --config, else ~/.dealport.
    #[arg(long, env = "DEALPORT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The config file. Default: <data dir>/config.toml.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data dir, a commented config and the identity key; print the PeerID.
    Init {
        #[command(flatten)]
        at: Location,
    },
    /// Serve the MK12 protocols until SIGINT or SIGTERM.
    Run {
        #[command(flatten)]
        at: Location,
        /// The store: `sled` (embedded, one node) or `postgres://user@host:port/db`
        /// (cluster mode). Default: `store` in the config file, else sled.
        #[arg(long)]
        store: Option<String>,
    },
    /// Show the PeerID, the listen configuration and the store.
    Info {
        #[command(flatten)]
        at: Location,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read the deals in the store.
    Deals {
        #[command(flatten)]
        at: Location,
        #[command(subcommand)]
        command: DealsCommand,
    },
    /// The miners' on-chain peer info (Lotus mode).
    Chain {
        #[command(flatten)]
        at: Location,
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// An MK12 storage-deal client: propose deals, query status, asks and peer info.
    Client {
        #[command(subcommand)]
        command: crate::client::cli::ClientCommand,
    },
    /// Load-test a provider: status, ask or fresh signed deals over N connections and
    /// M streams each; prints throughput and latency percentiles.
    Bench(crate::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum ChainCommand {
    /// Print what the node would change in each miner's on-chain PeerID and multiaddrs,
    /// and why, without sending anything.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DealsCommand {
    /// One line per deal.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything stored about one deal, as JSON.
    Show { uuid: String },
    /// Bring an offline deal's data in: stream FILE to the running node's API
    /// (`PUT /api/v1/deals/<uuid>/data`), which checks its piece CID and moves the deal
    /// to Transferred (or fails it when the data is not the deal's).
    Import {
        uuid: String,
        file: PathBuf,
        /// The node's HTTP address. Default: `http.listen` from the config (an
        /// unspecified address means this machine).
        #[arg(long)]
        node: Option<String>,
    },
}

/// A failed command: one sentence for the user.
#[derive(Debug)]
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

type CmdResult = Result<(), Fail>;

/// Parse the command line, set up logging, run the command.
pub async fn main(shell: Shell) -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run_command(shell, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("dealport: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run_command(shell: Shell, command: Command) -> CmdResult {
    match command {
        Command::Init { at } => init(shell, at).await,
        Command::Run { at, store } => run(shell, at, store).await,
        Command::Info { at, json } => info(shell, at, json).await,
        Command::Deals { at, command } => deals(shell, at, command).await,
        Command::Chain {
            at,
            command: ChainCommand::Check { json },
        } => chain_check(shell, at, json).await,
        Command::Client { command } => Ok(crate::client::cli::run(command).await?),
        Command::Bench(args) => Ok(crate::bench::run_cli(shell.runtime.clone(), args).await?),
    }
}

// ------------------------------------------------------------------ locations

fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".dealport")
}

/// The data dir, the config path and the config (`None` if the file does not exist and
/// `--config` was not given).
fn locate(at: &Location) -> Result<(PathBuf, PathBuf, Option<Config>), Fail> {
    if let Some(path) = &at.config {
        let config = Config::load(path)?;
        let dir = at
            .data_dir
            .clone()
            .or_else(|| config.data_dir.clone())
            .unwrap_or_else(default_data_dir);
        return Ok((dir, path.clone(), Some(config)));
    }
    let dir = at.data_dir.clone().unwrap_or_else(default_data_dir);
    let path = dir.join("config.toml");
    let config = if path.exists() {
        let c = Config::load(&path)?;
        Some(c)
    } else {
        None
    };
    // A data_dir inside the default config only matters when no dir was given.
    let dir = match (
        &at.data_dir,
        config.as_ref().and_then(|c| c.data_dir.clone()),
    ) {
        (None, Some(d)) => d,
        _ => dir,
    };
    Ok((dir, path, config))
}

/// Create `dir` (and parents) with owner-only permissions on the last component.
fn create_private_dir(dir: &Path) -> CmdResult {
    if dir.exists() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The identity key lives in the store inside: refuse to use it (not merely
            // warn) while other users can get at it.
            if let Ok(m) = std::fs::metadata(dir) {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(Fail(format!(
                        "data dir {} is open to other users (mode {mode:o}) and holds the identity key; run `chmod 700 {}`",
                        dir.display(),
                        dir.display()
                    )));
                }
            }
        }
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| Fail(format!("cannot create data dir {}: {e}", dir.display())))
}

/// A config file that holds a token must not be readable by other users: the Lotus API
/// token (a "sign" token can spend from the node's wallets) or the node's own API token
/// (it can fail deals and read their data). The file may live outside the owner-only
/// data dir (`--config`).
fn refuse_readable_token(path: &Path, config: &Config) -> CmdResult {
    #[cfg(unix)]
    {
        let held: Vec<&str> = [
            ("chain.lotus.token", &config.chain.lotus.token),
            ("api.token", &config.api.token),
            (
                "sealing.lotus_miner.token",
                &config.sealing.lotus_miner.token,
            ),
        ]
        .into_iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(key, _)| key)
        .collect();
        if held.is_empty() {
            return Ok(());
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| Fail(format!("cannot read config file {}: {e}", path.display())))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(Fail(format!(
                "config file {} holds {} and is open to other users (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                held.join(" and "),
                path.display()
            )));
        }
    }
    let _ = (path, config);
    Ok(())
}

fn write_private_file(path: &Path, text: &str) -> CmdResult {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(path)
        .map_err(|e| Fail(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Fail(format!("cannot write {}: {e}", path.display())))
}

fn open_store(shell: &Shell, dir: &Path) -> Result<Arc<dyn Store>, Fail> {
    Ok(Arc::new(SledStore::open(dir, shell.runtime.clone())?))
}

/// The store `spec` names: `sled` (in `dir`) or a `postgres://` URL.
async fn open_store_spec(shell: &Shell, dir: &Path, spec: &str) -> Result<Arc<dyn Store>, Fail> {
    if is_postgres_url(spec) {
        let store = crate::store::postgres::PostgresStore::connect(
            spec,
            crate::store::postgres::PostgresOptions::default(),
        )
        .await?;
        Ok(Arc::new(store))
    } else if spec == "sled" {
        open_store(shell, dir)
    } else {
        Err(Fail(format!(
            "--store {spec:?} is neither \"sled\" nor a postgres:// URL"
        )))
    }
}

/// The PeerID is also kept in plain text beside the store, so `info` can show it while
/// a running node holds the store's lock.
fn write_peer_id_file(dir: &Path, peer: &PeerId) {
    let _ = std::fs::write(dir.join("peer-id"), format!("{peer}\n"));
}

// ------------------------------------------------------------------ init

async fn init(shell: Shell, at: Location) -> CmdResult {
    let dir = at.data_dir.clone().unwrap_or_else(default_data_dir);
    create_private_dir(&dir)?;
    let path = at.config.clone().unwrap_or_else(|| dir.join("config.toml"));
    if path.exists() {
        eprintln!("config {} already exists; left unchanged", path.display());
    } else {
        write_private_file(&path, &crate::config::template())?;
        eprintln!("wrote config {}", path.display());
    }
    let store = open_store(&shell, &dir)?;
    let (key, created) = identity::load_or_create(&*store).await?;
    let peer = key.public().to_peer_id();
    write_peer_id_file(&dir, &peer);
    eprintln!(
        "{} identity in {}",
        if created {
            "created a new"
        } else {
            "kept the existing"
        },
        store.describe()
    );
    println!("{peer}");
    Ok(())
}

// ------------------------------------------------------------------ run

async fn run(shell: Shell, at: Location, store_flag: Option<String>) -> CmdResult {
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
    let (chain, lotus_client): (Arc<dyn ChainFactsSource>, Option<Arc<LotusClient>>) =
        match config.chain.mode {
            ChainMode::Offline => {
                let chain = OfflineChain::new(config.chain.network, config.chain.offline.clone());
                tracing::warn!("{}", chain.describe());
                tracing::warn!("offline chain: transferred deals are not published");
                (Arc::new(chain), None)
            }
            ChainMode::Lotus => {
                let lotus = lotus_chain(&config, &path)?;
                tracing::info!("{}", lotus.describe());
                let client = lotus.client();
                (Arc::new(lotus), Some(client))
            }
        };

    let policy = config.policy();
    let policy_buffer = policy.sealing_buffer_epochs;
    if policy.miners.is_empty() {
        tracing::warn!("no [[miners]] configured: every proposal will be rejected");
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
    let mut stop = crate::signals::sigint_or_sigterm()
        .map_err(|e| Fail(format!("cannot install the signal handlers: {e}")))?;
    let host_config = config.host_config();
    let step_down_grace = host_config.write_deadline;
    let announce = host_config.announce.clone();
    let mk12 = Mk12Http::new(service.clone(), config.http.mk12_requests_per_second);
    let transfers = Transfers::new(
        shell.runtime.clone(),
        service.clone(),
        TransferSettings::from_config(&config.transfer),
        &config.transfer.staging_dir(&dir),
    );
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
    let lotus_miner = crate::sealing::lotus_miner_mode(
        &config,
        miner_api_info.as_deref(),
        service.clone(),
        transfers.clone(),
    )
    .map_err(|e| Fail(format!("config file {}: {e}", path.display())))?;
    let mut front_door = FrontDoor::new(peer, store.clone(), metrics.clone(), mk12)
        .with_cluster(cluster)
        .with_api(api);
    if let Some(m) = &lotus_miner {
        front_door = front_door.with_pieces(m.pieces.clone());
    }
    let front_door = Arc::new(front_door);
    // Deals' data is downloaded, and the miners' on-chain info kept right, only by the
    // lease holder.
    let mut leader_tasks: Vec<LeaderTask> = vec![crate::exec::runner::leader_task(transfers)];
    let piece_urls = lotus_miner.as_ref().map(|m| m.pieces.clone());
    leader_tasks.extend(lotus_miner.map(|m| m.task));
    if let Some(lotus) = &lotus_client {
        let terms = ask_terms(&config);
        if !terms.is_empty() {
            let signer = AskSigner::new(lotus.clone(), terms);
            service.set_ask_signer(signer.clone());
            leader_tasks.push(crate::chain::asks::leader_task(signer));
        }
        let settings = PublishSettings::from_config(&config.publish, policy_buffer);
        let publisher = Publisher::new(service.clone(), lotus.clone(), settings);
        leader_tasks.push(crate::exec::publish::leader_task(publisher));
    }
    leader_tasks.extend(upkeep.map(|u| {
        let u = Arc::new(u);
        let miners = miner_list(&config);
        let every = Duration::from_secs(config.chain.lotus.miner_info_check_secs);
        let announce = announce.clone();
        Box::new(move || -> crate::runtime::BoxTask {
            let (u, miners, announce) = (u.clone(), miners.clone(), announce.clone());
            Box::pin(async move { u.run(&miners, &peer, &announce, every).await })
        }) as LeaderTask
    }));
    let duties = Arc::new(Duties::new(
        shell.runtime.clone(),
        key,
        host_config,
        service.clone(),
        front_door.clone(),
        config.cluster.internal_ws_host,
        leader_tasks,
    ));
    let node_id = config
        .cluster
        .node_id
        .clone()
        .unwrap_or_else(default_node_id);
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
        config.http.server_config(),
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
    if cluster && !lease.is_leader() {
        tracing::info!("standing by: another node holds the lease");
    }
    let gauges = report_host_gauges(&duties, metrics.clone());
    tracing::info!("ready");

    let signal = {
        let first = Timer::after(first_wait);
        let gauges = std::pin::pin!(gauges);
        let stopped = async {
            if let futures::future::Either::Left((s, _)) =
                futures::future::select(stop.as_mut(), first).await
            {
                return s;
            }
            lease.run(&mut stop).await
        };
        let stopped = std::pin::pin!(stopped);
        match futures::future::select(stopped, gauges).await {
            futures::future::Either::Left((signal, _)) => signal,
            futures::future::Either::Right(((), _)) => unreachable!("the gauges never end"),
        }
    };
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

/// The Lotus chain from `[chain.lotus]` or `FULLNODE_API_INFO`.
fn lotus_chain(config: &Config, path: &Path) -> Result<LotusChain, Fail> {
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
fn miner_list(config: &Config) -> Vec<(dealport_core::wire::Address, bool)> {
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

// ------------------------------------------------------------------ chain check

async fn chain_check(shell: Shell, at: Location, json: bool) -> CmdResult {
    let (dir, path, config) = locate(&at)?;
    let config = config.ok_or_else(|| Fail(format!("no config file at {}", path.display())))?;
    if config.chain.mode != ChainMode::Lotus {
        return Err(Fail(format!(
            "config file {}: `chain check` needs `chain.mode = \"lotus\"`",
            path.display()
        )));
    }
    let peer = match SledStore::open(&dir, shell.runtime.clone()) {
        Ok(store) => identity::load(&store)
            .await?
            .map(|k| k.public().to_peer_id()),
        Err(StoreError::InUse(_)) => std::fs::read_to_string(dir.join("peer-id"))
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        Err(e) => return Err(e.into()),
    }
    .ok_or_else(|| Fail("no identity yet: run `dealport init` first".to_owned()))?;
    let lotus = lotus_chain(&config, &path)?;
    let plans = crate::chain::check::plan(
        &lotus.client(),
        &miner_list(&config),
        &peer,
        &config.libp2p.announce,
    )
    .await;
    if json {
        println!("{}", serde_json::to_string_pretty(&plans)?);
        return Ok(());
    }
    println!("our PeerID: {peer}");
    for p in &plans {
        println!("{}:", p.miner);
        if let Some(e) = &p.error {
            println!("  cannot read StateMinerInfo: {e}");
            continue;
        }
        println!(
            "  on chain: PeerID {}",
            p.on_chain_peer_id.as_deref().unwrap_or("(none)")
        );
        println!("  on chain: multiaddrs {:?}", p.on_chain_multiaddrs);
        if p.disabled {
            println!("  disabled in the config: nothing would be sent");
        } else if p.would_send.is_empty() {
            println!("  up to date: nothing would be sent");
        }
        for m in &p.would_send {
            println!(
                "  would send {} (method {}) from {} to {}, params {}",
                m.change, m.method, m.from, m.to, m.params_hex
            );
        }
    }
    Ok(())
}

/// Raise the soft open-file limit to the hard one and say what it is: the connection
/// limits only hold if the node does not run out of descriptors first.
fn log_open_file_limit() {
    let show = |v: Option<u64>| v.map_or("unlimited".to_owned(), |n| n.to_string());
    match crate::fd_limit::raise_nofile() {
        Ok(r) if r.before != r.after => tracing::info!(
            "raised the open-file limit from {} to {}",
            show(r.before),
            show(r.after)
        ),
        Ok(r) => tracing::info!("open-file limit {}", show(r.after)),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Keep the connection and stream gauges current (every 2 s) until dropped.
async fn report_host_gauges(duties: &Duties, metrics: Arc<Metrics>) {
    loop {
        let (connections, streams) = duties.host_counts();
        metrics.set_libp2p_connections(connections as i64);
        metrics.set_libp2p_streams(streams as i64);
        Timer::after(Duration::from_secs(2)).await;
    }
}

// ------------------------------------------------------------------ info

async fn info(shell: Shell, at: Location, json: bool) -> CmdResult {
    let (dir, path, config) = locate(&at)?;
    let have_config = config.is_some();
    let config = config.unwrap_or_default();
    let (peer, store_state) = match SledStore::open(&dir, shell.runtime.clone()) {
        Ok(store) => match identity::load(&store).await? {
            Some(k) => (Some(k.public().to_peer_id().to_string()), "ok".to_owned()),
            None => (None, "no identity yet (run `dealport init`)".to_owned()),
        },
        Err(e @ StoreError::InUse(_)) => {
            let peer = std::fs::read_to_string(dir.join("peer-id"))
                .ok()
                .map(|s| s.trim().to_owned());
            (peer, format!("in use: {e}"))
        }
        Err(e) => return Err(e.into()),
    };
    let store_path = SledStore::path_in(&dir);
    let strs = |v: &[Multiaddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    if json {
        let v = serde_json::json!({
            "peer_id": peer,
            "data_dir": dir,
            "config": path,
            "config_exists": have_config,
            "store": store_path,
            "store_state": store_state,
            "listen": strs(&config.libp2p.listen),
            "announce": strs(&config.libp2p.announce),
            "http_listen": config.http.listen.to_string(),
            "chain_mode": format!("{:?}", config.chain.mode).to_lowercase(),
            "network": config.chain.network.name(),
            "miners": config.miners.iter().map(|m| m.address.to_string()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("PeerID:   {}", peer.as_deref().unwrap_or("(none)"));
        println!("data dir: {}", dir.display());
        println!(
            "config:   {}{}",
            path.display(),
            if have_config {
                ""
            } else {
                " (missing: defaults shown)"
            }
        );
        println!("store:    {} ({store_state})", store_path.display());
        println!("listen:   {}", strs(&config.libp2p.listen).join(" "));
        println!("announce: {}", strs(&config.libp2p.announce).join(" "));
        println!("http:     {} (not served yet)", config.http.listen);
        println!(
            "chain:    {:?} ({})",
            config.chain.mode,
            config.chain.network.name()
        );
        println!(
            "miners:   {}",
            config
                .miners
                .iter()
                .map(|m| m.address.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

// ------------------------------------------------------------------ deals

async fn deals(shell: Shell, at: Location, command: DealsCommand) -> CmdResult {
    let (dir, path, config) = locate(&at)?;
    // Through the running node's API: it holds the store.
    if let DealsCommand::Import { uuid, file, node } = command {
        let config = config.ok_or_else(|| {
            Fail(format!(
                "no config file at {}: the API token is read from it",
                path.display()
            ))
        })?;
        return import(shell, &config, &path, &uuid, &file, node).await;
    }
    // The config's store: the cluster's database when `store` is a postgres:// URL.
    let spec = config.map_or_else(|| "sled".to_owned(), |c| c.store);
    let store = open_store_spec(&shell, &dir, &spec).await?;
    match command {
        DealsCommand::List { json } => {
            let deals = store.list_deals().await?;
            if json {
                let v: Vec<_> = deals.iter().map(StoredDeal::from_record).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "{:<36}  {:<20}  {:<44}  {:>14}  CREATED (UTC)",
                "UUID", "STATE", "CLIENT", "PIECE SIZE"
            );
            for d in &deals {
                let p = &d.params.client_deal_proposal.proposal;
                println!(
                    "{:<36}  {:<20}  {:<44}  {:>14}  {}",
                    d.uuid.to_string(),
                    d.state().to_string(),
                    p.client.to_string(),
                    p.piece_size,
                    dealport_core::accept::go_time_utc(d.created_at_unix_nanos)
                );
            }
            eprintln!("{} deal(s)", deals.len());
        }
        DealsCommand::Import { .. } => unreachable!("handled above"),
        DealsCommand::Show { uuid } => {
            let id = DealUuid::parse(&uuid)
                .map_err(|e| Fail(format!("{uuid:?} is not a deal UUID: {e}")))?;
            let d = store
                .deal_by_uuid(id)
                .await?
                .ok_or_else(|| Fail(format!("no deal with UUID {id} in {}", store.describe())))?;
            let v = crate::api::deal_json(&d);
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

/// `dealport deals import`: stream the file to the node, print the outcome as a sentence.
async fn import(
    shell: Shell,
    config: &Config,
    path: &Path,
    uuid: &str,
    file: &Path,
    node: Option<String>,
) -> CmdResult {
    let id =
        DealUuid::parse(uuid).map_err(|e| Fail(format!("{uuid:?} is not a deal UUID: {e}")))?;
    if config.api.token.is_empty() {
        return Err(Fail(format!(
            "config file {} has no [api] token: the node's API is off; set one and restart the node",
            path.display()
        )));
    }
    let node = node.unwrap_or_else(|| {
        let mut addr = config.http.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    });
    let (code, body) = crate::api::client::import_file(
        shell.runtime.clone(),
        &node,
        &config.api.token,
        id,
        file,
        Duration::from_secs(10),
    )
    .await
    .map_err(Fail)?;
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if code == 200 {
        println!(
            "deal {id} imported from {}: {} bytes, piece CID {} checked; the deal is {}",
            file.display(),
            answer["n_bytes_received"],
            answer["proposal"]["piece_cid"].as_str().unwrap_or("?"),
            answer["state"].as_str().unwrap_or("?"),
        );
        Ok(())
    } else {
        let why = answer["error"]
            .as_str()
            .map_or_else(|| body.trim().to_owned(), str::to_owned);
        Err(Fail(format!(
            "import of deal {id} from {} refused by {node} (HTTP {code}): {why}",
            file.display()
        )))
    }
}
