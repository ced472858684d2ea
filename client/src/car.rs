//! A one-block CARv1 (ipld/specs transport/car/carv1): the header `{roots, version: 1}`
//! as dag-cbor, then one section, `varint(len) ‖ CID ‖ data`, the data a raw block whose
//! CID (CIDv1, raw codec, sha2-256) is the root. Enough for trying a deal out (`dealport
//! demo`, `dealport client car`); real data comes as CARs from the client's own tools.

use dealport_core::wire::{
    cbor::Writer,
    cid::{CODEC_RAW, MH_SHA2_256},
    varint, Cid,
};
use sha2::{Digest, Sha256};

/// The largest block a one-block CAR holds (IPFS's usual block size limit).
pub const MAX_BLOCK: usize = 1 << 20;

/// `data` as a one-block CAR; the CAR and its root (the payload CID).
pub fn one_block_car(data: &[u8]) -> Result<(Vec<u8>, Cid), String> {
    if data.len() > MAX_BLOCK {
        return Err(format!(
            "{} bytes do not fit one block (at most {MAX_BLOCK}): use your own CAR tool",
            data.len()
        ));
    }
    let root = Cid::v1(CODEC_RAW, MH_SHA2_256, &Sha256::digest(data));
    let mut header = Writer::new();
    // dag-cbor map keys in length-first order: "roots" before "version".
    header
        .map(2)
        .key("roots")
        .array(1)
        .value(&root)
        .key("version")
        .uint(1);
    let header = header.into_bytes();
    let mut car = Vec::with_capacity(header.len() + data.len() + 64);
    varint::put(&mut car, header.len() as u64);
    car.extend_from_slice(&header);
    varint::put(&mut car, (root.as_bytes().len() + data.len()) as u64);
    car.extend_from_slice(root.as_bytes());
    car.extend_from_slice(data);
    Ok((car, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "hello"'s raw CID is the well-known one; the layout is the CARv1 spec's: a
    /// varint-framed dag-cbor header (a map of two keys), then one varint-framed section.
    #[test]
    fn layout_is_header_then_one_section() {
        let (car, root) = one_block_car(b"hello").unwrap();
        assert_eq!(
            root.to_string(),
            "bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq"
        );
        let (hlen, n) = varint::get(&car).unwrap();
        let header = &car[n..n + hlen as usize];
        assert_eq!(header[0], 0xa2, "a map of two");
        assert_eq!(&header[1..7], b"\x65roots");
        let section = &car[n + hlen as usize..];
        let (slen, m) = varint::get(section).unwrap();
        assert_eq!(slen as usize, root.as_bytes().len() + 5);
        assert_eq!(&section[m..m + root.as_bytes().len()], root.as_bytes());
        assert_eq!(&section[m + root.as_bytes().len()..], b"hello");
        assert!(one_block_car(&vec![0; MAX_BLOCK + 1]).is_err());
    }
}
