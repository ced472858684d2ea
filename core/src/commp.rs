//! Piece commitment (CommP): fr32 padding, then the sha2-256-trunc254 binary Merkle tree
//! over the padded bytes, up to the deal's padded piece size with zero padding.
//!
//! Fed in chunks as the data arrives; the whole state between chunks is a partial
//! 127-byte quad plus one node per tree level, so it can be saved beside a partial
//! download ([`CommP::snapshot`]) and a resumed download does not hash anything twice.
use sha2::{Digest, Sha256};

use crate::wire::cid::{Cid, CODEC_FIL_COMMITMENT_UNSEALED, MH_SHA2_256_TRUNC254_PADDED};

/// One tree node: 32 bytes, the last two bits of the last byte always zero.
pub type Node = [u8; 32];

/// fr32: 127 input bytes become 128 output bytes (four 254-bit field elements).
const QUAD_IN: usize = 127;
const QUAD_OUT: usize = 128;
/// Highest tree level handled: 2^40 leaves of 32 bytes = 32 TiB, far above any sector.
const MAX_LEVEL: usize = 40;

/// Why a commitment cannot be computed for the requested size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommpError {
    #[error("padded piece size {0} is not a power of two of at least 128 bytes")]
    BadPieceSize(u64),
    #[error(
        "{written} bytes do not fit in a piece of padded size {padded} (at most {capacity} bytes)"
    )]
    TooMuchData {
        written: u64,
        padded: u64,
        capacity: u64,
    },
    #[error("snapshot is malformed")]
    BadSnapshot,
}

/// sha2-256 of `left ‖ right` with the two most significant bits cleared.
fn parent(left: &Node, right: &Node) -> Node {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    let mut out: Node = h.finalize().into();
    out[31] &= 0x3f;
    out
}

/// The commitment of an all-zero subtree at each level (level 0: one zero leaf).
fn zero_nodes() -> [Node; MAX_LEVEL + 1] {
    let mut z = [[0u8; 32]; MAX_LEVEL + 1];
    for i in 1..=MAX_LEVEL {
        z[i] = parent(&z[i - 1], &z[i - 1]);
    }
    z
}

/// The root of an all-zero piece of `padded` bytes.
pub fn zero_piece_root(padded: u64) -> Result<Node, CommpError> {
    Ok(zero_nodes()[tree_height(padded)?])
}

/// Levels above the leaves for a padded piece size.
fn tree_height(padded: u64) -> Result<usize, CommpError> {
    if padded < 128 || !padded.is_power_of_two() {
        return Err(CommpError::BadPieceSize(padded));
    }
    let h = (padded / 32).trailing_zeros() as usize;
    if h > MAX_LEVEL {
        return Err(CommpError::BadPieceSize(padded));
    }
    Ok(h)
}

/// fr32-expand one 127-byte quad into 128 bytes: each 254-bit run of the input goes
/// into its own 32-byte element, little-endian, with the top two bits zero.
fn fr32_quad(input: &[u8; QUAD_IN], out: &mut [u8; QUAD_OUT]) {
    let at = |i: usize| input.get(i).copied().unwrap_or(0);
    out[..31].copy_from_slice(&input[..31]);
    out[31] = input[31] & 0x3f;
    for j in 0..32 {
        out[32 + j] = (at(31 + j) >> 6) | (at(32 + j) << 2);
        out[64 + j] = (at(63 + j) >> 4) | (at(64 + j) << 4);
        out[96 + j] = (at(95 + j) >> 2) | (at(96 + j) << 6);
    }
    out[63] &= 0x3f;
    out[95] &= 0x3f;
    out[127] &= 0x3f;
}

/// The piece CID (CIDv1, fil-commitment-unsealed, sha2-256-trunc254-padded) of a root.
pub fn piece_cid(root: &Node) -> Cid {
    Cid::v1(
        CODEC_FIL_COMMITMENT_UNSEALED,
        MH_SHA2_256_TRUNC254_PADDED,
        root,
    )
}

/// A CommP computation fed in chunks.
#[derive(Debug, Clone)]
pub struct CommP {
    quad: [u8; QUAD_IN],
    quad_len: usize,
    /// Roots of complete left subtrees, by level, lowest level last (a binary counter).
    stack: Vec<(u8, Node)>,
    written: u64,
}

impl Default for CommP {
    fn default() -> Self {
        Self::new()
    }
}

impl CommP {
    pub fn new() -> Self {
        CommP {
            quad: [0; QUAD_IN],
            quad_len: 0,
            stack: Vec::with_capacity(MAX_LEVEL + 1),
            written: 0,
        }
    }

