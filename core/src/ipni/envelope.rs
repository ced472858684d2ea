//! The signed envelope of an advertisement's `Signature` (go-libp2p `core/record`, as
//! go-libipni `ingest/schema/envelope.go` uses it) and the peer ID of a public key.
//!
//! Signed bytes: for each of the domain (`"indexer"`), the payload type
//! (`"/indexer/ingest/adSignature"`) and the payload, its length as an unsigned varint
//! then the bytes. Envelope: protobuf with `public_key` (1, the libp2p `PublicKey`
//! message), `payload_type` (2), `payload` (3), `signature` (5), written in field order.
use crate::wire::varint;

/// go-libipni `adSignatureDomain`.
pub const AD_SIGNATURE_DOMAIN: &str = "indexer";
/// go-libipni `adSignatureCodec`: the envelope's payload type.
pub const AD_SIGNATURE_CODEC: &str = "/indexer/ingest/adSignature";

/// Who signs: a libp2p key (the node keeps the secret; core only asks for signatures).
pub trait Signer {
    /// The public key as the libp2p protobuf `PublicKey` message.
    fn public_key(&self) -> Vec<u8>;
    fn sign(&self, msg: &[u8]) -> Vec<u8>;
}

/// The bytes a record envelope's signature covers (go-libp2p `makeUnsigned`).
pub fn unsigned_bytes(domain: &str, payload_type: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(domain.len() + payload_type.len() + payload.len() + 6);
    for field in [domain.as_bytes(), payload_type, payload] {
        varint::put(&mut out, field.len() as u64);
        out.extend_from_slice(field);
    }
    out
}

/// A parsed envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub public_key: Vec<u8>,
    pub payload_type: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Envelope {
    /// Seal `payload` under the advertisement domain and payload type with `signer`.
    pub fn seal_ad(payload: &[u8], signer: &dyn Signer) -> Envelope {
        let signature = signer.sign(&unsigned_bytes(
            AD_SIGNATURE_DOMAIN,
            AD_SIGNATURE_CODEC.as_bytes(),
            payload,
        ));
        Envelope {
            public_key: signer.public_key(),
            payload_type: AD_SIGNATURE_CODEC.as_bytes().to_vec(),
            payload: payload.to_vec(),
            signature,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (field, bytes) in [
            (1u64, &self.public_key),
            (2, &self.payload_type),
            (3, &self.payload),
            (5, &self.signature),
        ] {
            varint::put(&mut out, (field << 3) | 2);
            varint::put(&mut out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Parse an envelope (unknown fields skipped, as protobuf readers do).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, String> {
        let mut env = Envelope {
            public_key: Vec::new(),
            payload_type: Vec::new(),
            payload: Vec::new(),
            signature: Vec::new(),
        };
        for (field, value) in protobuf_fields(bytes)? {
            match (field, value) {
                (1, Value::Len(b)) => env.public_key = b.to_vec(),
                (2, Value::Len(b)) => env.payload_type = b.to_vec(),
                (3, Value::Len(b)) => env.payload = b.to_vec(),
                (5, Value::Len(b)) => env.signature = b.to_vec(),
                (1 | 2 | 3 | 5, _) => {
                    return Err(format!("envelope field {field}: wrong wire type"))
                }
                _ => {}
            }
        }
        Ok(env)
    }
}

/// A protobuf field value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message, in order.
pub fn protobuf_fields(mut bytes: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (key, n) = varint::get(bytes).map_err(|e| format!("protobuf key: {e}"))?;
        bytes = &bytes[n..];
        let value = match key & 7 {
            0 => {
                let (v, n) = varint::get(bytes).map_err(|e| format!("protobuf varint: {e}"))?;
                bytes = &bytes[n..];
                Value::Varint(v)
            }
            2 => {
                let (len, n) = varint::get(bytes).map_err(|e| format!("protobuf length: {e}"))?;
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| n.checked_add(l))
                    .filter(|&e| e <= bytes.len())
                    .ok_or("protobuf field longer than the message")?;
                let v = &bytes[n..end];
                bytes = &bytes[end..];
                Value::Len(v)
            }
            1 | 5 => {
                let width = if key & 7 == 1 { 8 } else { 4 };
                if bytes.len() < width {
                    return Err("protobuf fixed field truncated".into());
                }
                bytes = &bytes[width..];
                Value::Fixed
            }
            t => return Err(format!("protobuf wire type {t} not supported")),
        };
        out.push((key >> 3, value));
    }
    Ok(out)
}

/// libp2p's key type numbers (`crypto.pb` `KeyType`).
pub const KEY_TYPE_ED25519: u64 = 1;

/// The protobuf `PublicKey` message of an Ed25519 key.
pub fn ed25519_public_key(raw: &[u8; 32]) -> Vec<u8> {
    let mut out = vec![0x08, KEY_TYPE_ED25519 as u8, 0x12, 32];
    out.extend_from_slice(raw);
    out
}

/// The peer ID (base58btc string) of a protobuf public key: the identity multihash of
/// the key when it is at most 42 bytes (Ed25519), else its sha2-256 multihash.
pub fn peer_id_of(public_key: &[u8]) -> String {
    use sha2::Digest;
    let mut mh = Vec::with_capacity(40);
    if public_key.len() <= 42 {
        mh.push(0x00);
        varint::put(&mut mh, public_key.len() as u64);
        mh.extend_from_slice(public_key);
    } else {
        mh.extend_from_slice(&[0x12, 0x20]);
        mh.extend_from_slice(&sha2::Sha256::digest(public_key));
    }
    bs58::encode(mh).into_string()
}
