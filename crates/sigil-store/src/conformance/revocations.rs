//! Conformance cases for issued credentials and revocations: issuance is recorded without change
//! events, a revocation is refused unless its credential is recorded, unexpired and unrevoked,
//! and both are forgotten once the credential expires.

use super::{NOW, issued_credential, latest, spiffe_id_of};
use crate::{
    Change, CredentialKind, Datastore, MAX_CREDENTIAL_ID_BYTES, MAX_REVOCATION_REASON_BYTES,
    Revocation, StoreError,
};

const X509: CredentialKind = CredentialKind::X509Svid;
const JWT: CredentialKind = CredentialKind::JwtSvid;

/// A batch of issued credentials reads back as written, `(kind, id)` is the key (one id under
/// both kinds is two records), an empty batch is accepted, and recording appends no event.
pub async fn issued_credentials_round_trip_without_events<S: Datastore>(store: S) {
    let svid = issued_credential(X509, "0a1b", NOW + 3600);
    let mut jwt = issued_credential(JWT, "0a1b", NOW + 300);
    jwt.authority_id = "jwt-1".to_owned();
    jwt.spiffe_id = spiffe_id_of("spiffe://example.org/api");
    store
        .record_issued(vec![svid.clone(), jwt.clone()])
        .await
        .expect("record");
    store.record_issued(Vec::new()).await.expect("empty batch");

    assert_eq!(
        store.get_issued(X509, "0a1b").await.expect("get"),
        Some(svid)
    );
    assert_eq!(store.get_issued(JWT, "0a1b").await.expect("get"), Some(jwt));
    assert_eq!(store.get_issued(X509, "0a1c").await.expect("get"), None);
    assert_eq!(
        latest(&store).await,
        0,
        "recording issuance appends no event"
    );
    assert_eq!(store.changes_since(0, 10).await.expect("changes"), []);
    assert_eq!(
        store.get_revocation(X509, "0a1b").await.expect("get"),
        None,
        "recorded is not revoked"
    );
    assert_eq!(store.list_revocations().await.expect("list"), []);
}

/// A batch holding a `(kind, id)` already recorded, or the same one twice, is `AlreadyExists`
/// and none of it is stored; the stored record is left as it was.
pub async fn duplicate_issued_credential_rejects_the_whole_batch<S: Datastore>(store: S) {
    let first = issued_credential(X509, "01", NOW + 3600);
    store
        .record_issued(vec![first.clone()])
        .await
        .expect("record");

    let mut impostor = issued_credential(X509, "01", NOW + 7200);
    impostor.authority_id = "int-2".to_owned();
    let batches = [
        vec![issued_credential(X509, "02", NOW + 3600), impostor],
        vec![
            issued_credential(X509, "03", NOW + 3600),
            issued_credential(X509, "03", NOW + 3600),
        ],
    ];
    for batch in batches {
        let result = store.record_issued(batch.clone()).await;
        assert!(
            matches!(result, Err(StoreError::AlreadyExists { .. })),
            "{batch:?}: {result:?}"
        );
    }
    for id in ["02", "03"] {
        assert_eq!(
            store.get_issued(X509, id).await.expect("get"),
            None,
            "{id} was in a rejected batch"
        );
    }
    assert_eq!(
        store.get_issued(X509, "01").await.expect("get"),
        Some(first)
    );

    // Without the duplicate, the same credentials are accepted.
    store
        .record_issued(vec![
            issued_credential(X509, "02", NOW + 3600),
            issued_credential(X509, "03", NOW + 3600),
        ])
        .await
        .expect("record");
    assert_eq!(latest(&store).await, 0);
}

