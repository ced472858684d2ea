//! `[sealing]` and `[sealing.lotus_miner]`: who seals published deals, and how dealport
//! reaches lotus-miner. Owns the lotus-miner endpoint resolution (`url`/`token` or
//! `MINER_API_INFO`); uses `chain::lotus::Endpoint` for the parsing Lotus tools share.
use std::time::Duration;

use serde::Deserialize;

use crate::chain::lotus::{Endpoint, RpcError};

/// Who takes `PublishConfirmed` deals on.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SealingMode {
    /// A sealing system pulls deals through `/api/v1/sealing/…`.
    #[default]
    Api,
    /// dealport hands each deal to lotus-miner (`SectorAddPieceToAny`).
    LotusMiner,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SealingConfig {
    pub mode: SealingMode,
    pub lotus_miner: LotusMinerConfig,
}

#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LotusMinerConfig {
    /// lotus-miner JSON-RPC v0, e.g. `http://10.0.0.5:2345/rpc/v0`. Empty: from
    /// `MINER_API_INFO` (`<token>:/ip4/<ip>/tcp/<port>/http`).
    pub url: String,
    /// An admin token (`lotus-miner auth create-token --perm admin`). Empty: from
    /// `MINER_API_INFO`.
    pub token: String,
    /// Limit for one call (`SectorAddPieceToAny` returns once lotus-miner has read the
    /// piece, so this bounds reading the whole piece too).
    pub call_timeout_secs: u64,
    /// `SectorAddPieceToAny` calls in flight at once.
    pub max_concurrent_add_piece: usize,
    /// How often sectors and waiting deals are checked.
    pub poll_secs: u64,
    /// The base URL lotus-miner fetches pieces from (this node's HTTP server as
    /// lotus-miner reaches it). Empty: the address `[http] listen` binds (127.0.0.1
    /// for a wildcard address), right when lotus-miner runs on the same machine.
    pub piece_url_base: String,
    /// How long a piece URL works after it is handed out.
    pub piece_url_ttl_secs: u64,
    /// Between retries after "too many sectors sealing" (Boost: 5 minutes).
    pub too_many_backoff_secs: u64,
    /// Give up on "too many sectors sealing" after this long (Boost: 6 hours).
    pub too_many_give_up_secs: u64,
}

impl Default for LotusMinerConfig {
    fn default() -> Self {
        LotusMinerConfig {
            url: String::new(),
            token: String::new(),
            call_timeout_secs: 1800,
            max_concurrent_add_piece: 4,
            poll_secs: 60,
            piece_url_base: String::new(),
            piece_url_ttl_secs: 3600,
            too_many_backoff_secs: 300,
            too_many_give_up_secs: 6 * 3600,
        }
    }
}

// By hand so that logging the config never shows the token.
impl std::fmt::Debug for LotusMinerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LotusMinerConfig")
            .field("url", &self.url)
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("call_timeout_secs", &self.call_timeout_secs)
            .field("max_concurrent_add_piece", &self.max_concurrent_add_piece)
            .field("poll_secs", &self.poll_secs)
            .field("piece_url_base", &self.piece_url_base)
            .finish_non_exhaustive()
    }
}

/// lotus-miner's API path (the v0 API; lotus-miner serves no v1).
const MINER_PATH: &str = "/rpc/v0";

impl LotusMinerConfig {
    /// The endpoint: `url`/`token` when set, else `MINER_API_INFO` (`env`), the way
    /// lotus tools read it. The path is `/rpc/v0` unless the URL names one.
    pub fn endpoint(&self, env: Option<&str>) -> Result<Endpoint, RpcError> {
        let from_env = || -> Result<Endpoint, RpcError> {
            let info = env.ok_or_else(|| {
                RpcError::Endpoint(
                    "sealing.lotus_miner.url is empty and MINER_API_INFO is not set".into(),
                )
            })?;
            let mut e = Endpoint::from_api_info(info).map_err(|e| {
                RpcError::Endpoint(e.to_string().replace("FULLNODE_API_INFO", "MINER_API_INFO"))
            })?;
            e.path = MINER_PATH.into();
            Ok(e)
        };
        let mut e = if self.url.is_empty() {
            from_env()?
        } else {
            let token = if self.token.is_empty() {
                from_env().map(|e| e.token).unwrap_or_default()
            } else {
                self.token.clone()
            };
            let mut e = Endpoint::from_url(&self.url, &token)?;
            if !self.url.contains("/rpc/") {
                e.path = MINER_PATH.into();
            }
            e
        };
        if !self.token.is_empty() {
            e.token = self.token.clone();
        }
        Ok(e)
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_url_or_miner_api_info() {
        let c = LotusMinerConfig {
            url: "http://10.0.0.5:2345".into(),
            token: "tok".into(),
            ..Default::default()
        };
        let e = c.endpoint(None).unwrap();
        assert_eq!(e.url(), "http://10.0.0.5:2345/rpc/v0");
        assert_eq!(e.token, "tok");
        let c = LotusMinerConfig::default();
        let e = c
            .endpoint(Some("abc.def:/ip4/10.0.0.6/tcp/2345/http"))
            .unwrap();
        assert_eq!(e.url(), "http://10.0.0.6:2345/rpc/v0");
        assert_eq!(e.token, "abc.def");
        let err = c.endpoint(None).unwrap_err().to_string();
        assert!(err.contains("MINER_API_INFO"), "{err}");
        // A URL without a token takes the env's token.
        let c = LotusMinerConfig {
            url: "http://10.0.0.5:2345/rpc/v0".into(),
            ..Default::default()
        };
        let e = c.endpoint(Some("xyz:/ip4/10.0.0.6/tcp/2345/http")).unwrap();
        assert_eq!(
            (e.url().as_str(), e.token.as_str()),
            ("http://10.0.0.5:2345/rpc/v0", "xyz")
        );
    }

    #[test]
    fn mode_names() {
        #[derive(Deserialize)]
        struct W {
            sealing: SealingConfig,
        }
        let w: W = toml::from_str(
            "[sealing]\nmode = \"lotus-miner\"\n[sealing.lotus_miner]\npoll_secs = 5\n",
        )
        .unwrap();
        assert_eq!(w.sealing.mode, SealingMode::LotusMiner);
        assert_eq!(w.sealing.lotus_miner.poll_secs, 5);
        assert!(toml::from_str::<W>("[sealing]\nmode = \"boost\"\n").is_err());
    }
}
