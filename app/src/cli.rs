//! The command-line definition (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dealport",
    version,
    about = "A Filecoin MK12 storage-deal server for Boost and Curio clients"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log at info level. The client and bench commands otherwise log only warnings;
    /// `RUST_LOG` overrides both.
    #[arg(short, long, global = true)]
    pub verbose: bool,
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
        /// The miner actor to take deals for (an ID address, e.g. f01000): adds its
        /// `[[miners]]` block to the config. Can be given again later to add another.
        #[arg(long)]
        miner: Option<String>,
        /// The network for a new config: mainnet or calibnet.
        #[arg(long)]
        network: Option<String>,
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
    /// Move the node's store.
    Store {
        #[command(flatten)]
        at: Location,
        #[command(subcommand)]
        command: StoreCommand,
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
        command: dealport_client::cli::ClientCommand,
    },
    /// One offline deal on this machine, start to `Transferred`, through a throwaway
    /// node: what dealport does, in under a minute, leaving nothing behind.
    Demo,
    /// Load-test a provider: status, ask or fresh signed deals over N connections and
    /// M streams each; prints throughput and latency percentiles.
    Bench(dealport_client::bench::BenchArgs),
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
pub enum StoreCommand {
    /// Copy this data dir's sled store into a PostgreSQL database, with no node running
    /// on either: the identity key (the PeerID stays), every deal and its timeline, the
    /// piece directory, the IPNI chain and any publish or add-piece in flight. Run it
    /// again to finish a copy that stopped; then point `store` in the config at the
    /// database.
    Copy {
        /// The database: `postgres://user@host:port/db` (libpq forms, as `store`).
        #[arg(long)]
        to: String,
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
    /// Fill the store (no node may run on it) with N signed synthetic deals, mostly
    /// history, for benchmarks: 90 % Complete, 5 % failed, 5 % at work.
    Populate {
        count: u64,
        /// Of the N, this many (spread evenly through them) are offline deals accepted
        /// and waiting for their data, as while onboarding a large dataset: a long live
        /// index instead of a long history.
        #[arg(long, default_value_t = 0)]
        waiting: u64,
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
