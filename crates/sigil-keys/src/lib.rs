//! Key material for Sigil: ECDSA key types with redacted `Debug` and zeroised PKCS#8, signing and
//! verification (X.509 and JWS), PKCS#10 CSRs, compact JWS, verification of external issuers'
//! JWTs (RSA, ECDSA, Ed25519 from JWK Sets), JWT-SVID validation, SPIFFE bundle JSON, key
//! managers, private-file writing and reclaiming stale Unix socket paths.
//!
//! This is the only Sigil crate that names `aws-lc-rs`. Agent and server both depend on it; the
//! server-only issuance logic lives in `sigil-ca`.

#![forbid(unsafe_code)]

pub mod bundle_json;
pub mod cert_ids;
pub mod csr;
pub mod digest;
mod error;
pub mod files;
pub mod jose;
pub mod jws;
#[cfg(feature = "test-forgery")]
pub mod jwt_forgery;
pub mod jwt_svid;
pub mod key_manager;
pub mod pem;
mod private_key;
mod public_key;
pub mod random;
#[cfg(feature = "test-forgery")]
pub mod test_issuer;
pub mod unix_socket;

pub use digest::{sha256, sha256_hex};
pub use error::KeyError;
pub use key_manager::{DiskKeyManager, KeyManager, MemoryKeyManager};
pub use private_key::PrivateKey;
pub use public_key::{Curve, PublicKey};
pub use random::{random_bytes, random_token};

/// Compares two byte strings in time that depends only on their lengths, not their contents, so
/// comparing a secret (a token, a MAC) leaks nothing about where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
