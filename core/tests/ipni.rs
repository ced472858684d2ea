//! IPNI objects against go-libipni's published example and an independent dag-cbor
//! decoder (serde_ipld_dagcbor).
use dealport_core::ipni::{
    ad::{dag_json_cid, no_entries, Advertisement, Chunker, EntryChunk, MAX_CHUNK_ENTRIES},
    announce_json, build_ad,
    envelope::{self, unsigned_bytes, Envelope, Signer, AD_SIGNATURE_CODEC},
    head_signed_bytes,
    ipld::Ipld,
    metadata, signed_head, AdContent, TRANSPORT_FILECOIN_PIECE_HTTP, TRANSPORT_IPFS_GATEWAY_HTTP,
};
use dealport_core::wire::Cid;
use ipld_core::ipld::Ipld as RefIpld;
use sha2::{Digest, Sha256};

// go-libipni dagsync/ipnisync/sync_test.go: an advertisement taken from nft.storage's
// publisher, signed by QmQzqxhK82kAmKvARFZSkUVS6fo9sySaiogAnx5EnZ6ZmC (an RSA key).
const SAMPLE_CID: &str = "baguqeeranpqrweyey2zsab2mmt33ixc3jkg27p5ri3abr5di2pbbsbaig74q";
const SAMPLE_AD: &str = r#"{"Addresses":["/dns4/elastic.dag.house/tcp/443/wss"],"ContextID":{"/":{"bytes":"YmFndXFlZXJhdW1qbGM3MjRhenFucmRiNXh3dDJ3bWdxMmZ4N2lrd2N6MmxtNHhlNWR0dWx4NHIzemQycQ=="}},"Entries":{"/":"baguqeeraumjlc724azqnrdb5xwt2wmgq2fx7ikwcz2lm4xe5dtulx4r3zd2q"},"IsRm":false,"Metadata":{"/":{"bytes":"gBI"}},"PreviousID":{"/":"baguqeeramj6uf7ie5brhk5ivzi7e4mccndzke6fizc4qaie6t73xrvspkxrq"},"Provider":"bafzbeibhqavlasjc7dvbiopygwncnrtvjd2xmryk5laib7zyjor6kf3avm","Signature":{"/":{"bytes":"CqsCCAASpgIwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQDYi9qW5J1UIE4CUaRxxoROyqHkKZ2nhGRGWDurhNhPiNQ+n0sCy8rREEF9lertFt2n81c1Ik4W/8HZKxvk8PYKStrlGWjur6UoFyt+WuS/1hkRVyqEXjzBF7cLvfYQ75UaATIbLhXWpXqys1DVdh2snD0jnDugF4J72ZboIz6gwZC+BEd5axeVaibB9gJcg+5P48ihq9SAbr4dQUS47OgISMNb3f6nHfK7FQFF/KYx80byJYMJ9Oxsw8CB6C8pmDTdqvzYBT9kCUdY+loN/IcBqEeNw/UF7l3ay/ZJ2Yq437k6kn5BoxaZfxlbZHItoBjiLSJ9FSD7gpnUO+lJAh9bAgMBAAESGy9pbmRleGVyL2luZ2VzdC9hZFNpZ25hdHVyZRoiEiAz1niaKM3G2J40Bz/3wQbElyuBh1+2Q1E9SBj9wNsE8iqAAgOO1BKwq1RRy7AkZksWRrDlClhXU5IHAiy9pHuYtI/ePbVANiMAisjIEkd7jtJx7uct+/q2BTTTVcmZS7iE4OMTUymVbPQJ21qrzB6l5hulKD5ieedkJngAPCpizXmI1Z32Ib1zkuEFMraRcFaQ0YWqBKoIBJjjO4POGIdB2SgrCO0aFSd94k+2lyudMeWK+OisGLI7r6+ovd8g1VmcspEgl6pfdlHvThM3TdYGa46LO3kSCZmTzbI/XPnbMKaITvbuS3p8gm6elxNagx7Jxw4oP7hVyINSJ9chRu/w0RiBO986WRwhkGz1jW5jUF6VG/cQODzwjhuACteHf9TWp18"}}}"#;

