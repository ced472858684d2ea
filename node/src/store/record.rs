//! The stored form of a deal record in the sled store: format 2 (CBOR) is written,
//! format 1 (JSON, the first stores') is still read, so a store needs no migration: a
//! deal's record moves to format 2 the next time it is written.

use dealport_core::{
    deal::{Checkpoint, DealRecord},
    wire::{Cbor, Cid, DealParams, DealUuid},
};
use serde::{Deserialize, Serialize};

use super::{checkpoint_from_name, StoreError};

/// The stable stored form of a [`DealRecord`] (format version 1).
///
/// Byte strings are lowercase hex; CIDs are their canonical string form; the checkpoint
/// is its Boost name. `params` is the DealParams exactly as the client sent them; the
/// decoded params and the two CIDs are recomputed or cross-checked from it on load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredDeal {
    pub v: u32,
    pub uuid: String,
    pub params: String,
    pub signed_proposal_cid: String,
    pub proposal_cid: String,
    pub client_peer_id: String,
    pub created_at_unix_nanos: i64,
    pub checkpoint: String,
    pub error: Option<String>,
    pub n_bytes_received: u64,
    pub publish_cid: Option<String>,
    pub chain_deal_id: u64,
    pub sector_number: Option<u64>,
    pub sector_offset: Option<u64>,
    pub sealing_status: String,
}

impl StoredDeal {
    pub fn from_record(d: &DealRecord) -> StoredDeal {
        StoredDeal {
            v: 1,
            uuid: d.uuid.to_string(),
            params: hex::encode(&d.params_bytes),
            signed_proposal_cid: d.signed_proposal_cid.to_string(),
            proposal_cid: d.proposal_cid.to_string(),
            client_peer_id: d.client_peer_id.clone(),
            created_at_unix_nanos: d.created_at_unix_nanos,
            checkpoint: d.checkpoint.name().to_owned(),
            error: d.error.clone(),
            n_bytes_received: d.n_bytes_received,
            publish_cid: d.publish_cid.as_ref().map(Cid::to_string),
            chain_deal_id: d.chain_deal_id,
            sector_number: d.sector_number,
            sector_offset: d.sector_offset,
            sealing_status: d.sealing_status.clone(),
        }
    }

    pub fn into_record(self) -> Result<DealRecord, String> {
        let params_bytes = hex::decode(&self.params).map_err(|e| format!("params: {e}"))?;
        let params = DealParams::from_cbor(&params_bytes).map_err(|e| format!("params: {e}"))?;
        let uuid = DealUuid::parse(&self.uuid).map_err(|e| format!("uuid: {e}"))?;
        if uuid != params.deal_uuid {
            return Err(format!(
                "uuid {uuid} differs from the params' {}",
                params.deal_uuid
            ));
        }
        let cid = |what: &str, s: &str| Cid::parse(s).map_err(|e| format!("{what}: {e}"));
        let checkpoint = checkpoint_from_name(&self.checkpoint)
            .ok_or_else(|| format!("unknown checkpoint {:?}", self.checkpoint))?;
        Ok(DealRecord {
            uuid,
            params_bytes,
            params,
            signed_proposal_cid: cid("signed_proposal_cid", &self.signed_proposal_cid)?,
            proposal_cid: cid("proposal_cid", &self.proposal_cid)?,
            client_peer_id: self.client_peer_id,
            created_at_unix_nanos: self.created_at_unix_nanos,
            checkpoint,
            error: self.error,
            n_bytes_received: self.n_bytes_received,
            publish_cid: self
                .publish_cid
                .as_deref()
                .map(|s| cid("publish_cid", s))
                .transpose()?,
            chain_deal_id: self.chain_deal_id,
            sector_number: self.sector_number,
            sector_offset: self.sector_offset,
            sealing_status: self.sealing_status,
        })
    }

    /// The form new writes use (format 2).
    pub fn encode(d: &DealRecord) -> Vec<u8> {
        v2::encode(d)
    }

    /// Either format: format 1 is a JSON object (its first byte `{`), format 2 a CBOR array.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<DealRecord, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            key: key.to_owned(),
            message,
        };
        if bytes.first() == Some(&b'{') {
            let stored: StoredDeal =
                serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
            stored.into_record().map_err(corrupt)
        } else {
            v2::decode(bytes).map_err(corrupt)
        }
    }

    /// The checkpoint and whether the deal failed, read from a stored record of either
    /// format without decoding its params (what an index update needs of the old record).
    pub fn progress(bytes: &[u8]) -> Option<(Checkpoint, bool)> {
        if bytes.first() == Some(&b'{') {
            #[derive(Deserialize)]
            struct Progress {
                checkpoint: String,
                error: Option<String>,
            }
            let p: Progress = serde_json::from_slice(bytes).ok()?;
            Some((checkpoint_from_name(&p.checkpoint)?, p.error.is_some()))
        } else {
            v2::progress(bytes).ok()
        }
    }
}

/// Format 2: one CBOR array of 14 items, in this order: 2 (the format), the DealParams
/// bytes as sent, the signed proposal CID and the proposal CID (binary CIDs), the client
/// PeerID (text), the acceptance time (Unix ns), the checkpoint's Boost name, the error
/// (text or null), bytes received, the publish CID (binary or null), the chain deal ID,
/// the sector number and offset (or null), the sealing status (text). The UUID is the
/// key (and inside the params). About half the size of format 1, whose params are hex
/// and CIDs strings: the sled trees, and so the pages sled reads, writes and cleans per
/// deal, shrink with it.
mod v2 {
    use dealport_core::{
        deal::{Checkpoint, DealRecord},
        wire::{Cbor, Cid, DealParams},
    };
    use minicbor::{data::Type, Decoder, Encoder};

