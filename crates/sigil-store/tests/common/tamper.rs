//! The audit-log tamper matrix, written once for every backend: a chain of ten records appended
//! through the [`Datastore`], a checkpoint at seq 8 signed and stored, and one for the head (seq
//! 10) held outside the store, as an auditor keeps it. Then one tampering in raw SQL on the
//! backend's own connection, past the store; the chain is read back through the store and
//! [`ChainVerifier`] must name the seq where it breaks.
//!
//! A backend's test file provides a [`RawSql`] and expands [`tamper_tests!`] with a fixture
//! yielding `Option<(store, raw, guard)>`.

#![expect(
    clippy::expect_used,
    reason = "test fixtures: a failed expectation is a failed test"
)]

use std::future::Future;

use sigil_audit::{
    AuditError, AuditKey, AuditRecord, Break, ChainVerifier, Checkpoint, Problem, Summary,
    TrustedKeys,
};
use sigil_keys::PrivateKey;
use sigil_store::conformance::{NOW, audit_event};
use sigil_store::{AuditFilter, Datastore, Outcome};

/// Audit times are Unix milliseconds.
const NOW_MS: i64 = NOW * 1000;
const REPLICA: &str = "r1";
/// The seq of the checkpoint stored in the store.
const STORED_CHECKPOINT: u64 = 8;
/// How many records the chain holds (the head checkpoint's seq).
const HEAD: u64 = 10;

/// Statements run on the backend's own connection, bypassing the store.
pub trait RawSql {
    /// Runs `sql` (one or more `;`-separated statements); fails the test on an error.
    fn run(&self, sql: &str) -> impl Future<Output = ()>;
}

/// One tampering of the stored chain, and what the verifier must say about it.
#[derive(Debug, Clone, Copy)]
pub enum Tamper {
    /// Nothing: the chain verifies.
    Untouched,
    /// A field of record 4 edited.
    EditRecord,
    /// Record 5 deleted.
    DeleteRecord,
    /// The contents of records 3 and 4 swapped, each row keeping its seq.
    SwapRecords,
    /// Records after 6 deleted; the stored checkpoint at 8 is left.
    TruncateTail,
    /// Records after 6 and every stored checkpoint deleted: only the held head checkpoint
    /// remembers the chain was longer.
    TruncateTailAndCheckpoints,
    /// Record 10 rewritten with its hash recomputed, so it links and hashes correctly: only the
    /// held head checkpoint catches it.
    RewriteHead,
    /// The stored checkpoint's signature replaced by another valid-looking one.
    ReplaceCheckpointSignature,
    /// The stored checkpoint replaced by one signed with a key that is not registered.
    ForeignCheckpoint,
}

