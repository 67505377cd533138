//! The records the datastore keeps. Fields that hold identifiers use the parsed types from
//! `sigil-spiffe`, so a stored record is valid by construction; the backends re-parse on load and
//! report `StoreError::Corrupt` if the bytes on disk no longer parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sigil_spiffe::bundle::MAX_BUNDLE_DOCUMENT_BYTES;
use sigil_spiffe::ttl::MAX_TTL_SECS;
pub use sigil_spiffe::{AuthorityKind, AuthorityState};
use sigil_spiffe::{Selector, SpiffeId, TrustDomain};

use crate::{StoreError, StoreResult};

mod crls;
mod federation;
mod governance;
mod labels;
mod leases;

pub use crls::{MAX_CRL_DER_BYTES, StoredCrl};
pub(crate) use federation::profile_rule_violation;
pub use federation::{
    BundleEndpointProfile, FederationRelationship, FederationUpdate, MAX_BUNDLE_ENDPOINT_URL_BYTES,
    NewFederationRelationship,
};
pub(crate) use governance::{
    ActionMatch, check_audit_batch, check_audit_key, check_checkpoint, check_usage_batch,
};
pub use governance::{
    AuditFilter, EntryReview, EntryUsage, MAX_AUDIT_BATCH, MAX_AUDIT_KEY_ID_BYTES,
    MAX_AUDIT_PUBLIC_KEY_BYTES, MAX_BINARY_PATH_BYTES, MAX_CHECKPOINT_SIGNATURE_BYTES,
    MAX_ENTRY_ID_BYTES, MAX_REVIEW_NOTE_BYTES, MAX_STORED_COUNT, MAX_USAGE_BATCH, WorkloadUsage,
};
pub use labels::{
    MAX_ENTRY_LABELS, MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES, check_labels, label_key_problem,
    label_strings, label_value_problem,
};
pub use leases::{
    Lease, LeaseFilter, LeaseState, MAX_LEASE_NAME_BYTES, MAX_LEASE_PAGE, MAX_REVOKE_REASON_BYTES,
    MAX_TARGET_SPEC_BYTES, StoredCredentialTarget,
};

/// Longest `owner` accepted, in bytes.
pub const MAX_OWNER_BYTES: usize = 256;
/// Longest `description` accepted, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// Longest join token id accepted, in bytes.
pub const MAX_JOIN_TOKEN_ID_BYTES: usize = 256;
/// Most entries one [`Datastore::create_entries`](crate::Datastore::create_entries) call
/// accepts: one batch is one transaction, so this bounds how long it holds its locks and how
/// many rows and change events one call can write.
pub const MAX_ENTRY_BATCH: usize = 1000;

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
    /// Operator-chosen `key=value` labels, which policy reads as the workload's `labels`; at
    /// most [`MAX_ENTRY_LABELS`], bounded as [`check_labels`] states. Absent in JSON written
    /// before labels existed, which reads as none.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Which entries [`crate::Datastore::list_entries`] and
/// [`crate::Datastore::list_entries_page`] return. Empty fields match everything; set fields
/// combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryFilter {
    pub spiffe_id: Option<SpiffeId>,
    /// Entries whose SPIFFE ID starts with this string, compared literally (`%` and `_` match
    /// only themselves).
    pub spiffe_id_prefix: Option<String>,
    pub parent_id: Option<SpiffeId>,
    /// Entries whose selector set contains every one of these.
    pub selectors: Vec<Selector>,
    pub owner: Option<String>,
    /// Entries that federate with this trust domain.
    pub federates_with: Option<TrustDomain>,
}

