//! Paged reads of the deals, on both backends: `list_deals_page` walks every deal once,
//! in UUID byte order, `limit` at a time.
use std::{sync::Arc, time::Duration};

use dealport_core::wire::DealUuid;
use dealport_node::store::{
    postgres::{PostgresOptions, PostgresStore},
    sled::SledStore,
    Store,
};
use dealport_testkit::{
    node::{a4_deal, hold_lease, page_walk, runtime},
    postgres::PgServer,
};
use futures::executor::block_on;

async fn pages_walk_every_deal_once_in_order(store: Arc<dyn Store>) {
    let (_gate, fence) = hold_lease(&store).await;
    // Inserted out of order; 0x80 and above check the order is by unsigned bytes.
    let ids: Vec<u8> = vec![0x90, 0x01, 0x7f, 0xff, 0x33, 0x80, 0x10];
    for b in &ids {
        store
            .insert_new_deal_fenced(&fence, &a4_deal(*b))
            .await
            .unwrap();
    }
    let mut sorted = ids.clone();
    sorted.sort();
    for limit in [1, 3, 7, 100] {
        let seen: Vec<u8> = page_walk(store.as_ref(), limit)
            .await
            .iter()
            .map(|u| u.0[0])
            .collect();
        assert_eq!(seen, sorted, "limit {limit}");
    }
    assert_eq!(
        store.list_deals_page(None, 2).await.unwrap(),
        vec![a4_deal(0x01), a4_deal(0x10)]
    );
    assert!(store
        .list_deals_page(Some(DealUuid([0xff; 16])), 10)
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn sled_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
    block_on(pages_walk_every_deal_once_in_order(store));
}

#[test]
fn postgres_pages() {
    let server = PgServer::start();
    block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            PostgresStore::connect(&server.url(), PostgresOptions::default())
                .await
                .unwrap(),
        );
        dealport_testkit::node::within(
            Duration::from_secs(60),
            pages_walk_every_deal_once_in_order(store),
        )
        .await;
    });
}
