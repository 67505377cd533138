//! Conformance cases for join tokens, attested agents and trust bundles (including the
//! compare-and-set bundle write).

use std::sync::Arc;

use sigil_spiffe::bundle::MAX_BUNDLE_DOCUMENT_BYTES;
use tokio::task::JoinSet;

use super::{NOW, agent, bundle, join_token, latest, token_hash};
use crate::{Change, Datastore, StoreError};

const AGENT_A: &str = "spiffe://example.org/sigil/agent/join_token/a";
const AGENT_B: &str = "spiffe://example.org/sigil/agent/join_token/b";
/// A foreign trust domain whose bundle a federation refresher writes.
const FOREIGN: &str = "partner.example";

/// The first consume returns the token marked used at `now`; the second fails.
pub async fn join_token_is_consumed_once<S: Datastore>(store: S) {
    let token = join_token("t1", NOW + 600);
    store
        .create_join_token(token.clone())
        .await
        .expect("create");
    let consumed = store
        .consume_join_token(&token.token_hash, NOW)
        .await
        .expect("first consume");
    assert_eq!(consumed.used_at, Some(NOW));
    assert_eq!(consumed.id, token.id);
    assert_eq!(consumed.expires_at, token.expires_at);
    let again = store.consume_join_token(&token.token_hash, NOW + 1).await;
    assert!(matches!(again, Err(StoreError::JoinTokenUsed)), "{again:?}");
}

/// A token is expired once `expires_at <= now`; the failed consume leaves it unused.
pub async fn expired_join_token_is_rejected_and_stays_unused<S: Datastore>(store: S) {
    let token = join_token("t1", NOW);
    store
        .create_join_token(token.clone())
        .await
        .expect("create");
    let before = latest(&store).await;
    let expired = store.consume_join_token(&token.token_hash, NOW).await;
    assert!(
        matches!(expired, Err(StoreError::JoinTokenExpired)),
        "{expired:?}"
    );
    assert_eq!(latest(&store).await, before);
    // Still unused: a consume before expiry succeeds.
    let consumed = store
        .consume_join_token(&token.token_hash, NOW - 1)
        .await
        .expect("consume before expiry");
    assert_eq!(consumed.used_at, Some(NOW - 1));
}

/// Attestation consumes the token and stores the agent together; when either step fails,
/// neither happens.
pub async fn attestation_consumes_the_token_and_stores_the_agent_atomically<S: Datastore>(
    store: S,
) {
    let token = join_token("t1", NOW + 600);
    store
        .create_join_token(token.clone())
        .await
        .expect("create");
    let read = store
        .get_join_token(&token.token_hash)
        .await
        .expect("get")
        .expect("stored token");
    assert_eq!(read, token);
    assert_eq!(
        store
            .get_join_token(&token_hash("other"))
            .await
            .expect("get"),
        None
    );

    // The agent's ID is taken: the token must stay unused.
    store.create_agent(agent(AGENT_A)).await.expect("agent");
    let before = latest(&store).await;
    let taken = store
        .attest_with_join_token(&token.token_hash, agent(AGENT_A), NOW)
        .await;
    assert!(
        matches!(taken, Err(StoreError::AlreadyExists { .. })),
        "{taken:?}"
    );
    assert_eq!(
        latest(&store).await,
        before,
        "a failed attestation leaves no trace"
    );
    let unused = store.get_join_token(&token.token_hash).await.expect("get");
    assert_eq!(unused.and_then(|t| t.used_at), None);

    // Success: token used, agent stored.
    let used = store
        .attest_with_join_token(&token.token_hash, agent(AGENT_B), NOW)
        .await
        .expect("attest");
    assert_eq!(used.used_at, Some(NOW));
    assert!(store.get_agent(AGENT_B).await.expect("get").is_some());

    // Reuse: refused, and no agent is stored under a third ID.
    let third = "spiffe://example.org/sigil/agent/join_token/c";
    let again = store
        .attest_with_join_token(&token.token_hash, agent(third), NOW + 1)
        .await;
    assert!(matches!(again, Err(StoreError::JoinTokenUsed)), "{again:?}");
    assert!(store.get_agent(third).await.expect("get").is_none());
}

/// A hash that was never stored is `NotFound`.
pub async fn unknown_join_token_is_not_found<S: Datastore>(store: S) {
    store
        .create_join_token(join_token("t1", NOW + 600))
        .await
        .expect("create");
    let unknown = store.consume_join_token(&token_hash("t2"), NOW).await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound { .. })),
        "{unknown:?}"
    );
}