/// A batch holding an empty id or one longer than [`MAX_CREDENTIAL_ID_BYTES`] is `Invalid` and
/// none of it is stored; an id of exactly the limit is accepted.
pub async fn invalid_credential_id_rejects_the_whole_batch<S: Datastore>(store: S) {
    let good = issued_credential(X509, "01", NOW + 3600);
    for bad_id in [String::new(), "a".repeat(MAX_CREDENTIAL_ID_BYTES + 1)] {
        let bad = issued_credential(JWT, &bad_id, NOW + 3600);
        let result = store.record_issued(vec![good.clone(), bad]).await;
        assert!(
            matches!(result, Err(StoreError::Invalid { field: "id", .. })),
            "{} bytes: {result:?}",
            bad_id.len()
        );
        assert_eq!(store.get_issued(X509, "01").await.expect("get"), None);
    }

    let at_limit = issued_credential(JWT, &"a".repeat(MAX_CREDENTIAL_ID_BYTES), NOW + 3600);
    store
        .record_issued(vec![good.clone(), at_limit.clone()])
        .await
        .expect("record");
    assert_eq!(store.get_issued(X509, "01").await.expect("get"), Some(good));
    assert_eq!(
        store.get_issued(JWT, &at_limit.id).await.expect("get"),
        Some(at_limit)
    );
    assert_eq!(latest(&store).await, 0);
}

/// Revoking a credential that was never recorded (here: a recorded id under the other kind, and
/// an unrecorded id) is `NotFound` naming `<kind>:<id>`, and revokes nothing.
pub async fn unknown_credential_is_not_found_and_nothing_is_revoked<S: Datastore>(store: S) {
    store
        .record_issued(vec![issued_credential(X509, "01", NOW + 3600)])
        .await
        .expect("record");

    for (kind, id) in [(JWT, "01"), (X509, "02")] {
        match store.revoke_credential(kind, id, "compromised", NOW).await {
            Err(StoreError::NotFound {
                kind: "credential",
                id: named,
            }) => assert_eq!(named, Revocation::feed_key(kind, id)),
            other => panic!("revoking {kind:?} {id}: expected NotFound, got {other:?}"),
        }
        assert_eq!(store.get_revocation(kind, id).await.expect("get"), None);
    }
    assert_eq!(store.list_revocations().await.expect("list"), []);
    assert_eq!(
        latest(&store).await,
        0,
        "a refused revocation appends no event"
    );

    // The recorded credential itself can be revoked.
    store
        .revoke_credential(X509, "01", "compromised", NOW)
        .await
        .expect("revoke the recorded credential");
}

/// A credential is expired once `expires_at <= now`: revoking it then is `CredentialExpired`
/// and revokes nothing; one second earlier it is revocable.
pub async fn expired_credential_is_not_revoked<S: Datastore>(store: S) {
    store
        .record_issued(vec![issued_credential(X509, "01", NOW)])
        .await
        .expect("record");

    for now in [NOW, NOW + 1] {
        match store.revoke_credential(X509, "01", "lost", now).await {
            Err(StoreError::CredentialExpired {
                kind: X509,
                id,
                expired_at: NOW,
            }) => assert_eq!(id, "01"),
            other => panic!("revoking at {now}: expected CredentialExpired, got {other:?}"),
        }
    }
    assert_eq!(store.get_revocation(X509, "01").await.expect("get"), None);
    assert_eq!(store.list_revocations().await.expect("list"), []);
    assert_eq!(
        latest(&store).await,
        0,
        "a refused revocation appends no event"
    );

    let revoked = store
        .revoke_credential(X509, "01", "lost", NOW - 1)
        .await
        .expect("revoke before expiry");
    assert_eq!(revoked.expires_at, NOW);
}

/// A second revocation of one credential is `AlreadyExists` and keeps the first (reason and
/// time); the feed holds exactly one event.
pub async fn revoking_twice_is_already_exists_with_one_event<S: Datastore>(store: S) {
    store
        .record_issued(vec![issued_credential(X509, "01", NOW + 3600)])
        .await
        .expect("record");
    let first = store
        .revoke_credential(X509, "01", "key compromise", NOW)
        .await
        .expect("first revocation");

    let again = store
        .revoke_credential(X509, "01", "second thoughts", NOW + 10)
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists { .. })),
        "{again:?}"
    );
    assert_eq!(
        store.get_revocation(X509, "01").await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(store.list_revocations().await.expect("list"), [first]);
    let changes: Vec<Change> = store
        .changes_since(0, 10)
        .await
        .expect("changes")
        .into_iter()
        .map(|e| e.change)
        .collect();
    assert_eq!(
        changes,
        [Change::RevocationAdded(Revocation::feed_key(X509, "01"))]
    );
}

