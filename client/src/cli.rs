//! `dealport client …`: flags in, the API of [`super`] called, human text or JSON out.

use std::{fmt::Write as _, path::PathBuf, str::FromStr};

use clap::{Args, Subcommand, ValueEnum};
use dealport_core::wire::{
    primitives::validate_padded_piece_size, Address, Cid, DealUuid, TokenAmount,
};
use dealport_node::{chain::offline::epoch_at, config::NetworkName};
use num_bigint::BigInt;
use serde_json::json;

use super::{
    ask, build_deal,
    car::one_block_car,
    commp::commp_file,
    info,
    keystore::{default_dir, KeyStore},
    propose, random_uuid, status, status_request,
    wallet::KeyKind,
    ClientError, DataTransfer, DealProtocol, DealSpec, Target, Wallet,
};

/// Boost's default deal duration: 180 days of 30 s epochs.
pub const DEFAULT_DURATION: i64 = 518_400;
/// Default distance from the chain head to the start epoch: two days.
pub const DEFAULT_START_OFFSET: i64 = 5_760;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Build, sign and send a storage deal proposal (like `boost deal`).
    Deal(Box<DealArgs>),
    /// Ask a provider for a deal's status, signed with the client's key.
    Status {
        /// The provider: a multiaddr with /p2p/<id>, or an https:// URL for MK12 over HTTP.
        #[arg(long)]
        provider: String,
        /// The deal UUID.
        #[arg(long)]
        uuid: String,
        #[command(flatten)]
        key: KeyArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a miner's storage ask from a provider.
    Ask {
        /// The provider: a multiaddr with /p2p/<id>, or an https:// URL.
        #[arg(long)]
        provider: String,
        /// The miner actor, e.g. f01000.
        #[arg(long)]
        miner: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connect and show what the provider says about itself (identify).
    Info {
        /// The provider's multiaddr.
        #[arg(long)]
        provider: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A file's piece CID, padded piece size and size, as `boostx commp` prints them.
    Commp {
        /// The file (a CAR, as the deal's data will be).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Wrap a small file (at most 1 MiB) in a one-block CAR; print its payload (root) CID.
    Car {
        /// The file to wrap.
        input: PathBuf,
        /// Where to write the CAR.
        output: PathBuf,
    },
    /// The client's keys: Lotus key files in an owner-only directory.
    Wallet {
        #[command(subcommand)]
        command: WalletCommand,
        /// Where the keys live.
        #[arg(long, env = "DEALPORT_WALLET_DIR", global = true)]
        wallet_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a key; print its address.
    New {
        /// The key type.
        #[arg(long = "type", value_enum, default_value = "secp256k1")]
        kind: KeyKind,
    },
    /// Every key's address.
    List,
    /// A key's address and file (never the key itself).
    Show { address: String },
}

/// The signing key of a deal or status command.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// The client's key: a Lotus key file (`lotus wallet export` output), or an address
    /// in the wallet dir. Default: the wallet dir's only key.
    #[arg(long)]
    pub wallet: Option<PathBuf>,
    /// Where `dealport client wallet` keeps keys.
    #[arg(long, env = "DEALPORT_WALLET_DIR")]
    pub wallet_dir: Option<PathBuf>,
}

impl KeyArgs {
    /// The key these arguments name.
    pub fn load(&self) -> Result<Wallet, ClientError> {
        let store = KeyStore::new(self.wallet_dir.clone().unwrap_or_else(default_dir));
        let path = store.resolve(self.wallet.as_deref())?;
        Ok(Wallet::load(&path)?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    Mainnet,
    Calibnet,
}

impl NetworkArg {
    /// The epoch now, from the network's genesis time.
    pub fn head_now(self) -> i64 {
        let genesis = match self {
            NetworkArg::Mainnet => NetworkName::Mainnet,
            NetworkArg::Calibnet => NetworkName::Calibnet,
        }
        .genesis_unix();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        epoch_at(genesis, now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// /fil/storage/mk/1.2.0 with the 5-key DealParamsV120.
    #[value(name = "1.2.0")]
    V120,
    /// /fil/storage/mk/1.2.1 with the 7-key DealParams.
    #[value(name = "1.2.1")]
    V121,
}

#[derive(Debug, Args)]
pub struct DealArgs {
    /// The provider's multiaddr with /p2p/<peer id> (TCP, /ws or /dns/<host>/tcp/443/wss).
    #[arg(long, required_unless_present = "http", conflicts_with = "http")]
    pub provider: Option<String>,
    /// Send over MK12-HTTP instead: POST <url>/market/mk12/store.
    #[arg(long)]
    pub http: Option<String>,
    /// The miner actor the deal is with (f0…).
    #[arg(long)]
    pub miner: String,
    /// The piece CID (baga…).
    #[arg(long)]
    pub piece_cid: String,
    /// The padded piece size in bytes (a power of two; 32GiB style suffixes allowed).
    #[arg(long)]
    pub piece_size: String,
    /// The CAR file's size in bytes (Transfer.Size).
    #[arg(long, required_unless_present = "offline")]
    pub car_size: Option<u64>,
    /// The payload root CID (DealDataRoot).
    #[arg(long)]
    pub payload_cid: String,
    /// Where the provider downloads the CAR from.
    #[arg(long, required_unless_present = "offline", conflicts_with = "offline")]
    pub url: Option<String>,
    /// An HTTP header for the download, `Name=value`; repeatable.
    #[arg(long = "header", value_name = "K=V")]
    pub headers: Vec<String>,
    /// The data is shipped to the provider out of band.
    #[arg(long)]
    pub offline: bool,
    /// The start epoch.
    #[arg(long, conflicts_with = "head_epoch")]
    pub start_epoch: Option<i64>,
    /// The current chain head, to place the start epoch at head + --start-offset.
    /// Default: the head of --network now, from its genesis time (30 s epochs).
    #[arg(long)]
    pub head_epoch: Option<i64>,
    /// The network whose head places the start epoch: mainnet or calibnet.
    #[arg(long, default_value = "mainnet")]
    pub network: NetworkArg,
    /// Epochs from --head-epoch to the start epoch.
    #[arg(long, default_value_t = DEFAULT_START_OFFSET)]
    pub start_offset: i64,
    /// The deal duration in epochs (end epoch = start + duration).
    #[arg(long, default_value_t = DEFAULT_DURATION)]
    pub duration: i64,
    /// Storage price in attoFIL per epoch (for the whole piece).
    #[arg(long, default_value = "0")]
    pub price: String,
    /// Provider collateral in attoFIL. The provider refuses less than the chain's
    /// minimum (StateDealProviderCollateralBounds); 0 passes an offline-mode node.
    #[arg(long, default_value = "0")]
    pub provider_collateral: String,
    /// Client collateral in attoFIL.
    #[arg(long, default_value = "0")]
    pub client_collateral: String,
    /// A verified (DataCap) deal.
    #[arg(long)]
    pub verified: bool,
    /// The deal label. Default: the payload CID string, as `boost deal`.
    #[arg(long)]
    pub label: Option<String>,
    /// The deal UUID. Default: a random version-4 UUID.
    #[arg(long)]
    pub uuid: Option<String>,
    /// The proposal protocol version.
    #[arg(long, value_enum, default_value = "1.2.1")]
    pub protocol: ProtocolArg,
    /// Ask the provider not to announce the deal to IPNI (1.2.1 only).
    #[arg(long)]
    pub skip_ipni_announce: bool,
    /// Let the provider drop the unsealed copy (1.2.1 only).
    #[arg(long)]
    pub remove_unsealed_copy: bool,
    /// The key that signs the proposal.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Print the signed DealParams as hex and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn usage(s: String) -> ClientError {
    ClientError::Usage(s)
}

fn parse_amount(flag: &str, s: &str) -> Result<TokenAmount, ClientError> {
    let v = BigInt::from_str(s.trim())
        .map_err(|_| usage(format!("--{flag} {s:?} is not a whole number of attoFIL")))?;
    if v.sign() == num_bigint::Sign::Minus {
        return Err(usage(format!("--{flag} must not be negative")));
    }
    Ok(TokenAmount(v))
}

/// `34359738368`, `32GiB`, `512MiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KiB, MiB, GiB, TiB)"
            ))
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Turn the flags into a [`DealSpec`] (no I/O except nothing; the wallet is separate).
pub fn deal_spec(a: &DealArgs) -> Result<DealSpec, ClientError> {
    let miner =
        Address::parse(&a.miner).map_err(|e| usage(format!("--miner {:?}: {e}", a.miner)))?;
    let piece_cid = Cid::parse(&a.piece_cid)
        .map_err(|e| usage(format!("--piece-cid {:?}: {e}", a.piece_cid)))?;
    let payload_cid = Cid::parse(&a.payload_cid)
        .map_err(|e| usage(format!("--payload-cid {:?}: {e}", a.payload_cid)))?;
    let piece_size = parse_size(&a.piece_size).map_err(|e| usage(format!("--piece-size: {e}")))?;
    validate_padded_piece_size(piece_size)
        .map_err(|e| usage(format!("--piece-size {piece_size}: {e}")))?;
    let start_epoch = match (a.start_epoch, a.head_epoch) {
        (Some(s), _) => s,
        (None, Some(h)) => h + a.start_offset,
        (None, None) => a.network.head_now() + a.start_offset,
    };
    if a.duration <= 0 {
        return Err(usage("--duration must be positive".into()));
    }
    let transfer = if a.offline {
        DataTransfer::Offline
    } else {
        let url = a
            .url
            .clone()
            .ok_or_else(|| usage("give --url (or --offline)".into()))?;
        let mut headers = Vec::new();
        for h in &a.headers {
            let (k, v) = h
                .split_once('=')
                .ok_or_else(|| usage(format!("--header {h:?} is not Name=value")))?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        DataTransfer::Http {
            url,
            headers,
            car_size: a
                .car_size
                .ok_or_else(|| usage("give --car-size (or --offline)".into()))?,
        }
    };
    let uuid = match &a.uuid {
        Some(u) => DealUuid::parse(u).map_err(|e| usage(format!("--uuid {u:?}: {e}")))?,
        None => random_uuid()?,
    };
    if a.protocol == ProtocolArg::V120 && (a.skip_ipni_announce || a.remove_unsealed_copy) {
        return Err(usage(
            "--skip-ipni-announce and --remove-unsealed-copy need --protocol 1.2.1".into(),
        ));
    }
    Ok(DealSpec {
        uuid,
        miner,
        piece_cid,
        piece_size,
        payload_cid,
        transfer,
        start_epoch,
        end_epoch: start_epoch + a.duration,
        price_per_epoch: parse_amount("price", &a.price)?,
        provider_collateral: parse_amount("provider-collateral", &a.provider_collateral)?,
        client_collateral: parse_amount("client-collateral", &a.client_collateral)?,
        verified: a.verified,
        label: a.label.clone(),
        skip_ipni_announce: a.skip_ipni_announce,
        remove_unsealed_copy: a.remove_unsealed_copy,
    })
}

/// What a command printed, and whether it succeeded. Also printed on failure (e.g. the
/// JSON of a rejected deal) so scripts see the answer.
pub struct Outcome {
    pub stdout: String,
    pub result: Result<(), ClientError>,
}

impl From<ClientError> for Outcome {
    fn from(e: ClientError) -> Self {
        Outcome {
            stdout: String::new(),
            result: Err(e),
        }
    }
}

/// Run a command and print its output; the CLI entry (`dealport client …`).
pub async fn run(command: ClientCommand) -> Result<(), ClientError> {
    let out = execute(command).await;
    print!("{}", out.stdout);
    out.result
}

/// Run a command without printing (tests call this).
pub async fn execute(command: ClientCommand) -> Outcome {
    match command {
        ClientCommand::Deal(a) => deal(&a).await,
        ClientCommand::Status {
            provider,
            uuid,
            key,
            json,
        } => deal_status(&provider, &uuid, &key, json).await,
        ClientCommand::Ask {
            provider,
            miner,
            json,
        } => storage_ask(&provider, &miner, json).await,
        ClientCommand::Info { provider, json } => peer_info(&provider, json).await,
        ClientCommand::Commp { file, json } => match commp_file(&file) {
            Ok(p) => Outcome {
                stdout: if json { pretty(&p.json()) } else { p.text() },
                result: Ok(()),
            },
            Err(e) => ClientError::Local(e).into(),
        },
        ClientCommand::Car { input, output } => match write_car(&input, &output) {
            Ok(root) => Outcome {
                stdout: format!("{root}\n"),
                result: Ok(()),
            },
            Err(e) => ClientError::Local(e).into(),
        },
        ClientCommand::Wallet {
            command,
            wallet_dir,
        } => wallet(
            command,
            &KeyStore::new(wallet_dir.unwrap_or_else(default_dir)),
        ),
    }
}

/// `client car`: the payload CID of the CAR written.
fn write_car(input: &std::path::Path, output: &std::path::Path) -> Result<Cid, String> {
    let data = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let (car, root) = one_block_car(&data).map_err(|e| format!("{}: {e}", input.display()))?;
    std::fs::write(output, car).map_err(|e| format!("cannot write {}: {e}", output.display()))?;
    Ok(root)
}

/// `client wallet new|list|show`: addresses on stdout, one per line.
fn wallet(command: WalletCommand, store: &KeyStore) -> Outcome {
    let done = |stdout: String| Outcome {
        stdout,
        result: Ok(()),
    };
    match command {
        WalletCommand::New { kind } => match store.create(kind) {
            Ok((address, path)) => {
                eprintln!("key written to {}", path.display());
                done(format!("{address}\n"))
            }
            Err(e) => ClientError::from(e).into(),
        },
        WalletCommand::List => match store.list() {
            Ok(keys) => done(keys.iter().map(|(a, _)| format!("{a}\n")).collect()),
            Err(e) => ClientError::from(e).into(),
        },
        WalletCommand::Show { address } => {
            let found = Address::parse(&address)
                .map_err(|e| ClientError::Usage(format!("{address:?} is not an address: {e}")))
                .and_then(|a| Ok((store.find(&a)?, a)));
            match found {
                Ok((path, a)) => done(format!("address: {a}\nkey file: {}\n", path.display())),
                Err(e) => e.into(),
            }
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

async fn deal(a: &DealArgs) -> Outcome {
    let spec = match deal_spec(a) {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    let wallet = match a.key.load() {
        Ok(w) => w,
        Err(e) => return e.into(),
    };
    let params = build_deal(&spec, &wallet);
    let protocol = match a.protocol {
        ProtocolArg::V120 => DealProtocol::V120,
        ProtocolArg::V121 => DealProtocol::V121,
    };
    let cdp = &params.client_deal_proposal;
    let mut summary = json!({
        "uuid": params.deal_uuid.to_string(),
        "client": cdp.proposal.client.to_string(),
        "provider": cdp.proposal.provider.to_string(),
        "protocol": protocol.id(),
        "proposal_cid": cdp.proposal.cid().to_string(),
        "signed_proposal_cid": cdp.signed_proposal_cid().to_string(),
        "start_epoch": cdp.proposal.start_epoch,
        "end_epoch": cdp.proposal.end_epoch,
    });
    if a.dry_run {
        let hex = hex::encode(protocol.encode(&params));
        let stdout = if a.json {
            summary["params_hex"] = json!(hex);
            pretty(&summary)
        } else {
            format!("{hex}\n")
        };
        return Outcome {
            stdout,
            result: Ok(()),
        };
    }
    let target = match (&a.provider, &a.http) {
        (_, Some(url)) => match Target::parse(url) {
            Ok(t @ Target::Http(_)) => t,
            Ok(_) => {
                return ClientError::Usage(format!("--http {url:?} must be an https:// URL")).into()
            }
            Err(e) => return e.into(),
        },
        (Some(p), None) => match Target::parse(p) {
            Ok(t) => t,
            Err(e) => return e.into(),
        },
        (None, None) => return ClientError::Usage("give --provider or --http".into()).into(),
    };
    let resp = match propose(&target, &params, protocol).await {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    summary["target"] = json!(target.to_string());
    summary["accepted"] = json!(resp.accepted);
    summary["message"] = json!(resp.message);
    let stdout = if a.json {
        pretty(&summary)
    } else if resp.accepted {
        let mut s = String::new();
        let _ = writeln!(s, "deal {} accepted by {}", params.deal_uuid, target);
        let _ = writeln!(s, "  client:              {}", cdp.proposal.client);
        let _ = writeln!(s, "  provider:            {}", cdp.proposal.provider);
        let _ = writeln!(s, "  protocol:            {}", protocol.id());
        let _ = writeln!(
            s,
            "  epochs:              {} .. {}",
            cdp.proposal.start_epoch, cdp.proposal.end_epoch
        );
        let _ = writeln!(s, "  proposal CID:        {}", cdp.proposal.cid());
        let _ = writeln!(s, "  signed proposal CID: {}", cdp.signed_proposal_cid());
        s
    } else {
        String::new()
    };
    Outcome {
        stdout,
        result: if resp.accepted {
            Ok(())
        } else {
            Err(ClientError::Rejected(resp.message))
        },
    }
}

async fn deal_status(provider: &str, uuid: &str, key: &KeyArgs, as_json: bool) -> Outcome {
    let target = match Target::parse(provider) {
        Ok(t) => t,
        Err(e) => return e.into(),
    };
    let id = match DealUuid::parse(uuid) {
        Ok(u) => u,
        Err(e) => return ClientError::Usage(format!("{uuid:?} is not a deal UUID: {e}")).into(),
    };
    let wallet = match key.load() {
        Ok(w) => w,
        Err(e) => return e.into(),
    };
    let resp = match status(&target, &status_request(id, &wallet)).await {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let ds = resp.deal_status.as_ref();
    let v = json!({
        "uuid": resp.deal_uuid.to_string(),
        "error": resp.error,
        "is_offline": resp.is_offline,
        "transfer_size": resp.transfer_size,
        "n_bytes_received": resp.n_bytes_received,
        "deal_status": ds.map(|d| json!({
            "status": d.status,
            "error": d.error,
            "sealing_status": d.sealing_status,
            "chain_deal_id": d.chain_deal_id,
            "publish_cid": d.publish_cid.as_ref().map(ToString::to_string),
            "signed_proposal_cid": d.signed_proposal_cid.to_string(),
            "proposal_cid": d.proposal.cid().to_string(),
            "piece_cid": d.proposal.piece_cid.to_string(),
            "piece_size": d.proposal.piece_size,
            "client": d.proposal.client.to_string(),
            "provider": d.proposal.provider.to_string(),
            "start_epoch": d.proposal.start_epoch,
            "end_epoch": d.proposal.end_epoch,
        })),
    });
    let stdout = if as_json {
        pretty(&v)
    } else if let Some(d) = ds {
        let mut s = String::new();
        let _ = writeln!(s, "deal {}", resp.deal_uuid);
        let _ = writeln!(s, "  status:         {}", d.status);
        if !d.error.is_empty() {
            let _ = writeln!(s, "  error:          {}", d.error);
        }
        let _ = writeln!(s, "  sealing status: {}", d.sealing_status);
        let _ = writeln!(
            s,
            "  transfer:       {} of {} bytes{}",
            resp.n_bytes_received,
            resp.transfer_size,
            if resp.is_offline { " (offline)" } else { "" }
        );
        let _ = writeln!(
            s,
            "  publish CID:    {}",
            d.publish_cid
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "(not published)".into())
        );
        let _ = writeln!(s, "  chain deal ID:  {}", d.chain_deal_id);
        let _ = writeln!(
            s,
            "  piece:          {} ({} bytes)",
            d.proposal.piece_cid, d.proposal.piece_size
        );
        s
    } else {
        String::new()
    };
    let result = if resp.error.is_empty() {
        Ok(())
    } else {
        Err(ClientError::StatusError(resp.error.clone()))
    };
    Outcome { stdout, result }
}

async fn storage_ask(provider: &str, miner: &str, as_json: bool) -> Outcome {
    let target = match Target::parse(provider) {
        Ok(t) => t,
        Err(e) => return e.into(),
    };
    let miner = match Address::parse(miner) {
        Ok(m) => m,
        Err(e) => {
            return ClientError::Usage(format!("{miner:?} is not a miner address: {e}")).into()
        }
    };
    let resp = match ask(&target, &miner).await {
        Ok(r) => r,
        Err(e) => return e.into(),
    };
    let a = resp.ask.as_ref().and_then(|s| s.ask.as_ref());
    let v = json!({
        "miner": miner.to_string(),
        "ask": a.map(|a| json!({
            "price": a.price.to_string(),
            "verified_price": a.verified_price.to_string(),
            "min_piece_size": a.min_piece_size,
            "max_piece_size": a.max_piece_size,
            "miner": a.miner.to_string(),
            "timestamp": a.timestamp,
            "expiry": a.expiry,
            "seq_no": a.seq_no,
        })),
        "signature_hex": resp.ask.as_ref().and_then(|s| s.signature.as_ref()).map(|s| hex::encode(s.to_bytes())),
    });
    let stdout = if as_json {
        pretty(&v)
    } else if let Some(a) = a {
        let mut s = String::new();
        let _ = writeln!(s, "storage ask of {}", a.miner);
        let _ = writeln!(s, "  price:          {} attoFIL/GiB/epoch", a.price);
        let _ = writeln!(
            s,
            "  verified price: {} attoFIL/GiB/epoch",
            a.verified_price
        );
        let _ = writeln!(
            s,
            "  piece sizes:    {} .. {} bytes",
            a.min_piece_size, a.max_piece_size
        );
        let _ = writeln!(
            s,
            "  timestamp:      {} (expires at epoch {})",
            a.timestamp, a.expiry
        );
        let _ = writeln!(s, "  seq no:         {}", a.seq_no);
        s
    } else {
        format!("the provider has no storage ask for {miner}\n")
    };
    Outcome {
        stdout,
        result: Ok(()),
    }
}

async fn peer_info(provider: &str, as_json: bool) -> Outcome {
    let addr = match Target::parse(provider) {
        Ok(super::Target::Libp2p(a)) => a,
        Ok(_) => {
            return ClientError::Usage("info needs a libp2p multiaddr, not a URL".into()).into()
        }
        Err(e) => return e.into(),
    };
    let i = match info(&addr).await {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    let stdout = if as_json {
        pretty(&serde_json::to_value(&i).unwrap_or_default())
    } else {
        let mut s = String::new();
        let _ = writeln!(s, "peer ID:          {}", i.peer_id);
        let _ = writeln!(s, "agent:            {}", i.agent_version);
        let _ = writeln!(s, "protocol version: {}", i.protocol_version);
        let _ = writeln!(s, "protocols:");
        for p in &i.protocols {
            let _ = writeln!(s, "  {p}");
        }
        let _ = writeln!(s, "listen addresses:");
        for a in &i.listen_addrs {
            let _ = writeln!(s, "  {a}");
        }
        let _ = writeln!(s, "observed us as:   {}", i.observed_addr);
        s
    };
    Outcome {
        stdout,
        result: Ok(()),
    }
}
