//! Conformance cases for governance: the audit chain (sequence continuity across appends, every
//! filter of `list_audit`, the head), checkpoints and audit keys, workload usage (merge, list,
//! sums, prune) and entry reviews. None of them appends a change event.

use sigil_audit::{ChainVerifier, GENESIS_HASH, TrustedKeys};

use super::{NOW, latest, new_entry, spiffe_id_of};
use crate::{
    AuditEvent, AuditFilter, AuditKey, Checkpoint, Datastore, EntryReview, Outcome, StoreError,
    WorkloadUsage,
};

/// Two P-256 audit keys (public halves only: the store never checks signatures), each with the
/// id sigil-audit derives from its SPKI.
const KEY_1: (&str, &str) = (
    "e091d24a341b3d302944ecac57d4470d",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsJnxyFcK/67pQKQ5GAObEf8ywV16qN53Ki425oi40HkRJPT3SoWNVIFlLegmUfMz/DjYfr85cFiju4TSeixb6Q==",
);
const KEY_2: (&str, &str) = (
    "bf45d0800c2de703f757f0a890efb195",
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAERu4UqXAczpYcfw8eD4+8w4gmYNXiAqwGG7LNZmuiXwWR8lfI/on0MQOVQd7Gn8jgnU3at7yyggouFDcyskHPUg==",
);
/// Audit times are Unix milliseconds.
const NOW_MS: i64 = NOW * 1000;
const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a";

