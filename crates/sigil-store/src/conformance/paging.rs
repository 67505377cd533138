//! Conformance cases for keyset paging of entries and agents: pages cover every record exactly
//! once in key order, filters combine with paging, prefixes are literal, a zero limit is refused.

use sigil_spiffe::TrustDomain;

use super::{NOW, agent, new_entry};
use crate::{Datastore, Entry, EntryFilter, StoreError};

const AGENT_1: &str = "spiffe://example.org/sigil/agent/join_token/1";
const AGENT_2: &str = "spiffe://example.org/sigil/agent/join_token/2";

/// Reads every page of `filter` with `limit`, checking that each page is full but the last.
async fn all_pages<S: Datastore>(store: &S, filter: &EntryFilter, limit: u32) -> Vec<Entry> {
    let mut all: Vec<Entry> = Vec::new();
    let mut pages = 0;
    loop {
        let after = all.last().map(|e| e.id.clone());
        let page = store
            .list_entries_page(filter, after.as_deref(), limit)
            .await
            .expect("list page");
        pages += 1;
        assert!(pages < 100, "paging does not end");
        let len = page.len();
        assert!(len <= limit as usize, "page of {len} over limit {limit}");
        all.extend(page);
        if len < limit as usize {
            return all;
        }
    }
}

fn td(name: &str) -> TrustDomain {
    TrustDomain::parse(name).expect("fixture trust domain parses")
}

/// Seven entries read in pages of 1, 2, 3, 7 and 50 come back each exactly once, in id order,
/// the same as the unpaged list.
pub async fn entry_pages_cover_everything_once_in_id_order<S: Datastore>(store: S) {
    for n in 0..7 {
        store
            .create_entry(
                new_entry(
                    &format!("spiffe://example.org/w/{n}"),
                    AGENT_1,
                    &["unix:uid:1"],
                ),
                NOW,
            )
            .await
            .expect("create");
    }
    let everything = store
        .list_entries(&EntryFilter::default())
        .await
        .expect("list");
    assert_eq!(everything.len(), 7);
    let mut ids: Vec<&str> = everything.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    let in_order: Vec<&str> = everything.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(in_order, ids, "the unpaged list is in id order");

    for limit in [1, 2, 3, 7, 50] {
        let paged = all_pages(&store, &EntryFilter::default(), limit).await;
        assert_eq!(paged, everything, "pages of {limit}");
    }
    let past_the_end = store
        .list_entries_page(&EntryFilter::default(), ids.last().copied(), 5)
        .await
        .expect("page after the last id");
    assert!(past_the_end.is_empty());
}

/// The prefix and federation filters narrow the result, combine with each other and with the
/// older filters, and page like the unfiltered list.
pub async fn entry_page_filters_combine<S: Datastore>(store: S) {
    let spec = |id: &str, parent: &str, federates: &[&str]| {
        let mut spec = new_entry(id, parent, &["unix:uid:1"]);
        spec.federates_with = federates.iter().map(|name| td(name)).collect();
        spec
    };
    let mut created = Vec::new();
    for (id, parent, federates) in [
        ("spiffe://example.org/team/a", AGENT_1, &["other.org"][..]),
        (
            "spiffe://example.org/team/b",
            AGENT_2,
            &["other.org", "third.org"][..],
        ),
        ("spiffe://example.org/team/c", AGENT_1, &[][..]),
        ("spiffe://example.org/teams/d", AGENT_1, &["third.org"][..]),
        ("spiffe://example.org/solo", AGENT_1, &["other.org"][..]),
    ] {
        let entry = store
            .create_entry(spec(id, parent, federates), NOW)
            .await
            .expect("create");
        created.push(entry);
    }
    let ids_of = |names: &[&str]| {
        let mut ids: Vec<String> = created
            .iter()
            .filter(|e| names.contains(&e.spec.spiffe_id.as_str()))
            .map(|e| e.id.clone())
            .collect();
        ids.sort();
        ids
    };
    let prefix = |p: &str| Some(p.to_owned());
    let cases = [
        (
            EntryFilter {
                spiffe_id_prefix: prefix("spiffe://example.org/team/"),
                ..EntryFilter::default()
            },
            ids_of(&[
                "spiffe://example.org/team/a",
                "spiffe://example.org/team/b",
                "spiffe://example.org/team/c",
            ]),
        ),
        (
            EntryFilter {
                spiffe_id_prefix: prefix("spiffe://example.org/team"),
                ..EntryFilter::default()
            },
            ids_of(&[
                "spiffe://example.org/team/a",
                "spiffe://example.org/team/b",
                "spiffe://example.org/team/c",
                "spiffe://example.org/teams/d",
            ]),
        ),
        (
            EntryFilter {
                federates_with: Some(td("other.org")),
                ..EntryFilter::default()
            },
            ids_of(&[
                "spiffe://example.org/team/a",
                "spiffe://example.org/team/b",
                "spiffe://example.org/solo",
            ]),
        ),
        (
            EntryFilter {
                spiffe_id_prefix: prefix("spiffe://example.org/team/"),
                federates_with: Some(td("other.org")),
                ..EntryFilter::default()
            },
            ids_of(&["spiffe://example.org/team/a", "spiffe://example.org/team/b"]),
        ),
        (
            EntryFilter {
                spiffe_id_prefix: prefix("spiffe://example.org/team/"),
                federates_with: Some(td("other.org")),
                parent_id: Some(super::spiffe_id_of(AGENT_1)),
                ..EntryFilter::default()
            },
            ids_of(&["spiffe://example.org/team/a"]),
        ),
        (
            EntryFilter {
                federates_with: Some(td("nobody.org")),
                ..EntryFilter::default()
            },
            Vec::new(),
        ),
    ];
    for (filter, expected) in cases {
        for limit in [1, 2, 100] {
            let found: Vec<String> = all_pages(&store, &filter, limit)
                .await
                .into_iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(found, expected, "{filter:?} in pages of {limit}");
        }
        let unpaged: Vec<String> = store
            .list_entries(&filter)
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(unpaged, expected, "{filter:?} unpaged");
    }
}

