//! Filecoin addresses: bytes `protocol ‖ payload`, and the `f…`/`t…` string form.
use super::cbor::{Cbor, Reader, Writer};
use super::error::{ErrorKind, WireError};
use super::varint;
use std::fmt;

/// Longest address accepted on decode (go-address).
pub const MAX_ADDRESS_LEN: u64 = 64;
/// go-address's error for an empty (undefined) address on decode.
pub const EMPTY_ADDRESS: &str = "cbor input should not contain empty addresses";
/// Longest delegated (f4) sub-address.
pub const MAX_SUBADDRESS_LEN: usize = 54;

/// Address protocol numbers (not the same enum as signature types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Id = 0,
    Secp256k1 = 1,
    Actor = 2,
    Bls = 3,
    Delegated = 4,
}

/// Which network prefix the string form uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Mainnet,
    Testnet,
}

/// A Filecoin address. The default value is Go's `address.Undef` (no bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address {
    bytes: Vec<u8>,
}

impl Address {
    /// Validate address bytes as go-address `NewFromBytes` does.
    pub fn from_bytes(bytes: &[u8]) -> Result<Address, &'static str> {
        let (&proto, payload) = bytes.split_first().ok_or("empty address")?;
        validate_payload(proto, payload)?;
        Ok(Address {
            bytes: bytes.to_vec(),
        })
    }

    pub fn new_id(id: u64) -> Address {
        let mut bytes = vec![0];
        varint::put(&mut bytes, id);
        Address { bytes }
    }

    pub fn new_secp256k1(payload: [u8; 20]) -> Address {
        let mut bytes = vec![1];
        bytes.extend_from_slice(&payload);
        Address { bytes }
    }

    pub fn new_bls(pubkey: [u8; 48]) -> Address {
        let mut bytes = vec![3];
        bytes.extend_from_slice(&pubkey);
        Address { bytes }
    }

    pub fn is_undef(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn protocol(&self) -> Option<Protocol> {
        Some(match self.bytes.first()? {
            0 => Protocol::Id,
            1 => Protocol::Secp256k1,
            2 => Protocol::Actor,
            3 => Protocol::Bls,
            4 => Protocol::Delegated,
            _ => return None,
        })
    }

    pub fn payload(&self) -> &[u8] {
        self.bytes.get(1..).unwrap_or(&[])
    }

    /// The actor id of an ID address.
    pub fn id(&self) -> Option<u64> {
        match self.protocol()? {
            Protocol::Id => varint::get(self.payload()).ok().map(|(v, _)| v),
            _ => None,
        }
    }

    /// The string form with the given network prefix.
    pub fn to_string_on(&self, net: Network) -> String {
        let prefix = match net {
            Network::Mainnet => 'f',
            Network::Testnet => 't',
        };
        let Some(proto) = self.protocol() else {
            return "<empty>".to_owned();
        };
        let payload = self.payload();
        match proto {
            Protocol::Id => format!("{prefix}0{}", self.id().unwrap_or_default()),
            Protocol::Delegated => {
                let (ns, n) = varint::get(payload).unwrap_or((0, payload.len()));
                let sub = &payload[n.min(payload.len())..];
                let mut data = sub.to_vec();
                data.extend_from_slice(&checksum(&self.bytes));
                format!("{prefix}4{ns}f{}", base32_lower(&data))
            }
            _ => {
                let mut data = payload.to_vec();
                data.extend_from_slice(&checksum(&self.bytes));
                format!("{prefix}{}{}", proto as u8, base32_lower(&data))
            }
        }
    }

    /// Parse `f…` or `t…` (go-address `decode`), checking the checksum.
    pub fn parse(s: &str) -> Result<Address, &'static str> {
        let b = s.as_bytes();
        if b.len() < 3 || b.len() > 2 + 84 + 20 {
            return Err("invalid address length");
        }
        if b[0] != b'f' && b[0] != b't' {
            return Err("unknown address network");
        }
        let proto = match b[1] {
            d @ b'0'..=b'4' => d - b'0',
            _ => return Err("unknown address protocol"),
        };
        let raw = &s[2..];
        if proto == 0 {
            if raw.len() > 19 || !raw.bytes().all(|c| c.is_ascii_digit()) {
                return Err("invalid address payload");
            }
            let id: u64 = raw.parse().map_err(|_| "invalid address payload")?;
            if id > i64::MAX as u64 {
                return Err("id addresses must be less than 2^63");
            }
            return Ok(Address::new_id(id));
        }
        let (prefix_bytes, data_str) = if proto == 4 {
            let (ns, rest) = raw.split_once('f').ok_or("invalid delegated address")?;
            if ns.is_empty() || ns.len() > 19 || !ns.bytes().all(|c| c.is_ascii_digit()) {
                return Err("invalid delegated address namespace");
            }
            let ns: u64 = ns
                .parse()
                .map_err(|_| "invalid delegated address namespace")?;
            let mut p = vec![4];
            varint::put(&mut p, ns);
            (p, rest)
        } else {
            (vec![proto], raw)
        };
        let data = base32_decode(data_str).ok_or("invalid address payload encoding")?;
        if data.len() < 4 {
            return Err("invalid address checksum");
        }
        let (payload, sum) = data.split_at(data.len() - 4);
        let mut bytes = prefix_bytes;
        bytes.extend_from_slice(payload);
        if checksum(&bytes) != sum {
            return Err("invalid address checksum");
        }
        Address::from_bytes(&bytes)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_on(Network::Mainnet))
    }
}

impl std::str::FromStr for Address {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

fn validate_payload(proto: u8, payload: &[u8]) -> Result<(), &'static str> {
    match proto {
        0 => {
            let (v, n) = varint::get(payload)?;
            if n != payload.len() {
                return Err("different varint length");
            }
            if v > i64::MAX as u64 {
                return Err("id addresses must be less than 2^63");
            }
        }
        1 | 2 if payload.len() != 20 => return Err("invalid payload length"),
        3 if payload.len() != 48 => return Err("invalid payload length"),
        1..=3 => {}
        4 => {
            let (ns, n) = varint::get(payload)?;
            if ns > i64::MAX as u64 {
                return Err("namespace id must be less than 2^63");
            }
            if payload.len() - n > MAX_SUBADDRESS_LEN {
                return Err("invalid payload length");
            }
        }
        _ => return Err("unknown address protocol"),
    }
    Ok(())
}

/// The 4-byte blake2b checksum over `protocol ‖ payload`.
fn checksum(bytes: &[u8]) -> [u8; 4] {
    let h = blake2b_simd::Params::new().hash_length(4).hash(bytes);
    let mut out = [0; 4];
    out.copy_from_slice(h.as_bytes());
    out
}

pub(crate) fn base32_lower(data: &[u8]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(data)
        .to_ascii_lowercase()
}

pub(crate) fn base32_decode(s: &str) -> Option<Vec<u8>> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    data_encoding::BASE32_NOPAD
        .decode(s.to_ascii_uppercase().as_bytes())
        .ok()
}

impl Cbor for Address {
    const NAME: &'static str = "Address";
    fn write(&self, w: &mut Writer) {
        w.bytes(&self.bytes);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let b = r.bytes(MAX_ADDRESS_LEN)?;
        if b.is_empty() {
            return Err(WireError::at("", ErrorKind::InvalidAddress(EMPTY_ADDRESS)));
        }
        Address::from_bytes(b).map_err(|e| WireError::at("", ErrorKind::InvalidAddress(e)))
    }
}