/// An audit event at `NOW_MS + offset`.
pub fn audit_event(
    offset: i64,
    actor: &str,
    action: &str,
    target: &str,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent {
        time: NOW_MS + offset,
        replica: String::new(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome,
        details: format!(r#"{{"offset":{offset}}}"#),
    }
}

fn audit_key((key_id, public_key): (&str, &str), replica: &str, created_at: i64) -> AuditKey {
    AuditKey {
        key_id: key_id.to_owned(),
        replica: replica.to_owned(),
        public_key: public_key.to_owned(),
        created_at,
    }
}

fn checkpoint(seq: u64, key_id: &str) -> Checkpoint {
    Checkpoint {
        seq,
        hash: format!("{seq:064x}"),
        time: NOW_MS,
        replica: "r1".to_owned(),
        key_id: key_id.to_owned(),
        signature: "c2lnbmF0dXJl".to_owned(),
    }
}

/// Every record, paging `page` at a time.
async fn all_audit<S: Datastore>(store: &S, page: u32) -> Vec<sigil_audit::AuditRecord> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |r: &sigil_audit::AuditRecord| r.seq);
        let got = store
            .list_audit(&AuditFilter::default(), after, page)
            .await
            .expect("list_audit");
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

/// Appends in separate calls continue one chain: sequences 1, 2, 3... without gaps, each record
/// linked to the one before; what `append_audit` returns is what is listed; the head is the
/// last record. An empty batch and a batch with one invalid event store nothing, and no append
/// touches the change feed.
pub async fn audit_appends_continue_one_chain_across_calls<S: Datastore>(store: S) {
    assert_eq!(store.audit_head().await.expect("empty head"), None);
    let before = latest(&store).await;
    let mut appended = Vec::new();
    for batch in [3, 1, 4] {
        let events = (0..batch)
            .map(|i| audit_event(i, "uid:0", "entry.create", "e1", Outcome::Success))
            .collect();
        appended.extend(store.append_audit(events).await.expect("append"));
    }
    let seqs: Vec<u64> = appended.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<u64>>());
    let first = appended.first().expect("appended");
    assert_eq!(first.prev_hash, GENESIS_HASH);
    for pair in appended.windows(2) {
        if let [before, after] = pair {
            assert_eq!(after.prev_hash, before.hash, "record {}", after.seq);
        }
    }
    assert!(appended.iter().all(sigil_audit::AuditRecord::hash_matches));
    assert_eq!(all_audit(&store, 3).await, appended);
    let last = appended.last().expect("appended");
    assert_eq!(
        store.audit_head().await.expect("head"),
        Some((8, last.hash.clone()))
    );

    assert_eq!(store.append_audit(Vec::new()).await.expect("empty"), []);
    let refused = store
        .append_audit(vec![
            audit_event(0, "uid:0", "entry.create", "e1", Outcome::Success),
            audit_event(0, "uid:0", "", "e1", Outcome::Success),
        ])
        .await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Invalid {
                field: "action",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(all_audit(&store, 100).await, appended, "nothing stored");
    let next = store
        .append_audit(vec![audit_event(
            9,
            "uid:0",
            "entry.delete",
            "e1",
            Outcome::Success,
        )])
        .await
        .expect("append after a refused batch");
    let seqs_and_links: Vec<(u64, &str)> =
        next.iter().map(|r| (r.seq, r.prev_hash.as_str())).collect();
    assert_eq!(seqs_and_links, [(9, last.hash.as_str())]);
    assert_eq!(latest(&store).await, before, "appends are not changes");

    let mut verifier =
        ChainVerifier::new(Vec::new(), &TrustedKeys::default()).expect("no checkpoints");
    for record in all_audit(&store, 100).await {
        verifier.push(&record).expect("the stored chain verifies");
    }
    assert_eq!(verifier.finish().expect("verifies").records, 9);
}

/// Each filter of `list_audit` alone and combined, the action prefix taken literally, the
/// cursor and the limit; a zero limit and a backwards time range are `Invalid`.
pub async fn list_audit_applies_every_filter<S: Datastore>(store: S) {
    store
        .append_audit(vec![
            audit_event(0, "uid:0", "entry.create", "e1", Outcome::Success),
            audit_event(10, "uid:1", "entry.delete", "e1", Outcome::Denied),
            audit_event(20, "uid:0", "entryx.create", "e2", Outcome::Success),
            audit_event(30, AGENT, "svid.issue", "e2", Outcome::Failure),
            audit_event(40, "uid:0", "entry.update", "e2", Outcome::Success),
        ])
        .await
        .expect("append");
    let seqs = |filter: AuditFilter, after: u64, limit: u32| {
        let store = &store;
        async move {
            store
                .list_audit(&filter, after, limit)
                .await
                .expect("list_audit")
                .into_iter()
                .map(|r| r.seq)
                .collect::<Vec<u64>>()
        }
    };
    let all = AuditFilter::default;
    assert_eq!(seqs(all(), 0, 100).await, [1, 2, 3, 4, 5]);
    assert_eq!(seqs(all(), 2, 2).await, [3, 4]);
    assert_eq!(seqs(all(), 5, 100).await, [] as [u64; 0]);
    let cases: [(AuditFilter, &[u64]); 9] = [
        (
            AuditFilter {
                actor: Some("uid:0".into()),
                ..all()
            },
            &[1, 3, 5],
        ),
        (
            AuditFilter {
                actor: Some(AGENT.into()),
                ..all()
            },
            &[4],
        ),
        (
            AuditFilter {
                action: Some("entry.create".into()),
                ..all()
            },
            &[1],
        ),
        (
            AuditFilter {
                action: Some("entry.".into()),
                ..all()
            },
            &[1, 2, 5],
        ),
        (
            AuditFilter {
                action: Some("entr".into()),
                ..all()
            },
            &[],
        ),
        (
            AuditFilter {
                target: Some("e2".into()),
                ..all()
            },
            &[3, 4, 5],
        ),
        (
            AuditFilter {
                outcome: Some(Outcome::Denied),
                ..all()
            },
            &[2],
        ),
        (
            AuditFilter {
                since: Some(NOW_MS + 10),
                until: Some(NOW_MS + 40),
                ..all()
            },
            &[2, 3, 4],
        ),
        (
            AuditFilter {
                actor: Some("uid:0".into()),
                action: Some("entry.".into()),
                target: Some("e2".into()),
                outcome: Some(Outcome::Success),
                ..all()
            },
            &[5],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(seqs(filter.clone(), 0, 100).await, expected, "{filter:?}");
    }
    let prefix = AuditFilter {
        action: Some("entry.".into()),
        ..all()
    };
    assert_eq!(
        seqs(prefix.clone(), 1, 1).await,
        [2],
        "cursor and limit with a filter"
    );

    let zero = store.list_audit(&all(), 0, 0).await;
    assert!(
        matches!(zero, Err(StoreError::Invalid { field: "limit", .. })),
        "{zero:?}"
    );
    let backwards = AuditFilter {
        since: Some(NOW_MS + 1),
        until: Some(NOW_MS),
        ..all()
    };
    let refused = store.list_audit(&backwards, 0, 10).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { field: "since", .. })),
        "{refused:?}"
    );
}

