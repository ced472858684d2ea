//! Fixtures shared by node/'s integration tests and the tests/ crate. Nothing here knows
//! dealport's types, so both can depend on it without a cycle.
pub mod data_server;
pub mod fake_lotus;
pub mod fake_miner;
pub mod postgres;
