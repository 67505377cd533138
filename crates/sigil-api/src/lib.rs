//! Wire types of Sigil's admin REST API (`/api/v1`): request and response bodies, the error body,
//! the route paths, the query-string encoding of entry filters, and the OpenAPI 3.1 document.
//!
//! This crate is serde only: no I/O, no validation of SPIFFE vocabulary. Request types carry raw
//! strings so the server can parse each field itself and name the field in its error message;
//! the server is the single place that decides what is valid, and the OpenAPI document states
//! the same rules as patterns and bounds (checked against `sigil-spiffe`'s parsers here, and
//! against the live server by schemathesis). Only top-level JSON objects are request bodies, and
//! an optional field is either absent or holds a value, never `null`.

#![forbid(unsafe_code)]

pub mod agents;
pub mod audit;
pub mod authorities;
pub mod credentials;
pub mod entries;
pub mod error;
pub mod federations;
pub mod inventory;
pub mod join_tokens;
pub mod openapi;
pub mod paths;
mod patterns;
pub mod policy;
pub mod query;
pub mod revocations;
pub mod schemas;
pub mod status;
pub mod ttl;

pub use agents::{Agent, AgentList};
pub use audit::{
    AuditKeyList, AuditQuery, AuditRecordList, AuditVerification, EntryReview, EntryReviewRequest,
};
pub use authorities::{Authority, AuthorityList, PrepareAuthorityRequest};
pub use credentials::{
    CredentialRequest, CredentialTarget, CredentialTargetList, DatabaseAddress, IssuedCredential,
    Lease, LeaseFailure, LeaseList, LeaseRenewed, LeasesRevoked, RenewLeaseRequest,
    RevokeLeasesRequest, RoleSpec, RootRotated, TargetSpec, TargetUpdateRequest,
};
pub use entries::{Entry, EntryBatch, EntryBatchRequest, EntryList, EntryRequest, MAX_ENTRY_BATCH};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, WireError};
pub use federations::{
    Federation, FederationList, FederationRefreshed, FederationRequest, FederationUpdateRequest,
};
pub use inventory::{
    Finding, FindingCounts, FindingQuery, FindingReport, InventoryCredential, InventoryEntry,
    InventoryEntryDetail, InventoryEntryList, InventoryEntryQuery, InventorySummary, LastReview,
    OwnerList, OwnerQuery, OwnerSummary, UsageSummary, WorkloadUsage,
};
pub use join_tokens::{CreateJoinTokenRequest, JoinTokenCreated};
pub use openapi::openapi_document;
pub use policy::{PolicyDecision, PolicyReloaded, PolicyStatus, PolicyVerdict};
pub use query::{
    AgentQuery, DEFAULT_PAGE_SIZE, EntryQuery, FederationQuery, MAX_PAGE_SIZE,
    MAX_PAGE_TOKEN_CHARS, PageQuery,
};
pub use revocations::{Revocation, RevocationList, RevokeRequest};
pub use status::Health;
pub use ttl::TtlValue;

/// Largest request body the admin API reads, in bytes (larger bodies get 413).
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// `deserialize_with` for optional fields: a present value must be a value, so `null` is refused
/// (the OpenAPI document does not allow it) instead of read as "absent".
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// `deserialize_with` for fields that may be absent, `null` or a value: `null` is `Some(None)`
/// (clear it), a value `Some(Some(v))`, and (with `default`) absence `None` (leave it as it is).
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// `deserialize_with` for optional integers: like [`present`], and a number written with an
/// integral fraction (`5.0`) is that integer, as JSON Schema's `integer` type counts it.
pub(crate) fn present_integer<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Integer(i64),
        Number(f64),
    }
    match <Raw as serde::Deserialize>::deserialize(deserializer)? {
        Raw::Integer(n) => Ok(Some(n)),
        Raw::Number(f) => integral(f).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("`{f}` is not an integer within ±2^53"))
        }),
    }
}

/// `f` as an integer, when it has no fraction and every integer up to it is exact in an `f64`.
pub(crate) fn integral(f: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if f == 0.0 {
        return Some(0); // also -0.0
    }
    if f.fract() != 0.0 || !(-EXACT..=EXACT).contains(&f) {
        return None;
    }
    format!("{f:.0}").parse().ok()
}