/// A second token with the same id, or the same hash, is `AlreadyExists`.
pub async fn duplicate_join_token_is_rejected<S: Datastore>(store: S) {
    let first = join_token("t1", NOW + 600);
    store
        .create_join_token(first.clone())
        .await
        .expect("create");
    let before = latest(&store).await;

    let mut same_id = join_token("t2", NOW + 600);
    same_id.id = first.id.clone();
    let mut same_hash = join_token("t3", NOW + 600);
    same_hash.token_hash = first.token_hash.clone();
    for token in [same_id, same_hash] {
        let result = store.create_join_token(token).await;
        assert!(
            matches!(result, Err(StoreError::AlreadyExists { .. })),
            "{result:?}"
        );
    }
    assert_eq!(latest(&store).await, before);
}

/// A token whose hash is not 64 lowercase hex digits (say, the secret itself) is refused.
pub async fn invalid_join_token_is_rejected<S: Datastore>(store: S) {
    let mut plaintext = join_token("t1", NOW + 600);
    plaintext.token_hash = "correct-horse-battery-staple".to_owned();
    let mut uppercase = join_token("t2", NOW + 600);
    uppercase.token_hash = "AB".repeat(32);
    let mut no_id = join_token("t3", NOW + 600);
    no_id.id = String::new();
    for token in [plaintext, uppercase, no_id] {
        let result = store.create_join_token(token.clone()).await;
        assert!(
            matches!(result, Err(StoreError::Invalid { .. })),
            "{token:?}: {result:?}"
        );
    }
    assert_eq!(latest(&store).await, 0);
}

/// Pruning deletes exactly the tokens with `expires_at < before`, used or not.
pub async fn prune_removes_only_tokens_expired_before_cutoff<S: Datastore>(store: S) {
    for (id, expires_at) in [
        ("old", NOW - 10),
        ("older", NOW - 1),
        ("edge", NOW),
        ("new", NOW + 10),
    ] {
        store
            .create_join_token(join_token(id, expires_at))
            .await
            .expect("create");
    }
    let pruned = store.prune_join_tokens(NOW).await.expect("prune");
    assert_eq!(pruned, 2);
    for id in ["old", "older"] {
        let result = store.consume_join_token(&token_hash(id), NOW - 100).await;
        assert!(
            matches!(result, Err(StoreError::NotFound { .. })),
            "{id}: {result:?}"
        );
    }
    for id in ["edge", "new"] {
        store
            .consume_join_token(&token_hash(id), NOW - 100)
            .await
            .expect("kept token is still consumable");
    }
    assert_eq!(store.prune_join_tokens(NOW).await.expect("prune"), 0);
}

/// Agents: create, duplicate refused, get, list by SPIFFE ID, column updates, delete.
pub async fn agent_lifecycle<S: Datastore>(store: S) {
    store.create_agent(agent(AGENT_B)).await.expect("create b");
    store.create_agent(agent(AGENT_A)).await.expect("create a");
    let duplicate = store.create_agent(agent(AGENT_A)).await;
    assert!(
        matches!(
            duplicate,
            Err(StoreError::AlreadyExists { kind: "agent", .. })
        ),
        "{duplicate:?}"
    );
    assert_eq!(
        store.get_agent(AGENT_A).await.expect("get"),
        Some(agent(AGENT_A))
    );
    let listed = store.list_agents().await.expect("list");
    assert_eq!(listed, [agent(AGENT_A), agent(AGENT_B)]);

    store
        .record_agent_renewal(AGENT_A, "02")
        .await
        .expect("renew");
    let mut renewed = agent(AGENT_A);
    renewed.new_serial = Some("02".to_owned());
    assert_eq!(
        store.get_agent(AGENT_A).await.expect("get"),
        Some(renewed.clone())
    );
    assert!(
        store
            .activate_agent_serial(AGENT_A, "02", NOW + 7200)
            .await
            .expect("activate")
    );
    renewed.serial = "02".to_owned();
    renewed.new_serial = None;
    renewed.expires_at = NOW + 7200;
    store.set_agent_banned(AGENT_A, true).await.expect("ban");
    renewed.banned = true;
    store
        .touch_agent_last_seen(AGENT_A, NOW + 30)
        .await
        .expect("touch");
    renewed.last_seen = NOW + 30;
    assert_eq!(
        store.get_agent(AGENT_A).await.expect("get"),
        Some(renewed.clone())
    );
    // The other agent was not touched by any of it.
    assert_eq!(
        store.get_agent(AGENT_B).await.expect("get"),
        Some(agent(AGENT_B))
    );

    let missing = store
        .set_agent_banned("spiffe://example.org/sigil/agent/join_token/none", true)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );

    assert_eq!(store.delete_agent(AGENT_A).await.expect("delete"), renewed);
    assert_eq!(store.get_agent(AGENT_A).await.expect("get"), None);
    let again = store.delete_agent(AGENT_A).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert_eq!(store.list_agents().await.expect("list"), [agent(AGENT_B)]);
}

