//! Editing the `config.toml` that `dealport init` wrote.

use std::path::Path;

/// A TOML value from its text form (`"x"`, `[1, 2]`, `{ a = 1 }`).
pub fn value(text: &str) -> toml::Value {
    format!("x = {text}")
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("bad TOML value {text}: {e}"))
        .remove("x")
        .expect("the value")
}

/// Parse `<dir>/config.toml`, let `f` change it, write it back.
pub fn edit(dir: &Path, f: impl FnOnce(&mut toml::Table)) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut t: toml::Table = text.parse().expect("config.toml is TOML");
    f(&mut t);
    std::fs::write(&path, toml::to_string(&t).expect("TOML out")).expect("write config.toml");
}

/// Loopback only, random ports: libp2p on TCP and WS, and the HTTP listener.
pub fn loopback_random_ports(t: &mut toml::Table) {
    t["libp2p"]["listen"] = value(r#"["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"]"#);
    t["http"]["listen"] = value(r#""127.0.0.1:0""#);
}

/// The offline-chain facts under which the golden proposal A4 (and B2) is accepted.
pub fn accept_a4(t: &mut toml::Table) {
    let offline = t["chain"]["offline"]
        .as_table_mut()
        .expect("[chain.offline]");
    // A4 starts at 4,500,000: head + 2880 (sealing buffer) must not pass it.
    offline.insert("head_epoch_override".into(), 4_490_000.into());
    offline.insert("provider_collateral_min".into(), "8589934592000".into());
    offline.insert(
        "clients".into(),
        value(
            r#"[{ address = "f1d54ilgaapj2jrn7zjecy7jzaldgjnwggdnc3fna", escrow = "1000000000000000000", datacap = "34359738368" }]"#,
        ),
    );
    t.insert(
        "miners".into(),
        value(
            r#"[{ address = "f01000", ask = { price = "0", verified_price = "0", min_piece_size = 256, max_piece_size = 34359738368 } }]"#,
        ),
    );
}

/// `[limits] <key> = <v>`.
pub fn set_limit(t: &mut toml::Table, key: &str, v: i64) {
    t["limits"]
        .as_table_mut()
        .expect("[limits]")
        .insert(key.into(), v.into());
}
