//! The PostgreSQL store against a real throwaway server (initdb + pg_ctl, see
//! common/postgres.rs): the sled store's behaviours, then the lease and its fencing.
//! Missing server binaries fail these tests (install postgresql).

use std::time::{Duration, Instant};

use dealport_core::{
    deal::{Checkpoint, DealEvent, DealRecord},
    lease::LeaseRow,
    wire::{Cbor, DealParams, DealUuid},
};
use dealport_node::{
    identity,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        Fence, Inserted, LeaseGrant, RelayTarget, Store, StoreError,
    },
};
use futures::executor::block_on;

use dealport_testkit::node::golden;
use dealport_testkit::postgres::PgServer;

fn a4_record() -> DealRecord {
    let bytes = golden("A4");
    let params = DealParams::from_cbor(&bytes).unwrap();
    DealRecord::new_accepted(
        bytes,
        params,
        "12D3KooWtest".into(),
        1_700_000_000_123_456_789,
    )
}

/// The same deal under another UUID and another proposal (different start epoch).
fn other_record(uuid: u8) -> DealRecord {
    let mut params = DealParams::from_cbor(&golden("A4")).unwrap();
    params.deal_uuid = DealUuid([uuid; 16]);
    params.client_deal_proposal.proposal.start_epoch += uuid as i64;
    let bytes = params.to_cbor();
    DealRecord::new_accepted(bytes, params, String::new(), 5)
}

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

fn is_fenced<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Fenced { .. }))
}

