//! Proposal acceptance: every rule Curio and Boost apply, in their order, with their
//! exact messages, plus dedupe of retries and duplicates.
//!
//! Order (see docs/boost-curio-validation.md for the Go sources):
//! 1. disabled miner (Curio's libp2p handler, before anything else) — [`disabled_miner`];
//! 2. an identical resend of a known deal is accepted again (boost#1850) — [`is_identical_retry`];
//! 3. `failed validation: …` rules, Curio's `validateDealProposal` order, with Boost's
//!    ask check where Boost makes it (after collateral, before escrow) and our sealing
//!    buffer right after the "already elapsed" rule;
//! 4. deny online/offline, client filter (Curio steps 3-4);
//! 5. transfer checks (Curio `processDeal`, Boost `Transfer.Host`);
//! 6. uniqueness: proposal, then UUID (Boost's messages).
use crate::deal::DealRecord;
use crate::facts::{ChainFacts, ClientFilter, Policy};
use crate::sig;
use crate::wire::primitives::{padded_piece_size, validate_padded_piece_size};
use crate::wire::{Address, Cbor, DealParams, HttpRequest, Protocol, TokenAmount};
use num_bigint::BigInt;

/// `market.DealDurationBounds` (180 to 1278 days), unchanged from actors v12 to v19.
pub const MIN_DEAL_DURATION: i64 = 518_400;
pub const MAX_DEAL_DURATION: i64 = 3_680_640;
/// `miner.MaxSectorExpirationExtension`: how far past head a deal may end.
pub const MAX_SECTOR_EXPIRATION_EXTENSION: i64 = 3_680_640;
/// Boost and Curio accept provider collateral up to twice the chain's minimum.
pub const MAX_COLLATERAL_MULTIPLIER: u32 = 2;
/// Prefix Boost and Curio put on every validation failure.
pub const VALIDATION_PREFIX: &str = "failed validation: ";

/// Which rule rejected a proposal; its label names the metric series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    DisabledMiner,
    ChainHead,
    PieceCidUndefined,
    SignatureUnverifiable,
    InvalidSignature,
    WrongProvider,
    LabelTooLong,
    PieceSizeInvalid,
    PieceCidPrefix,
    EndBeforeStart,
    StartElapsed,
    SealingBuffer,
    StartTooFar,
    DurationBounds,
    EndTooFar,
    CollateralBounds,
    CollateralTooLow,
    CollateralTooHigh,
    AskPrice,
    AskMinSize,
    AskMaxSize,
    MarketBalance,
    InsufficientEscrow,
    DatacapLookup,
    NotVerifiedClient,
    DatacapTooSmall,
    OfflineDenied,
    OnlineDenied,
    ClientNotAllowed,
    Libp2pTransfer,
    TransferType,
    TransferParams,
    PieceSizeMismatch,
    DuplicateProposal,
    DuplicateUuid,
}

impl Rule {
    pub fn label(self) -> &'static str {
        use Rule::*;
        match self {
            DisabledMiner => "disabled_miner",
            ChainHead => "chain_head",
            PieceCidUndefined => "piece_cid_undefined",
            SignatureUnverifiable => "signature_unverifiable",
            InvalidSignature => "invalid_signature",
            WrongProvider => "wrong_provider",
            LabelTooLong => "label_too_long",
            PieceSizeInvalid => "piece_size_invalid",
            PieceCidPrefix => "piece_cid_prefix",
            EndBeforeStart => "end_before_start",
            StartElapsed => "start_elapsed",
            SealingBuffer => "sealing_buffer",
            StartTooFar => "start_too_far",
            DurationBounds => "duration_bounds",
            EndTooFar => "end_too_far",
            CollateralBounds => "collateral_bounds",
            CollateralTooLow => "collateral_too_low",
            CollateralTooHigh => "collateral_too_high",
            AskPrice => "ask_price",
            AskMinSize => "ask_min_size",
            AskMaxSize => "ask_max_size",
            MarketBalance => "market_balance",
            InsufficientEscrow => "insufficient_escrow",
            DatacapLookup => "datacap_lookup",
            NotVerifiedClient => "not_verified_client",
            DatacapTooSmall => "datacap_too_small",
            OfflineDenied => "offline_denied",
            OnlineDenied => "online_denied",
            ClientNotAllowed => "client_not_allowed",
            Libp2pTransfer => "libp2p_transfer",
            TransferType => "transfer_type",
            TransferParams => "transfer_params",
            PieceSizeMismatch => "piece_size_mismatch",
            DuplicateProposal => "duplicate_proposal",
            DuplicateUuid => "duplicate_uuid",
        }
    }
}

