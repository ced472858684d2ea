//! Fixtures shared by the integration tests of node/, client/ and the tests/ crate.
//! Only [`node`] knows dealport's types (testkit depends on the node library; node's own
//! unit tests never use testkit, so there is one node library in every test build).
pub mod commp;
pub mod data_server;
pub mod fake_lotus;
pub mod fake_miner;
pub mod golden;
pub mod ipni_indexer;
pub mod node;
pub mod postgres;
pub mod rpc_server;
