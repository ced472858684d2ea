//! The cluster rides through its database failing over: a primary with a synchronous
//! standby, three nodes on a multi-host `target_session_attrs=read-write` URL, the
//! primary killed (-9) and the standby promoted, the old primary back read-only (see
//! `dealport_tests::harness::db_failover`). CI runs one trial; `scripts/db-failover-bench N`
//! runs N and prints the figures recorded in RELIABILITY.md.

use std::time::Duration;

use dealport_tests::harness::{binary::dealport_bin, db_failover::db_failover};

#[test]
fn database_failover_loses_no_acknowledged_deal() {
    let f = db_failover(dealport_bin());
    eprintln!("db failover: {f:?}");
}

/// `scripts/db-failover-bench`: DB_FAILOVER_TRIALS (default 20) trials, then one
/// `DBFAILOVER …` line with the median and worst figures.
#[test]
#[ignore = "a benchmark: run by scripts/db-failover-bench"]
fn db_failover_bench() {
    let n: usize = std::env::var("DB_FAILOVER_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(1);
    let mut again = Vec::new();
    let mut promote = Vec::new();
    let mut health = Vec::new();
    let (mut acc, mut refused, mut unknown, mut unacked) = (0, 0, 0, 0);
    for i in 0..n {
        let f = db_failover(dealport_bin());
        println!("trial {}/{n}: {f:?}", i + 1);
        again.push(f.accepting_again);
        promote.push(f.after_promote);
        health.push(f.worst_health);
        acc += f.accepted;
        refused += f.refused;
        unknown += f.unknown;
        unacked += f.stored_unacknowledged;
    }
    for v in [&mut again, &mut promote, &mut health] {
        v.sort();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let t = dealport_tests::harness::cluster::timings();
    println!(
        "DBFAILOVER trials={n} ttl_ms={} renew_ms={} poll_ms={} accepting_again_median_ms={:.0} accepting_again_worst_ms={:.0} after_promote_median_ms={:.0} after_promote_worst_ms={:.0} health_worst_ms={:.0} accepted={acc} refused={refused} unknown={unknown} stored_unacknowledged={unacked} lost=0",
        t.ttl,
        t.renew,
        t.poll,
        ms(again[n / 2]),
        ms(again[n - 1]),
        ms(promote[n / 2]),
        ms(promote[n - 1]),
        ms(health[n - 1]),
    );
}
