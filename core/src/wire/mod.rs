//! The MK12 wire layer: Filecoin primitives, the messages, and the one-item framer.
//!
//! Decoding is exactly as lenient as cbor-gen and exactly as strict: see [`cbor`].
pub mod address;
pub mod ask;
pub mod bitfield;
pub mod cbor;
pub mod cid;
pub mod error;
pub mod framer;
pub mod http_request;
pub mod market;
pub mod mk12;
pub mod primitives;
pub mod proposal;
pub mod varint;

pub use address::{Address, Network, Protocol};
pub use ask::{
    AskRequest, AskResponse, SignedStorageAsk, StorageAsk, TransportProtocol, TransportsResponse,
};
pub use bitfield::BitField;
pub use cbor::Cbor;
pub use cid::Cid;
pub use error::{ErrorKind, WireError};
pub use framer::{Frame, FrameError, Framer};
pub use http_request::HttpRequest;
pub use market::{PublishStorageDealsParams, PublishStorageDealsReturn};
pub use mk12::{
    DealParams, DealResponse, DealStatus, DealStatusRequest, DealStatusResponse, Transfer,
};
pub use primitives::{DealLabel, DealUuid, Signature, TokenAmount};
pub use proposal::{ClientDealProposal, DealProposal};

/// The MK12 protocol IDs (Boost `storagemarket/lp2pimpl/net.go`).
pub mod protocols {
    pub const DEAL_1_2_0: &str = "/fil/storage/mk/1.2.0";
    pub const DEAL_1_2_1: &str = "/fil/storage/mk/1.2.1";
    pub const STATUS_1_2_0: &str = "/fil/storage/status/1.2.0";
    pub const ASK_1_1_0: &str = "/fil/storage/ask/1.1.0";
    pub const TRANSPORTS_1_0_0: &str = "/fil/retrieval/transports/1.0.0";
}
