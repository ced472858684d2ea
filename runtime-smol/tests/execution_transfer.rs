//! Deal execution, transfers, against this shell's binary (tests/src/execution_transfer.rs).
#[test]
fn online_deal_resumes_after_sigkill_and_offline_deal_imports() {
    dealport_tests::execution_transfer::online_deal_resumes_after_sigkill_and_offline_deal_imports(
        env!("CARGO_BIN_EXE_dealport"),
    );
}
