//! Conformance cases for the change feed (one event per mutation, none per failure, pagination,
//! watch) and for mutations racing each other.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{
    NOW, agent, authority, bundle, issued_credential, join_token, latest, new_entry, token_hash,
};
use crate::{
    AuthorityKind, Change, CredentialKind, Datastore, EntryFilter, MAX_REVOCATION_REASON_BYTES,
    Revocation, StoreError,
};

const WEB: &str = "spiffe://example.org/web";
const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a";

/// Every kind of mutation appends exactly one event, in call order, with strictly increasing
/// sequence numbers; events of calls that carry `now` are stamped with it.
pub async fn each_mutation_appends_one_event_in_order<S: Datastore>(store: S) {
    let mut expected = Vec::new();
    let mut seen = latest(&store).await;
    assert_eq!(seen, 0, "a fresh store has no events");
    let mut step = |change: Change, latest_now: u64| {
        assert_eq!(latest_now, seen + 1, "one event for {change:?}");
        seen = latest_now;
        expected.push(change);
    };

    let entry = store
        .create_entry(new_entry(WEB, AGENT, &["unix:uid:1"]), NOW)
        .await
        .expect("create entry");
    step(Change::EntryCreated(entry.id.clone()), latest(&store).await);
    store
        .update_entry(
            &entry.id,
            new_entry(WEB, AGENT, &["unix:uid:2"]),
            Some(1),
            NOW + 1,
        )
        .await
        .expect("update entry");
    step(Change::EntryUpdated(entry.id.clone()), latest(&store).await);
    store.delete_entry(&entry.id).await.expect("delete entry");
    step(Change::EntryDeleted(entry.id.clone()), latest(&store).await);

    store
        .create_join_token(join_token("t1", NOW + 600))
        .await
        .expect("create token");
    step(Change::JoinTokenChanged("t1".into()), latest(&store).await);
    store
        .consume_join_token(&token_hash("t1"), NOW + 2)
        .await
        .expect("consume token");
    step(Change::JoinTokenChanged("t1".into()), latest(&store).await);

    store
        .create_agent(agent(AGENT))
        .await
        .expect("create agent");
    step(Change::AgentChanged(AGENT.into()), latest(&store).await);
    store
        .record_agent_renewal(AGENT, "02")
        .await
        .expect("record renewal");
    step(Change::AgentChanged(AGENT.into()), latest(&store).await);
    assert!(
        store
            .activate_agent_serial(AGENT, "02", NOW + 7200)
            .await
            .expect("activate serial")
    );
    step(Change::AgentChanged(AGENT.into()), latest(&store).await);
    store
        .set_agent_banned(AGENT, true)
        .await
        .expect("ban agent");
    step(Change::AgentChanged(AGENT.into()), latest(&store).await);
    // Heartbeats are bookkeeping, not identity state: no event (the next step checks that the
    // sequence moved by exactly one since the ban).
    store
        .touch_agent_last_seen(AGENT, NOW + 60)
        .await
        .expect("touch agent");
    store.delete_agent(AGENT).await.expect("delete agent");
    step(Change::AgentDeleted(AGENT.into()), latest(&store).await);

    store
        .create_authority(authority("root-1", AuthorityKind::X509Root, NOW))
        .await
        .expect("create authority");
    step(
        Change::AuthorityChanged("root-1".into()),
        latest(&store).await,
    );
    store
        .put_bundle(bundle("example.org", 1))
        .await
        .expect("put bundle");
    step(
        Change::BundleChanged("example.org".into()),
        latest(&store).await,
    );
    store
        .delete_bundle("example.org")
        .await
        .expect("delete bundle");
    step(
        Change::BundleDeleted("example.org".into()),
        latest(&store).await,
    );

    // Recording issuance is bookkeeping: no event (the next step checks that the sequence moved
    // by exactly one since the bundle was deleted).
    let svid = issued_credential(CredentialKind::X509Svid, "0a", NOW + 3600);
    let jwt = issued_credential(CredentialKind::JwtSvid, "j1", NOW + 300);
    store
        .record_issued(vec![svid.clone(), jwt])
        .await
        .expect("record issued");
    store
        .revoke_credential(svid.kind, &svid.id, "compromised", NOW + 3)
        .await
        .expect("revoke");
    let revocation_key = Revocation::feed_key(svid.kind, &svid.id);
    step(
        Change::RevocationAdded(revocation_key.clone()),
        latest(&store).await,
    );
    // Forgets both credentials; only the revoked one has an event.
    assert_eq!(
        store
            .prune_expired_credentials(svid.expires_at + 1)
            .await
            .expect("prune credentials"),
        1
    );
    step(
        Change::RevocationDeleted(revocation_key.clone()),
        latest(&store).await,
    );

    let events = store.changes_since(0, 1000).await.expect("changes");
    let changes: Vec<Change> = events.iter().map(|e| e.change.clone()).collect();
    assert_eq!(changes, expected);
    assert!(
        events.windows(2).all(|pair| match pair {
            [a, b] => a.seq < b.seq,
            _ => true,
        }),
        "sequences strictly increase: {events:?}"
    );
    assert_eq!(events.last().map(|e| e.seq), Some(seen));
    let stamped: Vec<i64> = events.iter().take(2).map(|e| e.at).collect();
    assert_eq!(
        stamped,
        [NOW, NOW + 1],
        "entry events carry the caller's now"
    );
    let revoked_at: Vec<i64> = events
        .iter()
        .filter(|e| e.change == Change::RevocationAdded(revocation_key.clone()))
        .map(|e| e.at)
        .collect();
    assert_eq!(
        revoked_at,
        [NOW + 3],
        "a revocation carries the caller's now"
    );
}

