//! Deal execution end to end against this shell's binary (tests/src/execution_lifecycle.rs).
#[test]
fn online_deal_goes_from_accepted_to_complete() {
    dealport_tests::execution_lifecycle::online_deal_goes_from_accepted_to_complete(env!(
        "CARGO_BIN_EXE_dealport"
    ));
}
