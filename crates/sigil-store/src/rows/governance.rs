//! What both backends share of the audit and governance records: column lists and the step
//! from a row's raw values to a checked record (a sequence or counter that is negative, an
//! outcome or SPIFFE ID that no longer parses, is `Corrupt`).

use sigil_audit::{AuditEvent, AuditRecord, Checkpoint, Outcome};
use sigil_spiffe::SpiffeId;

use super::corrupt;
use crate::{StoreResult, WorkloadUsage};

pub(crate) const AUDIT_RECORD_KIND: &str = "audit record";
pub(crate) const AUDIT_CHECKPOINT_KIND: &str = "audit checkpoint";
pub(crate) const AUDIT_KEY_KIND: &str = "audit key";
pub(crate) const USAGE_KIND: &str = "workload usage";
/// What `review_entry` names when the entry to review does not exist.
pub(crate) const ENTRY_KIND: &str = "entry";

pub(crate) const AUDIT_RECORD_COLUMNS: &str =
    "seq, time, replica, actor, action, target, outcome, details, prev_hash, hash";
pub(crate) const AUDIT_CHECKPOINT_COLUMNS: &str = "seq, key_id, hash, time, replica, signature";
pub(crate) const AUDIT_KEY_COLUMNS: &str = "key_id, replica, public_key, created_at";
pub(crate) const USAGE_COLUMNS: &str = "entry_id, agent_id, uid, binary_path, binary_sha256, \
     first_seen, last_seen, fetches, svids_issued";
pub(crate) const REVIEW_COLUMNS: &str = "entry_id, reviewed_by, reviewed_at, note";

/// An `audit_records` row as a backend reads it.
pub(crate) struct AuditRecordRow {
    pub(crate) seq: i64,
    pub(crate) time: i64,
    pub(crate) replica: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) target: String,
    pub(crate) outcome: String,
    pub(crate) details: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

impl AuditRecordRow {
    /// The record as stored (its hash is not checked here: verifiers do that), or `Corrupt`
    /// when the sequence is negative or the outcome unknown.
    pub(crate) fn into_record(self) -> StoreResult<AuditRecord> {
        let id = self.seq.to_string();
        let seq = non_negative(AUDIT_RECORD_KIND, &id, "seq", self.seq)?;
        let outcome = Outcome::parse(&self.outcome).ok_or_else(|| {
            corrupt(
                AUDIT_RECORD_KIND,
                &id,
                format!("unknown outcome `{}`", self.outcome),
            )
        })?;
        Ok(AuditRecord {
            seq,
            event: AuditEvent {
                time: self.time,
                replica: self.replica,
                actor: self.actor,
                action: self.action,
                target: self.target,
                outcome,
                details: self.details,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// An `audit_checkpoints` row as a backend reads it.
pub(crate) struct CheckpointRow {
    pub(crate) seq: i64,
    pub(crate) key_id: String,
    pub(crate) hash: String,
    pub(crate) time: i64,
    pub(crate) replica: String,
    pub(crate) signature: String,
}

impl CheckpointRow {
    /// The checkpoint as stored (its signature is not checked here), or `Corrupt` when the
    /// sequence is negative.
    pub(crate) fn into_checkpoint(self) -> StoreResult<Checkpoint> {
        let id = format!("{}:{}", self.seq, self.key_id);
        Ok(Checkpoint {
            seq: non_negative(AUDIT_CHECKPOINT_KIND, &id, "seq", self.seq)?,
            hash: self.hash,
            time: self.time,
            replica: self.replica,
            key_id: self.key_id,
            signature: self.signature,
        })
    }
}

/// A `workload_usage` row as a backend reads it.
pub(crate) struct UsageRow {
    pub(crate) entry_id: String,
    pub(crate) agent_id: String,
    pub(crate) uid: i64,
    pub(crate) binary_path: String,
    pub(crate) binary_sha256: String,
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) fetches: i64,
    pub(crate) svids_issued: i64,
}

impl UsageRow {
    /// The usage row, or `Corrupt` when the agent ID no longer parses or a number is out of
    /// range.
    pub(crate) fn into_usage(self) -> StoreResult<WorkloadUsage> {
        let id = format!("{}:{}", self.entry_id, self.agent_id);
        let agent_id = SpiffeId::parse(&self.agent_id)
            .map_err(|e| corrupt(USAGE_KIND, &id, format!("agent_id: {e}")))?;
        let uid = u32::try_from(self.uid).map_err(|_| {
            corrupt(
                USAGE_KIND,
                &id,
                format!("uid `{}` is out of range", self.uid),
            )
        })?;
        Ok(WorkloadUsage {
            fetches: non_negative(USAGE_KIND, &id, "fetches", self.fetches)?,
            svids_issued: non_negative(USAGE_KIND, &id, "svids_issued", self.svids_issued)?,
            entry_id: self.entry_id,
            agent_id,
            uid,
            binary_path: self.binary_path,
            binary_sha256: self.binary_sha256,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        })
    }
}

/// A stored number that must not be negative, or `Corrupt`.
pub(crate) fn non_negative(
    kind: &'static str,
    id: &str,
    field: &str,
    value: i64,
) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| corrupt(kind, id, format!("{field} is negative ({value})")))
}
