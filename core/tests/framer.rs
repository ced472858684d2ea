//! The framer finds the end of one item from the bytes alone, whatever the chunking.
use dealport_core::wire::framer::{Frame, FrameError, Framer, MAX_DEPTH};
use proptest::prelude::*;

mod common;

fn a4() -> Vec<u8> {
    common::vector("A4")
}

/// Read from `stream` the way a stream handler does: only as many bytes as the hint allows.
fn read_like_a_handler(stream: &[u8], max: usize) -> Result<(usize, usize), FrameError> {
    let mut f = Framer::new(max);
    let mut buf = Vec::new();
    let mut reads = 0;
    loop {
        match f.advance(&buf)? {
            Frame::Complete(n) => return Ok((n, buf.len())),
            Frame::NeedMore => {
                let take = f.read_hint().min(stream.len() - buf.len());
                assert!(take > 0, "framer asked for more than the stream has");
                buf.extend_from_slice(&stream[buf.len()..buf.len() + take]);
                reads += 1;
                assert!(reads < 10_000);
            }
        }
    }
}

#[test]
fn one_byte_at_a_time_completes_exactly_at_the_end() {
    let item = a4();
    let mut f = Framer::default();
    for i in 0..item.len() {
        assert_eq!(f.advance(&item[..i]).unwrap(), Frame::NeedMore, "at {i}");
    }
    assert_eq!(f.advance(&item).unwrap(), Frame::Complete(item.len()));
}

#[test]
fn never_reads_past_the_item() {
    let mut stream = a4();
    let len = stream.len();
    stream.extend_from_slice(b"next message that must stay unread");
    let (n, consumed) = read_like_a_handler(&stream, 4 << 20).unwrap();
    assert_eq!((n, consumed), (len, len));
}

#[test]
fn bytes_after_the_item_are_not_inspected() {
    let mut stream = a4();
    let len = stream.len();
    stream.extend_from_slice(&[0xff, 0x1f, 0xbf]); // garbage that would fail a walk
    assert_eq!(
        Framer::default().advance(&stream).unwrap(),
        Frame::Complete(len)
    );
}

#[test]
fn an_item_over_the_cap_is_refused_from_its_header() {
    // A byte string header announcing 5 MiB: refused before any payload arrives.
    let header = [0x5a, 0x00, 0x50, 0x00, 0x00];
    assert_eq!(
        Framer::new(4 << 20).advance(&header),
        Err(FrameError::TooLarge { max: 4 << 20 })
    );
    // A map announcing more entries than the cap could ever hold.
    let header = [0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        Framer::new(1024).advance(&header),
        Err(FrameError::TooLarge { .. })
    ));
    // The cap counts the whole item, not only string payloads.
    let item = a4();
    assert!(matches!(
        read_like_a_handler(&item, item.len() - 1),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(read_like_a_handler(&item, item.len()).is_ok());
}

#[test]
fn nesting_is_bounded() {
    let deep = vec![0x81; MAX_DEPTH + 1];
    assert_eq!(
        Framer::default().advance(&deep),
        Err(FrameError::TooDeep { max: MAX_DEPTH })
    );
    let mut ok = vec![0x81; MAX_DEPTH];
    ok.push(0x00);
    assert_eq!(
        Framer::default().advance(&ok),
        Ok(Frame::Complete(MAX_DEPTH + 1))
    );
}

#[test]
fn header_rules_match_cbor_gen() {
    let f = |b: &[u8]| Framer::default().advance(b);
    assert_eq!(f(&[0x18, 0x05]), Err(FrameError::NonMinimal { offset: 0 }));
    assert_eq!(
        f(&[0x19, 0x00, 0xff]),
        Err(FrameError::NonMinimal { offset: 0 })
    );
    assert_eq!(f(&[0x5f]), Err(FrameError::Indefinite { offset: 0 }));
    assert_eq!(
        f(&[0x1c]),
        Err(FrameError::Reserved {
            offset: 0,
            info: 28
        })
    );
    assert_eq!(f(&[0xf8, 0x10]), Err(FrameError::BadSimple { offset: 0 }));
    assert_eq!(f(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]), Ok(Frame::Complete(9)));
    assert_eq!(f(&[0xd8, 0x2a, 0x41, 0x00]), Ok(Frame::Complete(4)));
    assert_eq!(f(&[0xa0]), Ok(Frame::Complete(1)));
    assert_eq!(f(&[]), Ok(Frame::NeedMore));
}

proptest! {
    #[test]
    fn chunking_never_changes_the_answer(bytes in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(0usize..600, 0..8)) {
        let whole = Framer::new(512).advance(&bytes);
        let mut f = Framer::new(512);
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= bytes.len()).collect();
        cuts.sort_unstable();
        let mut last = Ok(Frame::NeedMore);
        for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            last = f.advance(&bytes[..c]);
            if !matches!(last, Ok(Frame::NeedMore)) {
                break;
            }
        }
        prop_assert_eq!(last, whole);
    }
}