/// Every refused mutation leaves the feed as it was.
pub async fn failed_mutations_append_no_event<S: Datastore>(store: S) {
    let entry = store
        .create_entry(new_entry(WEB, AGENT, &["unix:uid:1"]), NOW)
        .await
        .expect("create entry");
    store
        .update_entry(&entry.id, entry.spec.clone(), None, NOW)
        .await
        .expect("update entry");
    store
        .create_join_token(join_token("used", NOW + 600))
        .await
        .expect("create token");
    store
        .consume_join_token(&token_hash("used"), NOW)
        .await
        .expect("consume token");
    store
        .create_join_token(join_token("expired", NOW - 1))
        .await
        .expect("create token");
    store
        .create_agent(agent(AGENT))
        .await
        .expect("create agent");
    store
        .record_issued(vec![
            issued_credential(CredentialKind::X509Svid, "revoked", NOW + 600),
            issued_credential(CredentialKind::X509Svid, "valid", NOW + 600),
            issued_credential(CredentialKind::X509Svid, "expired", NOW),
        ])
        .await
        .expect("record issued");
    store
        .revoke_credential(CredentialKind::X509Svid, "revoked", "compromised", NOW)
        .await
        .expect("revoke");
    let before = latest(&store).await;

    let mut no_owner = entry.spec.clone();
    no_owner.owner.clear();
    let missing_agent = agent("spiffe://example.org/sigil/agent/join_token/none");
    let failures: Vec<(&str, bool)> = vec![
        (
            "duplicate entry",
            store.create_entry(entry.spec.clone(), NOW).await.is_err(),
        ),
        (
            "invalid entry",
            store.create_entry(no_owner, NOW).await.is_err(),
        ),
        (
            "stale revision",
            store
                .update_entry(&entry.id, entry.spec.clone(), Some(1), NOW)
                .await
                .is_err(),
        ),
        (
            "update missing entry",
            store
                .update_entry("missing", entry.spec.clone(), None, NOW)
                .await
                .is_err(),
        ),
        (
            "delete missing entry",
            store.delete_entry("missing").await.is_err(),
        ),
        (
            "used token",
            store
                .consume_join_token(&token_hash("used"), NOW)
                .await
                .is_err(),
        ),
        (
            "expired token",
            store
                .consume_join_token(&token_hash("expired"), NOW)
                .await
                .is_err(),
        ),
        (
            "unknown token",
            store
                .consume_join_token(&token_hash("unknown"), NOW)
                .await
                .is_err(),
        ),
        (
            "duplicate token",
            store
                .create_join_token(join_token("used", NOW + 600))
                .await
                .is_err(),
        ),
        (
            "duplicate agent",
            store.create_agent(agent(AGENT)).await.is_err(),
        ),
        (
            "renew missing agent",
            store
                .record_agent_renewal(missing_agent.spiffe_id.as_str(), "02")
                .await
                .is_err(),
        ),
        (
            "activate missing agent",
            store
                .activate_agent_serial(missing_agent.spiffe_id.as_str(), "02", NOW)
                .await
                .is_err(),
        ),
        (
            "ban missing agent",
            store
                .set_agent_banned(missing_agent.spiffe_id.as_str(), true)
                .await
                .is_err(),
        ),
        (
            "touch missing agent",
            store
                .touch_agent_last_seen(missing_agent.spiffe_id.as_str(), NOW)
                .await
                .is_err(),
        ),
        (
            "activate a serial that was never issued",
            store
                .activate_agent_serial(AGENT, "ff", NOW)
                .await
                .is_ok_and(|current| !current),
        ),
        (
            "delete missing agent",
            store
                .delete_agent(missing_agent.spiffe_id.as_str())
                .await
                .is_err(),
        ),
        (
            "delete missing bundle",
            store.delete_bundle("example.org").await.is_err(),
        ),
        (
            "duplicate issued credential",
            store
                .record_issued(vec![issued_credential(
                    CredentialKind::X509Svid,
                    "valid",
                    NOW + 600,
                )])
                .await
                .is_err(),
        ),
        (
            "issued credential without id",
            store
                .record_issued(vec![issued_credential(
                    CredentialKind::X509Svid,
                    "",
                    NOW + 600,
                )])
                .await
                .is_err(),
        ),
        (
            "revoke unknown credential",
            store
                .revoke_credential(CredentialKind::JwtSvid, "valid", "lost", NOW)
                .await
                .is_err(),
        ),
        (
            "revoke expired credential",
            store
                .revoke_credential(CredentialKind::X509Svid, "expired", "lost", NOW)
                .await
                .is_err(),
        ),
        (
            "revoke twice",
            store
                .revoke_credential(CredentialKind::X509Svid, "revoked", "again", NOW)
                .await
                .is_err(),
        ),
        (
            "over-long revocation reason",
            store
                .revoke_credential(
                    CredentialKind::X509Svid,
                    "valid",
                    &"r".repeat(MAX_REVOCATION_REASON_BYTES + 1),
                    NOW,
                )
                .await
                .is_err(),
        ),
    ];
    for (what, failed) in failures {
        assert!(failed, "{what} should have failed");
    }
    assert_eq!(latest(&store).await, before);
    let after = store.changes_since(before, 1000).await.expect("changes");
    assert!(after.is_empty(), "{after:?}");
}

