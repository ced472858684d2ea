//! The inputs to a deal decision that come from outside: chain facts and provider policy.
//!
//! The node gathers these (from Lotus or from its offline config) before calling the
//! core; a fact the chain could not supply is `None`, and the core turns that into the
//! matching `server error: …` rejection when, and only when, a rule needs it.
use crate::wire::{Address, TokenAmount};

/// A client's market actor balance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MarketBalance {
    pub escrow: TokenAmount,
    pub locked: TokenAmount,
}

/// Chain state as of one head, for one proposal. `None` = the chain call failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainFacts {
    /// Current head epoch (ChainHead).
    pub head_epoch: Option<i64>,
    /// The client's key address (StateAccountKey); for f1/f3 clients, the client itself.
    pub client_key: Option<Address>,
    /// For f4 clients: did the AuthenticateMessage call (StateCall) exit 0?
    pub f4_authenticated: Option<bool>,
    /// StateDealProviderCollateralBounds(PieceSize, Verified).min.
    pub provider_collateral_min: Option<TokenAmount>,
    /// StateMarketBalance(client).
    pub client_balance: Option<MarketBalance>,
    /// StateVerifiedClientStatus(client): outer `None` = call failed, inner `None` = not verified.
    pub client_datacap: Option<Option<TokenAmount>>,
}

/// A miner's asking terms (the StorageAsk without signature and bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AskTerms {
    /// attoFIL per GiB per epoch.
    pub price: TokenAmount,
    /// attoFIL per GiB per epoch for verified deals.
    pub verified_price: TokenAmount,
    pub min_piece_size: u64,
    pub max_piece_size: u64,
}

/// Which clients may make deals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientFilter {
    /// Everyone (Curio's default: `DenyUnknownClients = false`, empty allow list).
    #[default]
    Anyone,
    /// Only these clients (by their address as proposed, or its key address).
    Only(Vec<Address>),
    /// Everyone but these.
    AllBut(Vec<Address>),
}

/// The provider's own rules for accepting deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The miner actors this provider takes deals for (ID addresses).
    pub miners: Vec<Address>,
    /// Miners whose deals are refused ("Libp2p is disabled for the provider").
    pub disabled_miners: Vec<Address>,
    /// Asking terms per miner; a miner without an entry has no ask check.
    pub asks: Vec<(Address, AskTerms)>,
    pub deny_online: bool,
    pub deny_offline: bool,
    pub clients: ClientFilter,
    /// Longest label accepted, in bytes (Boost and Curio: 256).
    pub max_label_bytes: usize,
    /// Epochs needed between acceptance and the deal's start to seal it (Boost: 2880).
    pub sealing_buffer_epochs: i64,
    /// Latest start epoch accepted, as epochs after head + sealing buffer (Boost: 40320).
    pub max_start_delay_epochs: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            miners: Vec::new(),
            disabled_miners: Vec::new(),
            asks: Vec::new(),
            deny_online: false,
            deny_offline: false,
            clients: ClientFilter::Anyone,
            max_label_bytes: 256,
            sealing_buffer_epochs: 2880,
            max_start_delay_epochs: 40320,
        }
    }
}

impl Policy {
    pub fn ask_for(&self, miner: &Address) -> Option<&AskTerms> {
        self.asks.iter().find(|(m, _)| m == miner).map(|(_, a)| a)
    }
}
