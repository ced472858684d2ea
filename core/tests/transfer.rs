//! The data rules of a transfer (core/src/transfer.rs): exact size, declared size, the
//! piece CID, and that a resumed intake commits to the same piece as one pass.
use dealport_core::{
    commp::{piece_cid, CommP},
    transfer::{DataError, Intake},
};

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn cid_of(bytes: &[u8], padded: u64) -> dealport_core::wire::Cid {
    let mut c = CommP::new();
    c.update(bytes);
    piece_cid(&c.finish(padded).unwrap())
}

#[test]
fn exact_data_matches_its_piece_cid() {
    let d = data(3000);
    let cid = cid_of(&d, 4096);
    let mut i = Intake::new(Some(3000), 4096);
    i.check_declared(3000).unwrap();
    for c in d.chunks(700) {
        i.take(c).unwrap();
    }
    assert_eq!(i.finish(&cid), Ok(3000));
}

#[test]
fn a_resumed_intake_commits_to_the_same_piece() {
    let d = data(3000);
    let cid = cid_of(&d, 4096);
    let mut first = Intake::new(Some(3000), 4096);
    first.take(&d[..1234]).unwrap();
    let saved = first.commp().snapshot();
    let mut resumed = Intake::resume(Some(3000), 4096, CommP::restore(&saved).unwrap());
    assert_eq!(resumed.received(), 1234);
    resumed.take(&d[1234..]).unwrap();
    assert_eq!(resumed.finish(&cid), Ok(3000));
}

#[test]
fn every_bad_data_has_its_own_sentence() {
    let d = data(3000);
    let cid = cid_of(&d, 4096);
    let mut i = Intake::new(Some(3000), 4096);
    i.take(&d).unwrap();
    let e = i.take(&[0]).unwrap_err();
    assert_eq!(e, DataError::MoreThanSize { size: 3000 });
    assert!(
        e.to_string().contains("more than the transfer size 3000"),
        "{e}"
    );
    assert_eq!(i.received(), 3000, "the refused byte is not taken");

    let e = i.check_declared(3100).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("3100") && s.contains("3000"), "{s}");

    let mut short = Intake::new(Some(3000), 4096);
    short.take(&d[..2999]).unwrap();
    let s = short.finish(&cid).unwrap_err().to_string();
    assert!(s.contains("2999") && s.contains("3000"), "{s}");

    let mut wrong = d.clone();
    wrong[1500] ^= 1;
    let mut w = Intake::new(Some(3000), 4096);
    w.take(&wrong).unwrap();
    let e = w.finish(&cid).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains(&cid.to_string()) && s.contains(&cid_of(&wrong, 4096).to_string()),
        "{s}"
    );

    // Offline: no declared size, but never more than the piece holds (4096/128*127).
    let mut off = Intake::new(None, 4096);
    off.check_declared(123).unwrap();
    off.take(&vec![1; 4064]).unwrap();
    let e = off.take(&[1]).unwrap_err();
    assert_eq!(
        e,
        DataError::MoreThanPiece {
            padded: 4096,
            capacity: 4064
        }
    );
}
