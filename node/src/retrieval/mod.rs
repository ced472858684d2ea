//! Retrieval: the transports answer `[retrieval]` gives and this node's HTTP announce
//! address, `GET`/`HEAD /piece/<cid>` (from staged data or the piece store that
//! `exec` moves a sealed deal's data into with `keep_pieces`), and `GET`/`HEAD
//! /ipfs/<cid>` (one block of those pieces, found in the piece directory).
//!
//! Layer: beside the API. Uses core's `retrieval` decisions, `config` (`[retrieval]`),
//! `store` (deals by piece CID), `exec` (staging and piece store paths),
//! `api::file_response_with` (the one Range-serving file response), `metrics` and
//! `runtime`. Only `front_door` and the app use it.

pub mod ipfs;
pub mod piece;
pub mod transports;

pub use ipfs::IpfsServer;
pub use piece::PieceServer;
