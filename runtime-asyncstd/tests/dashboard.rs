//! The dashboard in a real headless browser, against this shell's binary
//! (tests/src/dashboard.rs).

#[test]
fn dashboard_in_a_browser() {
    dealport_tests::dashboard::dashboard_in_a_browser(env!("CARGO_BIN_EXE_dealport-async-std"));
}

#[test]
fn dashboard_on_a_standby_names_the_holder() {
    dealport_tests::dashboard::dashboard_on_a_standby_names_the_holder(env!(
        "CARGO_BIN_EXE_dealport-async-std"
    ));
}
