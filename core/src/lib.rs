//! dealport-core: the pure heart of dealport.
//!
//! Bytes, facts and time go in; bytes and decisions come out. Nothing in this crate
//! opens a socket, reads a file, looks at a clock, spawns a thread or awaits.
#![deny(missing_debug_implementations)]

pub mod accept;
pub mod ask;
pub mod bloom;
pub mod car;
pub mod commp;
pub mod dashboard;
pub mod db_target;
pub mod deal;
pub mod download_queue;
pub mod facts;
pub mod fifo_map;
pub mod fuzzing;
pub mod ipni;
pub mod lease;
pub mod mac;
pub mod miner_info;
pub mod piece_index;
pub mod publish;
pub mod rate_limit;
pub mod relay;
pub mod retrieval;
pub mod sealing;
pub mod sig;
pub mod status;
pub mod store_copy;
pub mod transfer;
pub mod trustless;
pub mod wire;
