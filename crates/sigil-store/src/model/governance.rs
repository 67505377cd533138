//! Governance records: how agents report their workloads' use of each entry's identity, owners'
//! reviews of entries, and what the audit log is filtered by. The audit records themselves are
//! `sigil-audit`'s types; the store keeps them and computes their hashes.

use serde::{Deserialize, Serialize};
use sigil_audit::{AuditError, AuditEvent, AuditKey, Checkpoint, Outcome};
use sigil_spiffe::SpiffeId;

use crate::{StoreError, StoreResult};

/// Most usage rows one [`crate::Datastore::record_workload_usage`] call accepts.
pub const MAX_USAGE_BATCH: usize = 1000;
/// Most events one [`crate::Datastore::append_audit`] call accepts.
pub const MAX_AUDIT_BATCH: usize = 1000;
/// Longest binary path accepted in a usage row, in bytes.
pub const MAX_BINARY_PATH_BYTES: usize = 4096;
/// Longest reviewer or review note accepted, in bytes.
pub const MAX_REVIEW_NOTE_BYTES: usize = 1024;
/// Longest entry id accepted in a usage row or review, in bytes (the store's ids are 32).
pub const MAX_ENTRY_ID_BYTES: usize = 256;
/// Longest audit key id accepted, in bytes (sigil-audit's ids are 32 hex digits).
pub const MAX_AUDIT_KEY_ID_BYTES: usize = 256;
/// Longest registered audit public key accepted (base64 of a DER SPKI), in bytes.
pub const MAX_AUDIT_PUBLIC_KEY_BYTES: usize = 4096;
/// Longest checkpoint signature accepted (base64url), in bytes.
pub const MAX_CHECKPOINT_SIGNATURE_BYTES: usize = 1024;
/// Largest value a stored counter or sequence takes: the columns are signed 64-bit. Counters
/// saturate here instead of overflowing.
pub const MAX_STORED_COUNT: u64 = i64::MAX as u64;

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

impl WorkloadUsage {
    /// Checks what every backend relies on: an entry id of 1 to [`MAX_ENTRY_ID_BYTES`] bytes, a
    /// binary path of at most [`MAX_BINARY_PATH_BYTES`], a binary hash that is empty or 64
    /// lowercase hex digits, no NUL in any text, `first_seen <= last_seen`, and counters of at
    /// most [`MAX_STORED_COUNT`]. Fails with [`StoreError::Invalid`] naming the field.
    pub fn validate(&self) -> StoreResult<()> {
        check_entry_id(&self.entry_id)?;
        if self.binary_path.len() > MAX_BINARY_PATH_BYTES {
            return Err(invalid(
                "binary_path",
                format!("is longer than {MAX_BINARY_PATH_BYTES} bytes"),
            ));
        }
        check_no_nul("binary_path", &self.binary_path)?;
        if !(self.binary_sha256.is_empty() || is_sha256_hex(&self.binary_sha256)) {
            return Err(invalid(
                "binary_sha256",
                format!(
                    "`{}` is neither empty nor 64 lowercase hex digits",
                    self.binary_sha256.escape_debug()
                ),
            ));
        }
        if self.first_seen > self.last_seen {
            return Err(invalid(
                "first_seen",
                format!(
                    "`{}` is after last_seen `{}`",
                    self.first_seen, self.last_seen
                ),
            ));
        }
        for (field, value) in [
            ("fetches", self.fetches),
            ("svids_issued", self.svids_issued),
        ] {
            if value > MAX_STORED_COUNT {
                return Err(invalid(
                    field,
                    format!("`{value}` is larger than {MAX_STORED_COUNT}"),
                ));
            }
        }
        Ok(())
    }

    /// The bytes whose SHA-256 identifies this row's workload within its entry (PostgreSQL keys
    /// the row by it): agent ID, uid and binary hash, each followed by a newline (none holds
    /// one), then the binary path, so no two different keys encode alike.
    pub(crate) fn key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.agent_id.as_str().len() + self.binary_sha256.len() + self.binary_path.len() + 16,
        );
        for part in [
            self.agent_id.as_str(),
            &self.uid.to_string(),
            &self.binary_sha256,
        ] {
            out.extend_from_slice(part.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(self.binary_path.as_bytes());
        out
    }
}

