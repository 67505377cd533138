//! Conformance cases for registration entries: CRUD, normalisation, uniqueness, validation,
//! filters and optimistic concurrency.

use std::collections::BTreeMap;

use sigil_spiffe::TrustDomain;

use super::{NOW, latest, new_entry, spiffe_id_of};
use crate::{
    Datastore, Entry, EntryFilter, MAX_DESCRIPTION_BYTES, MAX_LABEL_VALUE_BYTES, MAX_OWNER_BYTES,
    StoreError,
};

const WEB: &str = "spiffe://example.org/web";
const DB: &str = "spiffe://example.org/db";
const AGENT_1: &str = "spiffe://example.org/sigil/agent/join_token/1";
const AGENT_2: &str = "spiffe://example.org/sigil/agent/join_token/2";

/// Create, get, list, update and delete one entry; each step returns what the next one reads.
pub async fn entry_crud_round_trips<S: Datastore>(store: S) {
    let spec = new_entry(WEB, AGENT_1, &["unix:uid:1000"]);
    let created = store.create_entry(spec.clone(), NOW).await.expect("create");
    assert_eq!(created.id.len(), 32, "id is 16 random bytes in hex");
    assert!(created.id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(created.spec, spec);
    assert_eq!(created.revision, 1);
    assert_eq!((created.created_at, created.updated_at), (NOW, NOW));

    let got = store.get_entry(&created.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(&created));
    let all = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(all, std::slice::from_ref(&created));

    let mut changed = spec.clone();
    changed.owner = "team-web".to_owned();
    let updated = store
        .update_entry(&created.id, changed.clone(), None, NOW + 10)
        .await
        .expect("update");
    assert_eq!(updated.spec, changed);
    assert_eq!(updated.revision, 2);
    assert_eq!((updated.created_at, updated.updated_at), (NOW, NOW + 10));
    assert_eq!(
        store.get_entry(&created.id).await.expect("get").as_ref(),
        Some(&updated)
    );

    let deleted = store.delete_entry(&created.id).await.expect("delete");
    assert_eq!(deleted, updated);
    assert_eq!(store.get_entry(&created.id).await.expect("get"), None);
    let again = store.delete_entry(&created.id).await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    let all = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert!(all.is_empty());
}

/// Selectors come back sorted and deduplicated; DNS names and federated trust domains
/// deduplicated in first-seen order.
pub async fn entry_is_stored_normalised<S: Datastore>(store: S) {
    // `unix-ext` sorts after `unix` by selector type, though `-` sorts before `:` as text.
    let mut spec = new_entry(
        WEB,
        AGENT_1,
        &[
            "unix:uid:1000",
            "unix-ext:x",
            "docker:label:app",
            "unix:uid:1000",
        ],
    );
    spec.dns_names = ["web.example", "api.example", "web.example"]
        .map(String::from)
        .to_vec();
    spec.federates_with = ["b.org", "a.org", "b.org"]
        .map(|td| TrustDomain::parse(td).expect("trust domain"))
        .to_vec();
    let created = store.create_entry(spec, NOW).await.expect("create");
    let selectors: Vec<String> = created
        .spec
        .selectors
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        selectors,
        ["docker:label:app", "unix:uid:1000", "unix-ext:x"]
    );
    assert_eq!(created.spec.dns_names, ["web.example", "api.example"]);
    let tds: Vec<&str> = created
        .spec
        .federates_with
        .iter()
        .map(TrustDomain::as_str)
        .collect();
    assert_eq!(tds, ["b.org", "a.org"]);
    let got = store.get_entry(&created.id).await.expect("get");
    assert_eq!(got, Some(created));
}