/// Why a proposal was refused: the rule, and the exact text the client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rule: Rule,
    pub message: String,
}

impl Rejection {
    fn new(rule: Rule, message: impl Into<String>) -> Self {
        Rejection {
            rule,
            message: message.into(),
        }
    }
    /// A `failed validation: …` rejection.
    fn validation(rule: Rule, reason: impl std::fmt::Display) -> Self {
        Rejection::new(rule, format!("{VALIDATION_PREFIX}{reason}"))
    }
}

/// Curio answers deals for disabled miners before any other work.
pub fn disabled_miner(params: &DealParams, policy: &Policy) -> Option<Rejection> {
    let provider = &params.client_deal_proposal.proposal.provider;
    policy
        .disabled_miners
        .contains(provider)
        .then(|| Rejection::new(Rule::DisabledMiner, "Libp2p is disabled for the provider"))
}

/// The client resent exactly the deal we already accepted under this UUID: accept again.
pub fn is_identical_retry(params: &DealParams, by_uuid: Option<&DealRecord>) -> bool {
    by_uuid.is_some_and(|known| known.params == *params)
}

/// The whole decision for a new proposal. `by_uuid` and `by_proposal_cid` are the
/// stored deals (if any) with the same UUID and the same on-chain proposal CID.
pub fn decide(
    params: &DealParams,
    facts: &ChainFacts,
    policy: &Policy,
    by_uuid: Option<&DealRecord>,
    by_proposal_cid: Option<&DealRecord>,
) -> Result<(), Rejection> {
    if let Some(r) = disabled_miner(params, policy) {
        return Err(r);
    }
    if is_identical_retry(params, by_uuid) {
        return Ok(());
    }
    validate(params, facts, policy)?;
    check_deal_type(params, facts, policy)?;
    check_transfer(params)?;
    check_unique(params, by_uuid, by_proposal_cid)
}