impl EntryReview {
    /// Checks what every backend relies on: an entry id of 1 to [`MAX_ENTRY_ID_BYTES`] bytes, a
    /// reviewer of 1 to [`MAX_REVIEW_NOTE_BYTES`] bytes, a note of at most
    /// [`MAX_REVIEW_NOTE_BYTES`], no NUL in any of them. Fails with [`StoreError::Invalid`].
    pub fn validate(&self) -> StoreResult<()> {
        check_entry_id(&self.entry_id)?;
        if self.reviewed_by.is_empty() {
            return Err(invalid("reviewed_by", "must not be empty"));
        }
        for (field, value) in [("reviewed_by", &self.reviewed_by), ("note", &self.note)] {
            if value.len() > MAX_REVIEW_NOTE_BYTES {
                return Err(invalid(
                    field,
                    format!("is longer than {MAX_REVIEW_NOTE_BYTES} bytes"),
                ));
            }
            check_no_nul(field, value)?;
        }
        Ok(())
    }
}

/// How [`AuditFilter::action`] matches, as the backends query it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionMatch {
    /// `action = .0`
    Exact(String),
    /// `from <= action < to`: every action starting with `from` (a prefix ending in `.`), as
    /// a range of the bytewise order, so no character of the prefix is a wildcard and the
    /// action index answers it.
    Prefix { from: String, to: String },
}

impl AuditFilter {
    /// Checks the filter's text: each of actor, action and target at most
    /// [`sigil_audit::record::MAX_FIELD_BYTES`] bytes without NUL, and `since <= until` when
    /// both are set. Fails with [`StoreError::Invalid`] naming the field.
    pub fn validate(&self) -> StoreResult<()> {
        for (field, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ] {
            if let Some(value) = value {
                if value.len() > sigil_audit::record::MAX_FIELD_BYTES {
                    return Err(invalid(
                        field,
                        format!(
                            "is longer than {} bytes",
                            sigil_audit::record::MAX_FIELD_BYTES
                        ),
                    ));
                }
                check_no_nul(field, value)?;
            }
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since > until
        {
            return Err(invalid(
                "since",
                format!("`{since}` is after until `{until}`"),
            ));
        }
        Ok(())
    }

    /// How the action filter matches, if there is one.
    pub(crate) fn action_match(&self) -> Option<ActionMatch> {
        let action = self.action.as_ref()?;
        Some(match action.strip_suffix('.') {
            // `/` is the byte after `.`: the strings that start with `<stem>.` are exactly
            // those from `<stem>.` (inclusive) to `<stem>/` (exclusive).
            Some(stem) => ActionMatch::Prefix {
                from: action.clone(),
                to: format!("{stem}/"),
            },
            None => ActionMatch::Exact(action.clone()),
        })
    }
}

/// Checks an audit batch before anything is stored: at most [`MAX_AUDIT_BATCH`] events (else
/// `Invalid`, field `events`), each passing [`AuditEvent::validate`] and holding no NUL (which
/// PostgreSQL cannot store as text) in its text fields. The first refused event is named by its
/// index in the reason.
pub(crate) fn check_audit_batch(events: &[AuditEvent]) -> StoreResult<()> {
    if events.len() > MAX_AUDIT_BATCH {
        return Err(invalid(
            "events",
            format!(
                "a batch holds at most {MAX_AUDIT_BATCH} events, not {}",
                events.len()
            ),
        ));
    }
    for (index, event) in events.iter().enumerate() {
        let refused = |field: &'static str, reason: &str| StoreError::Invalid {
            field,
            reason: format!("event {index}: {reason}"),
        };
        event.validate().map_err(|e| match e {
            AuditError::Invalid { field, reason } => refused(field, &reason),
            other => refused("event", &other.to_string()),
        })?;
        for (field, value) in [
            ("replica", &event.replica),
            ("actor", &event.actor),
            ("action", &event.action),
            ("target", &event.target),
            ("details", &event.details),
        ] {
            if value.contains('\0') {
                return Err(refused(field, "contains a NUL character"));
            }
        }
    }
    Ok(())
}

/// Checks a usage batch before anything is stored: at most [`MAX_USAGE_BATCH`] rows (else
/// `Invalid`, field `usage`), each passing [`WorkloadUsage::validate`].
pub(crate) fn check_usage_batch(usage: &[WorkloadUsage]) -> StoreResult<()> {
    if usage.len() > MAX_USAGE_BATCH {
        return Err(invalid(
            "usage",
            format!(
                "a batch holds at most {MAX_USAGE_BATCH} rows, not {}",
                usage.len()
            ),
        ));
    }
    usage.iter().try_for_each(WorkloadUsage::validate)
}

