//! One audit record: the event a server appends (who did what to what, with which outcome), its
//! place in the chain (sequence and previous hash), and the canonical encoding its hash covers.

use serde::{Deserialize, Serialize};

use crate::AuditError;

/// Longest `actor`, `action` or `target` accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 2048;
/// Longest `details` accepted (a JSON object's text), in bytes.
pub const MAX_DETAILS_BYTES: usize = 8 * 1024;
/// Longest `replica` accepted, in bytes.
pub const MAX_REPLICA_BYTES: usize = 256;
/// The `prev_hash` of the first record of a chain: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain separation for the record hash, so no other Sigil hash can collide with one.
const RECORD_DOMAIN: &[u8] = b"sigil-audit-record-v1\0";

/// What came of the audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was attempted and failed (bad input, a store error, a failed attestation).
    Failure,
    /// A policy or an authorization check refused it.
    Denied,
}

impl Outcome {
    /// The stable name stored, hashed and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }

    /// The outcome named `name` (as returned by [`Outcome::as_str`]), or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

/// An event to append: everything of a record but its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unix milliseconds when the server recorded it.
    pub time: i64,
    /// The server replica that appended it (empty for a single server).
    pub replica: String,
    /// Who: a SPIFFE ID, `uid:<n>` for a local admin on the admin socket, `anonymous`.
    pub actor: String,
    /// What, as `<noun>.<verb>`: `entry.create`, `agent.attest`, `svid.issue`, `token.exchange`,
    /// `policy.decide`, `credential.revoke`, `policy.reload`, `federation.refresh`, ...
    pub action: String,
    /// To what: an entry id, a SPIFFE ID, a trust domain, a credential key; empty when none.
    pub target: String,
    pub outcome: Outcome,
    /// A JSON object with what else there is to say (counts, reasons, HTTP status), as text:
    /// hashed byte for byte as stored, so no re-encoding can change a hash.
    pub details: String,
}

/// A record of the chain: an event, its sequence (1, 2, 3, ... without gaps) and the hashes that
/// tie it to the record before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The `hash` of record `seq - 1`; [`GENESIS_HASH`] for record 1.
    pub prev_hash: String,
    /// Lowercase hex SHA-256 of [`canonical_bytes`] of this record.
    pub hash: String,
}

impl AuditEvent {
    /// Checks the event's bounds: `action` non-empty, fields within [`MAX_FIELD_BYTES`],
    /// `replica` within [`MAX_REPLICA_BYTES`], `details` empty or a JSON object within
    /// [`MAX_DETAILS_BYTES`].
    pub fn validate(&self) -> Result<(), AuditError> {
        if self.action.is_empty() {
            return Err(AuditError::Invalid {
                field: "action",
                reason: "must not be empty".to_owned(),
            });
        }
        for (field, value) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ] {
            if value.len() > MAX_FIELD_BYTES {
                return Err(AuditError::Invalid {
                    field,
                    reason: format!("longer than {MAX_FIELD_BYTES} bytes"),
                });
            }
        }
        if self.replica.len() > MAX_REPLICA_BYTES {
            return Err(AuditError::Invalid {
                field: "replica",
                reason: format!("longer than {MAX_REPLICA_BYTES} bytes"),
            });
        }
        if self.details.len() > MAX_DETAILS_BYTES {
            return Err(AuditError::Invalid {
                field: "details",
                reason: format!("longer than {MAX_DETAILS_BYTES} bytes"),
            });
        }
        if !self.details.is_empty()
            && !matches!(
                serde_json::from_str::<serde_json::Value>(&self.details),
                Ok(serde_json::Value::Object(_))
            )
        {
            return Err(AuditError::Invalid {
                field: "details",
                reason: "not a JSON object".to_owned(),
            });
        }
        Ok(())
    }

    /// This event as record `seq` after a record whose hash is `prev_hash`.
    pub fn into_record(self, seq: u64, prev_hash: String) -> AuditRecord {
        let hash = record_hash(seq, &self, &prev_hash);
        AuditRecord {
            seq,
            event: self,
            prev_hash,
            hash,
        }
    }
}

