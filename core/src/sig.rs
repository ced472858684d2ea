//! Signature verification (secp256k1, BLS): being written.
