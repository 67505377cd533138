//! Server-side issuance: X.509 authorities (self-signed roots and intermediates), X509-SVID leaves
//! signed from CSRs with the exact SPIFFE leaf profile, and JWT-SVID minting, all on a caller-given
//! time so rotation and expiry are testable on a fake clock; and the authorities' life cycle
//! ([`lifecycle`]) as a pure function of the authorities and the time.
//!
//! Keys come from `sigil-keys` ([`sigil_keys::PrivateKey`] behind an `Arc`); this crate never
//! names the crypto library itself.

#![forbid(unsafe_code)]

mod authority;
pub mod crl;
mod error;
mod jwt;
pub mod lifecycle;
pub mod operator;
mod upstream;
mod validity;
mod x509_svid;

pub use authority::{X509Authority, intermediate, self_signed_root};
pub use crl::{MAX_CRL_ENTRIES, RevokedCert};
pub use error::CaError;
pub use jwt::{ExchangedClaims, JwtAuthority, KID_LEN, MintedJwt, new_kid};
pub use lifecycle::{Action, AuthorityStatus, next_transition, plan};
pub use upstream::{MAX_UPSTREAM_CERTS, UpstreamAuthority, is_self_signed, upstream_signed_root};
pub use validity::BACKDATE_SECS;
