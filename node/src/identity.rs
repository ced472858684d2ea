//! The node's libp2p identity: an Ed25519 key created once and kept in the store in
//! libp2p's protobuf encoding (`08 01 12 40 …`).
//!
//! Layer: beside the store: uses `store` only.

use libp2p::identity::Keypair;

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored identity key does not decode: {0}")]
    Decode(String),
}

fn decode(bytes: &[u8]) -> Result<Keypair, IdentityError> {
    Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Decode(e.to_string()))
}

/// The stored key, created (and made durable) on first use. `true` = just created.
pub async fn load_or_create(store: &dyn Store) -> Result<(Keypair, bool), IdentityError> {
    let (bytes, created) = store
        .identity_or_create(Box::new(|| {
            Keypair::generate_ed25519()
                .to_protobuf_encoding()
                .expect("ed25519 keys always encode")
        }))
        .await?;
    Ok((decode(&bytes)?, created))
}

/// The stored key, if the store has one.
pub async fn load(store: &dyn Store) -> Result<Option<Keypair>, IdentityError> {
    match store.identity().await? {
        Some(b) => decode(&b).map(Some),
        None => Ok(None),
    }
}
