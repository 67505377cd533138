//! Governance records: how agents report their workloads' use of each entry's identity, owners'
//! reviews of entries, and what the audit log is filtered by. The audit records themselves are
//! `sigil-audit`'s types; the store keeps them and computes their hashes.

use serde::{Deserialize, Serialize};
use sigil_audit::Outcome;
use sigil_spiffe::SpiffeId;

/// Most usage rows one [`crate::Datastore::record_workload_usage`] call accepts.
pub const MAX_USAGE_BATCH: usize = 1000;
/// Most events one [`crate::Datastore::append_audit`] call accepts.
pub const MAX_AUDIT_BATCH: usize = 1000;
/// Longest binary path accepted in a usage row, in bytes.
pub const MAX_BINARY_PATH_BYTES: usize = 4096;
/// Longest reviewer or review note accepted, in bytes.
pub const MAX_REVIEW_NOTE_BYTES: usize = 1024;

/// One workload's use of one entry's identity through one agent: counters over a period, not a
/// row per fetch. Agents report these in batches; the store merges a report into the row with
/// the same key (entry, agent, uid, binary path, binary hash): earliest `first_seen`, latest
/// `last_seen`, counters added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadUsage {
    pub entry_id: String,
    pub agent_id: SpiffeId,
    /// The workload's Unix user id.
    pub uid: u32,
    /// The workload's executable path, empty when the agent could not read it.
    pub binary_path: String,
    /// Lowercase hex SHA-256 of the executable, empty when not computed.
    pub binary_sha256: String,
    /// Unix seconds of the first fetch in the period.
    pub first_seen: i64,
    /// Unix seconds of the last fetch in the period.
    pub last_seen: i64,
    /// Workload API calls that returned this identity.
    pub fetches: u64,
    /// SVIDs (X.509 and JWT) delivered.
    pub svids_issued: u64,
}

/// Usage of one entry, summed over its workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryUsage {
    pub entry_id: String,
    /// Distinct (agent, uid, binary) rows.
    pub workloads: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub fetches: u64,
    pub svids_issued: u64,
}

/// An owner's review of an entry: the latest one is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReview {
    pub entry_id: String,
    /// Who reviewed it (the owner's name, or the actor who recorded it).
    pub reviewed_by: String,
    /// Unix seconds.
    pub reviewed_at: i64,
    pub note: String,
}

/// Which audit records [`crate::Datastore::list_audit`] returns; set fields combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An exact action (`entry.create`) or, ending in `.`, every action under it (`entry.`).
    pub action: Option<String>,
    pub target: Option<String>,
    pub outcome: Option<Outcome>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<i64>,
}
