//! Answering `/fil/storage/status/1.2.0`: Boost's checks, in Boost's order, and the
//! deal's real state (docs/design.md §Promises, point 2).
//!
//! Boost `storagemarket/lp2pimpl/net.go` `getDealStatus`: look the deal up by UUID,
//! resolve its client to a key address, verify the request signature over the 16 raw
//! UUID bytes, then report. Each failing step answers an error-only response (UUID
//! echoed, `DealStatus` null, everything else zero) with Boost's exact text.
//!
//! Verifying a BLS signature costs a pairing (about 1.7 ms), and Boost clients poll with
//! the same signature again and again, so results go through a bounded [`VerifyCache`].
use crate::deal::{Checkpoint, DealRecord, DealState};
use crate::fifo_map::FifoMap;
use crate::sig;
use crate::wire::{
    Address, DealStatus, DealStatusRequest, DealStatusResponse, DealUuid, Network, Protocol,
    Signature,
};

/// Boost's error when the signature does not verify (or is malformed).
pub const SIGNATURE_VERIFICATION_FAILED: &str = "signature verification failed";

/// What happened to a status request, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusOutcome {
    /// The deal's status was reported.
    Ok,
    /// No deal with that UUID.
    UnknownDeal,
    /// The deal's client could not be resolved to a key address.
    KeyLookupFailed,
    /// The request signature is not the client's over the UUID bytes.
    BadSignature,
}

impl StatusOutcome {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusOutcome::Ok => "ok",
            StatusOutcome::UnknownDeal => "unknown_deal",
            StatusOutcome::KeyLookupFailed => "key_lookup_failed",
            StatusOutcome::BadSignature => "bad_signature",
        }
    }
}

/// The response to write, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusAnswer {
    pub response: DealStatusResponse,
    pub outcome: StatusOutcome,
}

/// Answer a status request, printing addresses with the mainnet prefix (`f…`).
///
/// `deal` is the record stored under `req.deal_uuid` (`None` = unknown). `client_key`
/// is the key address of the deal's `Proposal.Client` (for f1/f3 clients the client
/// itself; the node resolves ID addresses through the chain; `None` = that lookup
/// failed).
pub fn answer_status(
    req: &DealStatusRequest,
    deal: Option<&DealRecord>,
    client_key: Option<&Address>,
    cache: &mut VerifyCache,
) -> StatusAnswer {
    answer_status_on(Network::Mainnet, req, deal, client_key, cache)
}

/// [`answer_status`] for a given network: Boost prints the client address in the
/// key-lookup error with its network's prefix (`t…` on test networks).
pub fn answer_status_on(
    net: Network,
    req: &DealStatusRequest,
    deal: Option<&DealRecord>,
    client_key: Option<&Address>,
    cache: &mut VerifyCache,
) -> StatusAnswer {
    let uuid = req.deal_uuid;
    let fail = |outcome, error: String| StatusAnswer {
        response: DealStatusResponse::error(uuid, error),
        outcome,
    };
    let Some(deal) = deal else {
        return fail(
            StatusOutcome::UnknownDeal,
            format!("no storage deal found with deal UUID {uuid}"),
        );
    };
    let Some(key) = client_key else {
        let client = &deal.params.client_deal_proposal.proposal.client;
        return fail(
            StatusOutcome::KeyLookupFailed,
            format!(
                "failed to get account key for client addr {}",
                client.to_string_on(net)
            ),
        );
    };
    if !signature_ok(&uuid, &req.signature, key, cache) {
        return fail(
            StatusOutcome::BadSignature,
            SIGNATURE_VERIFICATION_FAILED.to_owned(),
        );
    }
    let mut response = status_response(deal);
    response.deal_uuid = uuid;
    StatusAnswer {
        response,
        outcome: StatusOutcome::Ok,
    }
}

fn signature_ok(uuid: &DealUuid, sig: &Signature, key: &Address, cache: &mut VerifyCache) -> bool {
    // f4 (delegated) clients: Boost would verify a delegated signature here; checking
    // status signatures for f4 clients is out of scope for dealport, so they always get
    // `signature verification failed` (never a cache entry, never a verification).
    if key.protocol() == Some(Protocol::Delegated) {
        return false;
    }
    cache.verify(uuid, sig, key)
}

