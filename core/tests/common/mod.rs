//! The golden vectors (`tests/data/mk12-golden.json`), shared by core's tests and benches.
#![allow(dead_code)] // each test file uses a different subset

/// The whole vectors file.
pub fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mk12-golden.json"
    ))
    .expect("golden vectors file");
    serde_json::from_str(&text).expect("golden vectors parse")
}

/// One vector's bytes, checked against the length the file states.
pub fn vector(name: &str) -> Vec<u8> {
    let v = vectors();
    let entry = &v["vectors"][name];
    let hex = entry["hex"]
        .as_str()
        .unwrap_or_else(|| panic!("no vector {name}"));
    let bytes = hex::decode(hex).expect("valid hex");
    if let Some(n) = entry["bytes"].as_u64() {
        assert_eq!(bytes.len() as u64, n, "vector {name}: length in the file");
    }
    bytes
}