#[test]
fn the_go_libipni_sample_hashes_to_its_cid_and_its_envelope_carries_our_payload() {
    // The CID: dag-json codec, sha2-256 over exactly these bytes.
    assert_eq!(dag_json_cid(SAMPLE_AD.as_bytes()).to_string(), SAMPLE_CID);
    let ad = Advertisement::from_dag_json(SAMPLE_AD.as_bytes()).unwrap();
    assert_eq!(ad.metadata, vec![0x80, 0x12], "bitswap's transport code");
    assert!(!ad.is_rm);
    // The signature payload built here equals the one go signed (byte for byte).
    let env = ad.check_envelope().unwrap();
    assert_eq!(env.payload_type, AD_SIGNATURE_CODEC.as_bytes());
    assert_eq!(env.payload.len(), 34);
    assert_eq!(
        envelope::peer_id_of(&env.public_key),
        "QmQzqxhK82kAmKvARFZSkUVS6fo9sySaiogAnx5EnZ6ZmC"
    );
    // Our envelope writer gives back go's bytes.
    assert_eq!(env.to_bytes(), ad.signature);
    // A changed field breaks the payload.
    let mut other = ad.clone();
    other.is_rm = true;
    assert!(other.check_envelope().is_err());
    let mut other = ad;
    other.addresses.push("/ip4/1.2.3.4/tcp/1".into());
    assert!(other.check_envelope().is_err());
}

/// A signer for shape tests: its "signature" is the sha256 of the message.
struct HashSigner;
impl Signer for HashSigner {
    fn public_key(&self) -> Vec<u8> {
        envelope::ed25519_public_key(&[7; 32])
    }
    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        Sha256::digest(msg).to_vec()
    }
}

fn piece() -> Cid {
    Cid::parse("baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq").unwrap()
}

fn sample_ad(previous: Option<Cid>) -> (Advertisement, dealport_core::ipni::Block) {
    let content = AdContent {
        entries: dag_json_cid(b"x"),
        context_id: piece().as_bytes().to_vec(),
        metadata: metadata(&[TRANSPORT_IPFS_GATEWAY_HTTP]),
        addresses: vec!["/ip4/127.0.0.1/tcp/8080/http".into()],
        is_rm: false,
    };
    build_ad(previous, content, &HashSigner).unwrap()
}

#[test]
fn metadata_and_no_entries_are_go_libipnis_bytes() {
    assert_eq!(
        metadata(&[TRANSPORT_IPFS_GATEWAY_HTTP]),
        vec![0xa0, 0x12, 0x00]
    );
    assert_eq!(
        metadata(&[TRANSPORT_FILECOIN_PIECE_HTTP, TRANSPORT_IPFS_GATEWAY_HTTP]),
        vec![0xa0, 0x12, 0x00, 0xb0, 0x12, 0x00],
        "increasing order"
    );
    let mut want = vec![0x01, 0x55, 0x12, 0x10];
    want.extend_from_slice(&hex::decode("e3b0c44298fc1c149afbf4c8996fb924").unwrap());
    assert_eq!(no_entries().as_bytes(), want);
}

#[test]
fn the_envelope_signs_the_length_prefixed_fields() {
    let payload = [0x12, 0x20, 1, 2];
    let u = unsigned_bytes("indexer", AD_SIGNATURE_CODEC.as_bytes(), &payload);
    let mut want = vec![7];
    want.extend_from_slice(b"indexer");
    want.push(27);
    want.extend_from_slice(b"/indexer/ingest/adSignature");
    want.push(4);
    want.extend_from_slice(&payload);
    assert_eq!(u, want);
    let env = Envelope::seal_ad(&payload, &HashSigner);
    assert_eq!(env.signature, Sha256::digest(&want).to_vec());
    assert_eq!(Envelope::parse(&env.to_bytes()).unwrap(), env);
    // Field 1 is the public key message: 0x0a, length, then 08 01 12 20 <key>.
    assert_eq!(&env.to_bytes()[..6], &[0x0a, 36, 0x08, 0x01, 0x12, 0x20]);
}

