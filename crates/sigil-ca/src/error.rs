//! `CaError`, the one error type of this crate.

use sigil_keys::KeyError;

/// Why an authority could not be built or could not issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A key, CSR or signature operation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// rcgen could not encode or sign a certificate.
    #[error("cannot build certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// An authority certificate cannot be used as a Sigil authority.
    #[error("invalid authority certificate: {reason}")]
    InvalidAuthority { reason: &'static str },
    /// The upstream authority's certificate, chain or bundle cannot be used.
    #[error("invalid upstream authority: {reason}")]
    InvalidUpstream { reason: &'static str },
    /// The private key given for an authority is not the key of its certificate.
    #[error("the authority key does not match the authority certificate")]
    KeyMismatch,
    /// A CRL would list more certificates than one document may hold.
    #[error("{count} revoked certificates exceed the CRL limit of {max}")]
    TooManyRevocations { count: usize, max: usize },
    /// The authority's certificate or key has expired at the issuing time.
    #[error("authority expired at {not_after} (now {now})")]
    AuthorityExpired { not_after: i64, now: i64 },
    /// The identity to issue for belongs to another trust domain than the authority.
    #[error("`{id}` is not in the authority's trust domain `{trust_domain}`")]
    ForeignTrustDomain { id: String, trust_domain: String },
    /// A DNS name is not a valid host name.
    #[error("invalid DNS name `{name}`")]
    InvalidDnsName { name: String },
    /// A TTL of zero seconds was asked for.
    #[error("ttl must be at least 1 second")]
    ZeroTtl,
    /// A time cannot be represented in a certificate.
    #[error("time {secs} is out of the representable range")]
    TimeOutOfRange { secs: i64 },
    /// A JWT-SVID was asked for without audience.
    #[error("a JWT-SVID needs at least one audience")]
    EmptyAudience,
    /// An audience is empty.
    #[error("audience must not be empty")]
    EmptyAudienceValue,
    /// The claims could not be serialised.
    #[error("cannot serialise JWT claims: {0}")]
    Json(#[from] serde_json::Error),
}