/// Same SPIFFE ID, parent and selector set (in any order) is a duplicate; nothing is stored.
pub async fn duplicate_entry_is_rejected_and_nothing_stored<S: Datastore>(store: S) {
    let first = store
        .create_entry(new_entry(WEB, AGENT_1, &["unix:uid:1", "unix:gid:2"]), NOW)
        .await
        .expect("create");
    let before = latest(&store).await;
    let duplicate = store
        .create_entry(new_entry(WEB, AGENT_1, &["unix:gid:2", "unix:uid:1"]), NOW)
        .await;
    assert!(
        matches!(
            duplicate,
            Err(StoreError::AlreadyExists { kind: "entry", .. })
        ),
        "{duplicate:?}"
    );
    let all = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(all, [first]);
    assert_eq!(latest(&store).await, before);

    // Changing any one of the three makes a different entry.
    for spec in [
        new_entry(DB, AGENT_1, &["unix:uid:1", "unix:gid:2"]),
        new_entry(WEB, AGENT_2, &["unix:uid:1", "unix:gid:2"]),
        new_entry(WEB, AGENT_1, &["unix:uid:1"]),
    ] {
        store.create_entry(spec, NOW).await.expect("distinct entry");
    }
    let all = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 4);
}

/// Blank or oversized owner, oversized description and empty selectors are refused on create
/// and update, naming the field, and nothing changes.
pub async fn invalid_entry_is_rejected_and_nothing_stored<S: Datastore>(store: S) {
    let valid = new_entry(WEB, AGENT_1, &["unix:uid:1"]);
    let mut cases = Vec::new();
    let mut spec = valid.clone();
    spec.owner = String::new();
    cases.push(("owner", spec));
    let mut spec = valid.clone();
    spec.owner = "o".repeat(MAX_OWNER_BYTES + 1);
    cases.push(("owner", spec));
    let mut spec = valid.clone();
    spec.description = "d".repeat(MAX_DESCRIPTION_BYTES + 1);
    cases.push(("description", spec));
    let mut spec = valid.clone();
    spec.selectors.clear();
    cases.push(("selectors", spec));

    for (field, spec) in &cases {
        let result = store.create_entry(spec.clone(), NOW).await;
        assert!(
            matches!(&result, Err(StoreError::Invalid { field: f, .. }) if f == field),
            "create with bad {field}: {result:?}"
        );
    }
    assert!(
        store
            .list_entries(&EntryFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(latest(&store).await, 0);

    let stored = store.create_entry(valid, NOW).await.expect("create");
    for (field, spec) in cases {
        let result = store.update_entry(&stored.id, spec, None, NOW + 1).await;
        assert!(
            matches!(&result, Err(StoreError::Invalid { field: f, .. }) if *f == field),
            "update with bad {field}: {result:?}"
        );
    }
    let got = store.get_entry(&stored.id).await.expect("get");
    assert_eq!(got, Some(stored));
}

/// Labels come back as written from create, batch create and update (an update replaces them
/// whole); a bad key is refused on each path, naming `labels` and the key, and nothing changes.
pub async fn entry_labels_round_trip_and_bad_keys_are_refused<S: Datastore>(store: S) {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // Quotes and backslashes are escaped in the stored JSON; the value is still 128 bytes.
    let value_at_limit = format!("{}abc", "\"\\= ~".repeat(25));
    assert_eq!(value_at_limit.len(), MAX_LABEL_VALUE_BYTES);
    let mut spec = new_entry(WEB, AGENT_1, &["unix:uid:1"]);
    spec.labels = labels(&[
        ("tier", "web"),
        ("app.kubernetes.io/name", "shop=eu"),
        ("empty", ""),
        ("quoted", &value_at_limit),
    ]);
    let created = store.create_entry(spec.clone(), NOW).await.expect("create");
    assert_eq!(created.spec.labels, spec.labels);
    let got = store.get_entry(&created.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(&created));

    let mut first = new_entry(DB, AGENT_1, &["unix:uid:2"]);
    first.labels = labels(&[("tier", "db")]);
    let second = new_entry(DB, AGENT_2, &["unix:uid:2"]);
    let batch = store
        .create_entries(vec![first.clone(), second], NOW)
        .await
        .expect("batch create");
    let [stored_first, stored_second] = batch.as_slice() else {
        panic!("two entries stored: {batch:?}");
    };
    assert_eq!(stored_first.spec.labels, first.labels);
    assert!(stored_second.spec.labels.is_empty());
    for stored in &batch {
        let got = store.get_entry(&stored.id).await.expect("get");
        assert_eq!(got.as_ref(), Some(stored));
    }

    let mut changed = spec.clone();
    changed.labels = labels(&[("tier", "api")]);
    let updated = store
        .update_entry(&created.id, changed.clone(), None, NOW + 1)
        .await
        .expect("update");
    assert_eq!(
        updated.spec.labels, changed.labels,
        "an update replaces the labels"
    );
    let got = store.get_entry(&created.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(&updated));

    let before = latest(&store).await;
    let mut bad = new_entry(WEB, AGENT_2, &["unix:uid:3"]);
    bad.labels = labels(&[("tier", "web"), ("Tier", "web")]);
    let refused = |result: &crate::StoreResult<_>| {
        matches!(
            result.as_ref().map_err(StoreError::cause),
            Err(StoreError::Invalid { field: "labels", reason }) if reason.contains("`Tier`")
        )
    };
    let result = store.create_entry(bad.clone(), NOW).await.map(|_| ());
    assert!(refused(&result), "create: {result:?}");
    let result = store
        .create_entries(
            vec![new_entry(WEB, AGENT_2, &["unix:uid:4"]), bad.clone()],
            NOW,
        )
        .await
        .map(|_| ());
    assert!(refused(&result), "batch create: {result:?}");
    let result = store
        .update_entry(&created.id, bad, None, NOW + 2)
        .await
        .map(|_| ());
    assert!(refused(&result), "update: {result:?}");
    assert_eq!(latest(&store).await, before, "nothing was written");
    let all = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    let got = store.get_entry(&created.id).await.expect("get");
    assert_eq!(got.as_ref(), Some(&updated));
}

/// Each filter field narrows the result; set fields combine with AND; results are ordered by id.
pub async fn list_entries_applies_every_filter<S: Datastore>(store: S) {
    let web_1 = store
        .create_entry(
            new_entry(WEB, AGENT_1, &["unix:uid:1000", "unix:gid:1"]),
            NOW,
        )
        .await
        .expect("create");
    let web_2 = store
        .create_entry(new_entry(WEB, AGENT_2, &["unix:uid:1000"]), NOW)
        .await
        .expect("create");
    let mut db_spec = new_entry(DB, AGENT_1, &["unix:uid:2000", "unix:gid:1"]);
    db_spec.owner = "team-db".to_owned();
    let db = store.create_entry(db_spec, NOW).await.expect("create");

    let ids = |entries: &[&Entry]| {
        let mut ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids
    };
    let selectors = |list: &[&str]| list.iter().map(|s| super::selector(s)).collect::<Vec<_>>();
    let cases = [
        (EntryFilter::default(), ids(&[&web_1, &web_2, &db])),
        (
            EntryFilter {
                spiffe_id: Some(spiffe_id_of(WEB)),
                ..EntryFilter::default()
            },
            ids(&[&web_1, &web_2]),
        ),
        (
            EntryFilter {
                parent_id: Some(spiffe_id_of(AGENT_1)),
                ..EntryFilter::default()
            },
            ids(&[&web_1, &db]),
        ),
        (
            EntryFilter {
                selectors: selectors(&["unix:gid:1"]),
                ..EntryFilter::default()
            },
            ids(&[&web_1, &db]),
        ),
        (
            EntryFilter {
                selectors: selectors(&["unix:uid:1000", "unix:gid:1"]),
                ..EntryFilter::default()
            },
            ids(&[&web_1]),
        ),
        (
            EntryFilter {
                selectors: selectors(&["unix:uid:1000", "unix:uid:1000"]),
                ..EntryFilter::default()
            },
            ids(&[&web_1, &web_2]),
        ),
        (
            EntryFilter {
                selectors: selectors(&["unix:uid:1000", "unix:uid:2000"]),
                ..EntryFilter::default()
            },
            ids(&[]),
        ),
        (
            EntryFilter {
                owner: Some("team-db".to_owned()),
                ..EntryFilter::default()
            },
            ids(&[&db]),
        ),
        (
            EntryFilter {
                parent_id: Some(spiffe_id_of(AGENT_1)),
                selectors: selectors(&["unix:uid:1000"]),
                ..EntryFilter::default()
            },
            ids(&[&web_1]),
        ),
        (
            EntryFilter {
                spiffe_id: Some(spiffe_id_of(DB)),
                owner: Some("team-test".to_owned()),
                ..EntryFilter::default()
            },
            ids(&[]),
        ),
    ];
    for (filter, expected) in cases {
        let found = store.list_entries(&filter).await.expect("list");
        let found: Vec<String> = found.into_iter().map(|e| e.id).collect();
        assert_eq!(found, expected, "{filter:?}");
    }
}

/// Each update bumps the revision and `updated_at`, keeps `created_at`, and the new selectors
/// (not the old ones) are what filters see.
pub async fn update_bumps_revision_and_replaces_selectors<S: Datastore>(store: S) {
    let created = store
        .create_entry(new_entry(WEB, AGENT_1, &["unix:uid:1"]), NOW)
        .await
        .expect("create");
    let second = store
        .update_entry(
            &created.id,
            new_entry(WEB, AGENT_1, &["unix:uid:2"]),
            Some(1),
            NOW + 5,
        )
        .await
        .expect("update to revision 2");
    let third = store
        .update_entry(
            &created.id,
            new_entry(WEB, AGENT_1, &["unix:uid:3"]),
            Some(2),
            NOW + 9,
        )
        .await
        .expect("update to revision 3");
    assert_eq!((second.revision, second.updated_at), (2, NOW + 5));
    assert_eq!((third.revision, third.updated_at), (3, NOW + 9));
    assert_eq!(third.created_at, NOW);

    for (selector, expected) in [("unix:uid:1", 0), ("unix:uid:2", 0), ("unix:uid:3", 1)] {
        let filter = EntryFilter {
            selectors: vec![super::selector(selector)],
            ..EntryFilter::default()
        };
        let found = store.list_entries(&filter).await.expect("list");
        assert_eq!(found.len(), expected, "entries with {selector}");
    }
}

/// An update that expects an old revision fails with `RevisionConflict` and changes nothing.
pub async fn stale_revision_is_rejected_and_entry_unchanged<S: Datastore>(store: S) {
    let created = store
        .create_entry(new_entry(WEB, AGENT_1, &["unix:uid:1"]), NOW)
        .await
        .expect("create");
    let current = store
        .update_entry(
            &created.id,
            new_entry(WEB, AGENT_1, &["unix:uid:2"]),
            Some(1),
            NOW + 1,
        )
        .await
        .expect("first update");
    let before = latest(&store).await;
    let stale = store
        .update_entry(
            &created.id,
            new_entry(WEB, AGENT_1, &["unix:uid:3"]),
            Some(1),
            NOW + 2,
        )
        .await;
    assert!(
        matches!(
            &stale,
            Err(StoreError::RevisionConflict { id, expected: 1, found: 2, .. }) if *id == created.id
        ),
        "{stale:?}"
    );
    assert_eq!(
        store.get_entry(&created.id).await.expect("get"),
        Some(current)
    );
    assert_eq!(latest(&store).await, before);
}

/// Updating an entry into another entry's identity fails with `AlreadyExists`.
pub async fn update_into_existing_identity_is_rejected<S: Datastore>(store: S) {
    store
        .create_entry(new_entry(WEB, AGENT_1, &["unix:uid:1"]), NOW)
        .await
        .expect("create first");
    let second = store
        .create_entry(new_entry(DB, AGENT_1, &["unix:uid:1"]), NOW)
        .await
        .expect("create second");
    let result = store
        .update_entry(
            &second.id,
            new_entry(WEB, AGENT_1, &["unix:uid:1"]),
            None,
            NOW + 1,
        )
        .await;
    assert!(
        matches!(result, Err(StoreError::AlreadyExists { .. })),
        "{result:?}"
    );
    assert_eq!(
        store.get_entry(&second.id).await.expect("get"),
        Some(second)
    );
}

/// Reading, updating or deleting an unknown id: `None`, then `NotFound` twice.
pub async fn missing_entry_is_not_found<S: Datastore>(store: S) {
    let id = "00000000000000000000000000000000";
    assert_eq!(store.get_entry(id).await.expect("get"), None);
    let update = store
        .update_entry(id, new_entry(WEB, AGENT_1, &["unix:uid:1"]), None, NOW)
        .await;
    assert!(
        matches!(&update, Err(StoreError::NotFound { kind: "entry", id: got }) if got == id),
        "{update:?}"
    );
    let delete = store.delete_entry(id).await;
    assert!(
        matches!(delete, Err(StoreError::NotFound { .. })),
        "{delete:?}"
    );
    assert_eq!(latest(&store).await, 0);
}