/// Checks a checkpoint's shape before it is stored (not its signature: verifiers check that):
/// a sequence from 1 to [`MAX_STORED_COUNT`], a hash of 64 lowercase hex digits, a key id of 1
/// to [`MAX_AUDIT_KEY_ID_BYTES`] bytes, a replica within sigil-audit's bound, a signature of at
/// most [`MAX_CHECKPOINT_SIGNATURE_BYTES`], no NUL. Fails with [`StoreError::Invalid`].
pub(crate) fn check_checkpoint(checkpoint: &Checkpoint) -> StoreResult<()> {
    if checkpoint.seq == 0 || checkpoint.seq > MAX_STORED_COUNT {
        return Err(invalid(
            "seq",
            format!(
                "`{}` is not between 1 and {MAX_STORED_COUNT}",
                checkpoint.seq
            ),
        ));
    }
    if !is_sha256_hex(&checkpoint.hash) {
        return Err(invalid("hash", "is not 64 lowercase hex digits"));
    }
    check_key_id(&checkpoint.key_id)?;
    check_replica(&checkpoint.replica)?;
    if checkpoint.signature.len() > MAX_CHECKPOINT_SIGNATURE_BYTES {
        return Err(invalid(
            "signature",
            format!("is longer than {MAX_CHECKPOINT_SIGNATURE_BYTES} bytes"),
        ));
    }
    check_no_nul("signature", &checkpoint.signature)
}

/// Checks an audit key before it is registered: a key id of 1 to [`MAX_AUDIT_KEY_ID_BYTES`]
/// bytes, a public key of at most [`MAX_AUDIT_PUBLIC_KEY_BYTES`] that parses and whose id is
/// `key_id` ([`AuditKey::public_key`]), a replica within sigil-audit's bound. Fails with
/// [`StoreError::Invalid`].
pub(crate) fn check_audit_key(key: &AuditKey) -> StoreResult<()> {
    check_key_id(&key.key_id)?;
    check_replica(&key.replica)?;
    if key.public_key.len() > MAX_AUDIT_PUBLIC_KEY_BYTES {
        return Err(invalid(
            "public_key",
            format!("is longer than {MAX_AUDIT_PUBLIC_KEY_BYTES} bytes"),
        ));
    }
    key.public_key()
        .map_err(|e| invalid("public_key", e.to_string()))?;
    Ok(())
}

fn check_entry_id(entry_id: &str) -> StoreResult<()> {
    if entry_id.is_empty() || entry_id.len() > MAX_ENTRY_ID_BYTES {
        return Err(invalid(
            "entry_id",
            format!("must be 1 to {MAX_ENTRY_ID_BYTES} bytes"),
        ));
    }
    check_no_nul("entry_id", entry_id)
}

fn check_key_id(key_id: &str) -> StoreResult<()> {
    if key_id.is_empty() || key_id.len() > MAX_AUDIT_KEY_ID_BYTES {
        return Err(invalid(
            "key_id",
            format!("must be 1 to {MAX_AUDIT_KEY_ID_BYTES} bytes"),
        ));
    }
    check_no_nul("key_id", key_id)
}

fn check_replica(replica: &str) -> StoreResult<()> {
    if replica.len() > sigil_audit::record::MAX_REPLICA_BYTES {
        return Err(invalid(
            "replica",
            format!(
                "is longer than {} bytes",
                sigil_audit::record::MAX_REPLICA_BYTES
            ),
        ));
    }
    check_no_nul("replica", replica)
}

