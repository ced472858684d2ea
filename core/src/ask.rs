//! The storage ask (`/fil/storage/ask/1.1.0`): building it, what the worker key signs,
//! and answering requests.
//!
//! Boost `storagemarket/storedask/storedask.go` signs `cborutil.Dump(ask)` with the
//! miner's worker key; `lp2pimpl/net.go` answers with the ask only when the requested
//! miner is the provider's own address (compared as strings, so a robust address of our
//! own miner gets null), and Curio answers null when it has no ask row. Both write
//! `AskResponse{Ask: null}` (`a1 63 41736b f6`) in every other case.
use crate::facts::AskTerms;
use crate::wire::{
    Address, AskRequest, AskResponse, Cbor, Signature, SignedStorageAsk, StorageAsk,
};

/// The ask for `miner` with these terms. `timestamp` and `expiry` are chain epochs;
/// `seq_no` should grow every time the terms change.
pub fn storage_ask(
    miner: Address,
    terms: &AskTerms,
    timestamp: i64,
    expiry: i64,
    seq_no: u64,
) -> StorageAsk {
    StorageAsk {
        price: terms.price.clone(),
        verified_price: terms.verified_price.clone(),
        min_piece_size: terms.min_piece_size,
        max_piece_size: terms.max_piece_size,
        miner,
        timestamp,
        expiry,
        seq_no,
    }
}

/// The bytes the miner's worker key signs: the StorageAsk's CBOR, exactly as on the wire.
pub fn bytes_to_sign(ask: &StorageAsk) -> Vec<u8> {
    ask.to_cbor()
}

/// Pair an ask with the worker key's signature over [`bytes_to_sign`].
pub fn signed_ask(ask: StorageAsk, signature: Signature) -> SignedStorageAsk {
    SignedStorageAsk {
        ask: Some(ask),
        signature: Some(signature),
    }
}

/// Answer an ask request. `signed` is the current signed ask for `req.miner`, if any.
///
/// The ask is returned only when `req.miner` is exactly (byte for byte) one of
/// `our_miners` and `signed` carries an ask for that same miner; otherwise `Ask` is null.
pub fn answer_ask(
    req: &AskRequest,
    our_miners: &[Address],
    signed: Option<SignedStorageAsk>,
) -> AskResponse {
    let ours = our_miners.contains(&req.miner);
    let ask = signed.filter(|s| ours && s.ask.as_ref().is_some_and(|a| a.miner == req.miner));
    AskResponse { ask }
}