/// Checkpoints round-trip field for field, ordered by sequence then key id; a second one from
/// the same key at the same sequence is `AlreadyExists`. Registering a key again is a no-op,
/// the same key id for another replica is `AlreadyExists`, a key whose id is not its own is
/// `Invalid`; keys are listed by creation time then id.
pub async fn audit_checkpoints_and_keys_round_trip<S: Datastore>(store: S) {
    let before = latest(&store).await;
    assert_eq!(store.list_audit_checkpoints().await.expect("empty"), []);
    assert_eq!(store.list_audit_keys().await.expect("empty"), []);

    let stored = [
        checkpoint(8, KEY_2.0),
        checkpoint(3, KEY_1.0),
        checkpoint(8, KEY_1.0),
    ];
    for cp in &stored {
        store
            .put_audit_checkpoint(cp.clone())
            .await
            .expect("put checkpoint");
    }
    let again = store.put_audit_checkpoint(checkpoint(8, KEY_1.0)).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    let mut zero = checkpoint(1, KEY_1.0);
    zero.seq = 0;
    let refused = store.put_audit_checkpoint(zero).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid { field: "seq", .. })),
        "{refused:?}"
    );
    assert_eq!(
        store
            .list_audit_checkpoints()
            .await
            .expect("list checkpoints"),
        [
            checkpoint(3, KEY_1.0),
            checkpoint(8, KEY_2.0),
            checkpoint(8, KEY_1.0)
        ],
        "by seq, then key id"
    );

    let first = audit_key(KEY_1, "r1", NOW_MS + 5);
    let second = audit_key(KEY_2, "r2", NOW_MS);
    for key in [&first, &second, &first] {
        store
            .register_audit_key(key.clone())
            .await
            .expect("register");
    }
    let moved = store
        .register_audit_key(audit_key(KEY_1, "r2", NOW_MS + 5))
        .await;
    assert!(
        matches!(moved, Err(StoreError::AlreadyExists { .. })),
        "{moved:?}"
    );
    let mismatched = store
        .register_audit_key(audit_key((KEY_1.0, KEY_2.1), "r1", NOW_MS))
        .await;
    assert!(
        matches!(
            mismatched,
            Err(StoreError::Invalid {
                field: "public_key",
                ..
            })
        ),
        "{mismatched:?}"
    );
    let keys = store.list_audit_keys().await.expect("list keys");
    assert_eq!(keys, [second, first]);
    TrustedKeys::from_keys(&keys).expect("stored keys parse");
    assert_eq!(latest(&store).await, before, "no change events");
}

/// A usage row for `entry_id` from [`AGENT`] as uid `uid`, seen `first..=last`.
fn usage(entry_id: &str, uid: u32, first: i64, last: i64, fetches: u64) -> WorkloadUsage {
    WorkloadUsage {
        entry_id: entry_id.to_owned(),
        agent_id: spiffe_id_of(AGENT),
        uid,
        binary_path: "/usr/bin/app".to_owned(),
        binary_sha256: "a".repeat(64),
        first_seen: first,
        last_seen: last,
        fetches,
        svids_issued: 1,
    }
}

