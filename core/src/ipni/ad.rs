//! Advertisements and entry chunks (ipni/specs IPNI.md "Advertisements"; go-libipni
//! `ingest/schema/schema.ipldsch`), their signature (go-libipni `signaturePayload`), and
//! the chunker that cuts a piece's multihashes into entry chunks under the spec's limits.
use super::envelope::{Envelope, Signer, AD_SIGNATURE_CODEC};
use super::ipld::Ipld;
use super::{Block, CODEC_DAG_JSON};
use crate::wire::cid::{CODEC_RAW, MH_SHA2_256};
use crate::wire::Cid;
use sha2::{Digest, Sha256};

/// go-libipni `MaxContextIDLen`.
pub const MAX_CONTEXT_ID_LEN: usize = 64;
/// go-libipni `MaxMetadataLen`.
pub const MAX_METADATA_LEN: usize = 1024;
/// Multihashes per entry chunk (index-provider's default `EntriesChunkSize`).
pub const MAX_CHUNK_ENTRIES: usize = 16384;
/// Our cap on one chunk's dag-json size: half the spec's 4 MB per chunk, so even long
/// multihashes stay far below what indexers accept.
pub const MAX_CHUNK_BYTES: usize = 2 << 20;
/// Chunks one advertisement links at most (spec: "no more than 400 chunks long");
/// past this a piece's entries continue in a further advertisement, same ContextID.
pub const MAX_CHUNKS_PER_AD: usize = 400;
/// Longest multihash taken into an entry chunk (the longest a CID here may carry).
pub const MAX_MULTIHASH_LEN: usize = 128;

/// An advertisement, without `ExtendedProvider` (dealport never sets one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    pub previous: Option<Cid>,
    /// The provider's peer ID string.
    pub provider: String,
    pub addresses: Vec<String>,
    /// The marshalled signature envelope.
    pub signature: Vec<u8>,
    pub entries: Cid,
    pub context_id: Vec<u8>,
    pub metadata: Vec<u8>,
    pub is_rm: bool,
}

/// One link of an entries chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChunk {
    pub entries: Vec<Vec<u8>>,
    pub next: Option<Cid>,
}

/// go-libipni `NoEntries`: raw CIDv1 of the 16-byte truncated sha2-256 of nothing, the
/// `Entries` of a removal (and of an advertisement with no multihashes).
pub fn no_entries() -> Cid {
    Cid::v1(CODEC_RAW, MH_SHA2_256, &Sha256::digest(b"")[..16])
}

/// The dag-json sha2-256 CID of `bytes` (go-libipni `Linkproto`).
pub fn dag_json_cid(bytes: &[u8]) -> Cid {
    Cid::v1(CODEC_DAG_JSON, MH_SHA2_256, &Sha256::digest(bytes))
}

fn block(node: &Ipld) -> Block {
    let bytes = node.to_dag_json();
    Block {
        cid: dag_json_cid(&bytes),
        bytes,
    }
}

/// Why an object is not a valid advertisement or entry chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

fn field<'a>(node: &'a Ipld, name: &str) -> Result<&'a Ipld, ShapeError> {
    node.get(name)
        .ok_or_else(|| ShapeError(format!("missing field {name}")))
}

fn bytes_of(node: &Ipld, name: &str) -> Result<Vec<u8>, ShapeError> {
    match field(node, name)? {
        Ipld::Bytes(b) => Ok(b.clone()),
        _ => Err(ShapeError(format!("{name}: expected bytes"))),
    }
}

fn link_of(v: &Ipld, name: &str) -> Result<Cid, ShapeError> {
    match v {
        Ipld::Link(c) => Ok(c.clone()),
        _ => Err(ShapeError(format!("{name}: expected a link"))),
    }
}

