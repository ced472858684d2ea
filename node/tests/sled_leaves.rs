//! The vendored sled's change (vendor/README.md): a leaf of more than 16 entries splits
//! once its keys and values pass 4 KiB or it holds 512 entries, so small-key trees use
//! far fewer pages. Each shape of tree is filled in a scattered order, thinned so that
//! leaves merge, and read back whole and in both directions, before and after a reopen;
//! its leaves are counted from sled's own dump of the tree (`Debug for Tree`).

use std::{collections::BTreeMap, ops::RangeInclusive};

struct Shape {
    tree: &'static str,
    entries: u32,
    key_len: usize,
    value_len: usize,
    /// How many leaves the full tree may have.
    leaves: RangeInclusive<usize>,
}

const SHAPES: [Shape; 3] = [
    // The dashboard's and CID indexes' kind: ~40-byte keys, no values. Upstream's
    // split at 17 makes ~1,800 leaves of these.
    Shape {
        tree: "index",
        entries: 20_000,
        key_len: 40,
        value_len: 0,
        leaves: 1..=20_000 / 40,
    },
    // Keys so small that the entry cap, not the byte limit, ends a leaf.
    Shape {
        tree: "tiny",
        entries: 20_000,
        key_len: 3,
        value_len: 0,
        leaves: 20_000 / 512..=20_000 / 100,
    },
    // Deal records: large values, so leaves split at 17 entries as upstream does.
    Shape {
        tree: "records",
        entries: 2_000,
        key_len: 16,
        value_len: 600,
        leaves: 2_000 / 17..=2_000,
    },
];

fn key(i: u32, len: usize) -> Vec<u8> {
    let mut k = i.to_be_bytes()[4 - len.min(4)..].to_vec();
    k.resize(len, 0x5a);
    k
}

/// The leaves of `tree`: the nodes on the last level of sled's dump.
fn leaves(tree: &sled::Tree) -> usize {
    let dump = format!("{tree:?}");
    let last_level = dump.rsplit("\tlevel ").next().unwrap();
    last_level.lines().filter(|l| l.starts_with("\t\t")).count()
}

fn check(tree: &sled::Tree, want: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let got: Vec<(Vec<u8>, Vec<u8>)> = tree
        .iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().map(|(k, v)| (k, v)).eq(want.iter()));
    let back: Vec<Vec<u8>> = tree.iter().rev().map(|kv| kv.unwrap().0.to_vec()).collect();
    assert!(back.iter().eq(want.keys().rev()));
    for (k, v) in want.iter().step_by(97) {
        assert_eq!(tree.get(k).unwrap().as_deref(), Some(&v[..]));
    }
}

#[test]
fn small_entries_share_leaves_up_to_4_kib_and_every_tree_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut wants = Vec::new();
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        for shape in &SHAPES {
            let (n, key_len) = (shape.entries, shape.key_len);
            let tree = db.open_tree(shape.tree).unwrap();
            let mut want = BTreeMap::new();
            // 7919 is prime to every n here: each i once, in a scattered order.
            for i in (0..n).map(|i| (i * 7919) % n) {
                let (k, v) = (key(i, key_len), vec![(i % 251) as u8; shape.value_len]);
                tree.insert(&k[..], &v[..]).unwrap();
                want.insert(k, v);
            }
            let full = leaves(&tree);
            assert!(
                shape.leaves.contains(&full),
                "{}: {full} leaves",
                shape.tree
            );
            // Thin the middle half to one entry in ten, so leaves fall to merge.
            for i in (n / 4..3 * n / 4).filter(|i| i % 10 != 0) {
                let k = key(i, key_len);
                tree.remove(&k[..]).unwrap();
                want.remove(&k);
            }
            check(&tree, &want);
            wants.push(want);
        }
        db.flush().unwrap();
    }
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    for (shape, want) in SHAPES.iter().zip(&wants) {
        check(&db.open_tree(shape.tree).unwrap(), want);
    }
}
