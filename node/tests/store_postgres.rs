//! What only the PostgreSQL store does, against a real throwaway server (initdb +
//! pg_ctl, see testkit/src/postgres.rs): unfenced writes refused, racing identity
//! candidates and acquirers, a lost database. What it shares with the sled store is in
//! store_contract.rs. Missing server binaries fail these tests (install postgresql).

use std::time::{Duration, Instant};

use dealport_core::lease::LeaseRow;
use dealport_node::{
    identity,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        Fence, LeaseGrant, Store, StoreError,
    },
};
use futures::executor::block_on;

use dealport_testkit::node::{a4_record, until_expired};
use dealport_testkit::postgres::PgServer;

async fn connect(server: &PgServer) -> PostgresStore {
    PostgresStore::connect(&server.url(), PostgresOptions::default())
        .await
        .unwrap()
}

fn fence(node: &str, g: &LeaseGrant) -> Fence {
    Fence {
        node: node.into(),
        generation: g.generation,
    }
}

const TTL: Duration = Duration::from_secs(15);

/// A cluster store takes deal writes only under the lease; the fenced forms are in
/// store_contract.rs with the sled store's.
#[test]
fn unfenced_writes_need_the_lease() {
    let server = PgServer::start();
    block_on(async {
        let store = connect(&server).await;
        assert!(store.describe().starts_with("postgres at 127.0.0.1:"));
        let deal = a4_record();
        assert!(matches!(
            store.insert_new_deal(&deal).await,
            Err(StoreError::NeedsLease(_))
        ));
        assert!(matches!(
            store.update_deal(&deal).await,
            Err(StoreError::NeedsLease(_))
        ));
        // Not even under a held lease, and nothing was written.
        store.try_acquire("a", None, TTL).await.unwrap().unwrap();
        assert!(matches!(
            store.insert_new_deal(&deal).await,
            Err(StoreError::NeedsLease(_))
        ));
        assert_eq!(store.list_deals().await.unwrap(), vec![]);
        store.close().await;
    });
}

#[test]
fn identity_first_then_racing_candidates_one_key_wins() {
    let server = PgServer::start();
    block_on(async {
        let stores = [
            connect(&server).await,
            connect(&server).await,
            connect(&server).await,
        ];
        let results =
            futures::future::join_all(stores.iter().map(|s| identity::load_or_create(s))).await;
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
        let first = results[0].0.public();
        assert!(results.iter().all(|(k, _)| k.public() == first));
        // The row made by the identity has no holder: generation 0, acquirable.
        let read = stores[0].read_lease().await.unwrap();
        assert_eq!(
            read.row,
            Some(LeaseRow {
                holder: None,
                generation: 0,
                expires_at: None
            })
        );
        assert_eq!(stores[0].try_acquire("a", None, TTL).await.unwrap(), None);
        let g = stores[0]
            .try_acquire("a", Some(0), TTL)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(g.generation, 1);
        // The key is untouched by the lease.
        let (k, created) = identity::load_or_create(&stores[1]).await.unwrap();
        assert!(!created);
        assert_eq!(k.public(), first);
    });
}

#[test]
fn racing_acquirers_one_wins_each_generation() {
    let server = PgServer::start();
    block_on(async {
        let stores: Vec<PostgresStore> =
            futures::future::join_all((0..4).map(|_| connect(&server))).await;
        let names = ["n0", "n1", "n2", "n3"];
        // Empty table, all insert at once.
        let grants = futures::future::join_all(
            stores
                .iter()
                .zip(names)
                .map(|(s, n)| s.try_acquire(n, None, Duration::from_millis(300))),
        )
        .await;
        let won: Vec<_> = grants.into_iter().filter_map(Result::unwrap).collect();
        assert_eq!(won.len(), 1, "{won:?}");
        for generation in 1..4 {
            until_expired(&stores[0]).await;
            let grants = futures::future::join_all(
                stores
                    .iter()
                    .zip(names)
                    .map(|(s, n)| s.try_acquire(n, Some(generation), Duration::from_millis(300))),
            )
            .await;
            let won: Vec<_> = grants.into_iter().filter_map(Result::unwrap).collect();
            assert_eq!(won.len(), 1, "{won:?}");
            assert_eq!(won[0].generation, generation + 1);
        }
    });
}

