//! The full connection stack: TCP and WebSocket-over-TCP, multistream-select, Noise or
//! TLS, yamux.
//!
//! go-libp2p dialers (Boost's `boost deal`, Curio's `sptool`) offer `/tls/1.0.0` first,
//! then `/noise`; boostd prefers Noise. The listener accepts whichever the dialer picks.

use std::time::Duration;

use either::Either;
use futures::{future::MapOk, TryFutureExt};
use libp2p::{
    core::{
        either::EitherFuture,
        muxing::StreamMuxerBox,
        transport::Boxed,
        upgrade::{self, InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo},
        Transport,
    },
    identity::Keypair,
    noise, tls, websocket, yamux, PeerId,
};

use super::tcp::{RelayedAddrs, TcpTransport};

type WsStream = <websocket::Config<TcpTransport> as Transport>::Output;

/// Which security protocols a transport offers (dialing) or accepts (listening).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// TLS 1.3 (`/tls/1.0.0`) first, then Noise (`/noise`), like go-libp2p.
    #[default]
    TlsAndNoise,
    /// Noise first, then TLS.
    NoiseAndTls,
    NoiseOnly,
    TlsOnly,
}

/// Why the transport could not be built (key material the security layers refuse).
#[derive(Debug, thiserror::Error)]
pub enum TransportBuildError {
    #[error("noise: {0}")]
    Noise(#[from] noise::Error),
    #[error("tls certificate: {0}")]
    Tls(#[from] tls::certificate::GenError),
    /// The extra CA file for `/wss` dials (client side).
    #[error("{0}")]
    CaFile(String),
}

/// Options for [`build_transport`].
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub security: Security,
    /// `V1` for servers. `V1Lazy` makes a dialer pipeline its proposal with the first
    /// data, as go-libp2p does once it knows the protocol (tests use it to check we cope).
    pub version: upgrade::Version,
    /// Bound on the whole connection setup (security + muxer negotiation).
    pub handshake_timeout: Duration,
    /// Also speak WebSocket (`…/tcp/N/ws`).
    pub websocket: bool,
    /// Listening: believe the HTTP relay's signed header on WebSocket connections.
    pub relayed: Option<RelayedAddrs>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            security: Security::default(),
            version: upgrade::Version::V1,
            handshake_timeout: Duration::from_secs(20),
            websocket: true,
            relayed: None,
        }
    }
}

/// Build the authenticated, multiplexed transport for `keypair`.
pub fn build_transport(
    keypair: &Keypair,
    cfg: &TransportConfig,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, TransportBuildError> {
    let base = if cfg.websocket {
        let ws_tcp = match cfg.relayed.clone() {
            Some(r) => TcpTransport::with_relayed_addrs(r),
            None => TcpTransport::new(),
        };
        let ws = websocket::Config::new(ws_tcp);
        TcpTransport::new().or_transport(ws).boxed()
    } else {
        TcpTransport::new()
            .map(|tcp, _| futures::future::Either::<_, WsStream>::Left(tcp))
            .boxed()
    };
    let yamux = yamux::Config::default();
    let t = cfg.handshake_timeout;
    let v = cfg.version;
    let out = match cfg.security {
        Security::TlsAndNoise => base
            .upgrade(v)
            .authenticate(SelectSecurity(
                tls::Config::new(keypair)?,
                noise::Config::new(keypair)?,
            ))
            .multiplex(yamux)
            .timeout(t)
            .boxed(),
        Security::NoiseAndTls => base
            .upgrade(v)
            .authenticate(SelectSecurity(
                noise::Config::new(keypair)?,
                tls::Config::new(keypair)?,
            ))
            .multiplex(yamux)
            .timeout(t)
            .boxed(),
        Security::NoiseOnly => base
            .upgrade(v)
            .authenticate(noise::Config::new(keypair)?)
            .multiplex(yamux)
            .timeout(t)
            .boxed(),
        Security::TlsOnly => base
            .upgrade(v)
            .authenticate(tls::Config::new(keypair)?)
            .multiplex(yamux)
            .timeout(t)
            .boxed(),
    };
    Ok(out)
}

/// Offers the protocols of `A` then those of `B`; whichever is negotiated runs.
/// (The same as libp2p's private `SelectSecurityUpgrade` in its `SwarmBuilder`.)
#[derive(Debug, Clone)]
pub struct SelectSecurity<A, B>(pub A, pub B);

impl<A: UpgradeInfo, B: UpgradeInfo> UpgradeInfo for SelectSecurity<A, B> {
    type Info = Either<A::Info, B::Info>;
    type InfoIter = std::vec::IntoIter<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        let a = self.0.protocol_info().into_iter().map(Either::Left);
        let b = self.1.protocol_info().into_iter().map(Either::Right);
        a.chain(b).collect::<Vec<_>>().into_iter()
    }
}

type Factor<TA, TB> = fn(
    futures::future::Either<(PeerId, TA), (PeerId, TB)>,
) -> (PeerId, futures::future::Either<TA, TB>);

impl<C, A, B, TA, TB, EA, EB> InboundConnectionUpgrade<C> for SelectSecurity<A, B>
where
    A: InboundConnectionUpgrade<C, Output = (PeerId, TA), Error = EA>,
    B: InboundConnectionUpgrade<C, Output = (PeerId, TB), Error = EB>,
{
    type Output = (PeerId, futures::future::Either<TA, TB>);
    type Error = Either<EA, EB>;
    type Future = MapOk<EitherFuture<A::Future, B::Future>, Factor<TA, TB>>;

    fn upgrade_inbound(self, sock: C, info: Self::Info) -> Self::Future {
        match info {
            Either::Left(i) => EitherFuture::First(self.0.upgrade_inbound(sock, i)),
            Either::Right(i) => EitherFuture::Second(self.1.upgrade_inbound(sock, i)),
        }
        .map_ok(futures::future::Either::factor_first as Factor<TA, TB>)
    }
}

impl<C, A, B, TA, TB, EA, EB> OutboundConnectionUpgrade<C> for SelectSecurity<A, B>
where
    A: OutboundConnectionUpgrade<C, Output = (PeerId, TA), Error = EA>,
    B: OutboundConnectionUpgrade<C, Output = (PeerId, TB), Error = EB>,
{
    type Output = (PeerId, futures::future::Either<TA, TB>);
    type Error = Either<EA, EB>;
    type Future = MapOk<EitherFuture<A::Future, B::Future>, Factor<TA, TB>>;

    fn upgrade_outbound(self, sock: C, info: Self::Info) -> Self::Future {
        match info {
            Either::Left(i) => EitherFuture::First(self.0.upgrade_outbound(sock, i)),
            Either::Right(i) => EitherFuture::Second(self.1.upgrade_outbound(sock, i)),
        }
        .map_ok(futures::future::Either::factor_first as Factor<TA, TB>)
    }
}
