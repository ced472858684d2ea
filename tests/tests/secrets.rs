//! Secrets on disk: a config file holding the Lotus API token is refused while other
//! users can read it (the data dir's own check is in the conformance suite).

use std::{os::unix::fs::PermissionsExt, time::Duration};

use dealport_tests::harness::{
    binary::dealport_bin,
    config,
    process::{DataDir, Node, READY_LINE},
};

#[test]
fn config_with_lotus_token_open_to_others_is_refused() {
    token_open_to_others_is_refused(
        "chain.lotus.token",
        "secret-sign-token",
        |t: &mut toml::Table| {
            t["chain"]["lotus"]
                .as_table_mut()
                .expect("[chain.lotus]")
                .insert("token".into(), "secret-sign-token".into());
        },
    );
}

#[test]
fn config_with_api_token_open_to_others_is_refused() {
    token_open_to_others_is_refused("api.token", "secret-api-token", |t: &mut toml::Table| {
        t.entry("api")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("[api]")
            .insert("token".into(), "secret-api-token".into());
    });
}

/// A config holding `key` (set to `secret` by `set`) is refused while others can read it,
/// with a sentence naming the key and the fix, and the secret is never printed.
fn token_open_to_others_is_refused(key: &str, secret: &str, set: impl FnOnce(&mut toml::Table)) {
    let bin = dealport_bin();
    let d = DataDir::init(bin);
    config::edit(&d.path, set);
    // Outside the owner-only data dir, readable by everyone.
    let other = tempfile::tempdir().expect("temp dir");
    let path = other.path().join("dealport.toml");
    std::fs::copy(d.config_path(), &path).expect("copy config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let p = path.to_string_lossy().into_owned();
    let mut refused = Node::start_with(bin, &d.path, &["--config", &p]);
    let status = refused.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "started with a readable token");
    refused.wait_for(
        &format!("holds {key} and is open to other users (mode 644)"),
        Duration::from_secs(10),
    );
    refused.wait_for(&format!("chmod 600 {p}"), Duration::from_secs(10));
    refused.drain();
    assert!(
        refused.log.iter().all(|l| !l.contains(secret)),
        "the token was printed"
    );

    // Owner-only: it starts.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut node = Node::start_with(bin, &d.path, &["--config", &p]);
    node.wait_for(READY_LINE, Duration::from_secs(30));
    assert!(
        node.log.iter().all(|l| !l.contains(secret)),
        "the token was logged"
    );
}