#[test]
fn deals_and_identity_as_the_sled_store() {
    let server = PgServer::start();
    block_on(async {
        let store = connect(&server).await;
        assert!(store.describe().starts_with("postgres at 127.0.0.1:"));
        let deal = a4_record();
        assert_eq!(store.list_deals().await.unwrap(), vec![]);
        assert_eq!(store.deal_by_uuid(deal.uuid).await.unwrap(), None);

        // Unfenced writes are refused in a cluster store.
        assert!(matches!(
            store.insert_new_deal(&deal).await,
            Err(StoreError::NeedsLease(_))
        ));
        assert!(matches!(
            store.update_deal(&deal).await,
            Err(StoreError::NeedsLease(_))
        ));

        let g = store.try_acquire("a", None, TTL).await.unwrap().unwrap();
        let f = fence("a", &g);
        assert_eq!(
            store.insert_new_deal_fenced(&f, &deal).await.unwrap(),
            Inserted::Yes
        );
        assert_eq!(
            store.deal_by_uuid(deal.uuid).await.unwrap().as_ref(),
            Some(&deal)
        );
        assert_eq!(
            store
                .deal_by_proposal_cid(&deal.proposal_cid)
                .await
                .unwrap()
                .as_ref(),
            Some(&deal)
        );
        assert_eq!(
            store
                .deal_by_signed_proposal_cid(&deal.signed_proposal_cid)
                .await
                .unwrap()
                .as_ref(),
            Some(&deal)
        );
        assert_eq!(
            store
                .deal_by_signed_proposal_cid(&deal.proposal_cid)
                .await
                .unwrap(),
            None
        );

        // Duplicates write nothing.
        assert_eq!(
            store.insert_new_deal_fenced(&f, &deal).await.unwrap(),
            Inserted::UuidExists
        );
        let mut same_proposal = deal.clone();
        same_proposal.uuid = DealUuid([9; 16]);
        same_proposal.params.deal_uuid = same_proposal.uuid;
        assert_eq!(
            store
                .insert_new_deal_fenced(&f, &same_proposal)
                .await
                .unwrap(),
            Inserted::ProposalExists(deal.uuid)
        );
        assert_eq!(store.deal_by_uuid(same_proposal.uuid).await.unwrap(), None);

        let other = other_record(7);
        assert_eq!(
            store.insert_new_deal_fenced(&f, &other).await.unwrap(),
            Inserted::Yes
        );
        let listed = store.list_deals().await.unwrap();
        assert_eq!(listed.len(), 2);
        // Ordered by UUID bytes.
        let mut uuids: Vec<_> = listed.iter().map(|d| d.uuid.0).collect();
        let sorted = {
            let mut s = uuids.clone();
            s.sort();
            s
        };
        assert_eq!(uuids, sorted);
        uuids.clear();

        let mut updated = deal.clone();
        updated
            .apply(DealEvent::Transferring {
                bytes_received: 1000,
            })
            .unwrap();
        updated
            .apply(DealEvent::Failed("transfer failed: boom".into()))
            .unwrap();
        store.update_deal_fenced(&f, &updated).await.unwrap();
        let mut unknown = deal.clone();
        unknown.uuid = DealUuid([1; 16]);
        assert!(matches!(
            store.update_deal_fenced(&f, &unknown).await,
            Err(StoreError::NoSuchDeal(_))
        ));
        let d = store.deal_by_uuid(deal.uuid).await.unwrap().unwrap();
        assert_eq!(d, updated);
        assert_eq!(d.checkpoint, Checkpoint::Accepted);
        assert_eq!(d.n_bytes_received, 1000);
        assert_eq!(d.error.as_deref(), Some("transfer failed: boom"));
        assert_eq!(d.params_bytes, deal.params_bytes);

        // Identity: the lease made the row first; the key fills it once.
        assert_eq!(store.identity().await.unwrap(), None);
        let (key, created) = identity::load_or_create(&store).await.unwrap();
        assert!(created);
        let (again, created) = identity::load_or_create(&store).await.unwrap();
        assert!(!created);
        assert_eq!(key.public(), again.public());
        let bytes = store.identity().await.unwrap().unwrap();
        assert_eq!(&bytes[..4], &[0x08, 0x01, 0x12, 0x40]);
        // The lease survived the identity write.
        let read = store.read_lease().await.unwrap();
        assert_eq!(read.row.unwrap().holder.as_deref(), Some("a"));

        // A second node, a fresh connection: same deals, and its candidate key loses.
        let second = connect(&server).await;
        let (key2, created) = identity::load_or_create(&second).await.unwrap();
        assert!(!created);
        assert_eq!(key2.public(), key.public());
        assert_eq!(second.list_deals().await.unwrap().len(), 2);
        assert_eq!(
            second
                .deal_by_proposal_cid(&other.proposal_cid)
                .await
                .unwrap()
                .map(|d| d.uuid),
            Some(DealUuid([7; 16]))
        );
        store.close().await;
        second.close().await;
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

/// Wait until the database says the lease has expired (its clock, not ours).
async fn until_expired(store: &PostgresStore) -> i64 {
    let started = Instant::now();
    loop {
        let read = store.read_lease().await.unwrap();
        if !read.row.as_ref().unwrap().is_live(read.now) {
            return read.now;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never expired");
        async_io::Timer::after(Duration::from_millis(50)).await;
    }
}

#[test]
fn lease_acquire_expire_fence_release() {
    let server = PgServer::start();
    block_on(async {
        let a = connect(&server).await;
        let b = connect(&server).await;
        let short = Duration::from_secs(1);

        // Empty table: nothing to read, then A acquires generation 1 in db time.
        let read = a.read_lease().await.unwrap();
        assert_eq!(read.row, None);
        let ga = a.try_acquire("a", None, short).await.unwrap().unwrap();
        assert_eq!(ga.generation, 1);
        assert_eq!(ga.expires_at - ga.at, 1000);
        assert!((ga.at - read.now).abs() < 60_000, "db time, unix ms");
        let fa = fence("a", &ga);

        // B saw an empty table too: its insert loses.
        assert_eq!(b.try_acquire("b", None, short).await.unwrap(), None);
        // While A's lease is live, B cannot take it.
        let read = b.read_lease().await.unwrap();
        let row = read.row.clone().unwrap();
        assert_eq!(row.holder.as_deref(), Some("a"));
        assert!(row.is_live(read.now));
        assert_eq!(b.try_acquire("b", Some(1), short).await.unwrap(), None);

        // A is leader: it writes its address and deals.
        a.set_local_listen(
            &fa,
            "/ip4/127.0.0.1/tcp/4001/ws",
            &["/dns/sp.example/tcp/443/wss".into()],
        )
        .await
        .unwrap();
        assert_eq!(
            b.relay_target().await.unwrap(),
            Some(RelayTarget {
                local_listen: "/ip4/127.0.0.1/tcp/4001/ws".into(),
                live: true
            })
        );
        let deal = a4_record();
        assert_eq!(
            a.insert_new_deal_fenced(&fa, &deal).await.unwrap(),
            Inserted::Yes
        );
        // A renewal extends from the database's now.
        let renewed = a.renew(&fa, short).await.unwrap().unwrap();
        assert_eq!(renewed.generation, 1);
        assert!(renewed.at >= ga.at);

        // A stops renewing (paused, say). The database expires it.
        let expired_at = until_expired(&b).await;
        assert!(expired_at >= renewed.expires_at);
        // The relay no longer counts A's address as live.
        assert_eq!(
            b.relay_target().await.unwrap(),
            Some(RelayTarget {
                local_listen: "/ip4/127.0.0.1/tcp/4001/ws".into(),
                live: false
            })
        );
        // Even with no one else around, A's expired lease fences its writes.
        assert!(is_fenced(
            a.insert_new_deal_fenced(&fa, &other_record(3)).await
        ));
        assert_eq!(a.renew(&fa, short).await.unwrap(), None);

        // B takes over: generation 2, and the listen address is cleared.
        let gb = b.try_acquire("b", Some(1), TTL).await.unwrap().unwrap();
        assert_eq!(gb.generation, 2);
        let fb = fence("b", &gb);
        assert_eq!(b.relay_target().await.unwrap(), None);
        // A second acquisition at the same expected generation loses.
        assert_eq!(a.try_acquire("a", Some(1), TTL).await.unwrap(), None);

        // A, resumed, still believes it leads: every write it makes fails.
        let mut updated = deal.clone();
        updated
            .apply(DealEvent::Transferring { bytes_received: 5 })
            .unwrap();
        assert!(is_fenced(a.update_deal_fenced(&fa, &updated).await));
        assert!(is_fenced(
            a.insert_new_deal_fenced(&fa, &other_record(4)).await
        ));
        assert!(is_fenced(
            a.set_local_listen(&fa, "/ip4/127.0.0.1/tcp/9999/ws", &[])
                .await
        ));
        assert_eq!(a.renew(&fa, TTL).await.unwrap(), None);
        assert!(!a.release(&fa).await.unwrap());
        // Nothing A tried landed.
        assert_eq!(b.deal_by_uuid(DealUuid([4; 16])).await.unwrap(), None);
        assert_eq!(
            b.deal_by_uuid(deal.uuid)
                .await
                .unwrap()
                .unwrap()
                .n_bytes_received,
            0
        );
        assert_eq!(b.relay_target().await.unwrap(), None);

        // B writes under generation 2.
        b.set_local_listen(&fb, "/ip4/127.0.0.1/tcp/4002/ws", &[])
            .await
            .unwrap();
        b.update_deal_fenced(&fb, &updated).await.unwrap();
        assert_eq!(
            a.deal_by_uuid(deal.uuid)
                .await
                .unwrap()
                .unwrap()
                .n_bytes_received,
            5
        );
        assert_eq!(
            a.relay_target().await.unwrap(),
            Some(RelayTarget {
                local_listen: "/ip4/127.0.0.1/tcp/4002/ws".into(),
                live: true
            })
        );

        // B releases (graceful shutdown): A acquires at once, generation 3.
        assert!(b.release(&fb).await.unwrap());
        assert!(!b.release(&fb).await.unwrap(), "release is conditional");
        assert_eq!(a.relay_target().await.unwrap(), None);
        let read = a.read_lease().await.unwrap();
        assert_eq!(
            read.row,
            Some(LeaseRow {
                holder: None,
                generation: 2,
                expires_at: None
            })
        );
        let started = Instant::now();
        let ga3 = a.try_acquire("a", Some(2), TTL).await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(ga3.generation, 3);
        assert!(is_fenced(b.update_deal_fenced(&fb, &updated).await));

        // A node that finds its own name on a live row (its previous incarnation)
        // retakes it with a fresh generation; the old generation is fenced out.
        let ga4 = a.try_acquire("a", Some(3), TTL).await.unwrap().unwrap();
        assert_eq!(ga4.generation, 4);
        assert!(is_fenced(
            a.update_deal_fenced(&fence("a", &ga3), &updated).await
        ));
        a.update_deal_fenced(&fence("a", &ga4), &updated)
            .await
            .unwrap();
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