/// Reading the feed page by page with a limit yields the whole feed once, in order.
pub async fn changes_since_paginates_with_limit<S: Datastore>(store: S) {
    for sequence in 1..=5 {
        store
            .put_bundle(bundle("example.org", sequence))
            .await
            .expect("put bundle");
    }
    let all = store.changes_since(0, 100).await.expect("changes");
    assert_eq!(all.len(), 5);
    assert!(
        store.changes_since(0, 0).await.expect("changes").is_empty(),
        "limit 0 returns nothing"
    );

    let mut paged = Vec::new();
    let mut cursor = 0;
    let mut sizes = Vec::new();
    loop {
        let page = store.changes_since(cursor, 2).await.expect("page");
        sizes.push(page.len());
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        paged.extend(page);
    }
    assert_eq!(sizes, [2, 2, 1, 0]);
    assert_eq!(paged, all);
    let tail = store
        .changes_since(all.iter().map(|e| e.seq).max().unwrap_or(0), 10)
        .await
        .expect("changes");
    assert!(tail.is_empty());
}

/// A watch receiver starts at the newest sequence and moves to each new one after a mutation.
pub async fn watch_changes_sees_each_new_sequence<S: Datastore>(store: S) {
    store
        .put_bundle(bundle("example.org", 1))
        .await
        .expect("put bundle");
    let mut watch = store.watch_changes();
    // Copied out first: a borrow held across an await blocks the store's sender (another task
    // moving the watch) on a worker thread.
    let seen = *watch.borrow_and_update();
    assert_eq!(seen, latest(&store).await);
    for sequence in 2..=4 {
        store
            .put_bundle(bundle("example.org", sequence))
            .await
            .expect("put bundle");
        tokio::time::timeout(Duration::from_secs(5), watch.changed())
            .await
            .expect("notified within 5 s")
            .expect("store still open");
        let seen = *watch.borrow_and_update();
        assert_eq!(seen, latest(&store).await);
    }
}

/// Many tasks consume one join token at once: exactly one succeeds, the rest see it used.
pub async fn concurrent_consumers_of_one_join_token_one_wins<S: Datastore>(store: S) {
    let store = Arc::new(store);
    store
        .create_join_token(join_token("t1", NOW + 600))
        .await
        .expect("create token");
    let before = latest(store.as_ref()).await;
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.consume_join_token(&token_hash("t1"), NOW).await });
    }
    let (mut won, mut used) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task ran") {
            Ok(_) => won += 1,
            Err(StoreError::JoinTokenUsed) => used += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((won, used), (1, 7));
    assert_eq!(latest(store.as_ref()).await, before + 1);
}

/// Many tasks create the same entry at once: exactly one is stored, the rest see `AlreadyExists`.
pub async fn concurrent_creates_of_one_entry_one_wins<S: Datastore>(store: S) {
    let store = Arc::new(store);
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .create_entry(new_entry(WEB, AGENT, &["unix:uid:1"]), NOW)
                .await
        });
    }
    let (mut won, mut duplicate) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task ran") {
            Ok(_) => won += 1,
            Err(StoreError::AlreadyExists { .. }) => duplicate += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((won, duplicate), (1, 7));
    let stored = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(latest(store.as_ref()).await, 1);
}