/// The `failed validation: …` rules (Curio `validateDealProposal`, Boost's ask check).
pub fn validate(params: &DealParams, facts: &ChainFacts, policy: &Policy) -> Result<(), Rejection> {
    let cdp = &params.client_deal_proposal;
    let p = &cdp.proposal;
    fn fail(rule: Rule, reason: impl std::fmt::Display) -> Rejection {
        Rejection::validation(rule, reason)
    }

    let head = facts
        .head_epoch
        .ok_or_else(|| fail(Rule::ChainHead, "server error: getting chain head"))?;
    if p.piece_cid.is_undef() {
        return Err(fail(Rule::PieceCidUndefined, "proposal PieceCID undefined"));
    }
    check_signature(params, facts)?;
    if !policy.miners.contains(&p.provider) {
        let ours = match policy.miners.as_slice() {
            [one] => one.to_string(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(Address::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        return Err(fail(
            Rule::WrongProvider,
            format!(
                "incorrect provider for deal; proposal.Provider: {}; provider.Address: {ours}",
                p.provider
            ),
        ));
    }
    if p.label.len() > policy.max_label_bytes {
        return Err(fail(
            Rule::LabelTooLong,
            format!(
                "deal label can be at most {} bytes, is {}",
                policy.max_label_bytes,
                p.label.len()
            ),
        ));
    }
    if let Err(e) = validate_padded_piece_size(p.piece_size) {
        return Err(fail(
            Rule::PieceSizeInvalid,
            format!("proposal piece size is invalid: {e}"),
        ));
    }
    let prefix_ok = p.piece_cid.prefix().is_some_and(|x| {
        x.version == 1
            && x.codec == crate::wire::cid::CODEC_FIL_COMMITMENT_UNSEALED
            && x.mh_code == crate::wire::cid::MH_SHA2_256_TRUNC254_PADDED
            && x.mh_len == 32
    });
    if !prefix_ok {
        return Err(fail(
            Rule::PieceCidPrefix,
            "proposal PieceCID had wrong prefix",
        ));
    }
    if p.end_epoch <= p.start_epoch {
        return Err(fail(
            Rule::EndBeforeStart,
            format!(
                "proposal end {} before proposal start {}",
                p.end_epoch, p.start_epoch
            ),
        ));
    }
    if head > p.start_epoch {
        return Err(fail(
            Rule::StartElapsed,
            format!(
                "deal start epoch {} has already elapsed (current epoch: {head})",
                p.start_epoch
            ),
        ));
    }
    let earliest = head.saturating_add(policy.sealing_buffer_epochs);
    if p.start_epoch < earliest {
        return Err(fail(
            Rule::SealingBuffer,
            format!(
                "deal start epoch {} is too soon to seal: the current epoch is {head} and sealing needs {} epochs, so the earliest start accepted is {earliest}",
                p.start_epoch, policy.sealing_buffer_epochs
            ),
        ));
    }
    let latest = earliest.saturating_add(policy.max_start_delay_epochs);
    if !params.is_offline && p.start_epoch > latest {
        return Err(fail(
            Rule::StartTooFar,
            format!(
                "deal start epoch is too far in the future: {} > {latest}",
                p.start_epoch
            ),
        ));
    }
    let duration = p.duration();
    if !(MIN_DEAL_DURATION..=MAX_DEAL_DURATION).contains(&duration) {
        return Err(fail(
            Rule::DurationBounds,
            format!(
                "deal duration out of bounds (min, max, provided): {MIN_DEAL_DURATION}, {MAX_DEAL_DURATION}, {duration}"
            ),
        ));
    }
    if p.end_epoch > head.saturating_add(MAX_SECTOR_EXPIRATION_EXTENSION) {
        return Err(fail(
            Rule::EndTooFar,
            format!(
                "invalid deal end epoch {}: cannot be more than {MAX_SECTOR_EXPIRATION_EXTENSION} past current epoch {head}",
                p.end_epoch
            ),
        ));
    }
    let min = facts.provider_collateral_min.as_ref().ok_or_else(|| {
        fail(
            Rule::CollateralBounds,
            "server error: getting collateral bounds",
        )
    })?;
    if p.provider_collateral < *min {
        return Err(fail(
            Rule::CollateralTooLow,
            format!(
                "proposed provider collateral {} below minimum {min}",
                p.provider_collateral
            ),
        ));
    }
    let max = TokenAmount(&min.0 * MAX_COLLATERAL_MULTIPLIER);
    if p.provider_collateral > max {
        return Err(fail(
            Rule::CollateralTooHigh,
            format!(
                "proposed provider collateral {} above maximum {max}",
                p.provider_collateral
            ),
        ));
    }
    check_ask(params, policy)?;
    let balance = facts
        .client_balance
        .as_ref()
        .ok_or_else(|| fail(Rule::MarketBalance, "server error: getting market balance"))?;
    let available = &balance.escrow.0 - &balance.locked.0;
    let required = &p.client_collateral.0 + &p.storage_price_per_epoch.0 * BigInt::from(duration);
    if available < required {
        return Err(fail(
            Rule::InsufficientEscrow,
            format!(
                "client available funds in escrow {available} not enough to meet storage cost for deal {required}"
            ),
        ));
    }
    if p.verified_deal {
        let datacap = facts
            .client_datacap
            .as_ref()
            .ok_or_else(|| {
                fail(
                    Rule::DatacapLookup,
                    "server error: getting verified datacap",
                )
            })?
            .as_ref()
            .ok_or_else(|| fail(Rule::NotVerifiedClient, "client is not a verified client"))?;
        if datacap.0 < BigInt::from(p.piece_size) {
            return Err(fail(
                Rule::DatacapTooSmall,
                format!(
                    "verified deal DataCap {datacap} too small for proposed piece size {}",
                    p.piece_size
                ),
            ));
        }
    }
    Ok(())
}

/// The client's signature over our canonical re-encoding of the proposal.
fn check_signature(params: &DealParams, facts: &ChainFacts) -> Result<(), Rejection> {
    let cdp = &params.client_deal_proposal;
    let unverifiable = || {
        Rejection::validation(
            Rule::SignatureUnverifiable,
            "server error: validating signature",
        )
    };
    let key = facts.client_key.as_ref().ok_or_else(unverifiable)?;
    if key.protocol() == Some(Protocol::Delegated) {
        // f4 clients: Boost and Curio simulate AuthenticateMessage; the caller ran it.
        return match facts.f4_authenticated {
            None => Err(unverifiable()),
            Some(false) => Err(Rejection::validation(
                Rule::InvalidSignature,
                "invalid signature",
            )),
            Some(true) => Ok(()),
        };
    }
    let message = cdp.proposal.to_cbor();
    let s = &cdp.client_signature;
    // Lotus `sigs.Verify` returns an error for a bad signature, which Boost and Curio
    // report as the "server error" text rather than "invalid signature".
    sig::verify(s.sig_type, &s.data, key.as_bytes(), &message).map_err(|_| unverifiable())
}

/// Boost's `validateAsk`: price per GiB per epoch and piece size bounds.
fn check_ask(params: &DealParams, policy: &Policy) -> Result<(), Rejection> {
    let p = &params.client_deal_proposal.proposal;
    let Some(ask) = policy.ask_for(&p.provider) else {
        return Ok(());
    };
    let price = if p.verified_deal {
        &ask.verified_price
    } else {
        &ask.price
    };
    let min_price = (&price.0 * BigInt::from(p.piece_size)) >> 30u32;
    if p.storage_price_per_epoch.0 < min_price {
        return Err(Rejection::validation(
            Rule::AskPrice,
            format!(
                "storage price per epoch less than asking price: {} < {min_price}",
                p.storage_price_per_epoch
            ),
        ));
    }
    if p.piece_size < ask.min_piece_size {
        return Err(Rejection::validation(
            Rule::AskMinSize,
            format!(
                "piece size less than minimum required size: {} < {}",
                p.piece_size, ask.min_piece_size
            ),
        ));
    }
    if p.piece_size > ask.max_piece_size {
        return Err(Rejection::validation(
            Rule::AskMaxSize,
            format!(
                "piece size more than maximum allowed size: {} > {}",
                p.piece_size, ask.max_piece_size
            ),
        ));
    }
    Ok(())
}

/// Curio's deny-online/offline switches and client allow/deny list.
fn check_deal_type(
    params: &DealParams,
    facts: &ChainFacts,
    policy: &Policy,
) -> Result<(), Rejection> {
    if params.is_offline && policy.deny_offline {
        return Err(Rejection::new(
            Rule::OfflineDenied,
            "offline deals are not allowed on this provider",
        ));
    }
    if !params.is_offline && policy.deny_online {
        return Err(Rejection::new(
            Rule::OnlineDenied,
            "online deals are not allowed on this provider",
        ));
    }
    let client = &params.client_deal_proposal.proposal.client;
    let listed = |list: &[Address]| {
        list.contains(client) || facts.client_key.as_ref().is_some_and(|k| list.contains(k))
    };
    let allowed = match &policy.clients {
        ClientFilter::Anyone => true,
        ClientFilter::Only(list) => listed(list),
        ClientFilter::AllBut(list) => !listed(list),
    };
    if !allowed {
        return Err(Rejection::new(
            Rule::ClientNotAllowed,
            "client not allowed by provider",
        ));
    }
    Ok(())
}

/// How the data will arrive: only http downloads (or offline import) are built.
fn check_transfer(params: &DealParams) -> Result<(), Rejection> {
    let t = &params.transfer;
    if t.transfer_type == "libp2p" {
        return Err(Rejection::new(
            Rule::Libp2pTransfer,
            "libp2p URLs are not supported by this provider",
        ));
    }
    if params.is_offline {
        return Ok(());
    }
    if t.transfer_type != "http" {
        return Err(Rejection::new(
            Rule::TransferType,
            format!(
                "server error: get deal transfer host: cannot parse params for unrecognized transfer type '{}'",
                t.transfer_type
            ),
        ));
    }
    let piece_size = params.client_deal_proposal.proposal.piece_size;
    let padded = padded_piece_size(t.size).unwrap_or(0);
    if piece_size != padded {
        return Err(Rejection::new(
            Rule::PieceSizeMismatch,
            format!(
                "deal proposal piece size {piece_size} doesn't match padded piece size {padded}"
            ),
        ));
    }
    if let Err(e) = HttpRequest::from_json(&t.params) {
        return Err(Rejection::new(
            Rule::TransferParams,
            format!(
                "failed to de-serialize transport params bytes '{}': {e}",
                String::from_utf8_lossy(&t.params)
            ),
        ));
    }
    Ok(())
}

/// Boost's uniqueness checks: the same proposal under another UUID, then the same UUID
/// with a different proposal.
fn check_unique(
    params: &DealParams,
    by_uuid: Option<&DealRecord>,
    by_proposal_cid: Option<&DealRecord>,
) -> Result<(), Rejection> {
    if let Some(d) = by_proposal_cid {
        return Err(Rejection::new(
            Rule::DuplicateProposal,
            format!(
                "deal proposal is identical to deal {} (proposed at {})",
                d.uuid,
                go_time_utc(d.created_at_unix_nanos)
            ),
        ));
    }
    if let Some(d) = by_uuid.filter(|d| d.params != *params) {
        return Err(Rejection::new(
            Rule::DuplicateUuid,
            format!(
                "deal has the same uuid as deal {} (proposed at {})",
                d.uuid,
                go_time_utc(d.created_at_unix_nanos)
            ),
        ));
    }
    Ok(())
}

/// Go's `time.Time.String()` for a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`
/// (fraction trimmed of trailing zeros, omitted when zero).
pub fn go_time_utc(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let nanos = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
