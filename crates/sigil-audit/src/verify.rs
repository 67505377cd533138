//! Verifying a chain: records are fed in sequence order, checkpoints up front; the first place
//! the chain breaks is reported by position, with what is wrong there (a record edited, deleted,
//! moved; the tail cut; a checkpoint replaced).

use std::collections::BTreeMap;
use std::fmt;

use crate::AuditError;
use crate::checkpoint::{Checkpoint, TrustedKeys};
use crate::record::{AuditRecord, GENESIS_HASH};

/// Where a chain breaks: the sequence number at which the problem shows, and what it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain breaks at seq {position}: {problem}")]
pub struct Break {
    pub position: u64,
    pub problem: Problem,
}

/// What is wrong at a [`Break`]'s position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Records `expected ..= found - 1` are missing: the next record present is `found`.
    Missing { expected: u64, found: u64 },
    /// A record with this sequence came after a record with an equal or higher one.
    OutOfOrder { previous: u64 },
    /// The record's hash does not match its contents: it was edited.
    Edited,
    /// The record is intact but does not follow the record before it: records were reordered,
    /// replaced or inserted.
    LinkBroken,
    /// A checkpoint's signature does not verify, or it names no trusted key.
    Checkpoint(AuditError),
    /// The record's hash is not the hash a signed checkpoint states for it.
    CheckpointMismatch { key_id: String },
    /// The chain ends at `last` (0: it is empty) but a signed checkpoint covers this position:
    /// records were cut from the end.
    Truncated { last: u64 },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { expected, found } if *found == expected + 1 => {
                write!(f, "record {expected} is missing (deleted)")
            }
            Self::Missing { expected, found } => write!(
                f,
                "records {expected} to {} are missing (deleted)",
                found.saturating_sub(1)
            ),
            Self::OutOfOrder { previous } => {
                write!(f, "record comes after record {previous} (reordered)")
            }
            Self::Edited => write!(f, "the record's hash does not match its contents (edited)"),
            Self::LinkBroken => write!(
                f,
                "the record does not link to the one before it (reordered, replaced or inserted)"
            ),
            Self::Checkpoint(e) => write!(f, "checkpoint: {e}"),
            Self::CheckpointMismatch { key_id } => write!(
                f,
                "the record differs from what the checkpoint signed by key {key_id} states (rewritten)"
            ),
            Self::Truncated { last: 0 } => write!(
                f,
                "the chain is empty but a signed checkpoint covers this record (truncated)"
            ),
            Self::Truncated { last } => write!(
                f,
                "the chain ends at record {last} but a signed checkpoint covers this record (truncated)"
            ),
        }
    }
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub records: u64,
    /// The last record's sequence (0 when empty).
    pub last_seq: u64,
    /// The last record's hash ([`GENESIS_HASH`] when empty).
    pub last_hash: String,
    pub checkpoints: u64,
    /// The highest sequence a verified checkpoint covers (0: none).
    pub signed_through: u64,
}

/// A verifier fed one record at a time, in sequence order, so a chain of any length is verified
/// in constant memory (plus the checkpoints).
#[derive(Debug)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: String,
    /// Verified checkpoints by the sequence they cover.
    checkpoints: BTreeMap<u64, Vec<Checkpoint>>,
    checkpoint_count: u64,
    signed_through: u64,
}

impl ChainVerifier {
    /// A verifier for a whole chain (from record 1) with these checkpoints; fails on the first
    /// checkpoint (lowest sequence) whose signature does not verify under `keys`.
    pub fn new(
        checkpoints: impl IntoIterator<Item = Checkpoint>,
        keys: &TrustedKeys,
    ) -> Result<Self, Break> {
        let mut by_seq: BTreeMap<u64, Vec<Checkpoint>> = BTreeMap::new();
        for checkpoint in checkpoints {
            by_seq.entry(checkpoint.seq).or_default().push(checkpoint);
        }
        let mut count = 0;
        for (seq, list) in &by_seq {
            for checkpoint in list {
                checkpoint.verify(keys).map_err(|e| Break {
                    position: *seq,
                    problem: Problem::Checkpoint(e),
                })?;
                count += 1;
            }
        }
        Ok(Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checkpoints: by_seq,
            checkpoint_count: count,
            signed_through: 0,
        })
    }

    /// Checks the next record: its sequence, its hash, its link to the record before, and any
    /// checkpoint that covers it.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), Break> {
        let at = |problem| Break {
            position: record.seq,
            problem,
        };
        if record.seq < self.next_seq {
            return Err(at(Problem::OutOfOrder {
                previous: self.next_seq.saturating_sub(1),
            }));
        }
        if record.seq > self.next_seq {
            return Err(Break {
                position: self.next_seq,
                problem: Problem::Missing {
                    expected: self.next_seq,
                    found: record.seq,
                },
            });
        }
        if !record.hash_matches() {
            return Err(at(Problem::Edited));
        }
        if record.prev_hash != self.prev_hash {
            return Err(at(Problem::LinkBroken));
        }
        if let Some(list) = self.checkpoints.get(&record.seq) {
            for checkpoint in list {
                if checkpoint.hash != record.hash {
                    return Err(at(Problem::CheckpointMismatch {
                        key_id: checkpoint.key_id.clone(),
                    }));
                }
            }
            self.signed_through = record.seq;
        }
        self.prev_hash.clone_from(&record.hash);
        self.next_seq = record.seq.saturating_add(1);
        Ok(())
    }

    /// Ends the chain: fails when a checkpoint covers a record past the last one fed (the tail
    /// was cut), and otherwise says what was verified.
    pub fn finish(self) -> Result<Summary, Break> {
        let last_seq = self.next_seq.saturating_sub(1);
        if let Some((seq, _)) = self.checkpoints.range(self.next_seq..).next() {
            return Err(Break {
                position: *seq,
                problem: Problem::Truncated { last: last_seq },
            });
        }
        Ok(Summary {
            records: last_seq,
            last_seq,
            last_hash: self.prev_hash,
            checkpoints: self.checkpoint_count,
            signed_through: self.signed_through,
        })
    }
}

