//! CommP against values computed by independent implementations.
use dealport_core::commp::{piece_cid, zero_piece_root, CommP, CommpError};
use proptest::prelude::*;

/// Zero-piece commitments for padded sizes 128 B, 256 B, … 512 KiB, as published in
/// cpp-filecoin's `zerocomm` table (the same values as go-commp-utils' zerocomm and,
/// for 2 KiB, rust-fil-proofs' `compute_comm_d(SectorSize(2048), &[])`).
const ZERO_COMMS: [&str; 13] = [
    "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333",
    "642a607ef886b004bf2c1978463ae1d4693ac0f410eb2d1b7a47fe205e5e750f",
    "57a2381a28652bf47f6bef7aca679be4aede5871ab5cf3eb2c08114488cb8526",
    "1f7ac9595510e09ea41c460b176430bb322cd6fb412ec57cb17d989a4310372f",
    "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833",
    "08c47b38ee13bc43f41b915c0eed9911a26086b3ed62401bf9d58b8d19dff624",
    "b2e47bfb11facd941f62af5c750f3ea5cc4df517d5c4f16db2b4d77baec1a32f",
    "f9226160c8f927bfdcc418cdf203493146008eaefb7d02194d5e548189005108",
    "2c1a964bb90b59ebfe0f6da29ad65ae3e417724a8f7c11745a40cac1e5e74011",
    "fee378cef16404b199ede0b13e11b624ff9d784fbbed878d83297e795e024f02",
    "8e9e2403fa884cf6237f60df25f83ee40dca9ed879eb6f6352d15084f5ad0d3f",
    "752d9693fa167524395476e317a98580f00947afb7a30540d625a9291cc12a07",
    "7022f60f7ef6adfa17117a52619e30cea82c68075adf1c667786ec506eef2d19",
];

/// Non-zero data: roots from another streaming CommP implementation's tests, for its
/// sample bytes `(i * 7 + i / 251) as u8` of the given lengths.
const SAMPLE_ROOTS: [(usize, &str); 4] = [
    (
        0,
        "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333",
    ),
    (
        126,
        "e7174a9e17b4eab0299c33fb7a5376d9a780ab93cc4873777a7452ed32ecaf14",
    ),
    (
        127,
        "b3c22ed2e440d87a1dfcf2c7c21bc887742acfbba9d00954a0132b99445dc523",
    ),
    (
        128,
        "b2bba11fa929911e8a2f530c1a3838d65276f8f6d15f70ca298770f5dca4ca2b",
    ),
];

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn padded_for(len: usize) -> u64 {
    dealport_core::wire::primitives::padded_piece_size(len as u64).unwrap()
}

#[test]
fn zero_pieces_match_the_published_commitments() {
    for (i, want) in ZERO_COMMS.iter().enumerate() {
        let padded = 128u64 << i;
        assert_eq!(
            hex::encode(zero_piece_root(padded).unwrap()),
            *want,
            "{padded} B"
        );
        // Feeding the zeros gives the same root as padding an empty piece.
        let mut c = CommP::new();
        c.update(&vec![0u8; (padded / 128 * 127) as usize]);
        assert_eq!(
            hex::encode(c.finish(padded).unwrap()),
            *want,
            "{padded} B fed"
        );
        assert_eq!(hex::encode(CommP::new().finish(padded).unwrap()), *want);
    }
}

#[test]
fn sample_data_matches_an_independent_implementation() {
    for (len, want) in SAMPLE_ROOTS {
        let mut c = CommP::new();
        c.update(&sample(len));
        let root = c.finish(padded_for(len)).unwrap();
        assert_eq!(hex::encode(root), want, "{len} bytes");
    }
}

#[test]
fn the_piece_cid_has_the_filecoin_prefix() {
    let root = zero_piece_root(2048).unwrap();
    let cid = piece_cid(&root);
    let p = cid.prefix().unwrap();
    assert_eq!(
        (p.version, p.codec, p.mh_code, p.mh_len),
        (1, 0xf101, 0x1012, 32)
    );
    assert_eq!(cid.digest(), &root);
}

#[test]
fn too_much_data_or_a_bad_size_is_an_error() {
    let mut c = CommP::new();
    c.update(&[1u8; 128]);
    assert_eq!(
        c.finish(128),
        Err(CommpError::TooMuchData {
            written: 128,
            padded: 128,
            capacity: 127
        })
    );
    assert!(c.finish(256).is_ok());
    assert_eq!(c.finish(384), Err(CommpError::BadPieceSize(384)));
    assert_eq!(c.finish(64), Err(CommpError::BadPieceSize(64)));
}

#[test]
fn a_snapshot_resumes_without_rehashing() {
    let data = sample(10_000);
    let mut whole = CommP::new();
    whole.update(&data);
    let mut first = CommP::new();
    first.update(&data[..4321]);
    let snap = first.snapshot();
    let mut resumed = CommP::restore(&snap).unwrap();
    assert_eq!(resumed.bytes_written(), 4321);
    resumed.update(&data[4321..]);
    assert_eq!(resumed.finish(16384).unwrap(), whole.finish(16384).unwrap());
    assert!(CommP::restore(&snap[..snap.len() - 1]).is_err());
    assert!(CommP::restore(&[]).is_err());
}

proptest! {
    /// Any chunking of the data gives the same root.
    #[test]
    fn chunking_never_changes_the_root(len in 0usize..3000, cuts in proptest::collection::vec(0usize..3000, 0..10)) {
        let data = sample(len);
        let padded = padded_for(len);
        let mut whole = CommP::new();
        whole.update(&data);
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= len).collect();
        cuts.sort_unstable();
        let mut chunked = CommP::new();
        let mut at = 0;
        for c in cuts.into_iter().chain(std::iter::once(len)) {
            chunked.update(&data[at..c]);
            at = c;
        }
        prop_assert_eq!(chunked.finish(padded).unwrap(), whole.finish(padded).unwrap());
    }

    /// Restoring arbitrary bytes never panics.
    #[test]
    fn restore_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = CommP::restore(&bytes);
    }
}
