//! IPNI, the network indexer: the advertisement chain a provider publishes so that
//! retrieval clients can find which provider holds a CID (docs/ipni.md cites the
//! sources: ipni/specs IPNI.md and IPNI_HTTP_PROVIDER.md, go-libipni).
//!
//! Pure builders: [`ad`] (advertisements, entry chunks, their signature, the chunker),
//! [`envelope`] (the libp2p signed envelope, peer IDs), [`ipld`] (dag-json and dag-cbor),
//! and here the metadata, the signed head and the announce message. Objects are
//! identified as go-libipni does (`Linkproto`): dag-json codec, sha2-256.
pub mod ad;
pub mod envelope;
pub mod ipld;
pub mod plan;

use crate::wire::{varint, Cid};
use envelope::Signer;
use ipld::Ipld;

pub use ad::{Advertisement, Chunker, EntryChunk};

/// The dag-json multicodec (go-libipni's link prototype).
pub const CODEC_DAG_JSON: u64 = 0x0129;
/// multicodec `transport-ipfs-gateway-http`: the trustless gateway (`/ipfs/<cid>`).
pub const TRANSPORT_IPFS_GATEWAY_HTTP: u64 = 0x0920;
/// multicodec `transport-filecoin-piece-http`: `/piece/<pieceCid>`.
pub const TRANSPORT_FILECOIN_PIECE_HTTP: u64 = 0x0930;
/// The topic a head names when none is configured (IPNI_HTTP_PROVIDER.md).
pub const DEFAULT_TOPIC: &str = "/indexer/ingest/mainnet";

/// An encoded object and its CID (the CID is over exactly these bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub cid: Cid,
    pub bytes: Vec<u8>,
}

/// `Metadata` naming `transports` (multicodec codes): each as its uvarint code and an
/// empty payload (uvarint 0), in increasing order, as go-libipni `metadata` writes
/// `IpfsGatewayHttp` and `FilecoinPieceHttp`.
pub fn metadata(transports: &[u64]) -> Vec<u8> {
    let mut codes = transports.to_vec();
    codes.sort_unstable();
    codes.dedup();
    let mut out = Vec::new();
    for c in codes {
        varint::put(&mut out, c);
        varint::put(&mut out, 0);
    }
    out
}

/// What one advertisement says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdContent {
    pub entries: Cid,
    /// The piece CID's bytes.
    pub context_id: Vec<u8>,
    pub metadata: Vec<u8>,
    pub addresses: Vec<String>,
    pub is_rm: bool,
}

/// Why an advertisement cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdError {
    #[error("the context ID is {0} bytes, more than IPNI's {max}", max = ad::MAX_CONTEXT_ID_LEN)]
    ContextIdTooLong(usize),
    #[error("the metadata is {0} bytes, more than IPNI's {max}", max = ad::MAX_METADATA_LEN)]
    MetadataTooLong(usize),
}

/// The next advertisement of the chain after `previous`, signed by `signer` (whose
/// peer ID is the provider).
pub fn build_ad(
    previous: Option<Cid>,
    content: AdContent,
    signer: &dyn Signer,
) -> Result<(Advertisement, Block), AdError> {
    if content.context_id.len() > ad::MAX_CONTEXT_ID_LEN {
        return Err(AdError::ContextIdTooLong(content.context_id.len()));
    }
    if content.metadata.len() > ad::MAX_METADATA_LEN {
        return Err(AdError::MetadataTooLong(content.metadata.len()));
    }
    let unsigned = Advertisement {
        previous,
        provider: envelope::peer_id_of(&signer.public_key()),
        addresses: content.addresses,
        signature: Vec::new(),
        entries: content.entries,
        context_id: content.context_id,
        metadata: content.metadata,
        is_rm: content.is_rm,
    };
    Ok(unsigned.sign(signer))
}

/// The bytes a head's `sig` covers: the head CID's bytes, then the topic's.
pub fn head_signed_bytes(head: &Cid, topic: Option<&str>) -> Vec<u8> {
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(topic.unwrap_or("").as_bytes());
    out
}

/// The signed head message (`SignedHead`: head, topic, pubkey, sig), as an IPLD map.
pub fn signed_head(head: &Cid, topic: Option<&str>, signer: &dyn Signer) -> Ipld {
    let mut m = vec![
        ("head".to_owned(), Ipld::Link(head.clone())),
        ("pubkey".to_owned(), Ipld::Bytes(signer.public_key())),
        (
            "sig".to_owned(),
            Ipld::Bytes(signer.sign(&head_signed_bytes(head, topic))),
        ),
    ];
    if let Some(t) = topic.filter(|t| !t.is_empty()) {
        m.push(("topic".to_owned(), Ipld::String(t.to_owned())));
    }
    Ipld::Map(m)
}

/// The announce message's JSON (go-libipni `announce/message.Message` through Go's
/// encoding/json, as its HTTP sender's `SendJson` writes it): `Cid` as `{"/": cid}`,
/// `Addrs` as standard base64 of each binary multiaddr (which ends in `/p2p/<peer>`),
/// `ExtraData` base64 or null, `OrigPeer` empty.
pub fn announce_json(ad: &Cid, addrs: &[Vec<u8>]) -> Vec<u8> {
    use data_encoding::BASE64;
    let addrs: Vec<String> = addrs.iter().map(|a| BASE64.encode(a)).collect();
    serde_json::json!({
        "Cid": {"/": ad.to_string()},
        "Addrs": addrs,
        "ExtraData": null,
        "OrigPeer": "",
    })
    .to_string()
    .into_bytes()
}
