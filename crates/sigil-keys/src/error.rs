//! `KeyError`, the error type of this crate's key, CSR, PEM, bundle and key-manager operations.
//! JWS verification and JWT-SVID validation have their own, more specific enums
//! ([`crate::jws::JwsError`], [`crate::jwt_svid::JwtSvidError`]) because callers map their
//! variants to protocol errors one by one.

use std::path::PathBuf;

use crate::jws::JwsError;

/// Why a key operation failed. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Key generation failed inside the crypto library.
    #[error("key generation failed")]
    Generate,
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Sign,
    /// The bytes are not a PKCS#8 ECDSA P-256 private key.
    #[error("not a PKCS#8 ECDSA P-256 private key: {reason}")]
    InvalidPrivateKey { reason: &'static str },
    /// The bytes are not a supported public key.
    #[error("not a supported public key: {reason}")]
    InvalidPublicKey { reason: &'static str },
    /// The key is well formed but of a kind Sigil does not handle.
    #[error("unsupported key: {what}")]
    UnsupportedKey { what: String },
    /// The algorithm is not one this key can use.
    #[error("unsupported algorithm `{alg}` for this key")]
    UnsupportedAlgorithm { alg: String },
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The text is not the expected PEM.
    #[error("invalid PEM: {reason}")]
    InvalidPem { reason: &'static str },
    /// A JWK cannot be turned into a key.
    #[error("invalid JWK: {reason}")]
    InvalidJwk { reason: &'static str },
    /// A certificate cannot be parsed or used.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate { reason: &'static str },
    /// A CSR is larger than [`crate::csr::MAX_CSR_BYTES`].
    #[error("CSR is {len} bytes, more than the limit of {max} bytes", max = crate::csr::MAX_CSR_BYTES)]
    CsrTooLarge { len: usize },
    /// A CSR cannot be parsed.
    #[error("malformed CSR: {reason}")]
    MalformedCsr { reason: &'static str },
    /// A CSR is signed with an algorithm Sigil does not accept.
    #[error("CSR signature algorithm `{oid}` is not accepted for this key")]
    UnsupportedCsrSignature { oid: String },
    /// A CSR's self-signature does not verify with its own public key.
    #[error("CSR signature does not verify")]
    BadCsrSignature,
    /// A bundle document cannot be converted.
    #[error("invalid bundle: {reason}")]
    InvalidBundle { reason: String },
    /// A key id is not `[A-Za-z0-9._-]{{1,128}}` or starts with a dot.
    #[error(
        "invalid key id `{key_id}`: use 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.`"
    )]
    BadKeyId { key_id: String },
    /// Reading or writing a key file failed.
    #[error("cannot access key file `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JWS could not be built.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// rcgen could not build a CSR.
    #[error("cannot build CSR: {0}")]
    Csr(#[source] rcgen::Error),
}
