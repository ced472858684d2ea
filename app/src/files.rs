//! Where things live: the data dir (owner-only), the config file (owner-only when it
//! holds a token) and the store they name.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use dealport_node::{
    config::{is_postgres_url, Config},
    private_fs::{private_dir, write_private_file as node_write_private_file},
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        Store,
    },
};
use libp2p::PeerId;

use crate::{CmdResult, Fail, Location, Shell};

pub(crate) fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".dealport")
}

/// The data dir, the config path and the config (`None` if the file does not exist and
/// `--config` was not given).
pub(crate) fn locate(at: &Location) -> Result<(PathBuf, PathBuf, Option<Config>), Fail> {
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

/// Create the data dir owner-only, or refuse one open to other users.
pub(crate) fn create_private_dir(dir: &Path) -> CmdResult {
    private_dir(dir, "data dir", "the identity key").map_err(Fail)
}

/// A config file that holds a token must not be readable by other users: the Lotus API
/// token (a "sign" token can spend from the node's wallets) or the node's own API token
/// (it can fail deals and read their data). The file may live outside the owner-only
/// data dir (`--config`).
pub(crate) fn refuse_readable_token(path: &Path, config: &Config) -> CmdResult {
    #[cfg(unix)]
    {
        let held: Vec<&str> = [
            ("chain.lotus.token", &config.chain.lotus.token),
            ("api.token", &config.api.token),
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

pub(crate) fn write_private_file(path: &Path, text: &str) -> CmdResult {
    node_write_private_file(path, text).map_err(Fail)
}

pub(crate) fn open_store(shell: &Shell, dir: &Path) -> Result<Arc<dyn Store>, Fail> {
    Ok(Arc::new(SledStore::open(dir, shell.runtime.clone())?))
}

/// The store `spec` names: `sled` (in `dir`) or a `postgres://` URL.
pub(crate) async fn open_store_spec(
    shell: &Shell,
    dir: &Path,
    spec: &str,
) -> Result<Arc<dyn Store>, Fail> {
    if is_postgres_url(spec) {
        let store = PostgresStore::connect(spec, PostgresOptions::default()).await?;
        Ok(Arc::new(store))
    } else if spec == "sled" {
        open_store(shell, dir)
    } else {
        Err(Fail(format!(
            "--store {spec:?} is neither \"sled\" nor a postgres:// URL"
        )))
    }
}

/// Where the running node's HTTP server listens, for the commands that ask it (`deals`),
/// also when `[http] listen` picked a random port.
pub(crate) const HTTP_ADDRESS_FILE: &str = "http-address";

pub(crate) fn write_http_address_file(dir: &Path, addr: std::net::SocketAddr) {
    let _ = std::fs::write(dir.join(HTTP_ADDRESS_FILE), format!("http://{addr}\n"));
}

/// The PeerID is also kept in plain text beside the store, so `info` can show it while
/// a running node holds the store's lock.
pub(crate) fn write_peer_id_file(dir: &Path, peer: &PeerId) {
    let _ = std::fs::write(dir.join("peer-id"), format!("{peer}\n"));
}

/// The config template for `network` (mainnet when `None`).
pub(crate) fn with_network(template: &str, network: Option<&str>) -> Result<String, String> {
    match network {
        None | Some("mainnet") => Ok(template.to_owned()),
        Some("calibnet") => {
            Ok(template.replacen("network = \"mainnet\"", "network = \"calibnet\"", 1))
        }
        Some(other) => Err(format!("{other:?} is neither mainnet nor calibnet")),
    }
}

/// Does the config at `path` name a miner?
pub(crate) fn has_miner(path: &Path) -> bool {
    Config::load(path).is_ok_and(|c| !c.miners.is_empty())
}

/// Append a `[[miners]]` block for `miner` to the config at `path`, checked by parsing
/// the result before it is written (an array-of-tables block may stand at the end).
pub(crate) fn add_miner(path: &Path, miner: &str) -> CmdResult {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Fail(format!("cannot read config {}: {e}", path.display())))?;
    let config = Config::parse(&text, path)?;
    if config.miners.iter().any(|m| m.address.to_string() == miner) {
        eprintln!("miner {miner} is already in {}", path.display());
        return Ok(());
    }
    let block =
        format!("\n[[miners]]\naddress = \"{miner}\"   # added by `dealport init --miner`\n");
    let new_text = format!("{}\n{block}", text.trim_end());
    Config::parse(&new_text, path).map_err(|e| {
        Fail(format!(
            "--miner {miner:?}: {}",
            e.to_string()
                .rsplit(": ")
                .next()
                .unwrap_or("not a miner ID address")
        ))
    })?;
    let tmp = path.with_extension("toml.new");
    let _ = std::fs::remove_file(&tmp);
    write_private_file(&tmp, &new_text)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Fail(format!("cannot replace {}: {e}", path.display())))?;
    eprintln!("added miner {miner} to {}", path.display());
    Ok(())
}
