//! The transfer runner's queue and rescan place (core::download_queue), driven over a
//! store's waiting deals held as values: each pass reads only what fits the queue.
use dealport_core::{download_queue::DownloadQueue, wire::DealUuid};

fn uuid(n: u32) -> DealUuid {
    let mut b = [0u8; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    DealUuid(b)
}

fn number(u: DealUuid) -> u32 {
    u32::from_be_bytes(u.0[12..].try_into().unwrap())
}

const PAGE: usize = 7;

/// One pass over a store whose waiting deals are `0..n`, paged as
/// `Store::awaiting_download` pages them; the UUIDs it read.
fn pass(q: &mut DownloadQueue, n: u32) -> usize {
    let mut read = 0;
    q.start_pass();
    while let Some(after) = q.next_read() {
        let from = after.map_or(0, |u| number(u) + 1);
        let page: Vec<DealUuid> = (from..n).take(PAGE).map(uuid).collect();
        read += page.len();
        q.took_page(&page, PAGE);
    }
    read
}

/// Start every queued deal and finish it.
fn drain(q: &mut DownloadQueue) -> Vec<DealUuid> {
    let mut out = Vec::new();
    while let Some(u) = q.start_next() {
        q.done(u);
        out.push(u);
    }
    out
}

#[test]
fn a_pass_stops_at_a_full_queue_and_the_next_goes_on_from_there() {
    let mut q = DownloadQueue::new(10);
    // Two pages of 7 fill 10 places: the backlog of 1,000 is not read.
    assert_eq!(pass(&mut q, 1000), 14);
    assert!(!q.wants_scan(), "the queue is full");
    let first = drain(&mut q);
    assert_eq!(first, (0..10).map(uuid).collect::<Vec<_>>());
    assert!(q.wants_scan(), "dry, and the store has more");
    assert_eq!(
        pass(&mut q, 1000),
        14,
        "from deal 10 on, not from the start"
    );
    let second = drain(&mut q);
    assert_eq!(second, (10..20).map(uuid).collect::<Vec<_>>());
    // Every deal once, in order, until a pass reaches the end.
    let mut all = [first, second].concat();
    while q.wants_scan() {
        pass(&mut q, 1000);
        all.extend(drain(&mut q));
    }
    assert_eq!(all, (0..1000).map(uuid).collect::<Vec<_>>());
    // The pass after the end starts from the first deal.
    pass(&mut q, 1000);
    assert_eq!(q.start_next(), Some(uuid(0)));
}

#[test]
fn a_full_queue_reads_nothing() {
    let mut q = DownloadQueue::new(3);
    for n in 0..3 {
        q.offer(uuid(100 + n));
    }
    assert_eq!(pass(&mut q, 1000), 0);
}

#[test]
fn a_pass_over_a_short_backlog_reads_it_all_once() {
    let mut q = DownloadQueue::new(100);
    assert_eq!(pass(&mut q, 20), 20);
    assert!(!q.wants_scan());
    assert_eq!(drain(&mut q).len(), 20);
    assert!(
        !q.wants_scan(),
        "the end was reached: the timer's rescan, not at once"
    );
}

#[test]
fn a_deal_is_queued_once_until_done() {
    let mut q = DownloadQueue::new(5);
    q.offer(uuid(1));
    q.offer(uuid(1));
    assert_eq!(q.start_next(), Some(uuid(1)));
    q.offer(uuid(1));
    assert_eq!(q.start_next(), None, "running: not queued again");
    q.done(uuid(1));
    q.offer(uuid(1));
    assert_eq!(q.start_next(), Some(uuid(1)));
}

#[test]
fn a_notice_that_finds_the_queue_full_asks_for_a_scan_once_it_drains() {
    let mut q = DownloadQueue::new(1);
    q.offer(uuid(1));
    q.offer(uuid(2));
    assert!(!q.wants_scan());
    drain(&mut q);
    assert!(q.wants_scan());
}

#[test]
fn a_failed_read_ends_the_pass_where_it_stood() {
    let mut q = DownloadQueue::new(10);
    pass(&mut q, 1000);
    drain(&mut q);
    q.start_pass();
    assert_eq!(q.next_read(), Some(Some(uuid(9))));
    q.end_pass();
    assert_eq!(q.next_read(), None);
    assert!(
        !q.wants_scan(),
        "no scan at once after an error: the timer's"
    );
    pass(&mut q, 1000);
    assert_eq!(q.start_next(), Some(uuid(10)));
}