#[test]
fn lost_database_is_an_error_then_recovers() {
    let server = PgServer::start();
    block_on(async {
        let opts = PostgresOptions {
            attempt_timeout: Duration::from_secs(1),
            acquire_timeout: Duration::from_millis(500),
            max_attempts: 2,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect(&server.url(), opts).await.unwrap();
        let g = store.try_acquire("a", None, TTL).await.unwrap().unwrap();
        server.stop();
        let started = Instant::now();
        let err = store.renew(&fence("a", &g), TTL).await.unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
        // The database comes back: the pool reconnects by itself.
        server.restart();
        let again = store.renew(&fence("a", &g), TTL).await.unwrap();
        assert_eq!(again.map(|r| r.generation), Some(1));
    });
    drop(server);

    // A store that cannot reach its database fails to connect within its deadline.
    let opts = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        acquire_timeout: Duration::from_millis(500),
        ..PostgresOptions::default()
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = block_on(PostgresStore::connect(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        opts,
    ))
    .unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// The lease's statements run on a connection of their own: with every pooled
/// connection stuck behind a lock on the deals table (deal traffic waiting), the lease
/// is still taken, renewed, read and released before the lock goes. Through the pool
/// they would wait for the pool's one connection, which only the commit after them
/// frees: each would fail at the pool's acquire time-out.
#[test]
fn lease_statements_do_not_wait_for_the_pool() {
    use sqlx::{Connection, Executor};
    let server = PgServer::start();
    block_on(async {
        let opts = PostgresOptions {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(30),
            max_attempts: 1,
            ..PostgresOptions::default()
        };
        let store = PostgresStore::connect(&server.url(), opts).await.unwrap();
        let mut admin = sqlx::PgConnection::connect(&server.url()).await.unwrap();
        admin.execute("BEGIN").await.unwrap();
        admin
            .execute("LOCK TABLE deals IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        // The pool's one connection waits on the lock until `admin` commits.
        let listing = store.list_deals();
        let lease_work = async {
            let blocked = "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE '%FROM deals%'";
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                let n: i64 = sqlx::query_scalar(blocked)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
                if n == 1 {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "the listing never waited on the lock"
                );
                async_io::Timer::after(Duration::from_millis(20)).await;
            }
            let g = store.try_acquire("a", None, TTL).await.unwrap().unwrap();
            let renewed = store.renew(&fence("a", &g), TTL).await.unwrap();
            assert_eq!(renewed.map(|r| r.generation), Some(g.generation));
            let read = store.read_lease().await.unwrap();
            assert_eq!(read.row.unwrap().holder.as_deref(), Some("a"));
            assert!(store.release(&fence("a", &g)).await.unwrap());
            admin.execute("COMMIT").await.unwrap();
        };
        let (listed, ()) = futures::join!(listing, lease_work);
        assert_eq!(listed.unwrap(), vec![]);
        store.close().await;
    });
}

/// A rolling upgrade: a node one version behind starts on the schema a newer node
/// migrated further (here a table and a migration row this binary does not know); the
/// unknown migration is left alone, and the store works.
#[test]
fn a_schema_a_newer_node_migrated_further_still_opens() {
    use sqlx::Connection;
    let server = PgServer::start();
    block_on(async {
        let url = server.url();
        drop(connect(&server).await);
        let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
        for sql in [
            "CREATE TABLE from_a_newer_dealport (x integer)",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (9999, 'from a newer dealport', true, '\\x00', 0)",
        ] {
            sqlx::query(sql).execute(&mut admin).await.unwrap();
        }
        let store = PostgresStore::connect(&url, PostgresOptions::default())
            .await
            .expect("an older node opens the newer schema");
        let (_, created) = identity::load_or_create(&store).await.unwrap();
        assert!(created, "the store works: the identity is written");
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&mut admin)
                .await
                .unwrap();
        assert_eq!(versions.last(), Some(&9999), "the newer row is kept");
    });
}
