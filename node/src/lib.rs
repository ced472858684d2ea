//! dealport-node: the I/O around the pure core, written against futures-io and async-io only.

pub mod api;
pub mod budget;
pub mod chain;
pub mod cluster;
pub mod config;
pub mod exec;
pub mod fd_limit;
pub mod front_door;
pub mod handoff;
pub mod http;
pub mod identity;
pub mod ipni;
pub mod metrics;
pub mod mk12_http;
pub mod outbound;
pub mod p2p;
pub mod private_fs;
pub mod retrieval;
pub mod rewound;
pub mod runtime;
pub mod sealing;
pub mod service;
pub mod signals;
pub mod store;
pub mod store_copy;
pub mod ui;