/// `%` and `_` in a SPIFFE ID prefix match only themselves, never any character (as LIKE would).
pub async fn entry_prefix_is_literal<S: Datastore>(store: S) {
    let underscore = store
        .create_entry(
            new_entry("spiffe://example.org/a_b", AGENT_1, &["unix:uid:1"]),
            NOW,
        )
        .await
        .expect("create");
    store
        .create_entry(
            new_entry("spiffe://example.org/axb", AGENT_1, &["unix:uid:1"]),
            NOW,
        )
        .await
        .expect("create");
    // The positive path first: a plain prefix matches both.
    assert_eq!(ids(&store, "spiffe://example.org/a").await.len(), 2);
    assert_eq!(
        ids(&store, "spiffe://example.org/a_").await,
        std::slice::from_ref(&underscore.id)
    );
    assert!(ids(&store, "spiffe://example.org/%").await.is_empty());
    assert!(ids(&store, "spiffe://example.org/a%").await.is_empty());
    assert!(ids(&store, "%").await.is_empty());
    assert!(ids(&store, "spiffe://example.org/a_b/").await.is_empty());
}

/// The ids of entries under literal `prefix`, paged and unpaged alike.
async fn ids<S: Datastore>(store: &S, prefix: &str) -> Vec<String> {
    let filter = EntryFilter {
        spiffe_id_prefix: Some(prefix.to_owned()),
        ..EntryFilter::default()
    };
    let page = store
        .list_entries_page(&filter, None, 10)
        .await
        .expect("list page");
    let unpaged = store.list_entries(&filter).await.expect("list");
    assert_eq!(page, unpaged, "{prefix}");
    page.into_iter().map(|e| e.id).collect()
}

/// A page of zero records is refused as `Invalid` (field `limit`) for entries and agents.
pub async fn zero_page_limit_is_invalid<S: Datastore>(store: S) {
    store
        .create_entry(
            new_entry("spiffe://example.org/web", AGENT_1, &["unix:uid:1"]),
            NOW,
        )
        .await
        .expect("create");
    store
        .create_agent(agent(AGENT_1))
        .await
        .expect("create agent");
    // The positive path first: a limit of one returns one of each.
    let entries = store
        .list_entries_page(&EntryFilter::default(), None, 1)
        .await
        .expect("entries page");
    assert_eq!(entries.len(), 1);
    let agents = store.list_agents_page(None, 1).await.expect("agents page");
    assert_eq!(agents.len(), 1);

    let entries = store
        .list_entries_page(&EntryFilter::default(), None, 0)
        .await;
    assert!(
        matches!(entries, Err(StoreError::Invalid { field: "limit", .. })),
        "{entries:?}"
    );
    let agents = store.list_agents_page(None, 0).await;
    assert!(
        matches!(agents, Err(StoreError::Invalid { field: "limit", .. })),
        "{agents:?}"
    );
}

/// Five agents read in pages of 1, 2 and 5 come back each exactly once, in SPIFFE ID order.
pub async fn agent_pages_cover_everything_once_in_id_order<S: Datastore>(store: S) {
    for n in [3, 1, 4, 0, 2] {
        store
            .create_agent(agent(&format!(
                "spiffe://example.org/sigil/agent/join_token/{n}"
            )))
            .await
            .expect("create agent");
    }
    let everything = store.list_agents().await.expect("list");
    assert_eq!(everything.len(), 5);
    for limit in [1u32, 2, 5, 9] {
        let mut paged = Vec::new();
        loop {
            let after = paged
                .last()
                .map(|a: &crate::AttestedAgent| a.spiffe_id.to_string());
            let page = store
                .list_agents_page(after.as_deref(), limit)
                .await
                .expect("agents page");
            let len = page.len();
            assert!(len <= limit as usize);
            paged.extend(page);
            if len < limit as usize {
                break;
            }
        }
        assert_eq!(paged, everything, "pages of {limit}");
    }
}