/// A reason longer than [`MAX_REVOCATION_REASON_BYTES`] bytes (in fewer characters) is `Invalid`
/// and revokes nothing; a reason of exactly the limit is stored whole.
pub async fn over_long_revocation_reason_is_invalid_and_changes_nothing<S: Datastore>(store: S) {
    store
        .record_issued(vec![issued_credential(X509, "01", NOW + 3600)])
        .await
        .expect("record");
    // Two bytes per character, so a limit counted in characters would let `over` through.
    let at_limit = "\u{e9}".repeat(MAX_REVOCATION_REASON_BYTES / 2);
    let over = format!("{at_limit}x");
    assert_eq!(over.len(), MAX_REVOCATION_REASON_BYTES + 1);

    let result = store.revoke_credential(X509, "01", &over, NOW).await;
    assert!(
        matches!(
            result,
            Err(StoreError::Invalid {
                field: "reason",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(store.get_revocation(X509, "01").await.expect("get"), None);
    assert_eq!(store.list_revocations().await.expect("list"), []);
    assert_eq!(
        latest(&store).await,
        0,
        "a refused revocation appends no event"
    );

    let revoked = store
        .revoke_credential(X509, "01", &at_limit, NOW)
        .await
        .expect("revoke with a reason at the limit");
    assert_eq!(revoked.reason, at_limit);
}

/// A revocation copies the SPIFFE ID, authority and expiry of the issued record, is stamped
/// with `now`, keeps the issued record, and appends exactly one `RevocationAdded` event at
/// `now` whose key parses back to the credential (even a `jti` holding colons).
pub async fn revocation_appends_one_keyed_event<S: Datastore>(store: S) {
    let mut jwt = issued_credential(JWT, "jti:with:colons", NOW + 300);
    jwt.authority_id = "jwt-1".to_owned();
    jwt.spiffe_id = spiffe_id_of("spiffe://example.org/api");
    store
        .record_issued(vec![issued_credential(X509, "0a", NOW + 3600), jwt.clone()])
        .await
        .expect("record");
    let before = latest(&store).await;

    let revocation = store
        .revoke_credential(JWT, &jwt.id, "token leaked", NOW + 5)
        .await
        .expect("revoke");
    let expected = Revocation {
        kind: JWT,
        id: jwt.id.clone(),
        spiffe_id: jwt.spiffe_id.clone(),
        authority_id: jwt.authority_id.clone(),
        reason: "token leaked".to_owned(),
        revoked_at: NOW + 5,
        expires_at: jwt.expires_at,
    };
    assert_eq!(revocation, expected);
    assert_eq!(
        store.get_revocation(JWT, &jwt.id).await.expect("get"),
        Some(expected)
    );
    assert_eq!(store.get_revocation(X509, "0a").await.expect("get"), None);
    assert_eq!(
        store.get_issued(JWT, &jwt.id).await.expect("get"),
        Some(jwt.clone()),
        "the issued record stays"
    );

    let events = store.changes_since(before, 10).await.expect("changes");
    match events.as_slice() {
        [event] => {
            assert_eq!(event.at, NOW + 5, "the event carries the caller's now");
            match &event.change {
                Change::RevocationAdded(key) => assert_eq!(
                    Revocation::parse_feed_key(key),
                    Some((JWT, jwt.id.as_str()))
                ),
                other => panic!("expected RevocationAdded, got {other:?}"),
            }
        }
        other => panic!("expected one event, got {other:?}"),
    }
    assert_eq!(latest(&store).await, before + 1);
}

/// Revocations are listed by `revoked_at`, then kind name (`jwt_svid` before `x509_svid`), then
/// id, whatever the order they were made in.
pub async fn revocations_are_listed_by_time_kind_and_id<S: Datastore>(store: S) {
    let credentials = [
        (X509, "ff", NOW + 2),
        (X509, "0b", NOW + 1),
        (JWT, "0c", NOW + 1),
        (X509, "0a", NOW + 1),
        (JWT, "0a", NOW),
    ];
    store
        .record_issued(
            credentials
                .iter()
                .map(|(kind, id, _)| issued_credential(*kind, id, NOW + 3600))
                .collect(),
        )
        .await
        .expect("record");
    let mut revoked = Vec::new();
    for (kind, id, at) in credentials {
        revoked.push(
            store
                .revoke_credential(kind, id, "decommissioned", at)
                .await
                .expect("revoke"),
        );
    }

    let listed = store.list_revocations().await.expect("list");
    let order: Vec<(i64, CredentialKind, &str)> = listed
        .iter()
        .map(|r| (r.revoked_at, r.kind, r.id.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (NOW, JWT, "0a"),
            (NOW + 1, JWT, "0c"),
            (NOW + 1, X509, "0a"),
            (NOW + 1, X509, "0b"),
            (NOW + 2, X509, "ff"),
        ]
    );
    revoked.sort_by(|a, b| {
        (a.revoked_at, a.kind.as_str(), &a.id).cmp(&(b.revoked_at, b.kind.as_str(), &b.id))
    });
    assert_eq!(listed, revoked);
}

/// Pruning at `before` forgets the issued credentials and revocations whose credential expired
/// before it (not at it), with one `RevocationDeleted` event per revocation and none for an
/// unrevoked credential; a pruned credential can no longer be revoked.
pub async fn prune_forgets_only_credentials_expired_before_cutoff<S: Datastore>(store: S) {
    let cutoff = NOW + 20;
    store
        .record_issued(vec![
            issued_credential(X509, "a1", NOW + 10),
            issued_credential(JWT, "a2", NOW + 10),
            issued_credential(X509, "b", NOW + 10),
            issued_credential(X509, "c", cutoff),
            issued_credential(JWT, "d", NOW + 30),
        ])
        .await
        .expect("record");
    let mut kept_revocation = None;
    for (kind, id) in [(X509, "a1"), (JWT, "a2"), (X509, "c")] {
        let revocation = store
            .revoke_credential(kind, id, "compromised", NOW)
            .await
            .expect("revoke");
        kept_revocation = Some(revocation);
    }
    assert_eq!(store.list_revocations().await.expect("list").len(), 3);
    let before = latest(&store).await;

    assert_eq!(
        store
            .prune_expired_credentials(cutoff)
            .await
            .expect("prune"),
        2
    );
    let mut deleted: Vec<Change> = store
        .changes_since(before, 10)
        .await
        .expect("changes")
        .into_iter()
        .map(|e| e.change)
        .collect();
    // The order of events within one prune is not part of the contract.
    deleted.sort_by(|a, b| a.key().cmp(b.key()));
    assert_eq!(
        deleted,
        [
            Change::RevocationDeleted(Revocation::feed_key(JWT, "a2")),
            Change::RevocationDeleted(Revocation::feed_key(X509, "a1")),
        ]
    );

    for (kind, id) in [(X509, "a1"), (JWT, "a2"), (X509, "b")] {
        assert_eq!(
            store.get_issued(kind, id).await.expect("get"),
            None,
            "{id} expired before the cutoff"
        );
        assert_eq!(store.get_revocation(kind, id).await.expect("get"), None);
    }
    for (kind, id) in [(X509, "c"), (JWT, "d")] {
        assert!(
            store.get_issued(kind, id).await.expect("get").is_some(),
            "{id} expires at or after the cutoff"
        );
    }
    let kept = kept_revocation.expect("three revocations were made");
    assert_eq!(
        store.get_revocation(X509, "c").await.expect("get"),
        Some(kept.clone())
    );
    assert_eq!(store.list_revocations().await.expect("list"), [kept]);

    // `a1` would still be valid at NOW: only the prune explains that it is unknown.
    let again = store.revoke_credential(X509, "a1", "again", NOW).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    assert_eq!(
        store
            .prune_expired_credentials(cutoff)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(latest(&store).await, before + 2);
}
