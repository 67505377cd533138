//! Conformance cases for signed CRLs: the compare-and-set write by CRL number with its feed
//! event, the bounds, the cascade with the authority, and concurrent writers.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{NOW, authority, latest};
use crate::{AuthorityKind, Change, Datastore, MAX_CRL_DER_BYTES, StoreError, StoredCrl};

/// The intermediate whose CRLs the cases write.
const INTERMEDIATE: &str = "int-b";

/// A CRL of [`INTERMEDIATE`] signed by replica `b`, numbered `number`, its bytes telling the
/// numbers apart.
fn crl(number: u64) -> StoredCrl {
    StoredCrl {
        authority_id: INTERMEDIATE.to_owned(),
        replica: "b".to_owned(),
        number,
        der: format!("crl {number}").into_bytes(),
        next_update: NOW + 86_400,
    }
}

/// Stores the intermediate the CRLs belong to.
async fn create_intermediate<S: Datastore>(store: &S) {
    let mut record = authority(INTERMEDIATE, AuthorityKind::X509Intermediate, NOW);
    record.replica = "b".to_owned();
    store
        .create_authority(record)
        .await
        .expect("create authority");
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

/// `put_crl` stores an authority's first CRL and one with a higher number, returning `true`
/// with one `CrlChanged` each (which the watch announces); one with an equal or lower number
/// returns `false`, leaves the stored CRL and appends nothing. `list_crls` returns what is
/// stored, by authority id.
pub async fn crls_are_replaced_only_by_higher_numbers<S: Datastore>(store: S) {
    create_intermediate(&store).await;
    let mut root = authority("root-a", AuthorityKind::X509Root, NOW);
    root.replica = "a".to_owned();
    store.create_authority(root).await.expect("create root");
    assert_eq!(store.list_crls().await.expect("list"), []);

    let mut watch = store.watch_changes();
    watch.mark_unchanged();
    let before = latest(&store).await;
    assert!(store.put_crl(crl(5)).await.expect("first put"));
    assert_eq!(
        changes_after(&store, before).await,
        [Change::CrlChanged(INTERMEDIATE.into())]
    );
    assert!(
        watch.has_changed().expect("watch open"),
        "the write is announced"
    );
    assert_eq!(store.list_crls().await.expect("list"), [crl(5)]);

    let before = latest(&store).await;
    let mut same_number = crl(5);
    same_number.der = b"another crl 5".to_vec();
    same_number.next_update = NOW + 1;
    for stale in [same_number, crl(4), crl(0)] {
        let number = stale.number;
        assert!(
            !store.put_crl(stale).await.expect("stale put"),
            "number {number} is not higher than 5"
        );
    }
    assert_eq!(store.list_crls().await.expect("list"), [crl(5)]);
    assert_eq!(latest(&store).await, before, "no write, no event");

    let mut other = crl(1);
    other.authority_id = "root-a".to_owned();
    other.replica = "a".to_owned();
    assert!(store.put_crl(other.clone()).await.expect("other put"));
    assert!(store.put_crl(crl(6)).await.expect("newer put"));
    assert_eq!(
        changes_after(&store, before).await,
        [
            Change::CrlChanged("root-a".into()),
            Change::CrlChanged(INTERMEDIATE.into()),
        ]
    );
    // Ordered by authority id.
    assert_eq!(store.list_crls().await.expect("list"), [crl(6), other]);
}

/// A CRL of an authority that does not exist is `NotFound`; an empty or oversized CRL, or a
/// number past the signed 64-bit range, is `Invalid`; none stores anything or appends an event.
pub async fn invalid_crls_are_refused_and_nothing_stored<S: Datastore>(store: S) {
    let before = latest(&store).await;
    let orphan = store.put_crl(crl(1)).await;
    assert!(
        matches!(&orphan, Err(StoreError::NotFound { kind: "authority", id }) if id == INTERMEDIATE),
        "{orphan:?}"
    );
    create_intermediate(&store).await;
    let before_bad = latest(&store).await;
    assert_eq!(before_bad, before + 1, "only the authority's own event");

    let mut oversized = crl(2);
    oversized.der = vec![0x30; MAX_CRL_DER_BYTES + 1];
    let mut empty = crl(3);
    empty.der.clear();
    let mut unnamed = crl(4);
    unnamed.authority_id.clear();
    for (bad, field) in [
        (oversized, "der"),
        (empty, "der"),
        (crl(u64::MAX), "number"),
        (unnamed, "authority_id"),
    ] {
        let refused = store.put_crl(bad).await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid { field: f, .. }) if *f == field),
            "{field}: {refused:?}"
        );
    }
    // The largest CRL allowed is stored.
    let mut largest = crl(7);
    largest.der = vec![0x30; MAX_CRL_DER_BYTES];
    assert_eq!(latest(&store).await, before_bad);
    assert_eq!(store.list_crls().await.expect("list"), []);
    assert!(store.put_crl(largest.clone()).await.expect("largest put"));
    assert_eq!(store.list_crls().await.expect("list"), [largest]);
}

/// Deleting an authority deletes its CRL with it (appending only `AuthorityDeleted`).
pub async fn a_crl_goes_with_its_authority<S: Datastore>(store: S) {
    create_intermediate(&store).await;
    assert!(store.put_crl(crl(3)).await.expect("put"));
    let before = latest(&store).await;
    store
        .delete_authority(INTERMEDIATE)
        .await
        .expect("delete authority");
    assert_eq!(store.list_crls().await.expect("list"), []);
    assert_eq!(
        changes_after(&store, before).await,
        [Change::AuthorityDeleted(INTERMEDIATE.into())]
    );
    // The authority is gone, so its CRL cannot come back.
    let refused = store.put_crl(crl(4)).await;
    assert!(
        matches!(refused, Err(StoreError::NotFound { .. })),
        "{refused:?}"
    );
}

/// Writers racing with CRLs of every number leave the highest one stored, however they
/// interleave; each write that returned `true` appended one event.
pub async fn concurrent_crl_writes_keep_the_highest_number<S: Datastore>(store: S) {
    const WRITERS: u64 = 16;
    create_intermediate(&store).await;
    let before = latest(&store).await;
    let store = Arc::new(store);
    let mut tasks = JoinSet::new();
    // Interleaved high and low numbers, so a low one often arrives after a high one.
    for i in 0..WRITERS {
        let number = if i % 2 == 0 { WRITERS - i } else { i };
        let store = Arc::clone(&store);
        tasks.spawn(async move { store.put_crl(crl(number)).await.expect("put") });
    }
    let mut written = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("task ran") {
            written += 1;
        }
    }
    assert_eq!(store.list_crls().await.expect("list"), [crl(WRITERS)]);
    assert!(written >= 1);
    let changes = changes_after(store.as_ref(), before).await;
    assert_eq!(
        changes,
        vec![Change::CrlChanged(INTERMEDIATE.into()); written],
        "one event per write that won"
    );
}