impl Advertisement {
    pub fn to_ipld(&self) -> Ipld {
        let mut m = vec![
            ("Provider".to_owned(), Ipld::String(self.provider.clone())),
            (
                "Addresses".to_owned(),
                Ipld::List(self.addresses.iter().cloned().map(Ipld::String).collect()),
            ),
            ("Signature".to_owned(), Ipld::Bytes(self.signature.clone())),
            ("Entries".to_owned(), Ipld::Link(self.entries.clone())),
            ("ContextID".to_owned(), Ipld::Bytes(self.context_id.clone())),
            ("Metadata".to_owned(), Ipld::Bytes(self.metadata.clone())),
            ("IsRm".to_owned(), Ipld::Bool(self.is_rm)),
        ];
        if let Some(p) = &self.previous {
            m.push(("PreviousID".to_owned(), Ipld::Link(p.clone())));
        }
        Ipld::Map(m)
    }

    pub fn from_ipld(node: &Ipld) -> Result<Advertisement, ShapeError> {
        let previous = node
            .get("PreviousID")
            .map(|v| link_of(v, "PreviousID"))
            .transpose()?;
        let provider = match field(node, "Provider")? {
            Ipld::String(s) => s.clone(),
            _ => return Err(ShapeError("Provider: expected a string".into())),
        };
        let addresses = match field(node, "Addresses")? {
            Ipld::List(items) => items
                .iter()
                .map(|a| match a {
                    Ipld::String(s) => Ok(s.clone()),
                    _ => Err(ShapeError("Addresses: expected strings".into())),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ShapeError("Addresses: expected a list".into())),
        };
        let is_rm = match field(node, "IsRm")? {
            Ipld::Bool(b) => *b,
            _ => return Err(ShapeError("IsRm: expected a bool".into())),
        };
        Ok(Advertisement {
            previous,
            provider,
            addresses,
            signature: bytes_of(node, "Signature")?,
            entries: link_of(field(node, "Entries")?, "Entries")?,
            context_id: bytes_of(node, "ContextID")?,
            metadata: bytes_of(node, "Metadata")?,
            is_rm,
        })
    }

    /// The multihash (sha2-256) the signature envelope carries: over PreviousID's bytes
    /// (none for the first), Entries' bytes, Provider, each address, Metadata and IsRm
    /// as one byte, concatenated. ContextID is not covered (as in go-libipni).
    pub fn signature_payload(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        if let Some(p) = &self.previous {
            h.update(p.as_bytes());
        }
        h.update(self.entries.as_bytes());
        h.update(self.provider.as_bytes());
        for a in &self.addresses {
            h.update(a.as_bytes());
        }
        h.update(&self.metadata);
        h.update([u8::from(self.is_rm)]);
        let mut mh = vec![0x12, 0x20];
        mh.extend_from_slice(&h.finalize());
        mh
    }

    /// Sign with `signer` (sets `signature`) and return the block.
    pub fn sign(mut self, signer: &dyn Signer) -> (Advertisement, Block) {
        self.signature = Envelope::seal_ad(&self.signature_payload(), signer).to_bytes();
        let b = block(&self.to_ipld());
        (self, b)
    }

    /// The signer's public key if the signature envelope is well formed, of the ad
    /// payload type, and carries this advertisement's payload. The caller verifies the
    /// signature itself over [`super::envelope::unsigned_bytes`].
    pub fn check_envelope(&self) -> Result<Envelope, ShapeError> {
        let env = Envelope::parse(&self.signature).map_err(ShapeError)?;
        if env.payload_type != AD_SIGNATURE_CODEC.as_bytes() {
            return Err(ShapeError(
                "signature: not an advertisement envelope".into(),
            ));
        }
        if env.payload != self.signature_payload() {
            return Err(ShapeError(
                "signature: the envelope's payload is not this advertisement's".into(),
            ));
        }
        Ok(env)
    }

    pub fn from_dag_json(bytes: &[u8]) -> Result<Advertisement, ShapeError> {
        Advertisement::from_ipld(&Ipld::from_dag_json(bytes).map_err(ShapeError)?)
    }
}

impl EntryChunk {
    pub fn to_ipld(&self) -> Ipld {
        let mut m = vec![(
            "Entries".to_owned(),
            Ipld::List(self.entries.iter().cloned().map(Ipld::Bytes).collect()),
        )];
        if let Some(n) = &self.next {
            m.push(("Next".to_owned(), Ipld::Link(n.clone())));
        }
        Ipld::Map(m)
    }

