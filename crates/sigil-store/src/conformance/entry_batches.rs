//! Conformance cases for creating entries in batches: all or nothing, one event per entry in
//! order, the batch bound, and concurrent batch writers against a reader of the feed.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::{NOW, latest, new_entry};
use crate::{Change, Datastore, EntryFilter, MAX_ENTRY_BATCH, NewEntry, StoreError};

const WEB: &str = "spiffe://example.org/web";
const AGENT_1: &str = "spiffe://example.org/sigil/agent/join_token/1";

/// `count` distinct valid entries, told apart by a uid selector starting at `first_uid`.
fn distinct_entries(first_uid: usize, count: usize) -> Vec<NewEntry> {
    (first_uid..first_uid + count)
        .map(|uid| new_entry(WEB, AGENT_1, &[&format!("unix:uid:{uid}")]))
        .collect()
}

/// A batch is stored whole: each entry as `create_entry` would store it (normalised, revision
/// 1), returned in the order given, with one `EntryCreated` event each in that order, stamped
/// with `now`. An empty batch stores nothing and appends nothing.
pub async fn entry_batch_lands_whole_with_events_in_order<S: Datastore>(store: S) {
    let empty = store.create_entries(Vec::new(), NOW).await.expect("empty");
    assert!(empty.is_empty());
    assert_eq!(latest(&store).await, 0, "an empty batch appends no event");

    let mut batch = distinct_entries(1, 3);
    // Unsorted and repeated selectors come back normalised, as from `create_entry`.
    batch.push(new_entry(
        WEB,
        AGENT_1,
        &["unix:uid:9", "docker:label:app", "unix:uid:9"],
    ));
    let created = store
        .create_entries(batch.clone(), NOW)
        .await
        .expect("create batch");
    assert_eq!(created.len(), batch.len());
    for (entry, spec) in created.iter().zip(batch) {
        assert_eq!(entry.spec, spec.normalized().expect("valid spec"));
        assert_eq!(
            (entry.revision, entry.created_at, entry.updated_at),
            (1, NOW, NOW)
        );
        assert_eq!(
            store.get_entry(&entry.id).await.expect("get").as_ref(),
            Some(entry)
        );
    }
    let mut stored = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    let mut expected = created.clone();
    stored.sort_by(|a, b| a.id.cmp(&b.id));
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(stored, expected);

    let events = store.changes_since(0, 100).await.expect("changes");
    let changes: Vec<&Change> = events.iter().map(|e| &e.change).collect();
    let wanted: Vec<Change> = created
        .iter()
        .map(|e| Change::EntryCreated(e.id.clone()))
        .collect();
    assert_eq!(changes, wanted.iter().collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.at == NOW), "{events:?}");
    assert!(
        events
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.seq < b.seq))
    );
}

/// One refused entry refuses the whole batch: an invalid one, a duplicate of a stored entry,
/// or a duplicate of an earlier entry of the same batch (selectors in another order). The
/// error names that entry's index and wraps the error `create_entry` gives; nothing is stored
/// and no event appended. The same batch without the bad entry is then stored, so each refusal
/// was that entry's alone.
pub async fn entry_batch_with_one_refused_entry_stores_nothing<S: Datastore>(store: S) {
    let stored = store
        .create_entry(new_entry(WEB, AGENT_1, &["unix:uid:1", "unix:gid:2"]), NOW)
        .await
        .expect("create");
    let before = latest(&store).await;
    let good = distinct_entries(100, 4);

    let mut blank_owner = new_entry(WEB, AGENT_1, &["unix:uid:5"]);
    blank_owner.owner = " ".to_owned();
    let cases = [
        ("invalid", 2, blank_owner),
        (
            "duplicate of a stored entry",
            1,
            new_entry(WEB, AGENT_1, &["unix:gid:2", "unix:uid:1"]),
        ),
        (
            "duplicate within the batch",
            3,
            new_entry(WEB, AGENT_1, &["unix:uid:100"]),
        ),
    ];
    for (what, index, bad) in cases {
        let mut batch = good.clone();
        batch.insert(index, bad);
        let result = store.create_entries(batch, NOW + 1).await;
        let Err(StoreError::InBatch { index: got, error }) = &result else {
            panic!("{what}: expected a refusal naming the entry, got {result:?}");
        };
        assert_eq!(*got, index, "{what}: {result:?}");
        let expected_kind = match error.as_ref() {
            StoreError::Invalid { field: "owner", .. } => what == "invalid",
            StoreError::AlreadyExists { kind: "entry", .. } => what != "invalid",
            _ => false,
        };
        assert!(expected_kind, "{what}: {result:?}");
        let message = result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            message.starts_with(&format!("entry {index} of the batch: ")),
            "{what}: {message}"
        );
        let all = store
            .list_entries(&EntryFilter::default())
            .await
            .expect("list");
        assert_eq!(all, std::slice::from_ref(&stored), "{what}: nothing stored");
        assert_eq!(latest(&store).await, before, "{what}: no event appended");
    }

    let created = store
        .create_entries(good, NOW + 1)
        .await
        .expect("good batch");
    assert_eq!(created.len(), 4);
    assert_eq!(latest(&store).await, before + 4);
}

