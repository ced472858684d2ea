//! IPNI against this shell's binary (tests/src/ipni.rs).
#[test]
fn deals_are_advertised_withdrawn_and_the_chain_survives_a_restart() {
    dealport_tests::ipni::deals_are_advertised_withdrawn_and_the_chain_survives_a_restart(env!(
        "CARGO_BIN_EXE_dealport"
    ));
}

#[test]
fn cluster_chain_stays_linear_across_a_failover() {
    dealport_tests::ipni::cluster_chain_stays_linear_across_a_failover(env!(
        "CARGO_BIN_EXE_dealport"
    ));
}