impl AuditRecord {
    /// Whether `hash` is the hash of the record's contents (false once any field was edited).
    pub fn hash_matches(&self) -> bool {
        record_hash(self.seq, &self.event, &self.prev_hash) == self.hash
    }
}

/// The bytes a record's hash covers: a domain tag, then the sequence and time as 8 big-endian
/// bytes each, then every text field (replica, actor, action, target, outcome, details,
/// previous hash) as a 4-byte big-endian length and its UTF-8 bytes. Lengths make the encoding
/// unambiguous: no two different records encode alike.
pub fn canonical_bytes(seq: u64, event: &AuditEvent, prev_hash: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        RECORD_DOMAIN.len()
            + 16
            + 7 * 4
            + event.replica.len()
            + event.actor.len()
            + event.action.len()
            + event.target.len()
            + event.details.len()
            + prev_hash.len()
            + 8,
    );
    out.extend_from_slice(RECORD_DOMAIN);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&event.time.to_be_bytes());
    for field in [
        event.replica.as_str(),
        event.actor.as_str(),
        event.action.as_str(),
        event.target.as_str(),
        event.outcome.as_str(),
        event.details.as_str(),
        prev_hash,
    ] {
        push_field(&mut out, field.as_bytes());
    }
    out
}

/// Lowercase hex SHA-256 of [`canonical_bytes`].
pub fn record_hash(seq: u64, event: &AuditEvent, prev_hash: &str) -> String {
    sigil_keys::sha256_hex(&canonical_bytes(seq, event, prev_hash))
}

/// Appends `bytes` with its length as 4 big-endian bytes. Every field is bounded far below
/// 4 GiB by [`AuditEvent::validate`]; a longer one is cut at the length written, so the encoding
/// stays unambiguous for whatever is fed to it.
pub(crate) fn push_field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event(action: &str) -> AuditEvent {
        AuditEvent {
            time: 1_700_000_000_000,
            replica: String::new(),
            actor: "uid:0".to_owned(),
            action: action.to_owned(),
            target: "e1".to_owned(),
            outcome: Outcome::Success,
            details: r#"{"status":201}"#.to_owned(),
        }
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = event("entry.create").into_record(1, GENESIS_HASH.to_owned());
        assert!(base.hash_matches());
        type Edit = Box<dyn Fn(&mut AuditRecord)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.seq = 2),
            Box::new(|r| r.event.time += 1),
            Box::new(|r| r.event.replica = "b".to_owned()),
            Box::new(|r| r.event.actor = "uid:1".to_owned()),
            Box::new(|r| r.event.action = "entry.delete".to_owned()),
            Box::new(|r| r.event.target = "e2".to_owned()),
            Box::new(|r| r.event.outcome = Outcome::Failure),
            Box::new(|r| r.event.details = r#"{"status":200}"#.to_owned()),
            Box::new(|r| r.prev_hash = "1".repeat(64)),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut r = base.clone();
            edit(&mut r);
            assert!(!r.hash_matches(), "edit {i} kept the hash");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let mut a = event("ab");
        a.target = "c".to_owned();
        let mut b = event("a");
        b.target = "bc".to_owned();
        assert_ne!(
            record_hash(1, &a, GENESIS_HASH),
            record_hash(1, &b, GENESIS_HASH)
        );
    }

    #[test]
    fn validate_bounds_every_field() {
        assert!(event("x").validate().is_ok());
        assert!(event("").validate().is_err());
        let mut e = event("x");
        e.details = "[1]".to_owned();
        assert!(e.validate().is_err(), "details must be an object");
        e.details = String::new();
        assert!(e.validate().is_ok());
        e.target = "t".repeat(MAX_FIELD_BYTES + 1);
        assert!(e.validate().is_err());
        let mut e = event("x");
        e.details = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_DETAILS_BYTES));
        assert!(e.validate().is_err());
    }
}