/// Checks the `limit` of a paged list: a page of nothing is a caller's mistake, not a request
/// for everything.
pub(crate) fn check_page_limit(limit: u32) -> StoreResult<()> {
    if limit == 0 {
        return Err(StoreError::Invalid {
            field: "limit",
            reason: "a page holds at least one record".to_owned(),
        });
    }
    Ok(())
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
    /// The server replica that holds the private key and runs this authority's life cycle;
    /// empty for a single server (and for records written before replicas existed). Every
    /// replica trusts every replica's authorities; each rotates only its own.
    pub replica: String,
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

/// Longest revocation reason accepted, in bytes.
pub const MAX_REVOCATION_REASON_BYTES: usize = 1024;
/// Longest credential id (X509-SVID serial hex or JWT `jti`) accepted, in bytes.
pub const MAX_CREDENTIAL_ID_BYTES: usize = 128;

/// Which kind of credential an issued-credential record or a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An X509-SVID, named by its serial number (lowercase hex).
    X509Svid,
    /// A JWT-SVID, named by its `jti`.
    JwtSvid,
}

impl CredentialKind {
    /// Both kinds.
    pub const ALL: [Self; 2] = [Self::X509Svid, Self::JwtSvid];

    /// The stable name stored and shown (`x509_svid`, `jwt_svid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::X509Svid => "x509_svid",
            Self::JwtSvid => "jwt_svid",
        }
    }

    /// The kind named `name` (as returned by [`CredentialKind::as_str`]), or `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl std::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One credential the server issued: the inventory behind revocation ("is this serial ours, and
/// when does it expire?"). Written after signing and before the credential is handed out;
/// bookkeeping, so it appends no change event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    pub kind: CredentialKind,
    /// X509-SVID: lowercase hex of the serial number; JWT-SVID: the `jti`.
    pub id: String,
    pub spiffe_id: SpiffeId,
    /// The authority that signed it: hex subject key id of the intermediate, or the JWT `kid`.
    pub authority_id: String,
    /// The agent it was issued to (for a workload SVID, the agent that asked for it; for an
    /// agent SVID, the agent itself).
    pub issued_to: SpiffeId,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A revoked credential: on the deny-list until `expires_at`, when the credential it names
/// expires and the entry can go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub kind: CredentialKind,
    /// As in [`IssuedCredential::id`].
    pub id: String,
    pub spiffe_id: SpiffeId,
    /// As in [`IssuedCredential::authority_id`].
    pub authority_id: String,
    /// Free text from the operator, at most [`MAX_REVOCATION_REASON_BYTES`].
    pub reason: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// Unix seconds: when the revoked credential expires.
    pub expires_at: i64,
}

impl IssuedCredential {
    /// Checks what every backend relies on: an id of 1 to [`MAX_CREDENTIAL_ID_BYTES`] bytes.
    /// Fails with [`StoreError::Invalid`].
    pub fn validate(&self) -> StoreResult<()> {
        if self.id.is_empty() || self.id.len() > MAX_CREDENTIAL_ID_BYTES {
            return Err(invalid(
                "id",
                format!(
                    "{} id must be 1 to {MAX_CREDENTIAL_ID_BYTES} bytes",
                    self.kind.as_str()
                ),
            ));
        }
        Ok(())
    }
}

