//! Replays every committed fuzz corpus on stable, so CI catches a regression that a
//! fuzzing campaign once found, without needing nightly or sanitizers.
use std::path::PathBuf;

#[test]
fn every_fuzz_corpus_replays_without_a_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut total = 0;
    for (name, target) in dealport_core::fuzzing::TARGETS {
        let dir = root.join(name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus for fuzz target {name} missing at {dir:?}: {e}"));
        let mut n = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            target(&data);
            n += 1;
        }
        assert!(n > 0, "corpus for fuzz target {name} is empty");
        total += n;
    }
    eprintln!("replayed {total} corpus inputs");
}

#[test]
fn every_fuzz_target_has_a_source_file() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (name, _) in dealport_core::fuzzing::TARGETS {
        assert!(
            dir.join(format!("{name}.rs")).exists(),
            "fuzz target {name} has no file"
        );
    }
}
