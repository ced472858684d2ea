//! The golden vectors of `core/tests/data/mk12-golden.json`: the one loader the
//! integration tests share.

use std::sync::OnceLock;

/// The deal UUID of A4, A5, S1 and S2.
pub const A4_UUID: &str = "8f1c7b1e-6a0e-4c4b-9b7e-2a4d3c5e6f70";
/// A4's `Transfer.Size`.
pub const A4_TRANSFER_SIZE: u64 = 30_000_000_000;

/// `lotus wallet export` of A4's secp256k1 client (secret = sha256("mk12 example
/// secp256k1 client")): hex of `{"Type":"secp256k1","PrivateKey":"<base64>"}`.
pub const A4_CLIENT_KEY_FILE: &str = "7b2254797065223a22736563703235366b31222c22507269766174654b6579223a22796a53616f35564348517534644b6132794953484f4b32357331772b424261674942723845396249786d633d227d";

/// The bytes of vector `name` (`A4`, `R1`, `S1`, …).
pub fn golden(name: &str) -> Vec<u8> {
    static VECTORS: OnceLock<serde_json::Value> = OnceLock::new();
    let v = VECTORS.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../core/tests/data/mk12-golden.json"
        );
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read the golden vectors {path}: {e}"));
        serde_json::from_str(&text).expect("golden vectors are JSON")
    });
    let hex = v["vectors"][name]["hex"]
        .as_str()
        .unwrap_or_else(|| panic!("no golden vector {name}"));
    hex::decode(hex).expect("golden hex")
}
