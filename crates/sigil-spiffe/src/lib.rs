//! SPIFFE vocabulary shared by every Sigil crate: identifiers, selectors, TTLs, bundle documents,
//! JWT-SVID claim rules, signing-authority kinds and states, and the injected clock. No I/O and no cryptography live here.
//!
//! Everything is "parse, don't validate": once a caller holds a [`SpiffeId`], [`TrustDomain`],
//! [`Selector`] or [`Ttl`], it is valid and no other code re-checks it.

#![forbid(unsafe_code)]

pub mod authority;
pub mod bundle;
pub mod id;
pub mod jwt;
pub mod selector;
pub mod time;
pub mod ttl;

pub use authority::{AuthorityKind, AuthorityState, MAX_AUTHORITY_ID_CHARS, is_authority_id};
pub use bundle::{
    BundleDocument, BundleError, Jwk, JwtAuthorityKey, MAX_BUNDLE_DOCUMENT_BYTES, TrustBundle,
};
pub use id::{SIGIL_SERVER_PATH, SpiffeId, SpiffeIdError, TrustDomain};
pub use jwt::{Audience, JwtClaimError, JwtSvidClaims};
pub use selector::{
    MAX_SELECTOR_TYPE_BYTES, MAX_SELECTOR_VALUE_CHARS, Selector, SelectorError, UNIX_SELECTOR_KEYS,
    UNIX_SELECTOR_TYPE,
};
pub use time::{Clock, SystemClock};
pub use ttl::{Ttl, TtlError};