#[cfg(test)]
mod tests {
    use sigil_keys::PrivateKey;

    use super::*;
    use crate::checkpoint::AuditKey;
    use crate::record::{AuditEvent, Outcome};

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let record = AuditEvent {
                    time: seq as i64,
                    replica: String::new(),
                    actor: "uid:0".to_owned(),
                    action: "entry.create".to_owned(),
                    target: format!("e{seq}"),
                    outcome: Outcome::Success,
                    details: String::new(),
                }
                .into_record(seq, prev.clone());
                prev.clone_from(&record.hash);
                record
            })
            .collect()
    }

    fn setup() -> (PrivateKey, TrustedKeys) {
        let key = PrivateKey::generate().unwrap();
        let keys = TrustedKeys::from_keys([&AuditKey::for_key(&key, "", 0)]).unwrap();
        (key, keys)
    }

    fn verify(
        records: &[AuditRecord],
        checkpoints: Vec<Checkpoint>,
        keys: &TrustedKeys,
    ) -> Result<Summary, Break> {
        let mut v = ChainVerifier::new(checkpoints, keys)?;
        for r in records {
            v.push(r)?;
        }
        v.finish()
    }

    fn checkpoint(key: &PrivateKey, records: &[AuditRecord], seq: u64) -> Checkpoint {
        let r = &records[(seq - 1) as usize];
        Checkpoint::sign(key, "", r.seq, &r.hash, 0).unwrap()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (key, keys) = setup();
        let records = chain(10);
        let cps = vec![
            checkpoint(&key, &records, 5),
            checkpoint(&key, &records, 10),
        ];
        let summary = verify(&records, cps, &keys).unwrap();
        assert_eq!(summary.records, 10);
        assert_eq!(summary.signed_through, 10);
        assert_eq!(summary.checkpoints, 2);
        assert_eq!(verify(&[], vec![], &keys).unwrap().last_hash, GENESIS_HASH);
    }

    #[test]
    fn names_the_position_of_each_kind_of_tampering() {
        let (key, keys) = setup();
        let records = chain(10);
        let cps = || {
            vec![
                checkpoint(&key, &records, 5),
                checkpoint(&key, &records, 10),
            ]
        };

        let mut edited = records.clone();
        edited[3].event.target = "other".to_owned();
        let b = verify(&edited, cps(), &keys).unwrap_err();
        assert_eq!((b.position, b.problem), (4, Problem::Edited));

        let mut deleted = records.clone();
        deleted.remove(6);
        let b = verify(&deleted, cps(), &keys).unwrap_err();
        assert_eq!(b.position, 7);
        assert!(matches!(
            b.problem,
            Problem::Missing {
                expected: 7,
                found: 8
            }
        ));

        // Two records swapped in place, each keeping its own sequence: the order breaks.
        let mut swapped = records.clone();
        swapped.swap(2, 3);
        let b = verify(&swapped, cps(), &keys).unwrap_err();
        assert_eq!(b.position, 3);
        assert!(matches!(b.problem, Problem::Missing { .. }));
        // Two records given each other's sequence: the first one's hash no longer matches.
        let mut renumbered = records.clone();
        renumbered.swap(2, 3);
        renumbered[2].seq = 3;
        renumbered[3].seq = 4;
        let b = verify(&renumbered, cps(), &keys).unwrap_err();
        assert_eq!((b.position, b.problem), (3, Problem::Edited));

        let truncated = &records[..8];
        let b = verify(truncated, cps(), &keys).unwrap_err();
        assert_eq!(
            (b.position, b.problem),
            (10, Problem::Truncated { last: 8 })
        );

        // A whole suffix rewritten with consistent hashes: the checkpoint at 10 no longer matches.
        let mut rewritten = records.clone();
        rewritten[9].event.target = "forged".to_owned();
        rewritten[9] = rewritten[9]
            .event
            .clone()
            .into_record(10, rewritten[8].hash.clone());
        let b = verify(&rewritten, cps(), &keys).unwrap_err();
        assert_eq!(b.position, 10);
        assert!(matches!(b.problem, Problem::CheckpointMismatch { .. }));

        // A checkpoint replaced by one signed with another key, or edited.
        let (other, _) = setup();
        let b = verify(&records, vec![checkpoint(&other, &records, 10)], &keys).unwrap_err();
        assert!(matches!(
            b.problem,
            Problem::Checkpoint(AuditError::UnknownKey { .. })
        ));
        let mut moved = checkpoint(&key, &records, 10);
        moved.seq = 9;
        moved.hash.clone_from(&records[8].hash);
        let b = verify(&records, vec![moved], &keys).unwrap_err();
        assert_eq!(b.position, 9);
        assert!(matches!(
            b.problem,
            Problem::Checkpoint(AuditError::BadSignature { .. })
        ));
    }
}
