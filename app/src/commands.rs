//! The commands besides `run`: `init`, `info`, `deals` (list, show, import through the
//! running node's API) and `chain check`.

use std::{path::Path, time::Duration};

use dealport_core::{deal::DealRecord, wire::DealUuid};
use dealport_node::{
    config::{is_postgres_url, ChainMode, Config},
    identity,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        Store, StoreError, StoredDeal,
    },
};
use libp2p::Multiaddr;

use crate::{
    files::{
        add_miner, create_private_dir, default_data_dir, has_miner, locate, open_store,
        open_store_spec, with_network, write_peer_id_file, write_private_file, HTTP_ADDRESS_FILE,
    },
    run::{lotus_chain, miner_list},
    CmdResult, DealsCommand, Fail, Location, Shell,
};

pub(crate) async fn init(
    shell: Shell,
    at: Location,
    miner: Option<String>,
    network: Option<String>,
) -> CmdResult {
    let dir = at.data_dir.clone().unwrap_or_else(default_data_dir);
    create_private_dir(&dir)?;
    let path = at.config.clone().unwrap_or_else(|| dir.join("config.toml"));
    if path.exists() {
        if network.is_some() {
            return Err(Fail(format!(
                "config {} already exists: change `network` under [chain] in it instead",
                path.display()
            )));
        }
        if miner.is_none() {
            eprintln!("config {} already exists; left unchanged", path.display());
        }
    } else {
        let text = with_network(&dealport_node::config::template(), network.as_deref())
            .map_err(|e| Fail(format!("--network: {e}")))?;
        write_private_file(&path, &text)?;
        eprintln!("wrote config {}", path.display());
    }
    match &miner {
        Some(m) => add_miner(&path, m)?,
        None if !has_miner(&path) => eprintln!(
            "no miner yet: add one with `dealport init --miner f0…{}` before taking deals",
            at.data_dir
                .as_ref()
                .map(|d| format!(" --data-dir {}", d.display()))
                .unwrap_or_default()
        ),
        None => {}
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

pub(crate) async fn chain_check(shell: Shell, at: Location, json: bool) -> CmdResult {
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
    let plans = dealport_node::chain::check::plan(
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

fn peer_of(key: Option<libp2p::identity::Keypair>) -> Option<String> {
    key.map(|k| k.public().to_peer_id().to_string())
}

pub(crate) async fn info(shell: Shell, at: Location, json: bool) -> CmdResult {
    let (dir, path, config) = locate(&at)?;
    let have_config = config.is_some();
    let config = config.unwrap_or_default();
    // The store the config names: after `store copy` the PeerID comes from the database.
    let (peer, store_path, store_state) = if is_postgres_url(&config.store) {
        match PostgresStore::connect(&config.store, PostgresOptions::default()).await {
            Ok(store) => {
                let peer = identity::load(&store).await?;
                let state = if peer.is_some() {
                    "ok"
                } else {
                    "no identity yet"
                };
                (peer_of(peer), Store::describe(&store), state.to_owned())
            }
            Err(e) => (None, "PostgreSQL".to_owned(), format!("unreachable: {e}")),
        }
    } else {
        let path = SledStore::path_in(&dir).display().to_string();
        match SledStore::open(&dir, shell.runtime.clone()) {
            Ok(store) => match identity::load(&store).await? {
                Some(k) => (peer_of(Some(k)), path, "ok".to_owned()),
                None => (
                    None,
                    path,
                    "no identity yet (run `dealport init`)".to_owned(),
                ),
            },
            Err(e @ StoreError::InUse(_)) => {
                let peer = std::fs::read_to_string(dir.join("peer-id"))
                    .ok()
                    .map(|s| s.trim().to_owned());
                (peer, path, format!("in use: {e}"))
            }
            Err(e) => return Err(e.into()),
        }
    };
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
        println!("store:    {store_path} ({store_state})");
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

pub(crate) async fn deals(shell: Shell, at: Location, command: DealsCommand) -> CmdResult {
    let (dir, path, config) = locate(&at)?;
    // Through the running node's API: it holds the store.
    if let DealsCommand::Import { uuid, file, node } = command {
        let config = config.ok_or_else(|| {
            Fail(format!(
                "no config file at {}: the API token is read from it",
                path.display()
            ))
        })?;
        return import(shell, &dir, &config, &path, &uuid, &file, node).await;
    }
    if let DealsCommand::Populate { count, waiting } = command {
        let spec = config.map_or_else(|| "sled".to_owned(), |c| c.store);
        let mix = crate::populate::Mix::new(count, waiting)?;
        return populate_store(&shell, &dir, &spec, mix).await;
    }
    // The config's store: the cluster's database when `store` is a postgres:// URL. A
    // running node holds a sled store: ask it through its API instead.
    let spec = config
        .as_ref()
        .map_or_else(|| "sled".to_owned(), |c| c.store.clone());
    let store = match open_store_spec(&shell, &dir, &spec).await {
        Ok(s) => s,
        Err(e) if e.0.contains("in use by another dealport process") => {
            let config = config.ok_or(e)?;
            return deals_through_api(&dir, &config, &path, command).await;
        }
        Err(e) => return Err(e),
    };
    match command {
        DealsCommand::List { json } => {
            let mut list = DealList::new(json);
            let mut after = None;
            loop {
                let page = store.list_deals_page(after, DEALS_PAGE).await?;
                for d in &page {
                    list.row(d);
                }
                match page.last() {
                    Some(d) if page.len() == DEALS_PAGE => after = Some(d.uuid),
                    _ => break,
                }
            }
            list.end();
        }
        DealsCommand::Import { .. } | DealsCommand::Populate { .. } => {
            unreachable!("handled above")
        }
        DealsCommand::Show { uuid } => {
            let id = DealUuid::parse(&uuid)
                .map_err(|e| Fail(format!("{uuid:?} is not a deal UUID: {e}")))?;
            let d = store
                .deal_by_uuid(id)
                .await?
                .ok_or_else(|| Fail(format!("no deal with UUID {id} in {}", store.describe())))?;
            let v = dealport_node::api::deal_json(&d);
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

/// `deals populate`: straight into the concrete store, one transaction per batch.
async fn populate_store(
    shell: &Shell,
    dir: &Path,
    spec: &str,
    mix: crate::populate::Mix,
) -> CmdResult {
    let written = if is_postgres_url(spec) {
        let store = PostgresStore::connect(spec, PostgresOptions::default()).await?;
        crate::populate::populate(mix, |batch| {
            let store = store.clone();
            async move { Ok(store.bulk_load(&batch).await?) }
        })
        .await?
    } else {
        let store = SledStore::open(dir, shell.runtime.clone())?;
        crate::populate::populate(mix, |batch| {
            let store = store.clone();
            async move { Ok(store.bulk_load(batch).await?) }
        })
        .await?
    };
    println!("{written} deals written");
    Ok(())
}

/// Deals read from the store per page.
const DEALS_PAGE: usize = 1000;

/// `deals list` output, printed as the pages come.
struct DealList {
    json: bool,
    count: usize,
}

impl DealList {
    fn new(json: bool) -> DealList {
        if json {
            println!("[");
        } else {
            println!(
                "{:<36}  {:<20}  {:<44}  {:>14}  CREATED (UTC)",
                "UUID", "STATE", "CLIENT", "PIECE SIZE"
            );
        }
        DealList { json, count: 0 }
    }

    fn row(&mut self, d: &DealRecord) {
        if self.json {
            let v = serde_json::to_string_pretty(&StoredDeal::from_record(d))
                .expect("a stored deal serializes");
            println!("{}{v}", if self.count > 0 { "," } else { "" });
        } else {
            self.line(
                &d.uuid.to_string(),
                &d.state().to_string(),
                &d.params.client_deal_proposal.proposal.client.to_string(),
                d.params.client_deal_proposal.proposal.piece_size,
                &dealport_core::accept::go_time_utc(d.created_at_unix_nanos),
            );
        }
        self.count += 1;
    }

    fn line(&self, uuid: &str, state: &str, client: &str, piece_size: u64, created: &str) {
        println!("{uuid:<36}  {state:<20}  {client:<44}  {piece_size:>14}  {created}");
    }

    fn end(self) {
        if self.json {
            println!("]");
        } else {
            eprintln!("{} deal(s)", self.count);
        }
    }
}

/// `deals list|show` while the node runs and holds the store: its API answers.
async fn deals_through_api(
    dir: &Path,
    config: &Config,
    path: &Path,
    command: DealsCommand,
) -> CmdResult {
    if config.api.token.is_empty() {
        return Err(Fail(format!(
            "the store is in use by the running node, and config file {} has no [api] token \
             to ask the node with; set one and restart the node",
            path.display()
        )));
    }
    let node = node_url(dir, config);
    let get = |p: String| {
        let node = node.clone();
        let token = config.api.token.clone();
        async move {
            let (code, body) =
                dealport_client::node_api::get(&node, &token, &p, Duration::from_secs(10))
                    .await
                    .map_err(Fail)?;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if code != 200 {
                let why = v["error"].as_str().unwrap_or(body.trim()).to_owned();
                return Err(Fail(format!("{node} answered HTTP {code}: {why}")));
            }
            Ok(v)
        }
    };
    match command {
        DealsCommand::Show { uuid } => {
            let v = get(format!("deals/{uuid}")).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        DealsCommand::List { json } => {
            // Through the API, --json prints the API's deal objects (as `deals show`).
            let mut page = get("deals".to_owned()).await?;
            let mut list = DealList::new(json);
            let mut first = true;
            loop {
                for d in page["deals"].as_array().into_iter().flatten() {
                    if json {
                        let v = serde_json::to_string_pretty(d)?;
                        println!("{}{v}", if first { "" } else { "," });
                        first = false;
                    } else {
                        let p = &d["proposal"];
                        list.line(
                            d["uuid"].as_str().unwrap_or("?"),
                            d["state"].as_str().unwrap_or("?"),
                            p["client"].as_str().unwrap_or("?"),
                            p["piece_size"].as_u64().unwrap_or(0),
                            d["created_at"].as_str().unwrap_or("?"),
                        );
                    }
                    list.count += 1;
                }
                match page["next"].as_str() {
                    Some(next) => page = get(format!("deals/after/{next}")).await?,
                    None => break,
                }
            }
            list.end();
        }
        DealsCommand::Import { .. } | DealsCommand::Populate { .. } => {
            unreachable!("handled by the caller")
        }
    }
    Ok(())
}

/// The running node's HTTP address: what it wrote at start, else the config's (an
/// unspecified address means this machine).
fn node_url(dir: &Path, config: &Config) -> String {
    if let Ok(written) = std::fs::read_to_string(dir.join(HTTP_ADDRESS_FILE)) {
        let written = written.trim();
        if !written.is_empty() {
            let mut url = written.to_owned();
            // 0.0.0.0 / [::] is where it listens, not where to dial.
            url = url
                .replace("://0.0.0.0:", "://127.0.0.1:")
                .replace("://[::]:", "://[::1]:");
            return url;
        }
    }
    let mut addr = config.http.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

/// `dealport deals import`: stream the file to the node, print the outcome as a sentence.
async fn import(
    shell: Shell,
    dir: &Path,
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
    let node = node.unwrap_or_else(|| node_url(dir, config));
    let (code, body) = dealport_client::node_api::import_file(
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
