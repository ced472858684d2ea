//! `/fil/storage/ask/1.1.0` and `/fil/retrieval/transports/1.0.0` messages.
use super::address::Address;
use super::cbor::{Cbor, Reader, Writer, MAX_LENGTH};
use super::error::WireError;
use super::primitives::{Signature, TokenAmount};

/// The ask request: which miner's ask the client wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AskRequest {
    pub miner: Address,
}

impl Cbor for AskRequest {
    const NAME: &'static str = "AskRequest";
    fn write(&self, w: &mut Writer) {
        w.map(1).key("Miner").value(&self.miner);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = AskRequest::default();
        r.map_struct(|key, r| {
            match key {
                "Miner" => v.miner = Address::read(r)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// A miner's price list. Prices are attoFIL per GiB per epoch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StorageAsk {
    pub price: TokenAmount,
    pub verified_price: TokenAmount,
    pub min_piece_size: u64,
    pub max_piece_size: u64,
    pub miner: Address,
    pub timestamp: i64,
    pub expiry: i64,
    pub seq_no: u64,
}

impl Cbor for StorageAsk {
    const NAME: &'static str = "StorageAsk";
    fn write(&self, w: &mut Writer) {
        w.map(8)
            .key("Miner")
            .value(&self.miner)
            .key("Price")
            .value(&self.price)
            .key("SeqNo")
            .uint(self.seq_no)
            .key("Expiry")
            .int(self.expiry)
            .key("Timestamp")
            .int(self.timestamp)
            .key("MaxPieceSize")
            .uint(self.max_piece_size)
            .key("MinPieceSize")
            .uint(self.min_piece_size)
            .key("VerifiedPrice")
            .value(&self.verified_price);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = StorageAsk::default();
        r.map_struct(|key, r| {
            match key {
                "Miner" => v.miner = Address::read(r)?,
                "Price" => v.price = TokenAmount::read(r)?,
                "SeqNo" => v.seq_no = r.uint()?,
                "Expiry" => v.expiry = r.int()?,
                "Timestamp" => v.timestamp = r.int()?,
                "MaxPieceSize" => v.max_piece_size = r.uint()?,
                "MinPieceSize" => v.min_piece_size = r.uint()?,
                "VerifiedPrice" => v.verified_price = TokenAmount::read(r)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// The ask and the worker key's signature over the ask's CBOR bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignedStorageAsk {
    pub ask: Option<StorageAsk>,
    pub signature: Option<Signature>,
}

impl Cbor for SignedStorageAsk {
    const NAME: &'static str = "SignedStorageAsk";
    fn write(&self, w: &mut Writer) {
        w.map(2)
            .key("Ask")
            .opt(&self.ask)
            .key("Signature")
            .opt(&self.signature);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = SignedStorageAsk::default();
        r.map_struct(|key, r| {
            match key {
                "Ask" => v.ask = r.opt()?,
                "Signature" => v.signature = r.opt()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// The answer to an ask request; `None` when there is no ask for that miner.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AskResponse {
    pub ask: Option<SignedStorageAsk>,
}

impl Cbor for AskResponse {
    const NAME: &'static str = "AskResponse";
    fn write(&self, w: &mut Writer) {
        w.map(1).key("Ask").opt(&self.ask);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = AskResponse::default();
        r.map_struct(|key, r| {
            match key {
                "Ask" => v.ask = r.opt()?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// One retrieval transport and where to reach it (binary multiaddrs, no `/p2p/`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportProtocol {
    pub name: String,
    pub addresses: Vec<Vec<u8>>,
}

impl Cbor for TransportProtocol {
    const NAME: &'static str = "Protocol";
    fn write(&self, w: &mut Writer) {
        w.map(2)
            .key("Name")
            .str(&self.name)
            .key("Addresses")
            .array(self.addresses.len() as u64);
        for a in &self.addresses {
            w.bytes(a);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = TransportProtocol::default();
        r.map_struct(|key, r| {
            match key {
                "Name" => v.name = r.string()?,
                "Addresses" => {
                    let n = r.array(MAX_LENGTH)?;
                    v.addresses = (0..n)
                        .map(|_| r.bytes(MAX_LENGTH).map(<[u8]>::to_vec))
                        .collect::<Result<_, _>>()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}

/// The answer on `/fil/retrieval/transports/1.0.0` (the request is empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportsResponse {
    pub protocols: Vec<TransportProtocol>,
}

impl Cbor for TransportsResponse {
    const NAME: &'static str = "QueryResponse";
    fn write(&self, w: &mut Writer) {
        w.map(1).key("Protocols").array(self.protocols.len() as u64);
        for p in &self.protocols {
            w.value(p);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut v = TransportsResponse::default();
        r.map_struct(|key, r| {
            match key {
                "Protocols" => {
                    let n = r.array(MAX_LENGTH)?;
                    v.protocols = (0..n)
                        .map(|_| TransportProtocol::read(r))
                        .collect::<Result<_, _>>()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(v)
    }
}
