//! A split-block Bloom filter: "is this key possibly in the set?" with no false "no".
//!
//! The layout is Parquet's (parquet-format `BloomFilter.md`): the filter is an array of
//! 256-bit blocks of eight 32-bit words; a key picks one block with the top half of its
//! 64-bit hash and sets one bit in each word with the bottom half times eight fixed odd
//! salts. A probe touches one block (half a cache line), so asking many filters stays
//! cheap. Parquet hashes with xxHash64; this filter hashes with FNV-1a and splitmix64's
//! finalizer, both fixed here, because its bytes are stored and must mean the same to
//! every later build.
//!
//! At 24 bits a key (what [`Bloom::with_capacity`] sizes for) about 1 key in 6,000 that
//! is not in the set is reported as possibly in it (at 16 bits, the first format, 1 in
//! 750). A store of a million deals asks some sixty filters about each key, and each
//! wrong "maybe" costs a read of a leaf sled has long paged out (BENCHMARKS.md, "Filters
//! of 24 bits a key").

/// Parquet's salts (parquet-format `BloomFilter.md`, "Technical Approach").
const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// Bits of filter per key it is sized for.
const BITS_PER_KEY: usize = 24;
const BLOCK_BITS: usize = 256;
/// The format byte that starts [`Bloom::to_bytes`]. Format 1 was the same layout sized
/// at 16 bits a key; its filters are not read, so a store rebuilds them at this size
/// (filters of one kind are stacked only when their sizes match).
const FORMAT: u8 = 2;

/// A split-block Bloom filter over byte strings.
#[derive(Clone, PartialEq, Eq)]
pub struct Bloom {
    blocks: Vec<[u32; 8]>,
}

impl std::fmt::Debug for Bloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bloom({} blocks)", self.blocks.len())
    }
}

impl Bloom {
    /// An empty filter sized for `keys` keys (at least one block).
    pub fn with_capacity(keys: usize) -> Bloom {
        let blocks = keys
            .saturating_mul(BITS_PER_KEY)
            .div_ceil(BLOCK_BITS)
            .max(1);
        Bloom {
            blocks: vec![[0; 8]; blocks],
        }
    }

    pub fn insert(&mut self, key: &[u8]) {
        let (block, mask) = place(KeyHash::of(key), self.blocks.len());
        for (word, bit) in self.blocks[block].iter_mut().zip(mask) {
            *word |= bit;
        }
    }

    /// False only if `key` was never inserted.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(KeyHash::of(key))
    }

    /// [`Bloom::may_contain`] for a key hashed once to ask many filters.
    pub fn may_contain_hash(&self, key: KeyHash) -> bool {
        let (block, mask) = place(key, self.blocks.len());
        holds(&self.blocks[block], &mask)
    }

    /// Bytes of the filter's memory.
    pub fn size_bytes(&self) -> usize {
        self.blocks.len() * 32
    }

    /// The filter as bytes: a format byte, then each word little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.size_bytes());
        out.push(FORMAT);
        for word in self.blocks.iter().flatten() {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// A filter from [`Bloom::to_bytes`]; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Bloom> {
        let (&format, words) = bytes.split_first()?;
        if format != FORMAT || words.is_empty() || words.len() % 32 != 0 {
            return None;
        }
        let blocks = words
            .chunks_exact(32)
            .map(|b| {
                let mut block = [0u32; 8];
                for (w, c) in block.iter_mut().zip(b.chunks_exact(4)) {
                    *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                block
            })
            .collect();
        Some(Bloom { blocks })
    }
}

/// The block `key` lives in (of `blocks`) and the bit it sets in each of the block's words.
fn place(key: KeyHash, blocks: usize) -> (usize, [u32; 8]) {
    let h = key.0;
    let block = (((h >> 32) * blocks as u64) >> 32) as usize;
    let low = h as u32;
    (block, SALT.map(|s| 1u32 << (low.wrapping_mul(s) >> 27)))
}

fn holds(block: &[u32; 8], mask: &[u32; 8]) -> bool {
    block.iter().zip(mask).all(|(word, bit)| word & bit != 0)
}

/// Filters of one size kept block by block: block `b` of every filter side by side, so
/// asking all of them about a key reads one run of memory (which the CPU prefetches)
/// instead of a cache line in each.
#[derive(Clone, Default)]
pub struct BloomStack {
    blocks_per_filter: usize,
    filters: usize,
    /// Block `b` of filter `i` at `b * filters + i`.
    blocks: Vec<[u32; 8]>,
}

impl std::fmt::Debug for BloomStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BloomStack({} filters of {} blocks)",
            self.filters, self.blocks_per_filter
        )
    }
}

