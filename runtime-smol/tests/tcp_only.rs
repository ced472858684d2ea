//! A TCP-only lease holder, against this shell's binary (tests/src/tcp_only.rs).
#[test]
fn tcp_only_holder_serves_everything_but_the_relay() {
    dealport_tests::tcp_only::tcp_only_holder_serves_everything_but_the_relay(env!(
        "CARGO_BIN_EXE_dealport"
    ));
}

#[test]
fn import_to_a_standby_shows_its_refusal() {
    dealport_tests::tcp_only::import_to_a_standby_shows_its_refusal(env!("CARGO_BIN_EXE_dealport"));
}
