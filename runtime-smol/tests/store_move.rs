//! Moving a sled node to PostgreSQL, against this shell's binary (tests/src/store_move.rs).
#[test]
fn sled_node_moves_to_postgres() {
    dealport_tests::store_move::sled_node_moves_to_postgres(env!("CARGO_BIN_EXE_dealport"));
}
