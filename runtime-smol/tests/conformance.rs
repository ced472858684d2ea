//! The black-box conformance suite against this shell's binary.
dealport_tests::conformance_suite!(env!("CARGO_BIN_EXE_dealport"));
