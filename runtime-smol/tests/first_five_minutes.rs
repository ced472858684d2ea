//! The first five minutes, against this shell's binary (tests/src/first_five_minutes.rs).
use dealport_tests::first_five_minutes as f;

#[test]
fn quickstart_transcript() {
    f::quickstart_transcript(env!("CARGO_BIN_EXE_dealport"));
}

#[test]
fn demo_reaches_transferred_and_cleans_up() {
    f::demo_reaches_transferred_and_cleans_up(env!("CARGO_BIN_EXE_dealport"));
}

#[test]
fn client_commp_agrees_with_independent_commitments() {
    f::client_commp_agrees_with_independent_commitments(env!("CARGO_BIN_EXE_dealport"));
}