    use super::checkpoint_from_name;

    const FORMAT: u8 = 2;
    const ITEMS: u64 = 14;

    pub fn encode(d: &DealRecord) -> Vec<u8> {
        let mut e = Encoder::new(Vec::with_capacity(d.params_bytes.len() + 256));
        // Writing into a Vec cannot fail.
        let _ = write(&mut e, d);
        e.into_writer()
    }

    fn write(
        e: &mut Encoder<Vec<u8>>,
        d: &DealRecord,
    ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        e.array(ITEMS)?
            .u8(FORMAT)?
            .bytes(&d.params_bytes)?
            .bytes(d.signed_proposal_cid.as_bytes())?
            .bytes(d.proposal_cid.as_bytes())?
            .str(&d.client_peer_id)?
            .i64(d.created_at_unix_nanos)?
            .str(d.checkpoint.name())?;
        match &d.error {
            Some(err) => e.str(err)?,
            None => e.null()?,
        };
        e.u64(d.n_bytes_received)?;
        match &d.publish_cid {
            Some(c) => e.bytes(c.as_bytes())?,
            None => e.null()?,
        };
        e.u64(d.chain_deal_id)?;
        for v in [d.sector_number, d.sector_offset] {
            match v {
                Some(v) => e.u64(v)?,
                None => e.null()?,
            };
        }
        e.str(&d.sealing_status)?;
        Ok(())
    }

    type Read<T> = Result<T, String>;

    fn err(what: &str) -> impl Fn(minicbor::decode::Error) -> String + '_ {
        move |e| format!("{what}: {e}")
    }

    /// The array header and the format number.
    fn open<'b>(bytes: &'b [u8]) -> Read<Decoder<'b>> {
        let mut d = Decoder::new(bytes);
        match d.array().map_err(err("record"))? {
            Some(ITEMS) => {}
            n => return Err(format!("record: an array of {n:?} items, not {ITEMS}")),
        }
        match d.u8().map_err(err("format"))? {
            FORMAT => Ok(d),
            v => Err(format!("format {v} is not known")),
        }
    }

    fn cid(what: &str, b: &[u8]) -> Read<Cid> {
        Cid::from_bytes(b).map_err(|e| format!("{what}: {e}"))
    }

    fn checkpoint(name: &str) -> Read<Checkpoint> {
        checkpoint_from_name(name).ok_or_else(|| format!("unknown checkpoint {name:?}"))
    }

    /// An item read by `read`, or null.
    fn opt<'b, T>(
        d: &mut Decoder<'b>,
        what: &str,
        read: impl FnOnce(&mut Decoder<'b>) -> Result<T, minicbor::decode::Error>,
    ) -> Read<Option<T>> {
        if d.datatype().map_err(err(what))? == Type::Null {
            d.skip().map_err(err(what))?;
            return Ok(None);
        }
        read(d).map(Some).map_err(err(what))
    }

    pub fn decode(bytes: &[u8]) -> Read<DealRecord> {
        let mut d = open(bytes)?;
        let params_bytes = d.bytes().map_err(err("params"))?.to_vec();
        let params = DealParams::from_cbor(&params_bytes).map_err(|e| format!("params: {e}"))?;
        let signed_proposal_cid = cid(
            "signed_proposal_cid",
            d.bytes().map_err(err("signed_proposal_cid"))?,
        )?;
        let proposal_cid = cid("proposal_cid", d.bytes().map_err(err("proposal_cid"))?)?;
        let client_peer_id = d.str().map_err(err("client_peer_id"))?.to_owned();
        let created_at_unix_nanos = d.i64().map_err(err("created_at_unix_nanos"))?;
        let checkpoint = checkpoint(d.str().map_err(err("checkpoint"))?)?;
        let error = opt(&mut d, "error", |d| d.str().map(str::to_owned))?;
        let n_bytes_received = d.u64().map_err(err("n_bytes_received"))?;
        let publish_cid = opt(&mut d, "publish_cid", |d| d.bytes())?
            .map(|b| cid("publish_cid", b))
            .transpose()?;
        let chain_deal_id = d.u64().map_err(err("chain_deal_id"))?;
        let sector_number = opt(&mut d, "sector_number", |d| d.u64())?;
        let sector_offset = opt(&mut d, "sector_offset", |d| d.u64())?;
        let sealing_status = d.str().map_err(err("sealing_status"))?.to_owned();
        if d.position() != bytes.len() {
            return Err(format!(
                "{} bytes after the record",
                bytes.len() - d.position()
            ));
        }
        Ok(DealRecord {
            uuid: params.deal_uuid,
            params_bytes,
            params,
            signed_proposal_cid,
            proposal_cid,
            client_peer_id,
            created_at_unix_nanos,
            checkpoint,
            error,
            n_bytes_received,
            publish_cid,
            chain_deal_id,
            sector_number,
            sector_offset,
            sealing_status,
        })
    }

    /// The checkpoint and whether the deal failed, the params skipped.
    pub fn progress(bytes: &[u8]) -> Read<(Checkpoint, bool)> {
        let mut d = open(bytes)?;
        for what in [
            "params",
            "signed_proposal_cid",
            "proposal_cid",
            "client_peer_id",
            "created_at_unix_nanos",
        ] {
            d.skip().map_err(err(what))?;
        }
        let checkpoint = checkpoint(d.str().map_err(err("checkpoint"))?)?;
        let failed = opt(&mut d, "error", |d| d.str().map(|_| ()))?.is_some();
        Ok((checkpoint, failed))
    }
}
