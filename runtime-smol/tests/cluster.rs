//! Cluster mode against this shell's binary: three nodes sharing one throwaway
//! PostgreSQL (see `dealport_tests::harness::cluster`).

#[test]
fn failover_kill9_and_sigterm_keep_deals_and_peer_id() {
    let (kill, term) = dealport_tests::harness::cluster::failover(env!("CARGO_BIN_EXE_dealport"));
    eprintln!("takeover after kill -9: {kill:?}; after SIGTERM: {term:?}");
}

#[test]
fn split_brain_and_database_outage() {
    dealport_tests::harness::cluster::split_brain_and_db_outage(env!("CARGO_BIN_EXE_dealport"));
}

/// `scripts/failover-bench`: FAILOVER_TRIALS (default 20) runs of [`failover`], printing
/// the median and worst takeover after kill -9 and after SIGTERM.
///
/// [`failover`]: dealport_tests::harness::cluster::failover
#[test]
#[ignore = "a benchmark: run by scripts/failover-bench"]
fn failover_bench() {
    let n: usize = std::env::var("FAILOVER_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (mut kill, mut term) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (k, t) = dealport_tests::harness::cluster::failover(env!("CARGO_BIN_EXE_dealport"));
        eprintln!("trial {}/{n}: kill -9 {k:?}, SIGTERM {t:?}", i + 1);
        kill.push(k);
        term.push(t);
    }
    kill.sort();
    term.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let t = dealport_tests::harness::cluster::timings();
    println!(
        "FAILOVER trials={n} ttl_ms={} renew_ms={} poll_ms={} kill9_median_ms={:.0} kill9_worst_ms={:.0} sigterm_median_ms={:.0} sigterm_worst_ms={:.0}",
        t.ttl,
        t.renew,
        t.poll,
        ms(kill[n / 2]),
        ms(kill[n - 1]),
        ms(term[n / 2]),
        ms(term[n - 1])
    );
}