/// Reports of one workload merge column-wise (earliest first seen, latest last seen, counters
/// added); rows for unknown entries are skipped; rows are listed in key order up to the limit,
/// summed per entry, pruned by last seen, and go with their entry.
pub async fn workload_usage_merges_sums_and_prunes<S: Datastore>(store: S) {
    let web = store
        .create_entry(
            new_entry("spiffe://example.org/web", AGENT, &["unix:uid:1"]),
            NOW,
        )
        .await
        .expect("create web");
    let db = store
        .create_entry(
            new_entry("spiffe://example.org/db", AGENT, &["unix:uid:2"]),
            NOW,
        )
        .await
        .expect("create db");
    let before = latest(&store).await;
    store
        .record_workload_usage(vec![
            usage(&web.id, 1, NOW, NOW + 10, 2),
            usage(&web.id, 0, NOW, NOW + 5, 1),
            usage(&db.id, 2, NOW - 100, NOW - 50, 7),
            usage("no-such-entry", 1, NOW, NOW, 1),
        ])
        .await
        .expect("first report");
    store
        .record_workload_usage(vec![usage(&web.id, 1, NOW - 5, NOW + 3, 3)])
        .await
        .expect("second report");
    let web_rows = store.list_workload_usage(&web.id, 10).await.expect("list");
    assert_eq!(
        web_rows,
        [usage(&web.id, 0, NOW, NOW + 5, 1), {
            let mut merged = usage(&web.id, 1, NOW - 5, NOW + 10, 5);
            merged.svids_issued = 2;
            merged
        }]
    );
    assert_eq!(
        store
            .list_workload_usage(&web.id, 1)
            .await
            .expect("limit")
            .len(),
        1
    );
    assert_eq!(
        store
            .list_workload_usage("no-such-entry", 10)
            .await
            .expect("list"),
        []
    );

    let sums = store.usage_by_entry().await.expect("usage_by_entry");
    let mut ids = [web.id.clone(), db.id.clone()];
    ids.sort();
    assert_eq!(
        sums.iter().map(|u| u.entry_id.clone()).collect::<Vec<_>>(),
        ids
    );
    let web_sum = sums
        .iter()
        .find(|u| u.entry_id == web.id)
        .expect("web summed");
    assert_eq!(
        (
            web_sum.workloads,
            web_sum.first_seen,
            web_sum.last_seen,
            web_sum.fetches,
            web_sum.svids_issued
        ),
        (2, NOW - 5, NOW + 10, 6, 3)
    );

    assert_eq!(
        store.prune_workload_usage(NOW).await.expect("prune"),
        1,
        "db's row"
    );
    assert_eq!(
        store.list_workload_usage(&db.id, 10).await.expect("list"),
        []
    );
    store.delete_entry(&web.id).await.expect("delete web");
    assert_eq!(store.usage_by_entry().await.expect("usage_by_entry"), []);
    let before_delete = latest(&store).await;
    assert_eq!(
        before_delete,
        before + 1,
        "only the delete appended an event"
    );
}

/// The latest review of an entry replaces the earlier one; reviewing an unknown entry is
/// `NotFound` and an empty reviewer `Invalid`, storing nothing; reviews go with their entry and
/// append no change event.
pub async fn entry_reviews_keep_the_latest_and_go_with_the_entry<S: Datastore>(store: S) {
    let web = store
        .create_entry(
            new_entry("spiffe://example.org/web", AGENT, &["unix:uid:1"]),
            NOW,
        )
        .await
        .expect("create");
    let before = latest(&store).await;
    let review = |by: &str, at: i64, note: &str| EntryReview {
        entry_id: web.id.clone(),
        reviewed_by: by.to_owned(),
        reviewed_at: at,
        note: note.to_owned(),
    };
    let first = review("team-a", NOW, "still used");
    assert_eq!(
        store.review_entry(first.clone()).await.expect("review"),
        first
    );
    let second = review("team-b", NOW + 60, "");
    store
        .review_entry(second.clone())
        .await
        .expect("review again");
    assert_eq!(
        store.list_entry_reviews().await.expect("list"),
        std::slice::from_ref(&second)
    );

    let mut unknown = review("team-a", NOW, "");
    unknown.entry_id = "no-such-entry".to_owned();
    let got = store.review_entry(unknown).await;
    assert!(matches!(got, Err(StoreError::NotFound { .. })), "{got:?}");
    let got = store.review_entry(review("", NOW, "")).await;
    assert!(
        matches!(
            got,
            Err(StoreError::Invalid {
                field: "reviewed_by",
                ..
            })
        ),
        "{got:?}"
    );
    assert_eq!(store.list_entry_reviews().await.expect("list"), [second]);
    assert_eq!(latest(&store).await, before, "reviews are not changes");

    store.delete_entry(&web.id).await.expect("delete");
    assert_eq!(store.list_entry_reviews().await.expect("list"), []);
}
