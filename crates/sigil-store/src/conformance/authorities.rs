//! Conformance cases for signing authorities: created whole once, then only their state moves,
//! by compare-and-swap, each mutation with its change event.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{NOW, authority, latest};
use crate::{AuthorityKind, AuthorityState, Change, Datastore, StoreError};

/// Several authorities of several kinds are kept side by side, listed by creation time then id;
/// creating an existing id fails and leaves the stored record as it was.
pub async fn authorities_are_created_once_and_listed_in_order<S: Datastore>(store: S) {
    let jwt = authority("jwt-1", AuthorityKind::Jwt, NOW + 5);
    let root = authority("root-1", AuthorityKind::X509Root, NOW);
    let mut intermediate = authority("int-1", AuthorityKind::X509Intermediate, NOW + 5);
    intermediate.issuer_id = Some(root.id.clone());
    let mut next_root = authority("root-2", AuthorityKind::X509Root, NOW + 10);
    next_root.state = AuthorityState::Prepared;
    // Another replica's authority is stored and listed with its owner.
    next_root.replica = "replica-b".to_owned();
    for record in [&jwt, &next_root, &intermediate, &root] {
        store
            .create_authority(record.clone())
            .await
            .expect("create");
    }
    let expected = [root.clone(), intermediate, jwt, next_root];
    assert_eq!(store.list_authorities().await.expect("list"), expected);

    let before = latest(&store).await;
    let mut impostor = authority("root-1", AuthorityKind::Jwt, NOW + 20);
    impostor.state = AuthorityState::Revoked;
    let duplicate = store.create_authority(impostor).await;
    assert!(
        matches!(duplicate, Err(StoreError::AlreadyExists { .. })),
        "{duplicate:?}"
    );
    assert_eq!(store.list_authorities().await.expect("list"), expected);
    assert_eq!(
        latest(&store).await,
        before,
        "a failed create appends no event"
    );
}

/// `set_authority_state` moves the state only from the expected one, touches no other column,
/// returns the updated record, and appends one event per success and none per failure.
pub async fn authority_state_moves_only_from_the_expected_state<S: Datastore>(store: S) {
    let mut prepared = authority("jwt-2", AuthorityKind::Jwt, NOW);
    prepared.state = AuthorityState::Prepared;
    let other = authority("jwt-1", AuthorityKind::Jwt, NOW - 10);
    store.create_authority(other.clone()).await.expect("create");
    store
        .create_authority(prepared.clone())
        .await
        .expect("create");
    let before = latest(&store).await;

    let activated = store
        .set_authority_state("jwt-2", AuthorityState::Prepared, AuthorityState::Active)
        .await
        .expect("activate");
    let mut expected = prepared.clone();
    expected.state = AuthorityState::Active;
    assert_eq!(activated, expected);
    assert_eq!(latest(&store).await, before + 1);
    let events = store.changes_since(before, 10).await.expect("changes");
    let changes: Vec<Change> = events.into_iter().map(|e| e.change).collect();
    assert_eq!(changes, [Change::AuthorityChanged("jwt-2".into())]);

    // The same transition again: the record is no longer prepared.
    let stale = store
        .set_authority_state("jwt-2", AuthorityState::Prepared, AuthorityState::Active)
        .await;
    match stale {
        Err(StoreError::AuthorityStateConflict {
            id,
            expected: AuthorityState::Prepared,
            found: AuthorityState::Active,
        }) => assert_eq!(id, "jwt-2"),
        other => panic!("expected a state conflict, got {other:?}"),
    }
    let missing = store
        .set_authority_state("nope", AuthorityState::Active, AuthorityState::Old)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(latest(&store).await, before + 1, "failures append no event");
    assert_eq!(
        store.list_authorities().await.expect("list"),
        [other, expected],
        "only the one state moved"
    );
}

/// Eight tasks race to move one active authority, half to `old` and half to `tainted`: exactly
/// one wins, every other gets a conflict naming the winner's state, and one event is appended.
pub async fn concurrent_transitions_of_one_authority_one_wins<S: Datastore>(store: S) {
    store
        .create_authority(authority("int-1", AuthorityKind::X509Intermediate, NOW))
        .await
        .expect("create");
    let before = latest(&store).await;
    let store = Arc::new(store);
    let mut tasks = JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let target = if i % 2 == 0 {
            AuthorityState::Old
        } else {
            AuthorityState::Tainted
        };
        tasks.spawn(async move {
            let result = store
                .set_authority_state("int-1", AuthorityState::Active, target)
                .await;
            (target, result)
        });
    }
    let mut winners = Vec::new();
    let mut conflicts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task ran") {
            (target, Ok(record)) => {
                assert_eq!(record.state, target);
                winners.push(target);
            }
            (_, Err(StoreError::AuthorityStateConflict { found, .. })) => conflicts.push(found),
            (_, Err(other)) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one transition wins");
    assert_eq!(conflicts.len(), 7);
    let winner = winners.first().copied().expect("one winner");
    assert!(
        conflicts.iter().all(|found| *found == winner),
        "{conflicts:?}"
    );
    let stored = store.list_authorities().await.expect("list");
    assert_eq!(stored.iter().map(|r| r.state).collect::<Vec<_>>(), [winner]);
    assert_eq!(latest(store.as_ref()).await, before + 1);
}

/// Deleting returns the record and appends `authority_deleted`; a second delete is `NotFound`.
pub async fn deleted_authority_is_gone_with_one_event<S: Datastore>(store: S) {
    let mut old = authority("jwt-1", AuthorityKind::Jwt, NOW);
    old.state = AuthorityState::Old;
    store.create_authority(old.clone()).await.expect("create");
    let before = latest(&store).await;

    assert_eq!(store.delete_authority("jwt-1").await.expect("delete"), old);
    assert_eq!(store.list_authorities().await.expect("list"), []);
    let events = store.changes_since(before, 10).await.expect("changes");
    let changes: Vec<Change> = events.into_iter().map(|e| e.change).collect();
    assert_eq!(changes, [Change::AuthorityDeleted("jwt-1".into())]);

    let again = store.delete_authority("jwt-1").await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert_eq!(latest(&store).await, before + 1);
}