#[test]
fn an_ad_in_dag_json_reads_back_and_its_cid_is_of_those_bytes() {
    let (first, b1) = sample_ad(None);
    let text = String::from_utf8(b1.bytes.clone()).unwrap();
    assert!(
        !text.contains("PreviousID"),
        "optional, absent in the first ad"
    );
    assert!(text.starts_with(
        r#"{"Addresses":["/ip4/127.0.0.1/tcp/8080/http"],"ContextID":{"/":{"bytes":""#
    ));
    assert_eq!(b1.cid, dag_json_cid(&b1.bytes));
    assert_eq!(Advertisement::from_dag_json(&b1.bytes).unwrap(), first);
    let (second, b2) = sample_ad(Some(b1.cid.clone()));
    assert_eq!(second.previous, Some(b1.cid.clone()));
    assert!(String::from_utf8(b2.bytes.clone())
        .unwrap()
        .contains(&format!(r#""PreviousID":{{"/":"{}"}}"#, b1.cid)));
    assert!(second.check_envelope().is_ok());
    assert_eq!(
        second.provider,
        envelope::peer_id_of(&HashSigner.public_key())
    );
    assert!(
        second.provider.starts_with("12D3KooW"),
        "{}",
        second.provider
    );
}

#[test]
fn dag_cbor_agrees_with_an_independent_decoder_and_is_canonical() {
    let (ad, _) = sample_ad(Some(dag_json_cid(b"prev")));
    let ours = ad.to_ipld().to_dag_cbor();
    let theirs: RefIpld = serde_ipld_dagcbor::from_slice(&ours).unwrap();
    let RefIpld::Map(m) = &theirs else {
        panic!("not a map")
    };
    assert_eq!(m["Provider"], RefIpld::String(ad.provider.clone()));
    assert_eq!(m["IsRm"], RefIpld::Bool(false));
    assert_eq!(m["ContextID"], RefIpld::Bytes(ad.context_id.clone()));
    assert_eq!(m["Metadata"], RefIpld::Bytes(ad.metadata.clone()));
    assert_eq!(m["Signature"], RefIpld::Bytes(ad.signature.clone()));
    let RefIpld::Link(e) = &m["Entries"] else {
        panic!("Entries not a link")
    };
    assert_eq!(e.to_bytes(), ad.entries.as_bytes());
    let RefIpld::Link(p) = &m["PreviousID"] else {
        panic!("PreviousID not a link")
    };
    assert_eq!(p.to_bytes(), ad.previous.as_ref().unwrap().as_bytes());
    assert_eq!(m.len(), 8);
    // serde_ipld_dagcbor writes canonical (length-first) order: same bytes.
    assert_eq!(serde_ipld_dagcbor::to_vec(&theirs).unwrap(), ours);
    // Same for an entry chunk.
    let chunk = EntryChunk {
        entries: vec![vec![0x12, 0x20, 9, 9], vec![0x12, 0x01, 1]],
        next: Some(dag_json_cid(b"n")),
    };
    let bytes = chunk.to_ipld().to_dag_cbor();
    let theirs: RefIpld = serde_ipld_dagcbor::from_slice(&bytes).unwrap();
    assert_eq!(serde_ipld_dagcbor::to_vec(&theirs).unwrap(), bytes);
    let RefIpld::Map(m) = theirs else { panic!() };
    assert_eq!(
        m["Entries"],
        RefIpld::List(vec![
            RefIpld::Bytes(vec![0x12, 0x20, 9, 9]),
            RefIpld::Bytes(vec![0x12, 0x01, 1])
        ])
    );
}

/// Walk a chain of chunk blocks from `head`, collecting every multihash.
fn walk(blocks: &[dealport_core::ipni::Block], head: &Cid) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = Some(head.clone());
    while let Some(c) = at {
        let b = blocks
            .iter()
            .find(|b| b.cid == c)
            .expect("linked chunk exists");
        assert_eq!(dag_json_cid(&b.bytes), c);
        let chunk = EntryChunk::from_dag_json(&b.bytes).unwrap();
        out.extend(chunk.entries);
        at = chunk.next;
    }
    out
}

#[test]
fn the_chunker_covers_every_multihash_within_its_limits_and_splits_ads() {
    let mhs: Vec<Vec<u8>> = (0u32..23)
        .map(|i| {
            let mut m = vec![0x12, 0x20];
            m.extend_from_slice(&Sha256::digest(i.to_be_bytes()));
            m
        })
        .collect();
    let mut c = Chunker::with_limits(4, 3);
    let mut blocks = Vec::new();
    let mut ads = Vec::new();
    for m in &mhs {
        let p = c.push(m.clone()).unwrap();
        blocks.extend(p.chunk);
        ads.extend(p.ad_full);
    }
    let (last, entries) = c.finish();
    blocks.extend(last);
    ads.push(entries);
    // 23 multihashes in chunks of 4: 6 chunks; 3 per ad: 2 ads.
    assert_eq!(blocks.len(), 6);
    assert_eq!(ads.len(), 2);
    let mut seen: Vec<Vec<u8>> = ads.iter().flat_map(|a| walk(&blocks, a)).collect();
    for b in &blocks {
        assert!(EntryChunk::from_dag_json(&b.bytes).unwrap().entries.len() <= 4);
    }
    seen.sort();
    let mut want = mhs.clone();
    want.sort();
    assert_eq!(seen, want);
    // Nothing pushed: the entries are go-libipni's NoEntries.
    assert_eq!(Chunker::new().finish(), (None, no_entries()));
    // A full-size chunk stays far below the spec's 4 MB.
    let mut c = Chunker::new();
    let mut first = None;
    for i in 0..=MAX_CHUNK_ENTRIES as u32 {
        let mut m = vec![0x12, 0x20];
        m.extend_from_slice(&Sha256::digest(i.to_be_bytes()));
        if let Some(b) = c.push(m).unwrap().chunk {
            first = Some(b);
        }
    }
    let first = first.expect("a chunk cut at the entry limit");
    assert!(first.bytes.len() < 2 << 20, "{}", first.bytes.len());
    assert!(c.push(vec![0; 200]).is_err(), "over-long multihash refused");
}

#[test]
fn the_head_and_the_announce_message_have_go_libipnis_shapes() {
    let (_, b) = sample_ad(None);
    let head = signed_head(&b.cid, Some("/indexer/ingest/mainnet"), &HashSigner);
    let json: serde_json::Value = serde_json::from_slice(&head.to_dag_json()).unwrap();
    assert_eq!(json["head"]["/"], b.cid.to_string());
    assert_eq!(json["topic"], "/indexer/ingest/mainnet");
    let signed = head_signed_bytes(&b.cid, Some("/indexer/ingest/mainnet"));
    assert_eq!(signed.len(), b.cid.as_bytes().len() + 23);
    let Some(Ipld::Bytes(sig)) = head.get("sig") else {
        panic!()
    };
    assert_eq!(sig, &Sha256::digest(&signed).to_vec());
    let msg: serde_json::Value =
        serde_json::from_slice(&announce_json(&b.cid, &[vec![4, 127, 0, 0, 1]])).unwrap();
    assert_eq!(msg["Cid"]["/"], b.cid.to_string());
    assert_eq!(msg["Addrs"][0], "BH8AAAE=");
    assert_eq!(msg["OrigPeer"], "");
}

#[test]
fn dag_json_reading_never_panics_and_refuses_odd_shapes() {
    for bad in [
        &b"{"[..],
        b"null",
        b"{\"/\":5}",
        b"{\"/\":{\"bytes\":\"!!\"}}",
        b"-1",
        b"1.5",
        &[0xff, 0xfe],
    ] {
        assert!(
            Ipld::from_dag_json(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(Advertisement::from_dag_json(b"{\"Provider\":\"x\"}").is_err());
    let deep = "[".repeat(64) + &"]".repeat(64);
    assert!(Ipld::from_dag_json(deep.as_bytes()).is_err());
}
