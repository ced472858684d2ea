//! What the conformance scenarios are built from: the golden vectors, the `dealport`
//! process, its config file, a rust-libp2p client and the js-libp2p client.

pub mod binary;
pub mod cluster;
pub mod config;
pub mod db_failover;
pub mod honest;
pub mod http;
pub mod js;
pub mod mint;
pub use dealport_testkit::{golden, postgres};
pub mod probe;
pub mod process;
pub mod rust_client;