impl BloomStack {
    /// An empty stack for filters the size [`Bloom::with_capacity`] gives for `keys`.
    pub fn for_capacity(keys: usize) -> BloomStack {
        BloomStack {
            blocks_per_filter: Bloom::with_capacity(keys).blocks.len(),
            filters: 0,
            blocks: Vec::new(),
        }
    }

    /// How many filters are stacked.
    pub fn len(&self) -> usize {
        self.filters
    }

    pub fn is_empty(&self) -> bool {
        self.filters == 0
    }

    /// Stack `f` as the next filter, if it is this stack's size (else it is given back).
    /// Copies the stack: meant for adding a filter now and then.
    pub fn push(&mut self, f: Bloom) -> Result<(), Bloom> {
        if f.blocks.len() != self.blocks_per_filter {
            return Err(f);
        }
        let n = self.filters;
        let mut blocks = Vec::with_capacity(self.blocks_per_filter * (n + 1));
        for (b, added) in f.blocks.iter().enumerate() {
            blocks.extend_from_slice(&self.blocks[b * n..(b + 1) * n]);
            blocks.push(*added);
        }
        self.blocks = blocks;
        self.filters = n + 1;
        Ok(())
    }

    /// The positions (in the order pushed) of the filters that may hold the key.
    pub fn may_contain(&self, key: KeyHash) -> impl Iterator<Item = usize> + '_ {
        let (block, mask) = place(key, self.blocks_per_filter);
        let n = self.filters;
        self.blocks[block * n..(block + 1) * n]
            .iter()
            .enumerate()
            .filter(move |(_, b)| holds(b, &mask))
            .map(|(i, _)| i)
    }
}

/// Filters of numbered sets (the sled store's sealed generations), asked together: those
/// of the usual size in a [`BloomStack`], any other one by itself.
#[derive(Debug, Clone)]
pub struct BloomSet {
    stack: BloomStack,
    /// The number of each stacked filter's set, in stack order.
    stacked: Vec<usize>,
    /// Filters of another size, with their set's number.
    odd: Vec<(usize, Bloom)>,
}

impl BloomSet {
    /// An empty set whose usual filters are sized for `keys` keys.
    pub fn new(keys: usize) -> BloomSet {
        BloomSet {
            stack: BloomStack::for_capacity(keys),
            stacked: Vec::new(),
            odd: Vec::new(),
        }
    }

    /// The capacity to size a filter of `keys` keys for, when the usual size is for
    /// `usual`: the usual one (so it stacks) unless it holds more than twice that.
    pub fn capacity_for(keys: usize, usual: usize) -> usize {
        if keys <= 2 * usual {
            usual
        } else {
            keys
        }
    }

    /// Add the filter of set `number`.
    pub fn add(&mut self, number: usize, f: Bloom) {
        match self.stack.push(f) {
            Ok(()) => self.stacked.push(number),
            Err(f) => self.odd.push((number, f)),
        }
    }

    /// The numbers of the sets whose filter may hold the key, highest first.
    pub fn candidates(&self, key: KeyHash) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .stack
            .may_contain(key)
            .map(|i| self.stacked[i])
            .chain(
                self.odd
                    .iter()
                    .filter(|(_, f)| f.may_contain_hash(key))
                    .map(|(n, _)| *n),
            )
            .collect();
        out.sort_unstable_by(|a, b| b.cmp(a));
        out
    }
}

/// A key's hash, for asking several filters about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64);

impl KeyHash {
    pub fn of(key: &[u8]) -> KeyHash {
        KeyHash(hash(key))
    }
}

