//! The binary's allocator options: jemalloc with its background threads, which return
//! freed pages to the kernel while the node is at rest (BENCHMARKS.md, "jemalloc's
//! background threads"). jemalloc prints its options at exit when asked to through
//! `_RJEM_MALLOC_CONF`; losing the cargo feature turns this line to `false`.
use std::process::Command;

#[test]
fn jemalloc_runs_its_background_threads() {
    let out = Command::new(env!("CARGO_BIN_EXE_dealport"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("run dealport --version");
    assert!(out.status.success(), "dealport --version: {:?}", out.status);
    let stats = String::from_utf8_lossy(&out.stderr);
    let line = stats
        .lines()
        .find(|l| l.trim_start().starts_with("opt.background_thread:"))
        .unwrap_or_else(|| panic!("no opt.background_thread in jemalloc's stats:\n{stats}"));
    assert!(
        line.contains("opt.background_thread: true"),
        "jemalloc without background threads: {line}"
    );
}
