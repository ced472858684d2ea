//! The storage market actor's PublishStorageDeals (f05, method 4): the params a provider
//! sends and the return value it reads the deal IDs from (go-state-types
//! `builtin/v9+/market`: `PublishStorageDealsParams{Deals}`,
//! `PublishStorageDealsReturn{IDs, ValidDeals}`).
use super::{
    bitfield::{BitField, MAX_ENCODED_SIZE},
    cbor::{Cbor, Reader, Writer, MAX_LENGTH},
    error::{WireError, Within},
    ClientDealProposal,
};

/// The market actor's address ID and the method number (builtin-actors `market::Method`).
pub const MARKET_ACTOR_ID: u64 = 5;
pub const METHOD_PUBLISH_STORAGE_DEALS: u64 = 4;

/// `[[ClientDealProposal…]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishStorageDealsParams {
    pub deals: Vec<ClientDealProposal>,
}

impl Cbor for PublishStorageDealsParams {
    const NAME: &'static str = "PublishStorageDealsParams";
    fn write(&self, w: &mut Writer) {
        w.array(1).array(self.deals.len() as u64);
        for d in &self.deals {
            w.value(d);
        }
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.tuple(1)?;
        let n = r.array(MAX_LENGTH).within("Deals")?;
        let deals = (0..n)
            .map(|_| ClientDealProposal::read(r).within("Deals"))
            .collect::<Result<_, _>>()?;
        Ok(PublishStorageDealsParams { deals })
    }
}

/// `[IDs, ValidDeals]`: one deal ID per set bit of `valid_deals`, in order; bit `i` set
/// means the `i`th deal of the params was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishStorageDealsReturn {
    pub ids: Vec<u64>,
    pub valid_deals: BitField,
}

impl Cbor for PublishStorageDealsReturn {
    const NAME: &'static str = "PublishStorageDealsReturn";
    fn write(&self, w: &mut Writer) {
        w.array(2).array(self.ids.len() as u64);
        for id in &self.ids {
            w.uint(*id);
        }
        w.bytes(&self.valid_deals.to_rle());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        r.tuple(2)?;
        let n = r.array(MAX_LENGTH).within("IDs")?;
        let ids = (0..n)
            .map(|_| r.uint().within("IDs"))
            .collect::<Result<_, _>>()?;
        let rle = r.bytes(MAX_ENCODED_SIZE as u64).within("ValidDeals")?;
        let valid_deals = BitField::from_rle(rle).map_err(|k| WireError {
            path: "ValidDeals".into(),
            kind: k,
        })?;
        Ok(PublishStorageDealsReturn { ids, valid_deals })
    }
}

impl PublishStorageDealsReturn {
    /// For each of the `batch` deals sent, its deal ID, or `None` if the actor left it out.
    /// Fails if the bitfield and the IDs do not describe a batch of that size.
    pub fn deal_ids(&self, batch: usize) -> Result<Vec<Option<u64>>, String> {
        let set = self.valid_deals.count();
        if set != self.ids.len() as u64 {
            return Err(format!(
                "the return names {} valid deals but carries {} deal IDs",
                set,
                self.ids.len()
            ));
        }
        if let Some(&(_, end)) = self.valid_deals.ranges().last() {
            if end > batch as u64 {
                return Err(format!(
                    "the return marks deal {} valid in a message of {batch} deals",
                    end - 1
                ));
            }
        }
        let mut ids = self.ids.iter();
        Ok((0..batch as u64)
            .map(|i| {
                self.valid_deals
                    .contains(i)
                    .then(|| ids.next().copied())
                    .flatten()
            })
            .collect())
    }
}