/// FNV-1a over the bytes, then splitmix64's finalizer (FNV alone leaves its high bits,
/// which pick the block, poorly mixed for short keys).
fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&n.to_be_bytes());
        k[8..].copy_from_slice(&(n ^ 0x5555).to_le_bytes());
        k
    }

    #[test]
    fn every_inserted_key_is_found() {
        let mut f = Bloom::with_capacity(20_000);
        for n in 0..20_000 {
            f.insert(&key(n));
        }
        assert!((0..20_000).all(|n| f.may_contain(&key(n))));
    }

    #[test]
    fn about_one_key_in_six_thousand_is_a_false_positive_at_capacity() {
        let mut f = Bloom::with_capacity(20_000);
        for n in 0..20_000 {
            f.insert(&key(n));
        }
        let false_positives = (1_000_000..1_400_000)
            .filter(|n| f.may_contain(&key(*n)))
            .count();
        // 400,000 keys never inserted: ~0.016 % expected (64); 0.04 % allows for the
        // block layout's variance, and is under half of what 16 bits a key gave
        // (0.13 %); a broken hash (one block for all) would be ~100 %.
        assert!(false_positives < 160, "{false_positives} false positives");
    }

    #[test]
    fn an_empty_filter_contains_nothing() {
        let f = Bloom::with_capacity(0);
        assert_eq!(f.size_bytes(), 32);
        assert!(!(0..1000).any(|n| f.may_contain(&key(n))));
    }

    #[test]
    fn bytes_round_trip_and_anything_else_is_refused() {
        let mut f = Bloom::with_capacity(100);
        f.insert(b"bafy");
        let bytes = f.to_bytes();
        assert_eq!(Bloom::from_bytes(&bytes), Some(f.clone()));
        assert!(Bloom::from_bytes(&bytes).unwrap().may_contain(b"bafy"));
        assert_eq!(Bloom::from_bytes(&[]), None);
        assert_eq!(Bloom::from_bytes(&[FORMAT]), None);
        assert_eq!(Bloom::from_bytes(&bytes[..bytes.len() - 1]), None);
        // Neither the first format (16 bits a key) nor one not yet defined.
        for format in [1, 3] {
            let mut other_format = bytes.clone();
            other_format[0] = format;
            assert_eq!(Bloom::from_bytes(&other_format), None);
        }
    }

    #[test]
    fn a_stack_answers_as_its_filters_do() {
        let filters: Vec<Bloom> = (0..5u64)
            .map(|g| {
                let mut f = Bloom::with_capacity(500);
                for n in g * 500..(g + 1) * 500 {
                    f.insert(&key(n));
                }
                f
            })
            .collect();
        let mut stack = BloomStack::for_capacity(500);
        for f in &filters {
            stack.push(f.clone()).unwrap();
        }
        assert_eq!(stack.len(), 5);
        for n in 0..5_000 {
            let h = KeyHash::of(&key(n));
            let one_by_one: Vec<usize> =
                (0..5).filter(|i| filters[*i].may_contain_hash(h)).collect();
            let stacked: Vec<usize> = stack.may_contain(h).collect();
            assert_eq!(stacked, one_by_one, "key {n}");
            if n < 2_500 {
                assert!(stacked.contains(&((n / 500) as usize)));
            }
        }
    }

    #[test]
    fn a_stack_takes_only_filters_of_its_size() {
        let mut stack = BloomStack::for_capacity(500);
        assert!(stack.is_empty());
        assert!(stack.push(Bloom::with_capacity(5_000)).is_err());
        assert!(stack.push(Bloom::with_capacity(500)).is_ok());
        assert_eq!(stack.may_contain(KeyHash::of(b"x")).count(), 0);
    }

    #[test]
    fn a_set_names_every_set_that_may_hold_a_key_highest_first() {
        // Set 0, of another size, holds keys 0..2,000; sets 1-3, of the usual size, hold
        // keys 500..2,000, 500 each (key n in set n / 500).
        let mut set = BloomSet::new(500);
        let mut big = Bloom::with_capacity(BloomSet::capacity_for(2_000, 500));
        for n in 0..2_000 {
            big.insert(&key(n));
        }
        set.add(0, big);
        for g in 1..4u64 {
            let mut f = Bloom::with_capacity(BloomSet::capacity_for(500, 500));
            for n in g * 500..(g + 1) * 500 {
                f.insert(&key(n));
            }
            set.add(g as usize, f);
        }
        assert_eq!(set.stacked, vec![1, 2, 3]);
        assert_eq!(set.odd.len(), 1);
        for n in 0..2_000u64 {
            let c = set.candidates(KeyHash::of(&key(n)));
            assert!(c.windows(2).all(|w| w[0] > w[1]), "{c:?}");
            assert!(c.contains(&0), "key {n}");
            if n >= 500 {
                assert!(c.contains(&((n / 500) as usize)), "key {n}");
            }
        }
        let strangers = (10_000..20_000u64)
            .filter(|n| !set.candidates(KeyHash::of(&key(*n))).is_empty())
            .count();
        assert!(strangers < 100, "{strangers} keys in no set matched one");
    }

    #[test]
    fn a_filter_is_sized_as_usual_unless_far_larger() {
        assert_eq!(BloomSet::capacity_for(16_400, 16_384), 16_384);
        assert_eq!(BloomSet::capacity_for(10, 16_384), 16_384);
        assert_eq!(BloomSet::capacity_for(1_800_000, 16_384), 1_800_000);
    }

    #[test]
    fn the_hash_is_fixed() {
        // Stored filters depend on these values never changing (worked out apart from
        // this code, from the definitions of FNV-1a and splitmix64).
        assert_eq!(hash(b""), HASH_EMPTY);
        assert_eq!(hash(b"dealport"), HASH_DEALPORT);
    }

    const HASH_EMPTY: u64 = 0xf52a_15e9_a9b5_e89b;
    const HASH_DEALPORT: u64 = 0xff0a_7bea_7ea2_1e9d;
}
