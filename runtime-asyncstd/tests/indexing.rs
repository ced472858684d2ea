//! The piece directory and /ipfs/ against this shell's binary (tests/src/indexing.rs).
#[test]
fn deals_cars_are_indexed_and_their_blocks_served_by_cid() {
    dealport_tests::indexing::deals_cars_are_indexed_and_their_blocks_served_by_cid(env!(
        "CARGO_BIN_EXE_dealport-async-std"
    ));
}