/// Builds the chain in `store`, applies `tamper` through `raw`, verifies what the store then
/// returns and checks the verdict.
pub async fn check<S: Datastore>(store: &S, raw: &impl RawSql, tamper: Tamper) {
    let key = PrivateKey::generate().expect("generate the audit key");
    let registered = AuditKey::for_key(&key, REPLICA, NOW_MS);
    store
        .register_audit_key(registered.clone())
        .await
        .expect("register the audit key");
    let mut records: Vec<AuditRecord> = Vec::new();
    // Two calls, so the chain also spans appends.
    for range in [1..=7, 8..=HEAD] {
        let events = range
            .map(|seq| {
                let outcome = if seq % 3 == 0 {
                    Outcome::Denied
                } else {
                    Outcome::Success
                };
                let seq = i64::try_from(seq).expect("small seq");
                audit_event(seq, "uid:0", "entry.update", &format!("e{seq}"), outcome)
            })
            .collect();
        records.extend(store.append_audit(events).await.expect("append"));
    }
    let record = |seq: u64| {
        records
            .iter()
            .find(|r| r.seq == seq)
            .expect("a record with this seq was appended")
    };
    let sign = |key: &PrivateKey, seq: u64| {
        Checkpoint::sign(key, REPLICA, seq, &record(seq).hash, NOW_MS + 100)
            .expect("sign a checkpoint")
    };
    store
        .put_audit_checkpoint(sign(&key, STORED_CHECKPOINT))
        .await
        .expect("store the checkpoint");
    let held_head = sign(&key, HEAD);

    match tamper {
        Tamper::Untouched => {}
        Tamper::EditRecord => {
            raw.run("UPDATE audit_records SET target = 'x' WHERE seq = 4")
                .await;
        }
        Tamper::DeleteRecord => raw.run("DELETE FROM audit_records WHERE seq = 5").await,
        Tamper::SwapRecords => {
            raw.run(
                "UPDATE audit_records SET seq = -1 WHERE seq = 3; \
                 UPDATE audit_records SET seq = 3 WHERE seq = 4; \
                 UPDATE audit_records SET seq = 4 WHERE seq = -1;",
            )
            .await;
        }
        Tamper::TruncateTail => raw.run("DELETE FROM audit_records WHERE seq > 6").await,
        Tamper::TruncateTailAndCheckpoints => {
            raw.run("DELETE FROM audit_records WHERE seq > 6; DELETE FROM audit_checkpoints;")
                .await;
        }
        Tamper::RewriteHead => {
            let mut event = record(HEAD).event.clone();
            event.target = "forged".to_owned();
            let forged = event.into_record(HEAD, record(HEAD - 1).hash.clone());
            assert!(forged.hash_matches());
            raw.run(&format!(
                "UPDATE audit_records SET target = '{}', hash = '{}' WHERE seq = {HEAD}",
                forged.event.target, forged.hash
            ))
            .await;
        }
        Tamper::ReplaceCheckpointSignature => {
            raw.run(&format!(
                "UPDATE audit_checkpoints SET signature = '{}' WHERE seq = {STORED_CHECKPOINT}",
                held_head.signature
            ))
            .await;
        }
        Tamper::ForeignCheckpoint => {
            let other = PrivateKey::generate().expect("generate another key");
            let forged = sign(&other, STORED_CHECKPOINT);
            raw.run(&format!(
                "DELETE FROM audit_checkpoints WHERE seq = {STORED_CHECKPOINT}; \
                 INSERT INTO audit_checkpoints (seq, key_id, hash, time, replica, signature) \
                 VALUES ({}, '{}', '{}', {}, '{}', '{}');",
                forged.seq,
                forged.key_id,
                forged.hash,
                forged.time,
                forged.replica,
                forged.signature
            ))
            .await;
        }
    }

    let verdict = verify_from_store(store, held_head, &registered).await;
    let at = |position: u64, problem: Problem| Err(Break { position, problem });
    let expected: Result<Summary, Break> = match tamper {
        Tamper::Untouched => Ok(Summary {
            records: HEAD,
            last_seq: HEAD,
            last_hash: record(HEAD).hash.clone(),
            checkpoints: 2,
            signed_through: HEAD,
        }),
        Tamper::EditRecord => at(4, Problem::Edited),
        Tamper::DeleteRecord => at(
            5,
            Problem::Missing {
                expected: 5,
                found: 6,
            },
        ),
        // Each row keeps its seq, and the seq is hashed: row 3 no longer matches its hash.
        Tamper::SwapRecords => at(3, Problem::Edited),
        Tamper::TruncateTail => at(STORED_CHECKPOINT, Problem::Truncated { last: 6 }),
        Tamper::TruncateTailAndCheckpoints => at(HEAD, Problem::Truncated { last: 6 }),
        Tamper::RewriteHead => at(
            HEAD,
            Problem::CheckpointMismatch {
                key_id: registered.key_id.clone(),
            },
        ),
        Tamper::ReplaceCheckpointSignature => at(
            STORED_CHECKPOINT,
            Problem::Checkpoint(AuditError::BadSignature {
                seq: STORED_CHECKPOINT,
            }),
        ),
        Tamper::ForeignCheckpoint => {
            let other_key_id = match &verdict {
                Err(Break {
                    problem: Problem::Checkpoint(AuditError::UnknownKey { key_id }),
                    ..
                }) => key_id.clone(),
                _ => String::new(),
            };
            assert_ne!(other_key_id, registered.key_id);
            at(
                STORED_CHECKPOINT,
                Problem::Checkpoint(AuditError::UnknownKey {
                    key_id: other_key_id,
                }),
            )
        }
    };
    assert_eq!(verdict, expected, "{tamper:?}");
}

/// Verifies the chain as the store returns it (paged), against the checkpoints it stores plus
/// `held_head`, trusting the audit keys it lists, which must be just `registered`.
async fn verify_from_store<S: Datastore>(
    store: &S,
    held_head: Checkpoint,
    registered: &AuditKey,
) -> Result<Summary, Break> {
    let keys = store.list_audit_keys().await.expect("list audit keys");
    assert_eq!(keys, std::slice::from_ref(registered), "keys untouched");
    let trusted = TrustedKeys::from_keys(&keys).expect("the registered key parses");
    let mut checkpoints = store
        .list_audit_checkpoints()
        .await
        .expect("list checkpoints");
    checkpoints.push(held_head);
    let mut verifier = ChainVerifier::new(checkpoints, &trusted)?;
    let mut after = 0;
    loop {
        let page = store
            .list_audit(&AuditFilter::default(), after, 4)
            .await
            .expect("list audit records");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            verifier.push(record)?;
        }
    }
    verifier.finish()
}

/// One `#[tokio::test]` per [`Tamper`] case, each on a fresh store from `$fixture`: an
/// expression of type `impl Future<Output = Option<(S, R, G)>>` with `S: Datastore`,
/// `R: RawSql` and a guard `G` dropped after the case; `None` skips the case.
macro_rules! tamper_tests {
    ($fixture:expr) => {
        $crate::tamper::tamper_tests!(@cases $fixture;
            untouched_chain_verifies => Untouched,
            edited_record_breaks_at_its_seq => EditRecord,
            deleted_record_breaks_at_the_gap => DeleteRecord,
            swapped_records_break_at_the_first => SwapRecords,
            truncated_tail_breaks_at_the_stored_checkpoint => TruncateTail,
            truncated_tail_and_checkpoints_break_at_the_held_head => TruncateTailAndCheckpoints,
            rewritten_head_breaks_at_the_held_head => RewriteHead,
            replaced_checkpoint_signature_is_rejected => ReplaceCheckpointSignature,
            checkpoint_signed_by_an_unregistered_key_is_rejected => ForeignCheckpoint,
        );
    };
    (@cases $fixture:expr; $($name:ident => $case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some((store, raw, _guard)) = $fixture.await else {
                    return;
                };
                $crate::tamper::check(&store, &raw, $crate::tamper::Tamper::$case).await;
            }
        )+
    };
}
pub(crate) use tamper_tests;
