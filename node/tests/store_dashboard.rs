//! The dashboard's store reads on both backends, against a plain in-memory oracle: the
//! filtered, ordered pages (every filter, both orders, paged by cursor to the end: each
//! deal once, in order), the counts per state, the accepted/failed per hour and the
//! timeline; on sled also after a reopen and for a store written before the indexes.
use std::{sync::Arc, time::Duration};

use dealport_core::{
    dashboard::{
        deal_state_code, hour_of, Cursor, DealQuery, HourCount, Order, StateFilter, CHECKPOINTS,
        HOUR_NANOS,
    },
    deal::{Checkpoint, DealEvent, DealRecord},
    wire::{Address, Cbor, Cid, DealParams, DealUuid},
};
use dealport_node::store::{sled::SledStore, Fence, Store};
use dealport_testkit::{
    node::{event_to, golden, hold_lease, postgres_store, reopen_sled, runtime, within},
    postgres::PgServer,
};
use futures::executor::block_on;

const N: u8 = 40;
const T0: i64 = 1_700_000_000_000_000_000;

/// Deal `i`: one of two clients, accepted at one of a few hours (two deals share each
/// time, so the UUID breaks ties), moved to a checkpoint, every fifth one failed.
fn deal(i: u8) -> DealRecord {
    let mut params = DealParams::from_cbor(&golden("A4")).unwrap();
    params.deal_uuid = DealUuid([i.wrapping_mul(37); 16]);
    let p = &mut params.client_deal_proposal.proposal;
    p.start_epoch += i64::from(i);
    if i % 2 == 1 {
        p.client = Address::parse("f01234").unwrap();
    }
    p.piece_cid = Cid::v1(0xf101, 0x1012, &[i; 32]);
    let created = T0 + i64::from(i / 2 % 7) * HOUR_NANOS + i64::from(i % 3);
    DealRecord::new_accepted(params.to_cbor(), params, String::new(), created)
}

fn moved(i: u8) -> DealRecord {
    let mut d = deal(i);
    let target = CHECKPOINTS[usize::from(i) % 7];
    for c in CHECKPOINTS.iter().skip(1).take_while(|c| **c <= target) {
        d.apply(event_to(*c, &d, i)).unwrap();
    }
    if i.is_multiple_of(5) && target != Checkpoint::Complete {
        d.apply(DealEvent::Failed("broken".into())).unwrap();
    }
    d
}

async fn write(store: &dyn Store, fence: &Fence) -> Vec<DealRecord> {
    let mut all = Vec::new();
    for i in 0..N {
        store.insert_new_deal_fenced(fence, &deal(i)).await.unwrap();
        let d = moved(i);
        if d != deal(i) {
            store.update_deal_fenced(fence, &d).await.unwrap();
        }
        all.push(d);
    }
    all
}

/// What `q` must give, from the deals in memory.
fn oracle(all: &[DealRecord], q: &DealQuery) -> Vec<DealUuid> {
    let codes = q.state.codes();
    let mut v: Vec<&DealRecord> = all
        .iter()
        .filter(|d| {
            codes
                .as_ref()
                .is_none_or(|c| c.contains(&deal_state_code(d)))
        })
        .filter(|d| {
            q.client
                .as_ref()
                .is_none_or(|c| *c == d.params.client_deal_proposal.proposal.client.to_string())
        })
        .collect();
    v.sort_by_key(|d| (d.created_at_unix_nanos, d.uuid.0));
    if q.order == Order::Newest {
        v.reverse();
    }
    v.iter().map(|d| d.uuid).collect()
}

/// Every page of `q` to the end, `limit` at a time.
async fn all_pages(store: &dyn Store, q: &DealQuery) -> Vec<DealUuid> {
    let mut q = q.clone();
    let mut out = Vec::new();
    loop {
        let page = store.query_deals(&q).await.unwrap();
        assert!(page.len() <= q.limit);
        out.extend(page.iter().map(|d| d.uuid));
        match page.last() {
            Some(last) if page.len() == q.limit => q.after = Some(Cursor::of(last)),
            _ => return out,
        }
    }
}