    pub fn from_ipld(node: &Ipld) -> Result<EntryChunk, ShapeError> {
        let entries = match field(node, "Entries")? {
            Ipld::List(items) => items
                .iter()
                .map(|e| match e {
                    Ipld::Bytes(b) => Ok(b.clone()),
                    _ => Err(ShapeError("Entries: expected bytes".into())),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(ShapeError("Entries: expected a list".into())),
        };
        let next = node.get("Next").map(|v| link_of(v, "Next")).transpose()?;
        Ok(EntryChunk { entries, next })
    }

    pub fn from_dag_json(bytes: &[u8]) -> Result<EntryChunk, ShapeError> {
        EntryChunk::from_ipld(&Ipld::from_dag_json(bytes).map_err(ShapeError)?)
    }
}

/// Bytes one multihash adds to a chunk's dag-json (base64 and the `{"/":{"bytes":…}}`).
fn json_cost(mh: &[u8]) -> usize {
    mh.len().div_ceil(3) * 4 + 16
}

/// Cuts a stream of multihashes into entry chunks, each linking the one before
/// (the chain a reader walks from the advertisement backwards through the stream), and
/// into advertisements of at most [`MAX_CHUNKS_PER_AD`] chunks. One chunk in memory.
#[derive(Debug)]
pub struct Chunker {
    max_entries: usize,
    max_chunks: usize,
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    /// The last chunk finished for the current advertisement.
    last: Option<Cid>,
    chunks_in_ad: usize,
}

/// What [`Chunker::push`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// A finished chunk to store.
    pub chunk: Option<Block>,
    /// The current advertisement is full: its entries link, to advertise now; the next
    /// multihashes start a new chain.
    pub ad_full: Option<Cid>,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker::new()
    }
}

impl Chunker {
    pub fn new() -> Chunker {
        Chunker::with_limits(MAX_CHUNK_ENTRIES, MAX_CHUNKS_PER_AD)
    }

    /// Smaller limits (tests; both at least 1, at most the spec's).
    pub fn with_limits(max_entries: usize, max_chunks: usize) -> Chunker {
        Chunker {
            max_entries: max_entries.clamp(1, MAX_CHUNK_ENTRIES),
            max_chunks: max_chunks.clamp(1, MAX_CHUNKS_PER_AD),
            pending: Vec::new(),
            pending_bytes: 0,
            last: None,
            chunks_in_ad: 0,
        }
    }

    /// Take one multihash. Over-long ones are refused (the caller skips them).
    pub fn push(&mut self, mh: Vec<u8>) -> Result<Pushed, ShapeError> {
        if mh.is_empty() || mh.len() > MAX_MULTIHASH_LEN {
            return Err(ShapeError(format!(
                "a multihash of {} bytes (at most {MAX_MULTIHASH_LEN})",
                mh.len()
            )));
        }
        let cost = json_cost(&mh);
        let mut out = Pushed::default();
        if self.pending.len() >= self.max_entries || self.pending_bytes + cost > MAX_CHUNK_BYTES {
            out.chunk = self.cut();
            if self.chunks_in_ad >= self.max_chunks {
                out.ad_full = self.last.take();
                self.chunks_in_ad = 0;
            }
        }
        self.pending_bytes += cost;
        self.pending.push(mh);
        Ok(out)
    }

    fn cut(&mut self) -> Option<Block> {
        if self.pending.is_empty() {
            return None;
        }
        let chunk = EntryChunk {
            entries: std::mem::take(&mut self.pending),
            next: self.last.take(),
        };
        self.pending_bytes = 0;
        let b = block(&chunk.to_ipld());
        self.last = Some(b.cid.clone());
        self.chunks_in_ad += 1;
        Some(b)
    }

    /// The last chunk (if any multihashes are pending) and the entries link of the last
    /// advertisement ([`no_entries`] when it has none).
    pub fn finish(mut self) -> (Option<Block>, Cid) {
        let chunk = self.cut();
        (chunk, self.last.unwrap_or_else(no_entries))
    }
}
