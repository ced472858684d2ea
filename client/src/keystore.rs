//! The client's own keys: Lotus key files (`<address>.key`, as `lotus wallet export`
//! writes them) in an owner-only directory, `~/.dealport-client/wallet` by default.
//! `dealport client wallet new|list|show` manage it; `--wallet` takes a key file's path
//! or an address found here.

use std::path::{Path, PathBuf};

use dealport_core::wire::Address;
use dealport_node::private_fs::{private_dir, write_private_file};

use crate::wallet::{KeyKind, Wallet, WalletError};

/// Where keys live unless `--wallet-dir` / `DEALPORT_WALLET_DIR` says otherwise.
pub fn default_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".dealport-client")
        .join("wallet")
}

fn err(s: String) -> WalletError {
    WalletError(s)
}

/// The key store at `dir`.
#[derive(Debug, Clone)]
pub struct KeyStore {
    pub dir: PathBuf,
}

impl KeyStore {
    pub fn new(dir: PathBuf) -> KeyStore {
        KeyStore { dir }
    }

    fn file(&self, address: &Address) -> PathBuf {
        self.dir.join(format!("{address}.key"))
    }

    /// Create a key of `kind`, write it owner-only; its address and file.
    pub fn create(&self, kind: KeyKind) -> Result<(Address, PathBuf), WalletError> {
        private_dir(&self.dir, "wallet dir", "client keys").map_err(err)?;
        let wallet = Wallet::generate(kind)?;
        let address = wallet.address();
        let path = self.file(&address);
        write_private_file(&path, &wallet.to_lotus_export()).map_err(err)?;
        Ok((address, path))
    }

    /// Every key's address and file, sorted by address; unreadable files are skipped.
    pub fn list(&self) -> Result<Vec<(Address, PathBuf)>, WalletError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(format!("cannot read {}: {e}", self.dir.display()))),
        };
        let mut keys: Vec<(Address, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "key"))
            .filter_map(|p| Wallet::load(&p).ok().map(|w| (w.address(), p)))
            .collect();
        keys.sort_by_key(|(a, _)| a.to_string());
        Ok(keys)
    }

    /// The key file of `address`.
    pub fn find(&self, address: &Address) -> Result<PathBuf, WalletError> {
        let path = self.file(address);
        if path.exists() {
            Ok(path)
        } else {
            Err(err(format!(
                "no key for {address} in {} (see `dealport client wallet list`)",
                self.dir.display()
            )))
        }
    }

    /// What `--wallet` names: a key file's path, an address in this store, or (absent)
    /// the store's only key.
    pub fn resolve(&self, wallet: Option<&Path>) -> Result<PathBuf, WalletError> {
        match wallet {
            Some(p) if p.exists() => Ok(p.to_path_buf()),
            Some(p) => match p.to_str().map(Address::parse) {
                Some(Ok(a)) => self.find(&a),
                _ => Err(err(format!("cannot read key file {}", p.display()))),
            },
            None => match self.list()?.as_slice() {
                [(_, only)] => Ok(only.clone()),
                [] => Err(err(format!(
                    "no key in {}: create one with `dealport client wallet new`, or give --wallet",
                    self.dir.display()
                ))),
                _ => Err(err(format!(
                    "several keys in {}: choose one with --wallet <address>",
                    self.dir.display()
                ))),
            },
        }
    }
}
