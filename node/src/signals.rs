//! Stop signals. async-signal runs on async-io's reactor, so this works under any
//! executor and neither runtime shell needs its own copy.
//!
//! Layer: bottom; uses no other module of the node.
use std::{future::Future, pin::Pin};

use async_signal::{Signal, Signals};
use futures::StreamExt;

/// Resolves when the process is asked to stop, with the signal's name.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = String> + Send>>;

/// Install SIGINT and SIGTERM handlers; the future resolves on the first of them.
pub fn sigint_or_sigterm() -> std::io::Result<ShutdownSignal> {
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    Ok(Box::pin(async move {
        match signals.next().await {
            Some(Ok(s)) => format!("{s:?}"),
            Some(Err(e)) => format!("signal error: {e}"),
            None => "signal stream ended".to_owned(),
        }
    }))
}
