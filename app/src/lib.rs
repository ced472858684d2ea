//! dealport-app: the `dealport` command line, shared by every runtime shell.
//!
//! A shell supplies a [`Shell`] (its [`Runtime`] and a way to wait for SIGINT/SIGTERM)
//! and blocks on [`main`]. The top of the arrows: it uses the node library and the
//! client crate; nothing uses it but the shells.
//!
//! - [`cli`]: the command-line definition;
//! - [`run`]: `dealport run`, wiring the node's parts and serving until a signal;
//! - [`commands`]: `init`, `info`, `deals`, `chain check`;
//! - [`files`]: the data dir, the config file and the store they name;
//! - `store_copy`: `store copy`, a sled store into PostgreSQL.

pub mod cli;
mod commands;
mod demo;
mod files;
mod populate;
mod run;
mod store_copy;

use std::{io::IsTerminal, process::ExitCode, sync::Arc};

use clap::Parser;
use dealport_node::runtime::Runtime;

pub use cli::{ChainCommand, Cli, Command, DealsCommand, Location, StoreCommand};

/// What a runtime shell hands to the app.
pub struct Shell {
    pub runtime: Arc<dyn Runtime>,
    /// Shown in the start-up log, e.g. `smol`.
    pub runtime_name: &'static str,
}

/// A failed command: one sentence for the user.
#[derive(Debug)]
pub(crate) struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

pub(crate) type CmdResult = Result<(), Fail>;

/// Parse the command line, set up logging, run the command.
pub async fn main(shell: Shell) -> ExitCode {
    let cli = Cli::parse();
    // A client's user wants the answer, not libp2p's log lines; a node's operator wants
    // the log.
    let quiet = matches!(
        cli.command,
        Command::Client { .. } | Command::Bench(_) | Command::Demo
    );
    init_logging(if quiet && !cli.verbose {
        "warn"
    } else {
        "info"
    });
    match run_command(shell, cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("dealport: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn run_command(shell: Shell, command: Command) -> CmdResult {
    match command {
        Command::Init { at, miner, network } => commands::init(shell, at, miner, network).await,
        Command::Run { at, store } => run::run(shell, at, store).await,
        Command::Info { at, json } => commands::info(shell, at, json).await,
        Command::Deals { at, command } => commands::deals(shell, at, command).await,
        Command::Store {
            at,
            command: StoreCommand::Copy { to },
        } => store_copy::copy(shell, at, to).await,
        Command::Chain {
            at,
            command: ChainCommand::Check { json },
        } => commands::chain_check(shell, at, json).await,
        Command::Demo => demo::demo(shell).await,
        Command::Client { command } => Ok(dealport_client::cli::run(command).await?),
        Command::Bench(args) => {
            Ok(dealport_client::bench::run_cli(shell.runtime.clone(), args).await?)
        }
    }
}
