//! The `dealport` binary for tests of this crate (`tests/tests/*.rs`), which is not the
//! package that owns the binary, so `CARGO_BIN_EXE_dealport` is not set for them.
//!
//! `DEALPORT_BIN=<path>` names a binary to test. Otherwise the binary next to the test
//! executable is used when it is newer than every source file it is built from (as after
//! `cargo test --workspace`, which builds it); else `cargo build -p dealport` runs once
//! per test process in the same target dir and profile (cargo holds no lock while tests
//! run), so a test never runs a stale binary.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The path of the `dealport` binary, built if needed.
pub fn dealport_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("DEALPORT_BIN") {
            assert!(Path::new(&p).is_file(), "DEALPORT_BIN={p} is not a file");
            return p;
        }
        let bin = beside_tests();
        if !is_fresh(&bin) {
            build();
        }
        bin.to_string_lossy().into_owned()
    })
}

/// `<target>/<profile dir>` of this test executable (`…/deps/<name>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not under <target>/<profile>/deps", exe.display()))
        .to_path_buf()
}

fn beside_tests() -> PathBuf {
    profile_dir().join(format!("dealport{}", std::env::consts::EXE_SUFFIX))
}

/// Newest modification time of the files under `dir` (recursively).
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        best = best.max(t);
    }
    best
}

/// The binary exists and is newer than the sources of the crates it is built from.
fn is_fresh(bin: &Path) -> bool {
    let Ok(built) = bin.metadata().and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["core", "node", "runtime-smol", "Cargo.lock", "Cargo.toml"]
        .iter()
        .filter_map(|p| {
            let p = root.join(p);
            if p.is_dir() {
                newest(&p)
            } else {
                p.metadata().and_then(|m| m.modified()).ok()
            }
        })
        .all(|t| t <= built)
}

fn build() {
    let profile_dir = profile_dir();
    let target = profile_dir.parent().expect("the target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("no profile dir name in {}", profile_dir.display()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let status = Command::new(&cargo)
        .args(["build", "--quiet", "-p", "dealport", "--bin", "dealport"])
        .arg("--profile")
        .arg(&profile)
        .arg("--manifest-path")
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo} build: {e}"));
    assert!(status.success(), "cargo build -p dealport failed: {status}");
    let bin = beside_tests();
    assert!(bin.is_file(), "{} missing after cargo build", bin.display());
}