impl Revocation {
    /// Checks a revocation reason: at most [`MAX_REVOCATION_REASON_BYTES`] bytes (an empty
    /// reason is allowed). Fails with [`StoreError::Invalid`].
    pub fn check_reason(reason: &str) -> StoreResult<()> {
        if reason.len() > MAX_REVOCATION_REASON_BYTES {
            return Err(invalid(
                "reason",
                format!("is longer than {MAX_REVOCATION_REASON_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// The change-feed key of the revocation of credential `id` of `kind`: `<kind>:<id>`.
    pub fn feed_key(kind: CredentialKind, id: &str) -> String {
        format!("{}:{id}", kind.as_str())
    }

    /// The kind and id named by a change-feed key made by [`Revocation::feed_key`].
    pub fn parse_feed_key(key: &str) -> Option<(CredentialKind, &str)> {
        let (kind, id) = key.split_once(':')?;
        Some((CredentialKind::from_name(kind)?, id))
    }
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
    /// An expired authority was forgotten.
    AuthorityDeleted(String),
    BundleChanged(String),
    BundleDeleted(String),
    /// A federation relationship was created or updated; the key is the foreign trust domain.
    FederationChanged(String),
    /// A federation relationship was deleted; the key is the foreign trust domain.
    FederationDeleted(String),
    JoinTokenChanged(String),
    /// A credential was revoked; the key is [`Revocation::feed_key`].
    RevocationAdded(String),
    /// A revocation whose credential expired was pruned; the key is [`Revocation::feed_key`].
    RevocationDeleted(String),
    /// A newer CRL of an X.509 authority was stored; the key is the authority id.
    CrlChanged(String),
}

impl NewEntry {
    /// An entry giving `spiffe_id` to workloads under `parent_id` that have every one of
    /// `selectors`, owned by `owner`, with server-default TTLs and no extras.
    pub fn new(
        spiffe_id: SpiffeId,
        parent_id: SpiffeId,
        selectors: Vec<Selector>,
        owner: impl Into<String>,
    ) -> Self {
        Self {
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: Vec::new(),
            federates_with: Vec::new(),
            admin: false,
            downstream: false,
            hint: String::new(),
            owner: owner.into(),
            description: String::new(),
            expires_at: None,
            labels: BTreeMap::new(),
        }
    }

    /// The canonical form every backend stores: selectors sorted and deduplicated, `dns_names` and
    /// `federates_with` deduplicated (first occurrence kept, since the first DNS name may become
    /// the certificate's common name).
    ///
    /// Fails with [`StoreError::Invalid`] when the owner is blank or longer than
    /// [`MAX_OWNER_BYTES`], the description is longer than [`MAX_DESCRIPTION_BYTES`], there is no
    /// selector, a TTL is above [`MAX_TTL_SECS`], or a label is out of bounds ([`check_labels`]).
    pub fn normalized(mut self) -> StoreResult<Self> {
        if self.owner.trim().is_empty() {
            return Err(invalid("owner", "must not be empty"));
        }
        if self.owner.len() > MAX_OWNER_BYTES {
            return Err(invalid(
                "owner",
                format!("is longer than {MAX_OWNER_BYTES} bytes"),
            ));
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(
                "description",
                format!("is longer than {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        check_labels(&self.labels)?;
        if self.selectors.is_empty() {
            return Err(invalid("selectors", "at least one selector is required"));
        }
        for (field, ttl) in [
            ("x509_svid_ttl", self.x509_svid_ttl),
            ("jwt_svid_ttl", self.jwt_svid_ttl),
        ] {
            if ttl > MAX_TTL_SECS {
                return Err(invalid(
                    field,
                    format!("`{ttl}` seconds is above the maximum of {MAX_TTL_SECS}"),
                ));
            }
        }
        self.selectors.sort();
        self.selectors.dedup();
        dedup_keep_first(&mut self.dns_names);
        dedup_keep_first(&mut self.federates_with);
        Ok(self)
    }
}

impl JoinToken {
    /// Checks what every backend relies on: an id of 1 to [`MAX_JOIN_TOKEN_ID_BYTES`] bytes and a
    /// `token_hash` of 64 lowercase hex digits, which also catches a caller passing the secret
    /// instead of its hash. Fails with [`StoreError::Invalid`].
    pub fn validate(&self) -> StoreResult<()> {
        if self.id.is_empty() || self.id.len() > MAX_JOIN_TOKEN_ID_BYTES {
            return Err(invalid(
                "id",
                format!("join token id must be 1 to {MAX_JOIN_TOKEN_ID_BYTES} bytes"),
            ));
        }
        let is_sha256_hex = self.token_hash.len() == 64
            && self
                .token_hash
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_sha256_hex {
            return Err(invalid(
                "token_hash",
                "must be a SHA-256 digest in lowercase hex",
            ));
        }
        Ok(())
    }
}

impl StoredBundle {
    /// Checks the bounds every backend relies on: the document is at most
    /// [`MAX_BUNDLE_DOCUMENT_BYTES`] and the sequence fits a signed 64-bit column. The document
    /// is not parsed here. Fails with [`StoreError::Invalid`].
    pub fn validate(&self) -> StoreResult<()> {
        if self.document.len() > MAX_BUNDLE_DOCUMENT_BYTES {
            return Err(invalid(
                "document",
                format!("bundle document is larger than {MAX_BUNDLE_DOCUMENT_BYTES} bytes"),
            ));
        }
        if i64::try_from(self.sequence).is_err() {
            return Err(invalid(
                "sequence",
                format!("`{}` is larger than {}", self.sequence, i64::MAX),
            ));
        }
        Ok(())
    }
}

impl Change {
    /// The stable name of the change kind, as stored in the change feed (`entry_created`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EntryCreated(_) => "entry_created",
            Self::EntryUpdated(_) => "entry_updated",
            Self::EntryDeleted(_) => "entry_deleted",
            Self::AgentChanged(_) => "agent_changed",
            Self::AgentDeleted(_) => "agent_deleted",
            Self::AuthorityChanged(_) => "authority_changed",
            Self::AuthorityDeleted(_) => "authority_deleted",
            Self::BundleChanged(_) => "bundle_changed",
            Self::BundleDeleted(_) => "bundle_deleted",
            Self::FederationChanged(_) => "federation_changed",
            Self::FederationDeleted(_) => "federation_deleted",
            Self::JoinTokenChanged(_) => "join_token_changed",
            Self::RevocationAdded(_) => "revocation_added",
            Self::RevocationDeleted(_) => "revocation_deleted",
            Self::CrlChanged(_) => "crl_changed",
        }
    }

    /// The key of the changed record (entry id, agent SPIFFE ID, authority id (also of a CRL),
    /// trust domain of a bundle or federation relationship, join token id, or
    /// [`Revocation::feed_key`]).
    pub fn key(&self) -> &str {
        match self {
            Self::EntryCreated(key)
            | Self::EntryUpdated(key)
            | Self::EntryDeleted(key)
            | Self::AgentChanged(key)
            | Self::AgentDeleted(key)
            | Self::AuthorityChanged(key)
            | Self::AuthorityDeleted(key)
            | Self::BundleChanged(key)
            | Self::BundleDeleted(key)
            | Self::FederationChanged(key)
            | Self::FederationDeleted(key)
            | Self::JoinTokenChanged(key)
            | Self::RevocationAdded(key)
            | Self::RevocationDeleted(key)
            | Self::CrlChanged(key) => key,
        }
    }

    /// Rebuilds a change from its [`Change::kind`] and [`Change::key`]; `None` for an unknown
    /// kind.
    pub fn from_kind_and_key(kind: &str, key: String) -> Option<Self> {
        let build: fn(String) -> Self = match kind {
            "entry_created" => Self::EntryCreated,
            "entry_updated" => Self::EntryUpdated,
            "entry_deleted" => Self::EntryDeleted,
            "agent_changed" => Self::AgentChanged,
            "agent_deleted" => Self::AgentDeleted,
            "authority_changed" => Self::AuthorityChanged,
            "authority_deleted" => Self::AuthorityDeleted,
            "bundle_changed" => Self::BundleChanged,
            "bundle_deleted" => Self::BundleDeleted,
            "federation_changed" => Self::FederationChanged,
            "federation_deleted" => Self::FederationDeleted,
            "join_token_changed" => Self::JoinTokenChanged,
            "revocation_added" => Self::RevocationAdded,
            "revocation_deleted" => Self::RevocationDeleted,
            "crl_changed" => Self::CrlChanged,
            _ => return None,
        };
        Some(build(key))
    }
}

/// Checks a batch for [`Datastore::create_entries`](crate::Datastore::create_entries) and
/// returns its entries normalised in the same order, each by [`NewEntry::normalized`] (the
/// check `create_entry` makes). `Invalid` (field `entries`) when the batch holds more than
/// [`MAX_ENTRY_BATCH`] entries; [`StoreError::InBatch`] naming the first entry that fails.
pub(crate) fn normalized_batch(entries: Vec<NewEntry>) -> StoreResult<Vec<NewEntry>> {
    if entries.len() > MAX_ENTRY_BATCH {
        return Err(invalid(
            "entries",
            format!(
                "a batch holds at most {MAX_ENTRY_BATCH} entries, not {}",
                entries.len()
            ),
        ));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| entry.normalized().map_err(|e| e.in_batch(index)))
        .collect()
}

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Removes later duplicates, keeping the first occurrence of each value in place.
fn dedup_keep_first<T: PartialEq>(items: &mut Vec<T>) {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    *items = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(selectors: &[&str]) -> NewEntry {
        NewEntry {
            spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
            parent_id: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
            selectors: selectors
                .iter()
                .map(|s| Selector::parse(s).unwrap())
                .collect(),
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: vec![],
            federates_with: vec![],
            admin: false,
            downstream: false,
            hint: String::new(),
            owner: "team-web".to_owned(),
            description: String::new(),
            expires_at: None,
            labels: BTreeMap::new(),
        }
    }

    fn invalid_field(result: StoreResult<NewEntry>) -> &'static str {
        match result {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid-field error, got {other:?}"),
        }
    }

    #[test]
    fn normalized_sorts_and_deduplicates_selectors() {
        let entry = spec(&["unix:uid:1000", "docker:label:a", "unix:uid:1000"])
            .normalized()
            .unwrap();
        let names: Vec<String> = entry.selectors.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["docker:label:a", "unix:uid:1000"]);
    }

    #[test]
    fn normalized_deduplicates_dns_names_keeping_first_order() {
        let mut entry = spec(&["unix:uid:1"]);
        entry.dns_names = ["b.example", "a.example", "b.example"]
            .map(String::from)
            .to_vec();
        entry.federates_with = ["b.org", "a.org", "b.org"]
            .map(|td| TrustDomain::parse(td).unwrap())
            .to_vec();
        let entry = entry.normalized().unwrap();
        assert_eq!(entry.dns_names, ["b.example", "a.example"]);
        let tds: Vec<&str> = entry
            .federates_with
            .iter()
            .map(TrustDomain::as_str)
            .collect();
        assert_eq!(tds, ["b.org", "a.org"]);
    }

    #[test]
    fn rejects_blank_owner() {
        let mut entry = spec(&["unix:uid:1"]);
        entry.owner = "  ".to_owned();
        assert_eq!(invalid_field(entry.normalized()), "owner");
    }

    #[test]
    fn rejects_owner_over_limit_but_accepts_owner_at_limit() {
        let mut entry = spec(&["unix:uid:1"]);
        entry.owner = "o".repeat(MAX_OWNER_BYTES);
        assert!(entry.clone().normalized().is_ok());
        entry.owner.push('o');
        assert_eq!(invalid_field(entry.normalized()), "owner");
    }

    #[test]
    fn rejects_description_over_limit() {
        let mut entry = spec(&["unix:uid:1"]);
        entry.description = "d".repeat(MAX_DESCRIPTION_BYTES + 1);
        assert_eq!(invalid_field(entry.normalized()), "description");
    }

    #[test]
    fn rejects_bad_label_key_and_accepts_good_labels() {
        let mut entry = spec(&["unix:uid:1"]);
        entry.labels.insert("tier".to_owned(), "web=1".to_owned());
        assert!(entry.clone().normalized().is_ok());
        entry.labels.insert("Bad".to_owned(), "x".to_owned());
        assert_eq!(invalid_field(entry.normalized()), "labels");
    }

    #[test]
    fn entry_json_without_labels_reads_as_no_labels() {
        let mut json = serde_json::to_value(spec(&["unix:uid:1"])).unwrap();
        assert!(json.as_object_mut().unwrap().remove("labels").is_some());
        let back: NewEntry = serde_json::from_value(json).unwrap();
        assert!(back.labels.is_empty());
    }

    #[test]
    fn rejects_entry_without_selectors() {
        assert_eq!(invalid_field(spec(&[]).normalized()), "selectors");
    }

    #[test]
    fn rejects_ttl_above_maximum() {
        let mut entry = spec(&["unix:uid:1"]);
        entry.jwt_svid_ttl = MAX_TTL_SECS + 1;
        assert_eq!(invalid_field(entry.normalized()), "jwt_svid_ttl");
    }

    #[test]
    fn change_kind_and_key_round_trip() {
        let changes = [
            Change::EntryCreated("e".into()),
            Change::EntryUpdated("e".into()),
            Change::EntryDeleted("e".into()),
            Change::AgentChanged("a".into()),
            Change::AgentDeleted("a".into()),
            Change::AuthorityChanged("k".into()),
            Change::AuthorityDeleted("k".into()),
            Change::BundleChanged("td".into()),
            Change::BundleDeleted("td".into()),
            Change::FederationChanged("partner.example".into()),
            Change::FederationDeleted("partner.example".into()),
            Change::JoinTokenChanged("t".into()),
            Change::RevocationAdded("x509_svid:0a".into()),
            Change::RevocationDeleted("jwt_svid:j".into()),
            Change::CrlChanged("0a1b".into()),
        ];
        for change in changes {
            let back = Change::from_kind_and_key(change.kind(), change.key().to_owned());
            assert_eq!(back, Some(change.clone()));
            // The stored kind is the serde tag, so JSON and the database agree.
            let json = serde_json::to_value(&change).unwrap();
            assert_eq!(json["kind"], change.kind());
        }
        assert_eq!(Change::from_kind_and_key("nope", String::new()), None);
    }

    #[test]
    fn credential_kind_names_round_trip() {
        for kind in CredentialKind::ALL {
            assert_eq!(CredentialKind::from_name(kind.as_str()), Some(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            // The stored name is the serde name, so JSON and the database agree.
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(CredentialKind::from_name("X509Svid"), None);
    }

    #[test]
    fn revocation_feed_key_round_trips_ids_holding_colons() {
        for kind in CredentialKind::ALL {
            for id in ["0a1b", "jti:with:colons", ""] {
                let key = Revocation::feed_key(kind, id);
                assert_eq!(Revocation::parse_feed_key(&key), Some((kind, id)));
            }
        }
        assert_eq!(Revocation::parse_feed_key("0a1b"), None);
        assert_eq!(Revocation::parse_feed_key("crl:0a1b"), None);
    }

    fn issued(id: &str) -> IssuedCredential {
        IssuedCredential {
            kind: CredentialKind::X509Svid,
            id: id.to_owned(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/web").unwrap(),
            authority_id: "int-1".to_owned(),
            issued_to: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
            issued_at: 0,
            expires_at: 3600,
        }
    }

    #[test]
    fn issued_credential_id_must_be_1_to_max_bytes() {
        assert!(issued("0a").validate().is_ok());
        assert!(
            issued(&"a".repeat(MAX_CREDENTIAL_ID_BYTES))
                .validate()
                .is_ok()
        );
        for id in [String::new(), "a".repeat(MAX_CREDENTIAL_ID_BYTES + 1)] {
            assert!(
                matches!(
                    issued(&id).validate(),
                    Err(StoreError::Invalid { field: "id", .. })
                ),
                "{id:?}"
            );
        }
    }

    #[test]
    fn revocation_reason_is_limited_in_bytes_not_characters() {
        // Two bytes per character: the limit in bytes is reached with half as many characters.
        let at_limit = "\u{e9}".repeat(MAX_REVOCATION_REASON_BYTES / 2);
        assert!(Revocation::check_reason("").is_ok());
        assert!(Revocation::check_reason(&at_limit).is_ok());
        let over = format!("{at_limit}x");
        assert!(over.chars().count() < MAX_REVOCATION_REASON_BYTES);
        assert!(matches!(
            Revocation::check_reason(&over),
            Err(StoreError::Invalid {
                field: "reason",
                ..
            })
        ));
    }
}
