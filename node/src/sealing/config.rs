//! The lotus-miner endpoint: `[sealing.lotus_miner] url`/`token`, or `MINER_API_INFO` the
//! way lotus tools read it (the config types live in `crate::config`). Uses
//! `chain::lotus::Endpoint` for the parsing Lotus tools share.
use crate::{
    chain::lotus::{Endpoint, RpcError},
    config::LotusMinerConfig,
};

/// lotus-miner's API path (the v0 API; lotus-miner serves no v1).
const MINER_PATH: &str = "/rpc/v0";

/// The endpoint: `url`/`token` when set, else `MINER_API_INFO` (`env`), the way
/// lotus tools read it. The path is `/rpc/v0` unless the URL names one.
pub fn miner_endpoint(c: &LotusMinerConfig, env: Option<&str>) -> Result<Endpoint, RpcError> {
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
    let mut e = if c.url.is_empty() {
        from_env()?
    } else {
        let token = if c.token.is_empty() {
            from_env().map(|e| e.token).unwrap_or_default()
        } else {
            c.token.clone()
        };
        let mut e = Endpoint::from_url(&c.url, &token)?;
        if !c.url.contains("/rpc/") {
            e.path = MINER_PATH.into();
        }
        e
    };
    if !c.token.is_empty() {
        e.token = c.token.clone();
    }
    Ok(e)
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
        let e = miner_endpoint(&c, None).unwrap();
        assert_eq!(e.url(), "http://10.0.0.5:2345/rpc/v0");
        assert_eq!(e.token, "tok");
        let c = LotusMinerConfig::default();
        let e = miner_endpoint(&c, Some("abc.def:/ip4/10.0.0.6/tcp/2345/http")).unwrap();
        assert_eq!(e.url(), "http://10.0.0.6:2345/rpc/v0");
        assert_eq!(e.token, "abc.def");
        let err = miner_endpoint(&c, None).unwrap_err().to_string();
        assert!(err.contains("MINER_API_INFO"), "{err}");
        // A URL without a token takes the env's token.
        let c = LotusMinerConfig {
            url: "http://10.0.0.5:2345/rpc/v0".into(),
            ..Default::default()
        };
        let e = miner_endpoint(&c, Some("xyz:/ip4/10.0.0.6/tcp/2345/http")).unwrap();
        assert_eq!(
            (e.url().as_str(), e.token.as_str()),
            ("http://10.0.0.5:2345/rpc/v0", "xyz")
        );
    }
}
