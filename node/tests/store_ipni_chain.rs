//! The IPNI chain in the store, both backends: an advertisement is appended only at the
//! head it names, once per (deal, removal, part), only under the live lease; the chain,
//! its blocks and the announced set survive a reopen; a removal takes the deal out of
//! the announced set.
use std::{sync::Arc, time::Duration};

use dealport_core::{
    ipni::{ad::dag_json_cid, Block},
    wire::DealUuid,
};
use dealport_node::store::{sled::SledStore, Fence, IpniPublish, Published, Store, StoreError};
use dealport_testkit::{
    node::{postgres_store, runtime, take_lease, within},
    postgres::PgServer,
};
use futures::executor::block_on;

const TTL: Duration = Duration::from_secs(30);

fn block(text: &str) -> Block {
    Block {
        cid: dag_json_cid(text.as_bytes()),
        bytes: text.as_bytes().to_vec(),
    }
}

fn deal(n: u8) -> DealUuid {
    DealUuid([n; 16])
}

fn publish(ad: &Block, previous: Option<&Block>, d: DealUuid, is_rm: bool) -> IpniPublish {
    IpniPublish {
        ad: ad.clone(),
        previous: previous.map(|b| b.cid.clone()),
        deal: d,
        is_rm,
        part: 0,
    }
}

async fn build_chain(store: &dyn Store) {
    let f = take_lease(store, "a", TTL).await;
    let (a1, a2, a3) = (
        block("{\"ad\":1}"),
        block("{\"ad\":2}"),
        block("{\"ad\":3}"),
    );
    assert_eq!(store.ipni_head().await.unwrap(), None);
    let chunk = block("{\"Entries\":[]}");
    store.put_ipni_chunk(&chunk).await.unwrap();
    store.put_ipni_chunk(&chunk).await.unwrap();
    assert_eq!(
        store
            .publish_ipni_ad(&f, &publish(&a1, None, deal(1), false))
            .await
            .unwrap(),
        Published::Yes { seq: 1 }
    );
    // Once per (deal, is_rm, part): a second try finds the first.
    assert_eq!(
        store
            .publish_ipni_ad(&f, &publish(&a2, None, deal(1), false))
            .await
            .unwrap(),
        Published::Already(a1.cid.clone())
    );
    // Only at the head: a fork from the genesis is refused.
    assert_eq!(
        store
            .publish_ipni_ad(&f, &publish(&a2, None, deal(2), false))
            .await
            .unwrap(),
        Published::HeadMoved
    );
    assert_eq!(
        store
            .publish_ipni_ad(&f, &publish(&a2, Some(&a2), deal(2), false))
            .await
            .unwrap(),
        Published::HeadMoved
    );
    assert_eq!(
        store
            .publish_ipni_ad(&f, &publish(&a2, Some(&a1), deal(2), false))
            .await
            .unwrap(),
        Published::Yes { seq: 2 }
    );
    assert_eq!(
        store.ipni_announced_page(None, 10).await.unwrap(),
        vec![deal(1), deal(2)]
    );
    assert_eq!(
        store.ipni_announced_page(Some(deal(1)), 10).await.unwrap(),
        vec![deal(2)]
    );
    // The removal of deal 1.
    assert_eq!(
        store
            .publish_ipni_ad(&f, &publish(&a3, Some(&a2), deal(1), true))
            .await
            .unwrap(),
        Published::Yes { seq: 3 }
    );
    // A stale fence writes nothing.
    let stale = Fence {
        node: "a".into(),
        generation: f.generation + 1,
    };
    let refused = store
        .publish_ipni_ad(
            &stale,
            &publish(&block("{\"ad\":4}"), Some(&a3), deal(3), false),
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
}

async fn check_chain(store: &dyn Store) {
    let head = store.ipni_head().await.unwrap().unwrap();
    assert_eq!(head.cid, block("{\"ad\":3}").cid);
    assert_eq!(head.seq, 3);
    for text in ["{\"ad\":1}", "{\"ad\":2}", "{\"ad\":3}", "{\"Entries\":[]}"] {
        assert_eq!(
            store.ipni_block(&block(text).cid).await.unwrap().as_deref(),
            Some(text.as_bytes())
        );
    }
    assert_eq!(
        store.ipni_block(&block("{\"ad\":4}").cid).await.unwrap(),
        None
    );
    let ads = store.ipni_ads_of_deal(deal(1)).await.unwrap();
    assert_eq!(ads.len(), 2);
    assert_eq!((ads[0].is_rm, ads[0].seq), (false, 1));
    assert_eq!(
        (ads[1].is_rm, ads[1].seq, ads[1].cid.clone()),
        (true, 3, block("{\"ad\":3}").cid)
    );
    assert_eq!(
        store.ipni_announced_page(None, 10).await.unwrap(),
        vec![deal(2)]
    );
}

#[test]
fn sled_ipni_chain() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), runtime()).unwrap();
        block_on(async {
            build_chain(&store).await;
            check_chain(&store).await;
        });
    }
    let mut n = 0;
    let again = loop {
        match SledStore::open(dir.path(), runtime()) {
            Ok(s) => break s,
            Err(_) if n < 100 => {
                n += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    block_on(check_chain(&again));
}

#[test]
fn postgres_ipni_chain_and_a_second_holder() {
    let server = PgServer::start();
    block_on(within(Duration::from_secs(60), async {
        let url = server.url();
        let a: Arc<dyn Store> = postgres_store(&url).await;
        build_chain(&*a).await;
        check_chain(&*a).await;
        // Node a releases; node b takes over and extends the same chain.
        let read = a.read_lease().await.unwrap().row.unwrap();
        let fa = Fence {
            node: "a".into(),
            generation: read.generation,
        };
        assert!(a.release(&fa).await.unwrap());
        let b: Arc<dyn Store> = postgres_store(&url).await;
        check_chain(&*b).await;
        let fb = take_lease(&*b, "b", TTL).await;
        let a4 = block("{\"ad\":4}");
        let a3 = block("{\"ad\":3}");
        let refused = a
            .publish_ipni_ad(&fa, &publish(&a4, Some(&a3), deal(4), false))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Fenced { .. })),
            "{refused:?}"
        );
        assert_eq!(
            b.publish_ipni_ad(&fb, &publish(&a4, Some(&a3), deal(4), false))
                .await
                .unwrap(),
            Published::Yes { seq: 4 }
        );
    }));
}