/// What an offline deal still waiting for its data says in `SealingStatus`: the text
/// Boost shows for it (`gql/resolver_deal.go` `dealResolver.Message`, and its client's
/// `statusMessage` for `Accepted` + `IsOffline`), so a client sees what it waits for.
pub const AWAITING_OFFLINE_DATA: &str = "Awaiting Offline Data Import";

/// The full response for a deal whose client proved who it is.
///
/// `TransferSize` is the client-declared `Transfer.Size`. `NBytesReceived` is the real
/// count for an online deal still transferring (also after it failed mid-transfer), and
/// `Transfer.Size` once it is `Transferred` or later. Offline deals have no transfer
/// and report 0, as Boost does.
pub fn status_response(deal: &DealRecord) -> DealStatusResponse {
    let params = &deal.params;
    let n_bytes_received = if params.is_offline {
        0
    } else if deal.checkpoint >= Checkpoint::Transferred {
        params.transfer.size
    } else {
        deal.n_bytes_received
    };
    DealStatusResponse {
        deal_uuid: deal.uuid,
        error: String::new(),
        deal_status: Some(DealStatus {
            error: deal.error.clone().unwrap_or_default(),
            status: deal.checkpoint.name().to_owned(),
            sealing_status: if params.is_offline
                && deal.state() == DealState::At(Checkpoint::Accepted)
                && deal.sealing_status.is_empty()
            {
                AWAITING_OFFLINE_DATA.to_owned()
            } else {
                deal.sealing_status.clone()
            },
            proposal: params.client_deal_proposal.proposal.clone(),
            signed_proposal_cid: deal.signed_proposal_cid.clone(),
            publish_cid: deal.publish_cid.clone(),
            chain_deal_id: deal.chain_deal_id,
        }),
        is_offline: params.is_offline,
        transfer_size: params.transfer.size,
        n_bytes_received,
    }
}

/// Remembered signature verifications, so a client polling with the same signature
/// costs one verification (one pairing for BLS) instead of one per poll.
///
/// Keyed by (deal UUID, signature bytes, signer key address bytes); both outcomes are
/// remembered. Holds at most `capacity` entries and forgets the oldest first. Entries
/// are stored as a blake2b-256 digest of the length-prefixed key parts (32 bytes each,
/// whatever the signature size); a false hit would need a blake2b-256 collision.
#[derive(Debug)]
pub struct VerifyCache {
    entries: FifoMap<[u8; 32], bool>,
    hits: u64,
    misses: u64,
}

impl VerifyCache {
    /// A cache holding at most `capacity` results (0 = verify every time).
    pub fn new(capacity: usize) -> VerifyCache {
        VerifyCache {
            entries: FifoMap::new(capacity),
            hits: 0,
            misses: 0,
        }
    }

    /// Is `sig` the signature of `signer` over the 16 bytes of `uuid`? Malformed
    /// signatures and addresses count as not verified. Answers from the cache when it
    /// can; otherwise verifies (a miss) and remembers the result.
    pub fn verify(&mut self, uuid: &DealUuid, sig: &Signature, signer: &Address) -> bool {
        let key = cache_key(uuid, sig, signer);
        if let Some(&ok) = self.entries.get(&key) {
            self.hits += 1;
            return ok;
        }
        self.misses += 1;
        let ok = sig::verify(sig.sig_type, &sig.data, signer.as_bytes(), &uuid.0).is_ok();
        self.entries.insert(key, ok, 1);
        ok
    }

    /// Answers served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Answers that needed a verification.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Results currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.entries.max_cost()
    }
}

fn cache_key(uuid: &DealUuid, sig: &Signature, signer: &Address) -> [u8; 32] {
    let mut st = blake2b_simd::Params::new().hash_length(32).to_state();
    st.update(&uuid.0);
    st.update(&(sig.data.len() as u64).to_be_bytes());
    st.update(&[sig.sig_type]);
    st.update(&sig.data);
    let signer = signer.as_bytes();
    st.update(&(signer.len() as u64).to_be_bytes());
    st.update(signer);
    let mut out = [0u8; 32];
    out.copy_from_slice(st.finalize().as_bytes());
    out
}
