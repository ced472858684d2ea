//! Sealing through lotus-miner against this shell's binary (tests/src/execution_sealing.rs).
#[test]
fn deal_goes_from_proposal_to_complete_through_lotus_miner() {
    dealport_tests::execution_sealing::deal_goes_from_proposal_to_complete_through_lotus_miner(
        env!("CARGO_BIN_EXE_dealport-async-std"),
    );
}

#[test]
fn holder_killed_after_the_miner_took_the_piece_adds_it_once() {
    dealport_tests::execution_sealing::holder_killed_after_the_miner_took_the_piece_adds_it_once(
        env!("CARGO_BIN_EXE_dealport-async-std"),
    );
}