/// PostgreSQL cannot store NUL in text, and no field has a use for it: refused in both
/// backends alike.
fn check_no_nul(field: &'static str, value: &str) -> StoreResult<()> {
    if value.contains('\0') {
        return Err(invalid(field, "contains a NUL character"));
    }
    Ok(())
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> WorkloadUsage {
        WorkloadUsage {
            entry_id: "e1".to_owned(),
            agent_id: SpiffeId::parse("spiffe://example.org/agent").unwrap(),
            uid: 1000,
            binary_path: "/usr/bin/app".to_owned(),
            binary_sha256: "a".repeat(64),
            first_seen: 10,
            last_seen: 20,
            fetches: 1,
            svids_issued: 1,
        }
    }

    fn refused_field(result: StoreResult<()>) -> &'static str {
        match result {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn usage_rows_are_bounded_in_every_field() {
        usage().validate().unwrap();
        let mut u = usage();
        u.binary_sha256 = String::new();
        u.binary_path = "p".repeat(MAX_BINARY_PATH_BYTES);
        u.validate().unwrap();

        type Edit = fn(&mut WorkloadUsage);
        let cases: [(Edit, &str); 8] = [
            (|u| u.entry_id = String::new(), "entry_id"),
            (
                |u| u.entry_id = "e".repeat(MAX_ENTRY_ID_BYTES + 1),
                "entry_id",
            ),
            (
                |u| u.binary_path = "p".repeat(MAX_BINARY_PATH_BYTES + 1),
                "binary_path",
            ),
            (|u| u.binary_path = "/bin/a\0b".to_owned(), "binary_path"),
            (|u| u.binary_sha256 = "A".repeat(64), "binary_sha256"),
            (|u| u.binary_sha256 = "a".repeat(63), "binary_sha256"),
            (|u| u.first_seen = 21, "first_seen"),
            (|u| u.fetches = MAX_STORED_COUNT + 1, "fetches"),
        ];
        for (edit, field) in cases {
            let mut u = usage();
            edit(&mut u);
            assert_eq!(refused_field(u.validate()), field);
        }
    }

    #[test]
    fn usage_keys_differ_when_any_key_part_differs() {
        let base = usage();
        let mut moved = usage();
        // The same bytes shifted between the hash and the path must not collide.
        moved.binary_sha256 = String::new();
        moved.binary_path = format!("{}\n{}", base.binary_sha256, base.binary_path);
        assert_ne!(base.key_bytes(), moved.key_bytes());
        let mut other_uid = usage();
        other_uid.uid = 1001;
        assert_ne!(base.key_bytes(), other_uid.key_bytes());
        let mut counted = usage();
        counted.fetches = 99;
        counted.first_seen = 0;
        assert_eq!(
            base.key_bytes(),
            counted.key_bytes(),
            "counters are not key"
        );
    }

    #[test]
    fn reviews_need_a_reviewer_and_bounded_text() {
        let review = EntryReview {
            entry_id: "e1".to_owned(),
            reviewed_by: "team-a".to_owned(),
            reviewed_at: 1,
            note: String::new(),
        };
        review.validate().unwrap();
        let mut r = review.clone();
        r.reviewed_by = String::new();
        assert_eq!(refused_field(r.validate()), "reviewed_by");
        let mut r = review.clone();
        r.note = "n".repeat(MAX_REVIEW_NOTE_BYTES + 1);
        assert_eq!(refused_field(r.validate()), "note");
    }

    #[test]
    fn an_action_ending_in_a_dot_is_a_literal_prefix_range() {
        let filter = |action: &str| AuditFilter {
            action: Some(action.to_owned()),
            ..AuditFilter::default()
        };
        assert_eq!(
            filter("entry.create").action_match(),
            Some(ActionMatch::Exact("entry.create".to_owned()))
        );
        let Some(ActionMatch::Prefix { from, to }) = filter("a_%.").action_match() else {
            panic!("a prefix");
        };
        let within = |s: &str| from.as_str() <= s && s < to.as_str();
        assert!(within("a_%.") && within("a_%.x") && within("a_%.\u{10ffff}"));
        assert!(!within("ab%.x") && !within("a_%/") && !within("a_%") && !within("a_%-"));
        assert_eq!(AuditFilter::default().action_match(), None);
    }

    #[test]
    fn audit_batches_are_bounded_and_name_the_refused_event() {
        let event = |action: &str| AuditEvent {
            time: 1,
            replica: String::new(),
            actor: "uid:0".to_owned(),
            action: action.to_owned(),
            target: String::new(),
            outcome: Outcome::Success,
            details: String::new(),
        };
        check_audit_batch(&[event("a.b")]).unwrap();
        let err = check_audit_batch(&[event("a.b"), event("")]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid { field: "action", reason } if reason.starts_with("event 1:")),
            "{err:?}"
        );
        let err = check_audit_batch(&[event("a\0b")]).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Invalid {
                field: "action",
                ..
            }
        ));
        let oversized = vec![event("a.b"); MAX_AUDIT_BATCH + 1];
        assert_eq!(refused_field(check_audit_batch(&oversized)), "events");
    }
}