async fn check(store: &dyn Store, all: &[DealRecord]) {
    let filters = [
        StateFilter::Any,
        StateFilter::InProgress,
        StateFilter::Done,
        StateFilter::Failed,
        StateFilter::At(Checkpoint::Transferred),
        StateFilter::At(Checkpoint::Accepted),
    ];
    let clients = [None, Some(Address::parse("f01234").unwrap().to_string())];
    for state in filters {
        for client in &clients {
            for order in [Order::Newest, Order::Oldest] {
                let q = DealQuery {
                    state,
                    client: client.clone(),
                    order,
                    after: None,
                    limit: 3,
                };
                let want = oracle(all, &q);
                assert!(
                    state != StateFilter::Any || !want.is_empty(),
                    "the oracle finds deals"
                );
                assert_eq!(all_pages(store, &q).await, want, "{q:?}");
            }
        }
    }
    let counts = store.state_counts().await.unwrap();
    for code in dealport_core::dashboard::all_state_codes() {
        let n = all.iter().filter(|d| deal_state_code(d) == code).count() as u64;
        assert_eq!(counts.get(code), n, "state {code}");
    }
    assert_eq!(counts.total(), u64::from(N));
    let hours = store.hourly_counts(hour_of(T0) + 1).await.unwrap();
    for h in hour_of(T0) + 1..hour_of(T0) + 7 {
        let of_hour: Vec<_> = all
            .iter()
            .filter(|d| hour_of(d.created_at_unix_nanos) == h)
            .collect();
        let want = HourCount {
            hour: h,
            accepted: of_hour.len() as u64,
            failed: of_hour.iter().filter(|d| d.is_failed()).count() as u64,
        };
        assert_eq!(hours.iter().find(|c| c.hour == h), Some(&want));
    }
    assert!(
        hours.iter().all(|c| c.hour > hour_of(T0)),
        "from since_hour on"
    );
    // Deal 8 went Accepted -> … -> AddedPiece: a time for each state it was written in.
    let d8 = moved(8);
    let t = store.deal_timeline(d8.uuid).await.unwrap();
    assert_eq!(t.first().map(|x| x.0), Some(0), "Accepted first: {t:?}");
    assert!(t.iter().any(|x| x.0 == deal_state_code(&d8)), "{t:?}");
    assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn sled_dashboard_reads_match_the_oracle_across_a_reopen_and_for_an_old_store() {
    let dir = tempfile::tempdir().unwrap();
    let all = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), runtime()).unwrap());
        block_on(async {
            let (_gate, fence) = hold_lease(&store).await;
            let all = write(&*store, &fence).await;
            check(&*store, &all).await;
            all
        })
    };
    block_on(check(&reopen_sled(dir.path()), &all));
    // As a store written before the dashboard: no ui trees, no marker. The timeline of
    // such a store holds only what open rebuilt (the current state); check the rest.
    {
        let mut n = 0;
        let db = loop {
            match sled::Config::new()
                .path(SledStore::path_in(dir.path()))
                .open()
            {
                Ok(db) => break db,
                Err(_) if n < 100 => {
                    n += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        for t in ["ui_lists", "ui_counters"] {
            db.drop_tree(t).unwrap();
        }
        db.open_tree("meta").unwrap().remove("ui_index_v1").unwrap();
        db.flush().unwrap();
    }
    block_on(check(&reopen_sled(dir.path()), &all));
}

#[test]
fn postgres_dashboard_reads_match_the_oracle() {
    let server = PgServer::start();
    block_on(within(Duration::from_secs(60), async {
        let url = server.url();
        let store: Arc<dyn Store> = postgres_store(&url).await;
        let (_gate, fence) = hold_lease(&store).await;
        let all = write(&*store, &fence).await;
        check(&*store, &all).await;
        // Rows as written before migration 5: no client. The next connect fills them.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query("UPDATE deals SET client = NULL")
            .execute(&pool)
            .await
            .unwrap();
        let again: Arc<dyn Store> = postgres_store(&url).await;
        check(&*again, &all).await;
    }));
}
