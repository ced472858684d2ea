//! A piece commitment computed the plain way, bit by bit, with no code shared with
//! dealport-core's streaming CommP: pad the data with zeros to the unpadded piece size,
//! fr32-expand it (two zero bits after every 254 bits, bits taken least significant
//! first), then a binary SHA-256 tree over 32-byte leaves with each node's two top bits
//! cleared. Slow and obvious on purpose: tests hold dealport's answers against it.

use sha2::{Digest, Sha256};

/// The 32-byte CommP root of `data` as a piece of `padded` bytes (a power of two, at
/// least 128, with room for the fr32-expanded data).
pub fn naive_commp(data: &[u8], padded: u64) -> [u8; 32] {
    let padded = padded as usize;
    let unpadded = padded / 128 * 127;
    assert!(data.len() <= unpadded, "the data does not fit the piece");
    let mut input = data.to_vec();
    input.resize(unpadded, 0);
    let bit = |i: usize| (input[i / 8] >> (i % 8)) & 1;
    let mut out = vec![0u8; padded];
    let mut o = 0;
    for i in 0..unpadded * 8 {
        if bit(i) == 1 {
            out[o / 8] |= 1 << (o % 8);
        }
        o += 1;
        if (i + 1) % 254 == 0 {
            o += 2;
        }
    }
    let mut layer: Vec<[u8; 32]> = out
        .chunks(32)
        .map(|c| c.try_into().expect("32-byte leaves"))
        .collect();
    while layer.len() > 1 {
        layer = layer
            .chunks(2)
            .map(|pair| {
                let mut h: [u8; 32] = Sha256::new()
                    .chain_update(pair[0])
                    .chain_update(pair[1])
                    .finalize()
                    .into();
                h[31] &= 0x3f;
                h
            })
            .collect();
    }
    layer[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Roots published with another streaming CommP implementation's tests (the same
    /// values core/tests/commp.rs checks core's CommP against).
    #[test]
    fn matches_published_roots() {
        let sample =
            |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 7 + i / 251) as u8).collect() };
        let hex = |r: [u8; 32]| r.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(naive_commp(&sample(0), 128)),
            "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"
        );
        assert_eq!(
            hex(naive_commp(&sample(127), 128)),
            "b3c22ed2e440d87a1dfcf2c7c21bc887742acfbba9d00954a0132b99445dc523"
        );
        assert_eq!(
            hex(naive_commp(&sample(128), 256)),
            "b2bba11fa929911e8a2f530c1a3838d65276f8f6d15f70ca298770f5dca4ca2b"
        );
    }
}
