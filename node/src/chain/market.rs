//! The Lotus calls that publishing needs besides those in [`super::lotus`].
use base64::Engine as _;
use serde_json::{json, Value};

use super::lotus::{LotusClient, RpcError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

impl LotusClient {
    /// `Filecoin.ChainGetMessage`: the params bytes of a message on chain (the deals a
    /// PublishStorageDeals carried, in the order its return refers to).
    pub async fn chain_get_message_params(&self, cid: &str) -> Result<Vec<u8>, RpcError> {
        const M: &str = "Filecoin.ChainGetMessage";
        let v = self.call("ChainGetMessage", json!([{ "/": cid }])).await?;
        let decode = |what: String| RpcError::Decode {
            method: M.to_owned(),
            what,
        };
        match v.get("Params") {
            Some(Value::String(b)) => B64
                .decode(b)
                .map_err(|e| decode(format!("Params is not base64: {e}"))),
            Some(Value::Null) | None => Ok(Vec::new()),
            Some(other) => Err(decode(format!("Params is not a string: {other}"))),
        }
    }
}
