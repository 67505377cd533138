//! The records the datastore keeps. Fields that hold identifiers use the parsed types from
//! `sigil-spiffe`, so a stored record is valid by construction; the backends re-parse on load and
//! report `StoreError::Corrupt` if the bytes on disk no longer parse.

use serde::{Deserialize, Serialize};
use sigil_spiffe::{Selector, SpiffeId, TrustDomain};

/// Longest `owner` accepted, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;
/// Longest `description` accepted, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// A registration entry: which workloads (by selectors, under which parent) get which SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Server-assigned id (random, URL-safe).
    pub id: String,
    #[serde(flatten)]
    pub spec: NewEntry,
    /// Starts at 1; +1 on every update.
    pub revision: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// The caller-supplied part of an entry (create and update both take it whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEntry {
    pub spiffe_id: SpiffeId,
    /// An agent's SPIFFE ID, a node alias, or another entry's SPIFFE ID (nesting).
    pub parent_id: SpiffeId,
    /// Sorted, deduplicated, non-empty.
    pub selectors: Vec<Selector>,
    /// X509-SVID lifetime in seconds; 0 means the server default.
    pub x509_svid_ttl: u64,
    /// JWT-SVID lifetime in seconds; 0 means the server default.
    pub jwt_svid_ttl: u64,
    pub dns_names: Vec<String>,
    pub federates_with: Vec<TrustDomain>,
    pub admin: bool,
    pub downstream: bool,
    pub hint: String,
    /// Team or contact accountable for this identity (required, non-empty).
    pub owner: String,
    pub description: String,
    /// Unix seconds after which the entry is no longer served; `None` = never.
    pub expires_at: Option<i64>,
}

/// Which entries [`crate::Datastore::list_entries`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    pub spiffe_id: Option<SpiffeId>,
    pub parent_id: Option<SpiffeId>,
    /// Entries whose selector set contains every one of these.
    pub selectors: Vec<Selector>,
    pub owner: Option<String>,
}

/// A one-time join token. Only the SHA-256 of the secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    /// Public id; also the last segment of the agent ID it yields.
    pub id: String,
    /// Lowercase hex SHA-256 of the secret token.
    pub token_hash: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds; `None` until consumed.
    pub used_at: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// An attested node agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedAgent {
    pub spiffe_id: SpiffeId,
    /// Node attestation method, e.g. `join_token`.
    pub attestation_type: String,
    /// Node selectors from attestation (used for node aliases).
    pub selectors: Vec<Selector>,
    /// Hex serial of the agent's current SVID.
    pub serial: String,
    /// Hex serial of a renewed SVID not yet seen in use.
    pub new_serial: Option<String>,
    /// Unix seconds when the current SVID expires.
    pub expires_at: i64,
    pub banned: bool,
    pub can_reattest: bool,
    pub created_at: i64,
    pub last_seen: i64,
}

/// What an authority signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityKind {
    /// Self-signed root: goes in the trust bundle.
    X509Root,
    /// Intermediate under a root: signs X509-SVIDs.
    X509Intermediate,
    /// JWT-SVID signing key: its public key goes in the trust bundle.
    Jwt,
}

/// Lifecycle of an authority (rotation lands in a later issue; the model holds it now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityState {
    /// Published in the bundle, not yet signing.
    Prepared,
    /// Signing.
    Active,
    /// Replaced, still trusted until it expires.
    Old,
    /// Marked for early replacement; still trusted.
    Tainted,
    /// Removed from the bundle.
    Revoked,
}

/// One signing authority. The private key lives in a key manager under `key_id`, never here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityRecord {
    /// Hex of the subject key identifier (X.509) or the `kid` (JWT).
    pub id: String,
    pub kind: AuthorityKind,
    pub state: AuthorityState,
    /// DER certificate (X.509 kinds).
    pub cert_der: Option<Vec<u8>>,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// Name of the private key in the key manager.
    pub key_id: String,
    /// The authority that signed this one (intermediates), if any.
    pub issuer_id: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// A trust bundle as stored: the trust domain and its SPIFFE bundle document (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBundle {
    pub trust_domain: TrustDomain,
    /// SPIFFE bundle document, JSON.
    pub document: Vec<u8>,
    pub sequence: u64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One mutation recorded in the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Strictly increasing.
    pub seq: u64,
    pub change: Change,
    /// Unix seconds.
    pub at: i64,
}

/// What changed; readers re-read the named record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "key", rename_all = "snake_case")]
pub enum Change {
    EntryCreated(String),
    EntryUpdated(String),
    EntryDeleted(String),
    AgentChanged(String),
    AgentDeleted(String),
    AuthorityChanged(String),
    BundleChanged(String),
    BundleDeleted(String),
    JoinTokenChanged(String),
}
