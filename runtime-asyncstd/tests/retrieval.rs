//! Retrieval against this shell's binary (tests/src/retrieval.rs).
#[test]
fn transports_answer_lists_the_configured_endpoints_byte_for_byte() {
    dealport_tests::retrieval::transports_answer_lists_the_configured_endpoints_byte_for_byte(
        env!("CARGO_BIN_EXE_dealport-async-std"),
    );
}

#[test]
fn pieces_are_served_by_range_and_head_never_a_failed_deals() {
    dealport_tests::retrieval::pieces_are_served_by_range_and_head_never_a_failed_deals(env!(
        "CARGO_BIN_EXE_dealport-async-std"
    ));
}
