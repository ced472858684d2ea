//! A client key: Lotus key files in, Filecoin signatures out.
//!
//! The core only verifies; signing lives here. secp256k1 signs blake2b-256(message) with
//! RFC 6979 nonces and low S, giving `r ‖ s ‖ v` (65 bytes); BLS signs the message as is
//! with the min-pk `NUL` ciphersuite (lotus `lib/sigs/{secp,bls}`).

use base64::Engine as _;
use dealport_core::{
    sig::{secp256k1_address_payload, BLS_DST},
    wire::{Address, Signature},
};

/// Filecoin signature type bytes (go-state-types `crypto/signature.go`).
const SIG_SECP256K1: u8 = 1;
const SIG_BLS: u8 = 2;

/// The two key types a Filecoin client signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyKind {
    Secp256k1,
    Bls,
}

/// A private key that can sign deal proposals and status requests.
pub enum Wallet {
    Secp256k1(k256::ecdsa::SigningKey),
    Bls(blst::min_pk::SecretKey),
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.address())
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WalletError(pub String);

fn err(s: impl Into<String>) -> WalletError {
    WalletError(s.into())
}

impl Wallet {
    /// A secp256k1 key from its 32-byte secret.
    pub fn secp256k1(secret: &[u8]) -> Result<Wallet, WalletError> {
        k256::ecdsa::SigningKey::from_slice(secret)
            .map(Wallet::Secp256k1)
            .map_err(|_| err("the secp256k1 private key is not a valid 32-byte secret"))
    }

    /// A BLS key from the 32-byte little-endian scalar Lotus stores.
    pub fn bls_le(scalar_le: &[u8]) -> Result<Wallet, WalletError> {
        if scalar_le.len() != 32 {
            return Err(err(format!(
                "the BLS private key has {} bytes, expected 32",
                scalar_le.len()
            )));
        }
        let mut be = scalar_le.to_vec();
        be.reverse();
        blst::min_pk::SecretKey::from_bytes(&be)
            .map(Wallet::Bls)
            .map_err(|_| err("the BLS private key is not a valid scalar"))
    }

    /// Parse what `lotus wallet export` prints: hex of the JSON
    /// `{"Type":"secp256k1"|"bls","PrivateKey":"<base64>"}`. The bare JSON is accepted too.
    pub fn from_lotus_export(text: &str) -> Result<Wallet, WalletError> {
        let text = text.trim();
        let json = if text.starts_with('{') {
            text.as_bytes().to_vec()
        } else {
            hex::decode(text).map_err(|e| err(format!("the key file is not hex-encoded ({e})")))?
        };
        #[derive(serde::Deserialize)]
        struct KeyInfo {
            #[serde(rename = "Type")]
            key_type: String,
            #[serde(rename = "PrivateKey")]
            private_key: String,
        }
        let info: KeyInfo = serde_json::from_slice(&json)
            .map_err(|e| err(format!("the key file is not a Lotus key ({e})")))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(info.private_key.trim())
            .map_err(|e| err(format!("the key's PrivateKey is not base64 ({e})")))?;
        match info.key_type.as_str() {
            "secp256k1" => Wallet::secp256k1(&secret),
            "bls" => Wallet::bls_le(&secret),
            other => Err(err(format!(
                "key type {other:?} is not supported (use a secp256k1 or bls key)"
            ))),
        }
    }

    /// A new random key of `kind` (`secp256k1` or `bls`), from the OS's randomness.
    pub fn generate(kind: KeyKind) -> Result<Wallet, WalletError> {
        let mut seed = [0u8; 32];
        loop {
            getrandom::fill(&mut seed)
                .map_err(|e| err(format!("no randomness from the OS: {e}")))?;
            let made = match kind {
                KeyKind::Secp256k1 => Wallet::secp256k1(&seed),
                // IKM of 32 random bytes, as blst's (and Lotus') key generation takes it.
                KeyKind::Bls => blst::min_pk::SecretKey::key_gen(&seed, &[])
                    .map(Wallet::Bls)
                    .map_err(|_| err("BLS key generation failed")),
            };
            // A secp256k1 secret past the group order (odds 2^-128) is drawn again.
            if let Ok(w) = made {
                return Ok(w);
            }
        }
    }

    /// What `lotus wallet export` prints for this key: hex of
    /// `{"Type":"secp256k1"|"bls","PrivateKey":"<base64>"}` (BLS as the little-endian
    /// scalar Lotus stores).
    pub fn to_lotus_export(&self) -> String {
        let (kind, secret) = match self {
            Wallet::Secp256k1(k) => ("secp256k1", k.to_bytes().to_vec()),
            Wallet::Bls(k) => {
                let mut le = k.to_bytes().to_vec();
                le.reverse();
                ("bls", le)
            }
        };
        let json = serde_json::json!({
            "Type": kind,
            "PrivateKey": base64::engine::general_purpose::STANDARD.encode(secret),
        });
        hex::encode(json.to_string())
    }

    /// Read and parse a Lotus key file.
    pub fn load(path: &std::path::Path) -> Result<Wallet, WalletError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read key file {}: {e}", path.display())))?;
        Wallet::from_lotus_export(&text)
            .map_err(|e| err(format!("key file {}: {e}", path.display())))
    }

    /// The key address (`f1…` or `f3…`).
    pub fn address(&self) -> Address {
        match self {
            Wallet::Secp256k1(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let bytes: [u8; 65] = point
                    .as_bytes()
                    .try_into()
                    .expect("an uncompressed secp256k1 point has 65 bytes");
                Address::new_secp256k1(secp256k1_address_payload(&bytes))
            }
            Wallet::Bls(k) => Address::new_bls(k.sk_to_pk().to_bytes()),
        }
    }

    /// Sign `message` as Lotus' `WalletSign` does for a local key.
    pub fn sign(&self, message: &[u8]) -> Signature {
        match self {
            Wallet::Secp256k1(k) => {
                let digest = blake2b_simd::Params::new().hash_length(32).hash(message);
                let (sig, recid) = k.sign_prehash_recoverable(digest.as_bytes());
                let mut data = sig.to_bytes().to_vec();
                data.push(recid.to_byte());
                Signature {
                    sig_type: SIG_SECP256K1,
                    data,
                }
            }
            Wallet::Bls(k) => Signature {
                sig_type: SIG_BLS,
                data: k.sign(message, BLS_DST, &[]).to_bytes().to_vec(),
            },
        }
    }
}