/// A batch of [`MAX_ENTRY_BATCH`] entries is stored; one more entry makes it `Invalid` (field
/// `entries`) and nothing is stored.
pub async fn oversized_entry_batch_is_refused<S: Datastore>(store: S) {
    let too_many = distinct_entries(0, MAX_ENTRY_BATCH + 1);
    let result = store.create_entries(too_many, NOW).await;
    assert!(
        matches!(
            &result,
            Err(StoreError::Invalid {
                field: "entries",
                ..
            })
        ),
        "{:?}",
        result.map(|created| created.len())
    );
    assert!(
        store
            .list_entries(&EntryFilter::default())
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(latest(&store).await, 0);

    let created = store
        .create_entries(distinct_entries(0, MAX_ENTRY_BATCH), NOW)
        .await
        .expect("a full batch");
    assert_eq!(created.len(), MAX_ENTRY_BATCH);
    let events = store
        .changes_since(0, u32::try_from(MAX_ENTRY_BATCH + 1).expect("fits"))
        .await
        .expect("changes");
    assert_eq!(events.len(), MAX_ENTRY_BATCH);
}

/// Several tasks write batches at once while a reader follows `changes_since(cursor)`: every
/// batch lands whole, the reader sees every event exactly once and in feed order (it never
/// moves its cursor past an event that commits later), and each batch's events keep its order.
pub async fn concurrent_entry_batches_keep_the_feed_gap_free<S: Datastore>(store: S) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 5;
    const SIZE: usize = 20;
    let store = Arc::new(store);
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let mut created = Vec::new();
            for batch in 0..BATCHES {
                let first = (writer * BATCHES + batch) * SIZE;
                let entries = store
                    .create_entries(distinct_entries(first, SIZE), NOW)
                    .await
                    .expect("batch");
                created.push(entries);
            }
            created
        });
    }
    let reader = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let total = u64::try_from(WRITERS * BATCHES * SIZE).expect("fits");
            let (mut cursor, mut seen) = (0, Vec::new());
            while u64::try_from(seen.len()).expect("fits") < total {
                let page = store.changes_since(cursor, 7).await.expect("changes");
                match page.last() {
                    Some(last) => cursor = last.seq,
                    None => tokio::task::yield_now().await,
                }
                seen.extend(page);
            }
            seen
        }
    });
    let mut batches = Vec::new();
    while let Some(joined) = writers.join_next().await {
        batches.extend(joined.expect("writer ran"));
    }
    let seen = reader.await.expect("reader ran");

    let total = WRITERS * BATCHES * SIZE;
    let all = store
        .changes_since(0, u32::try_from(total + 1).expect("fits"))
        .await
        .expect("changes");
    assert_eq!(all.len(), total);
    assert_eq!(seen, all, "the reader skipped or repeated an event");
    let position: std::collections::HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(n, e)| match &e.change {
            Change::EntryCreated(id) => (id.as_str(), n),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    let mut ids = HashSet::new();
    for batch in &batches {
        let places: Vec<usize> = batch
            .iter()
            .map(|entry| position.get(entry.id.as_str()).copied().expect("has event"))
            .collect();
        assert!(places.windows(2).all(|w| matches!(w, [a, b] if a < b)));
        ids.extend(batch.iter().map(|entry| entry.id.clone()));
    }
    assert_eq!(ids.len(), total, "every entry once");
    let stored = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(stored.len(), total);
}
