//! Multi-host connection strings against real throwaway servers (a primary and its
//! streaming standby, see testkit/src/postgres): hosts tried in order, a refused host
//! skipped, a read-only standby skipped under `target_session_attrs=read-write` and
//! `primary` but kept under `any`, the key=value form, clear errors.

use std::net::TcpListener;

use dealport_node::store::postgres::{PostgresOptions, PostgresStore};
use futures::executor::block_on;

use dealport_testkit::postgres::{replica::SYNC_PRIMARY_OPTS, PgServer};

/// A port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(url: &str) -> Result<PostgresStore, String> {
    block_on(PostgresStore::connect(url, PostgresOptions::default())).map_err(|e| e.to_string())
}

#[test]
fn hosts_are_tried_in_order_and_read_only_servers_skipped() {
    // The standby must not wait on a synchronous standby of its own: the primary runs
    // without one here too, so that the test's writes are not held.
    let primary = PgServer::start_with(&SYNC_PRIMARY_OPTS.replace(
        "-c synchronous_standby_names='*' -c synchronous_commit=on",
        "",
    ));
    let standby = PgServer::standby_of(&primary, "");
    let (p, s, dead) = (primary.port(), standby.port(), dead_port());

    // A refused first host is skipped.
    let st = connect(&format!(
        "postgres://postgres@127.0.0.1:{dead},127.0.0.1:{p}/postgres"
    ))
    .expect("the second host");
    assert_eq!(st.server(), (format!("127.0.0.1:{p}"), true));

    // read-write / primary skip the standby listed first; the standby answers, it is
    // only not acceptable.
    for attrs in ["read-write", "primary"] {
        let st = connect(&format!(
            "postgres://postgres@127.0.0.1:{s},127.0.0.1:{p}/postgres?target_session_attrs={attrs}"
        ))
        .expect(attrs);
        assert_eq!(st.server(), (format!("127.0.0.1:{p}"), true), "{attrs}");
    }

    // `any` (libpq's default) keeps the first server that answers, even a standby; the
    // store then says it is not writable.
    let st = connect(&format!(
        "postgres://postgres@127.0.0.1:{s},127.0.0.1:{p}/postgres?target_session_attrs=any"
    ));
    // The migrations cannot run on a read-only server: refused at start, clearly.
    let err = st.expect_err("migrations on a standby fail");
    assert!(err.contains("migrations"), "{err}");

    // The key=value form, one port per host.
    let st = connect(&format!(
        "host=127.0.0.1,127.0.0.1 port={s},{p} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=2"
    ))
    .expect("key=value");
    assert_eq!(st.server(), (format!("127.0.0.1:{p}"), true));

    // Only the standby, read-write: a clear refusal naming the host and why.
    let err = connect(&format!(
        "postgres://postgres@127.0.0.1:{s}/postgres?target_session_attrs=read-write"
    ))
    .expect_err("a standby alone is not acceptable");
    assert!(
        err.contains(&format!("127.0.0.1:{s}")) && err.contains("read_only=true"),
        "{err}"
    );

    // Every host down: each host's reason.
    let dead2 = dead_port();
    let err = connect(&format!(
        "postgres://postgres@127.0.0.1:{dead},127.0.0.1:{dead2}/postgres?connect_timeout=2"
    ))
    .expect_err("nothing listens");
    let reasons = err.split("no acceptable server: ").nth(1).unwrap_or("");
    assert!(
        reasons.contains(&format!("127.0.0.1:{dead}: "))
            && reasons.contains(&format!("127.0.0.1:{dead2}: ")),
        "{err}"
    );

    // A malformed string says what is wrong (it was `invalid port number` for any
    // multi-host URL before).
    let err = connect("host=a,b,c port=1,2").expect_err("bad ports");
    assert!(
        err.contains("could not match 2 port numbers to 3 hosts"),
        "{err}"
    );
}
