//! `dealport-async-std`: the same node on async-std's executor and blocking pool.
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); this shell holds only what
//! is specific to it, so dropping it is deleting this folder.

use std::{process::ExitCode, sync::Arc};

use dealport_app::Shell;
use dealport_node::runtime::{BoxTask, Runtime};

struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn(&self, fut: BoxTask) {
        // Dropping the handle detaches the task.
        drop(async_std::task::spawn(fut));
    }

    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
        drop(async_std::task::spawn_blocking(f));
    }
}

fn main() -> ExitCode {
    let shell = Shell {
        runtime: Arc::new(AsyncStd),
        runtime_name: "async-std",
    };
    async_std::task::block_on(dealport_app::main(shell))
}
