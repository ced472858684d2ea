//! Helpers shared by the node's integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::sync::Arc;

use dealport_node::{
    config::Config,
    runtime::{BoxTask, Runtime},
};

/// A runtime that gives every task its own thread: enough for tests, no executor crate.
pub struct ThreadRuntime;

impl Runtime for ThreadRuntime {
    fn spawn(&self, fut: BoxTask) {
        std::thread::spawn(move || futures::executor::block_on(fut));
    }
    fn spawn_blocking(&self, f: Box<dyn FnOnce() + Send>) {
        std::thread::spawn(f);
    }
}

pub fn runtime() -> Arc<dyn Runtime> {
    Arc::new(ThreadRuntime)
}

/// A golden vector's bytes from core's test data.
pub fn golden(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/tests/data/mk12-golden.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    hex::decode(v["vectors"][name]["hex"].as_str().unwrap()).unwrap()
}

/// The configuration under which golden vector A4 is accepted.
pub fn a4_config() -> Config {
    Config::parse(
        r#"
[chain.offline]
head_epoch_override = 4490000
provider_collateral_min = "8589934592000"
[[chain.offline.clients]]
address = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna"
escrow = "1000"
datacap = "34359738368"
[[miners]]
address = "f01000"
"#,
        "test.toml".as_ref(),
    )
    .unwrap()
}