    /// Unpadded bytes fed so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Feed the next bytes of the piece's data.
    pub fn update(&mut self, mut data: &[u8]) {
        self.written += data.len() as u64;
        if self.quad_len > 0 {
            let take = (QUAD_IN - self.quad_len).min(data.len());
            self.quad[self.quad_len..self.quad_len + take].copy_from_slice(&data[..take]);
            self.quad_len += take;
            data = &data[take..];
            if self.quad_len < QUAD_IN {
                return;
            }
            let quad = self.quad;
            self.push_quad(&quad);
            self.quad_len = 0;
        }
        let mut chunks = data.chunks_exact(QUAD_IN);
        for q in &mut chunks {
            let mut quad = [0u8; QUAD_IN];
            quad.copy_from_slice(q);
            self.push_quad(&quad);
        }
        let rest = chunks.remainder();
        self.quad[..rest.len()].copy_from_slice(rest);
        self.quad_len = rest.len();
    }

    fn push_quad(&mut self, quad: &[u8; QUAD_IN]) {
        let mut out = [0u8; QUAD_OUT];
        fr32_quad(quad, &mut out);
        for leaf in out.chunks_exact(32) {
            let mut node = [0u8; 32];
            node.copy_from_slice(leaf);
            self.push_node(0, node);
        }
    }

    fn push_node(&mut self, mut level: u8, mut node: Node) {
        while let Some(&(top_level, ref top)) = self.stack.last() {
            if top_level != level {
                break;
            }
            node = parent(top, &node);
            level += 1;
            self.stack.pop();
        }
        self.stack.push((level, node));
    }

    /// The root for a piece of `padded` bytes: the data fed so far, zero-padded.
    pub fn finish(&self, padded: u64) -> Result<Node, CommpError> {
        let height = tree_height(padded)?;
        let capacity = padded / 128 * 127;
        if self.written > capacity {
            return Err(CommpError::TooMuchData {
                written: self.written,
                padded,
                capacity,
            });
        }
        let mut this = self.clone();
        if this.quad_len > 0 {
            let mut quad = [0u8; QUAD_IN];
            quad[..this.quad_len].copy_from_slice(&this.quad[..this.quad_len]);
            this.push_quad(&quad);
        }
        let zeros = zero_nodes();
        // Everything after a stacked subtree is its right side: fold from the top,
        // raising the running right part with zero subtrees to meet each left sibling.
        let mut acc: Option<(usize, Node)> = None;
        while let Some((level, left)) = this.stack.pop() {
            let level = usize::from(level);
            acc = Some(match acc {
                None => (level, left),
                Some((mut l, mut right)) => {
                    while l < level {
                        right = parent(&right, &zeros[l]);
                        l += 1;
                    }
                    (level + 1, parent(&left, &right))
                }
            });
        }
        let (mut l, mut root) = acc.unwrap_or((height, zeros[height]));
        while l < height {
            root = parent(&root, &zeros[l]);
            l += 1;
        }
        Ok(root)
    }

    /// The computation's state as bytes, to keep beside a partial download.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 1 + self.quad_len + 1 + self.stack.len() * 33);
        out.extend_from_slice(&self.written.to_be_bytes());
        out.push(self.quad_len as u8);
        out.extend_from_slice(&self.quad[..self.quad_len]);
        out.push(self.stack.len() as u8);
        for (level, node) in &self.stack {
            out.push(*level);
            out.extend_from_slice(node);
        }
        out
    }

    /// Continue from a [`snapshot`](Self::snapshot).
    pub fn restore(bytes: &[u8]) -> Result<Self, CommpError> {
        let bad = || CommpError::BadSnapshot;
        let (written, rest) = bytes.split_first_chunk::<8>().ok_or_else(bad)?;
        let (&quad_len, rest) = rest.split_first().ok_or_else(bad)?;
        let quad_len = usize::from(quad_len);
        if quad_len >= QUAD_IN || rest.len() < quad_len {
            return Err(bad());
        }
        let (quad_bytes, rest) = rest.split_at(quad_len);
        let (&n, mut rest) = rest.split_first().ok_or_else(bad)?;
        let mut c = CommP::new();
        c.written = u64::from_be_bytes(*written);
        c.quad[..quad_len].copy_from_slice(quad_bytes);
        c.quad_len = quad_len;
        for _ in 0..n {
            let (&level, tail) = rest.split_first().ok_or_else(bad)?;
            let (node, tail) = tail.split_first_chunk::<32>().ok_or_else(bad)?;
            if usize::from(level) > MAX_LEVEL || c.stack.last().is_some_and(|(l, _)| *l <= level) {
                return Err(bad());
            }
            c.stack.push((level, *node));
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(bad());
        }
        Ok(c)
    }
}