/// Bundles: put, get, list by trust domain, replace, delete, `NotFound` after, size limit.
pub async fn bundles_put_get_list_delete<S: Datastore>(store: S) {
    store
        .put_bundle(bundle("example.org", 1))
        .await
        .expect("put");
    store.put_bundle(bundle("b.example", 7)).await.expect("put");
    assert_eq!(
        store.get_bundle("example.org").await.expect("get"),
        Some(bundle("example.org", 1))
    );
    assert_eq!(store.get_bundle("other.org").await.expect("get"), None);
    assert_eq!(
        store.list_bundles().await.expect("list"),
        [bundle("b.example", 7), bundle("example.org", 1)]
    );

    store
        .put_bundle(bundle("example.org", 2))
        .await
        .expect("replace");
    assert_eq!(
        store.get_bundle("example.org").await.expect("get"),
        Some(bundle("example.org", 2))
    );
    assert_eq!(store.list_bundles().await.expect("list").len(), 2);

    store.delete_bundle("example.org").await.expect("delete");
    assert_eq!(store.get_bundle("example.org").await.expect("get"), None);
    let again = store.delete_bundle("example.org").await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.list_bundles().await.expect("list"),
        [bundle("b.example", 7)]
    );

    let before = latest(&store).await;
    let mut huge = bundle("big.example", 1);
    huge.document = vec![b' '; MAX_BUNDLE_DOCUMENT_BYTES + 1];
    let result = store.put_bundle(huge).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Invalid {
                field: "document",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(store.get_bundle("big.example").await.expect("get"), None);
    assert_eq!(latest(&store).await, before);
}

/// `put_bundle_if_newer` stores a bundle for a new trust domain and one with a higher
/// sequence, returning `true` with one `BundleChanged` each; one with an equal or lower
/// sequence returns `false`, leaves the stored bundle and appends nothing.
pub async fn put_bundle_if_newer_writes_only_higher_sequences<S: Datastore>(store: S) {
    let before = latest(&store).await;
    assert!(
        store
            .put_bundle_if_newer(bundle(FOREIGN, 5))
            .await
            .expect("first put")
    );
    assert_eq!(
        changes_after(&store, before).await,
        [Change::BundleChanged(FOREIGN.into())]
    );

    let before = latest(&store).await;
    let mut same_sequence = bundle(FOREIGN, 5);
    same_sequence.document = br#"{"keys":[],"other":true}"#.to_vec();
    same_sequence.updated_at = NOW + 1;
    for stale in [same_sequence, bundle(FOREIGN, 4), bundle(FOREIGN, 0)] {
        let sequence = stale.sequence;
        assert!(
            !store.put_bundle_if_newer(stale).await.expect("stale put"),
            "sequence {sequence} is not newer than 5"
        );
    }
    assert_eq!(
        store.get_bundle(FOREIGN).await.expect("get"),
        Some(bundle(FOREIGN, 5))
    );
    assert_eq!(latest(&store).await, before, "no write, no event");

    let mut newer = bundle(FOREIGN, 6);
    newer.updated_at = NOW + 2;
    assert!(
        store
            .put_bundle_if_newer(newer.clone())
            .await
            .expect("newer put")
    );
    assert_eq!(store.get_bundle(FOREIGN).await.expect("get"), Some(newer));
    assert_eq!(
        changes_after(&store, before).await,
        [Change::BundleChanged(FOREIGN.into())]
    );

    let before = latest(&store).await;
    let too_big = bundle(FOREIGN, u64::MAX);
    let refused = store.put_bundle_if_newer(too_big).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Invalid {
                field: "sequence",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(latest(&store).await, before);
}

/// Writers racing with bundles of every sequence leave the highest one stored, however they
/// interleave; each write that returned `true` appended one event.
pub async fn concurrent_bundle_writes_keep_the_highest_sequence<S: Datastore>(store: S) {
    const WRITERS: u64 = 16;
    let before = latest(&store).await;
    let store = Arc::new(store);
    let mut tasks = JoinSet::new();
    // Interleaved high and low sequences, so a low one often arrives after a high one.
    for i in 0..WRITERS {
        let sequence = if i % 2 == 0 { WRITERS - i } else { i };
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .put_bundle_if_newer(bundle(FOREIGN, sequence))
                .await
                .expect("put")
        });
    }
    let mut written = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("task ran") {
            written += 1;
        }
    }
    let kept = store
        .get_bundle(FOREIGN)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(kept.sequence, WRITERS);
    assert!(written >= 1);
    assert_eq!(latest(store.as_ref()).await, before + written);
}

/// The changes appended after `after`.
async fn changes_after<S: Datastore>(store: &S, after: u64) -> Vec<Change> {
    store
        .changes_since(after, 100)
        .await
        .expect("changes")
        .into_iter()
        .map(|e| e.change)
        .collect()
}
