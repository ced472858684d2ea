//! Shared helpers for the cross-crate tests, and the black-box conformance suite that
//! every runtime shell runs against its own binary:
//!
//! ```text
//! dealport_tests::conformance_suite!(env!("CARGO_BIN_EXE_dealport"));
//! ```

pub mod conformance;
pub mod dashboard;
pub mod execution_lifecycle;
pub mod execution_sealing;
pub mod execution_transfer;
pub mod first_five_minutes;
pub mod harness;
pub mod indexing;
pub mod ipni;
pub mod retrieval;
pub mod store_move;
pub mod tcp_only;
