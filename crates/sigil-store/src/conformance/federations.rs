//! Conformance cases for federation relationships: validated (an owner required), written column
//! by column, the profile rule held by the store, the foreign bundle deleted with the
//! relationship, each write with its event.

use std::sync::Arc;

use super::{NOW, bundle, latest, spiffe_federation, spiffe_id_of, web_federation};
use crate::{
    BundleEndpointProfile, Change, ChangeEvent, Datastore, FederationRelationship,
    FederationUpdate, MAX_BUNDLE_ENDPOINT_URL_BYTES, MAX_OWNER_BYTES, NewFederationRelationship,
    StoreError, StoreResult,
};

const PARTNER: &str = "partner.example";
const PARTNER_URL: &str = "https://partner.example/bundle";
const PARTNER_SERVER: &str = "spiffe://partner.example/sigil/server";
const WEB_PARTNER: &str = "web.example";
const WEB_PARTNER_URL: &str = "https://bundles.web.example/web.example.json";

/// What a relationship made from `new`, created and updated at those times, looks like.
fn stored(
    new: &NewFederationRelationship,
    created_at: i64,
    updated_at: i64,
) -> FederationRelationship {
    FederationRelationship {
        trust_domain: new.trust_domain.clone(),
        bundle_endpoint_url: new.bundle_endpoint_url.clone(),
        profile: new.profile,
        endpoint_spiffe_id: new.endpoint_spiffe_id.clone(),
        owner: new.owner.clone(),
        created_at,
        updated_at,
    }
}

/// The events appended after `after`.
async fn events_after<S: Datastore>(store: &S, after: u64) -> Vec<ChangeEvent> {
    store.changes_since(after, 100).await.expect("changes")
}

async fn changes_after<S: Datastore>(store: &S, after: u64) -> Vec<Change> {
    events_after(store, after)
        .await
        .into_iter()
        .map(|e| e.change)
        .collect()
}

fn assert_invalid<T: std::fmt::Debug>(result: StoreResult<T>, expected_field: &str) {
    assert!(
        matches!(&result, Err(StoreError::Invalid { field, .. }) if *field == expected_field),
        "expected invalid `{expected_field}`, got {result:?}"
    );
}

/// Create, get (by name and by trust domain ID), list in trust-domain order, update and delete
/// round-trip; a string that is not a trust domain reads as absent and updates or deletes
/// nothing.
pub async fn federation_crud_round_trips<S: Datastore>(store: S) {
    let partner = spiffe_federation(PARTNER);
    let mut web = web_federation(WEB_PARTNER, WEB_PARTNER_URL);
    web.owner = "Web Team <web@example.org>".to_owned();
    let created = store
        .create_federation(web.clone(), NOW)
        .await
        .expect("create web");
    assert_eq!(created, stored(&web, NOW, NOW));
    let created = store
        .create_federation(partner.clone(), NOW + 1)
        .await
        .expect("create partner");
    assert_eq!(created, stored(&partner, NOW + 1, NOW + 1));

    assert_eq!(
        store.get_federation(PARTNER).await.expect("get"),
        Some(stored(&partner, NOW + 1, NOW + 1))
    );
    assert_eq!(
        store
            .get_federation("spiffe://partner.example")
            .await
            .expect("get by trust domain ID"),
        Some(stored(&partner, NOW + 1, NOW + 1))
    );
    assert_eq!(
        store.get_federation("other.example").await.expect("get"),
        None
    );
    for not_a_trust_domain in ["", "Partner.Example", "spiffe://partner.example/x", "a b"] {
        assert_eq!(
            store
                .get_federation(not_a_trust_domain)
                .await
                .expect("get of a non trust domain"),
            None,
            "{not_a_trust_domain:?}"
        );
    }
    assert_eq!(
        store.list_federations().await.expect("list"),
        [stored(&partner, NOW + 1, NOW + 1), stored(&web, NOW, NOW)]
    );

    // https_spiffe -> https_web: the endpoint ID goes in the same update.
    let updated = store
        .update_federation(
            PARTNER,
            FederationUpdate {
                bundle_endpoint_url: Some("https://partner.example:8443/b".to_owned()),
                profile: Some(BundleEndpointProfile::HttpsWeb),
                endpoint_spiffe_id: Some(None),
                owner: Some("team-partners".to_owned()),
            },
            NOW + 10,
        )
        .await
        .expect("update");
    let expected = FederationRelationship {
        trust_domain: partner.trust_domain.clone(),
        bundle_endpoint_url: "https://partner.example:8443/b".to_owned(),
        profile: BundleEndpointProfile::HttpsWeb,
        endpoint_spiffe_id: None,
        owner: "team-partners".to_owned(),
        created_at: NOW + 1,
        updated_at: NOW + 10,
    };
    assert_eq!(updated, expected);
    assert_eq!(
        store.get_federation(PARTNER).await.expect("get"),
        Some(expected.clone())
    );

    store.delete_federation(PARTNER).await.expect("delete");
    assert_eq!(store.get_federation(PARTNER).await.expect("get"), None);
    assert_eq!(
        store.list_federations().await.expect("list"),
        [stored(&web, NOW, NOW)]
    );

    let before = latest(&store).await;
    let deleted_again = store.delete_federation(PARTNER).await;
    assert!(
        matches!(&deleted_again, Err(StoreError::NotFound { id, .. }) if id == PARTNER),
        "{deleted_again:?}"
    );
    let update_missing = store
        .update_federation(
            PARTNER,
            FederationUpdate {
                bundle_endpoint_url: Some(PARTNER_URL.to_owned()),
                ..FederationUpdate::default()
            },
            NOW + 20,
        )
        .await;
    assert!(
        matches!(update_missing, Err(StoreError::NotFound { .. })),
        "{update_missing:?}"
    );
    for not_a_trust_domain in ["Web.Example", "not a domain"] {
        let deleted = store.delete_federation(not_a_trust_domain).await;
        assert!(
            matches!(deleted, Err(StoreError::NotFound { .. })),
            "{deleted:?}"
        );
        let updated = store
            .update_federation(not_a_trust_domain, FederationUpdate::default(), NOW + 20)
            .await;
        assert!(
            matches!(updated, Err(StoreError::NotFound { .. })),
            "{updated:?}"
        );
    }
    assert_eq!(
        store.list_federations().await.expect("list"),
        [stored(&web, NOW, NOW)]
    );
    assert_eq!(latest(&store).await, before, "failed calls append no event");
}

/// A second relationship with a trust domain is `AlreadyExists`, and the first is left as it
/// was, with no event.
pub async fn duplicate_federation_is_rejected_and_nothing_changes<S: Datastore>(store: S) {
    let partner = spiffe_federation(PARTNER);
    store
        .create_federation(partner.clone(), NOW)
        .await
        .expect("create");
    let before = latest(&store).await;

    let impostor = web_federation(PARTNER, "https://evil.example/bundle");
    let duplicate = store.create_federation(impostor, NOW + 5).await;
    assert!(
        matches!(duplicate, Err(StoreError::AlreadyExists { .. })),
        "{duplicate:?}"
    );
    assert_eq!(
        store.list_federations().await.expect("list"),
        [stored(&partner, NOW, NOW)]
    );
    assert_eq!(latest(&store).await, before);
}

/// An update writes only the columns it names (and `updated_at`); an update naming none writes
/// nothing, returns the stored relationship and appends no event.
pub async fn federation_update_changes_only_the_named_columns<S: Datastore>(store: S) {
    let partner = spiffe_federation(PARTNER);
    store
        .create_federation(partner.clone(), NOW)
        .await
        .expect("create");

    let url_only = store
        .update_federation(
            PARTNER,
            FederationUpdate {
                bundle_endpoint_url: Some("https://bundles.partner.example/".to_owned()),
                ..FederationUpdate::default()
            },
            NOW + 1,
        )
        .await
        .expect("update url");
    let mut expected = stored(&partner, NOW, NOW + 1);
    expected.bundle_endpoint_url = "https://bundles.partner.example/".to_owned();
    assert_eq!(url_only, expected);

    let other_server = spiffe_id_of("spiffe://partner.example/federation/endpoint");
    let id_only = store
        .update_federation(
            PARTNER,
            FederationUpdate {
                endpoint_spiffe_id: Some(Some(other_server.clone())),
                ..FederationUpdate::default()
            },
            NOW + 2,
        )
        .await
        .expect("update endpoint id");
    expected.endpoint_spiffe_id = Some(other_server);
    expected.updated_at = NOW + 2;
    assert_eq!(id_only, expected);
    assert_eq!(
        store.get_federation(PARTNER).await.expect("get"),
        Some(expected.clone())
    );

    let owner_only = store
        .update_federation(
            PARTNER,
            FederationUpdate {
                owner: Some("team-partners".to_owned()),
                ..FederationUpdate::default()
            },
            NOW + 3,
        )
        .await
        .expect("update owner");
    expected.owner = "team-partners".to_owned();
    expected.updated_at = NOW + 3;
    assert_eq!(owner_only, expected, "only the owner and updated_at change");
    assert_eq!(
        store.get_federation(PARTNER).await.expect("get"),
        Some(expected.clone())
    );

    let before = latest(&store).await;
    let unchanged = store
        .update_federation(PARTNER, FederationUpdate::default(), NOW + 4)
        .await
        .expect("empty update");
    assert_eq!(unchanged, expected, "an empty update writes nothing");
    assert_eq!(
        latest(&store).await,
        before,
        "an empty update appends no event"
    );
    let missing = store
        .update_federation("other.example", FederationUpdate::default(), NOW + 4)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { .. })),
        "{missing:?}"
    );
}

/// Updates that would leave a row whose endpoint SPIFFE ID does not fit its profile are refused
/// by the store (not only by the update's own check, which cannot see the stored row) as
/// `Invalid`, and the row and the feed stay as they were. Changing the profile together with
/// the endpoint ID is allowed.
pub async fn federation_update_breaking_the_profile_rule_is_refused<S: Datastore>(store: S) {
    let web = web_federation(WEB_PARTNER, WEB_PARTNER_URL);
    let partner = spiffe_federation(PARTNER);
    store
        .create_federation(web.clone(), NOW)
        .await
        .expect("create");
    store
        .create_federation(partner.clone(), NOW)
        .await
        .expect("create");

    // The positive path: both columns change together and the row fits the rule.
    let server = spiffe_id_of("spiffe://web.example/bundle-server");
    let switched = store
        .update_federation(
            WEB_PARTNER,
            FederationUpdate {
                profile: Some(BundleEndpointProfile::HttpsSpiffe),
                endpoint_spiffe_id: Some(Some(server.clone())),
                ..FederationUpdate::default()
            },
            NOW + 1,
        )
        .await
        .expect("switch to https_spiffe with an endpoint id");
    assert_eq!(switched.profile, BundleEndpointProfile::HttpsSpiffe);
    assert_eq!(switched.endpoint_spiffe_id, Some(server));
    let back = store
        .update_federation(
            WEB_PARTNER,
            FederationUpdate {
                profile: Some(BundleEndpointProfile::HttpsWeb),
                endpoint_spiffe_id: Some(None),
                ..FederationUpdate::default()
            },
            NOW + 2,
        )
        .await
        .expect("switch back to https_web");
    let web_now = stored(&web, NOW, NOW + 2);
    assert_eq!(back, web_now);

    let partner_now = stored(&partner, NOW, NOW);
    let before = latest(&store).await;
    let breaking = [
        // https_web row -> https_spiffe, no endpoint id.
        (
            WEB_PARTNER,
            FederationUpdate {
                profile: Some(BundleEndpointProfile::HttpsSpiffe),
                ..FederationUpdate::default()
            },
        ),
        // https_web row gets an endpoint id.
        (
            WEB_PARTNER,
            FederationUpdate {
                bundle_endpoint_url: Some("https://web.example/other".to_owned()),
                endpoint_spiffe_id: Some(Some(spiffe_id_of("spiffe://web.example/x"))),
                ..FederationUpdate::default()
            },
        ),
        // https_spiffe row loses its endpoint id.
        (
            PARTNER,
            FederationUpdate {
                endpoint_spiffe_id: Some(None),
                ..FederationUpdate::default()
            },
        ),
        // https_spiffe row -> https_web, keeping its endpoint id.
        (
            PARTNER,
            FederationUpdate {
                profile: Some(BundleEndpointProfile::HttpsWeb),
                ..FederationUpdate::default()
            },
        ),
    ];
    for (trust_domain, update) in breaking {
        let result = store
            .update_federation(trust_domain, update.clone(), NOW + 5)
            .await;
        assert!(
            matches!(
                &result,
                Err(StoreError::Invalid {
                    field: "endpoint_spiffe_id",
                    ..
                })
            ),
            "{update:?}: {result:?}"
        );
    }
    assert_eq!(
        store.list_federations().await.expect("list"),
        [partner_now, web_now]
    );
    assert_eq!(
        latest(&store).await,
        before,
        "refused updates append no event"
    );
}

/// Deleting a relationship deletes the foreign trust domain's bundle in the same call, with
/// `FederationDeleted` then `BundleDeleted`; other bundles stay. Without a bundle only
/// `FederationDeleted` is appended; a bundle whose trust domain has no relationship is not
/// touched by a refused delete.
pub async fn deleting_a_federation_deletes_its_bundle<S: Datastore>(store: S) {
    store
        .create_federation(spiffe_federation(PARTNER), NOW)
        .await
        .expect("create");
    store
        .create_federation(web_federation(WEB_PARTNER, WEB_PARTNER_URL), NOW)
        .await
        .expect("create");
    store.put_bundle(bundle(PARTNER, 3)).await.expect("put");
    store
        .put_bundle(bundle("example.org", 1))
        .await
        .expect("put");
    assert!(store.get_bundle(PARTNER).await.expect("get").is_some());
    let before = latest(&store).await;

    store.delete_federation(PARTNER).await.expect("delete");
    assert_eq!(store.get_bundle(PARTNER).await.expect("get"), None);
    assert_eq!(
        store.list_bundles().await.expect("list"),
        [bundle("example.org", 1)]
    );
    assert_eq!(
        changes_after(&store, before).await,
        [
            Change::FederationDeleted(PARTNER.into()),
            Change::BundleDeleted(PARTNER.into()),
        ]
    );

    let before = latest(&store).await;
    store.delete_federation(WEB_PARTNER).await.expect("delete");
    assert_eq!(
        changes_after(&store, before).await,
        [Change::FederationDeleted(WEB_PARTNER.into())]
    );

    let before = latest(&store).await;
    let refused = store.delete_federation("example.org").await;
    assert!(
        matches!(refused, Err(StoreError::NotFound { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.list_bundles().await.expect("list"),
        [bundle("example.org", 1)]
    );
    assert_eq!(latest(&store).await, before);
}

/// Create, update and delete each append one event keyed by the trust domain, stamped with the
/// caller's `now` where the call carries one.
pub async fn federation_writes_append_keyed_events<S: Datastore>(store: S) {
    let before = latest(&store).await;
    store
        .create_federation(spiffe_federation(PARTNER), NOW)
        .await
        .expect("create");
    store
        .update_federation(
            "spiffe://partner.example",
            FederationUpdate {
                bundle_endpoint_url: Some(PARTNER_URL.to_owned() + "/v2"),
                ..FederationUpdate::default()
            },
            NOW + 7,
        )
        .await
        .expect("update");
    store.delete_federation(PARTNER).await.expect("delete");

    let events = events_after(&store, before).await;
    let changes: Vec<&Change> = events.iter().map(|e| &e.change).collect();
    assert_eq!(
        changes,
        [
            &Change::FederationChanged(PARTNER.into()),
            &Change::FederationChanged(PARTNER.into()),
            &Change::FederationDeleted(PARTNER.into()),
        ]
    );
    let stamps: Vec<i64> = events.iter().take(2).map(|e| e.at).collect();
    assert_eq!(stamps, [NOW, NOW + 7]);
    assert!(
        events
            .windows(2)
            .all(|w| matches!(w, [a, b] if a.seq < b.seq)),
        "{events:?}"
    );
}

/// Relationships that break a rule are `Invalid` and store nothing: a URL that is not https,
/// one over [`MAX_BUNDLE_ENDPOINT_URL_BYTES`] (one at the limit is accepted), whitespace in it,
/// an endpoint ID with `https_web`, none with `https_spiffe`, an owner that is empty, blank or
/// over [`MAX_OWNER_BYTES`] (one at the limit is accepted); an update with a bad URL or owner
/// changes nothing.
pub async fn invalid_federation_is_refused_and_nothing_stored<S: Datastore>(store: S) {
    // The positive path: a URL and an owner of exactly the limit.
    let prefix = "https://long.example/";
    let at_limit = format!(
        "{prefix}{}",
        "a".repeat(MAX_BUNDLE_ENDPOINT_URL_BYTES - prefix.len())
    );
    let mut long = web_federation("long.example", &at_limit);
    long.owner = "o".repeat(MAX_OWNER_BYTES);
    store
        .create_federation(long.clone(), NOW)
        .await
        .expect("a URL at the limit is accepted");
    let before = latest(&store).await;

    let mut plain_http = web_federation(WEB_PARTNER, "http://web.example/bundle");
    let over_limit = web_federation(WEB_PARTNER, &format!("{at_limit}a"));
    let spaced = web_federation(WEB_PARTNER, "https://web.example/my bundle");
    let mut web_with_id = web_federation(WEB_PARTNER, WEB_PARTNER_URL);
    web_with_id.endpoint_spiffe_id = Some(spiffe_id_of(PARTNER_SERVER));
    let mut spiffe_without_id = spiffe_federation(PARTNER);
    spiffe_without_id.endpoint_spiffe_id = None;
    let owned_by = |owner: String| NewFederationRelationship {
        owner,
        ..web_federation(WEB_PARTNER, WEB_PARTNER_URL)
    };
    let cases = [
        (plain_http.clone(), "bundle_endpoint_url"),
        (over_limit, "bundle_endpoint_url"),
        (spaced, "bundle_endpoint_url"),
        (web_with_id, "endpoint_spiffe_id"),
        (spiffe_without_id, "endpoint_spiffe_id"),
        (owned_by(String::new()), "owner"),
        (owned_by(" \t ".to_owned()), "owner"),
        (owned_by("o".repeat(MAX_OWNER_BYTES + 1)), "owner"),
    ];
    for (new, field) in cases {
        assert_invalid(store.create_federation(new, NOW).await, field);
    }
    // The same relationship over https is fine: only the scheme was wrong.
    plain_http.bundle_endpoint_url = WEB_PARTNER_URL.to_owned();
    assert!(plain_http.validate().is_ok());

    for url in ["http://long.example/bundle", "https://long.example/\u{0}"] {
        let update = FederationUpdate {
            bundle_endpoint_url: Some(url.to_owned()),
            ..FederationUpdate::default()
        };
        assert_invalid(
            store
                .update_federation("long.example", update, NOW + 1)
                .await,
            "bundle_endpoint_url",
        );
    }
    for owner in [
        String::new(),
        "  ".to_owned(),
        "o".repeat(MAX_OWNER_BYTES + 1),
    ] {
        let update = FederationUpdate {
            owner: Some(owner),
            ..FederationUpdate::default()
        };
        assert_invalid(
            store
                .update_federation("long.example", update, NOW + 1)
                .await,
            "owner",
        );
    }
    assert_eq!(
        store.list_federations().await.expect("list"),
        [stored(&long, NOW, NOW)]
    );
    assert_eq!(
        latest(&store).await,
        before,
        "refused calls append no event"
    );
}

/// Writers updating different columns of one relationship at once (URL, endpoint ID, owner) lose
/// nothing: each column ends with the value its last writer set.
pub async fn concurrent_updates_of_different_columns_lose_nothing<S: Datastore>(store: S) {
    const ROUNDS: usize = 8;
    store
        .create_federation(spiffe_federation(PARTNER), NOW)
        .await
        .expect("create");
    let store = Arc::new(store);
    let url_writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                let update = FederationUpdate {
                    bundle_endpoint_url: Some(format!("https://partner.example/{round}")),
                    ..FederationUpdate::default()
                };
                store
                    .update_federation(PARTNER, update, NOW + 1)
                    .await
                    .expect("update url");
            }
        })
    };
    let id_writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                let id = spiffe_id_of(&format!("spiffe://partner.example/server/{round}"));
                let update = FederationUpdate {
                    endpoint_spiffe_id: Some(Some(id)),
                    ..FederationUpdate::default()
                };
                store
                    .update_federation(PARTNER, update, NOW + 1)
                    .await
                    .expect("update endpoint id");
            }
        })
    };
    let owner_writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                let update = FederationUpdate {
                    owner: Some(format!("team-{round}")),
                    ..FederationUpdate::default()
                };
                store
                    .update_federation(PARTNER, update, NOW + 1)
                    .await
                    .expect("update owner");
            }
        })
    };
    url_writer.await.expect("url writer ran");
    id_writer.await.expect("id writer ran");
    owner_writer.await.expect("owner writer ran");

    let last = ROUNDS - 1;
    let relationship = store
        .get_federation(PARTNER)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        relationship.bundle_endpoint_url,
        format!("https://partner.example/{last}")
    );
    assert_eq!(
        relationship.endpoint_spiffe_id,
        Some(spiffe_id_of(&format!(
            "spiffe://partner.example/server/{last}"
        )))
    );
    assert_eq!(relationship.owner, format!("team-{last}"));
    assert_eq!(relationship.profile, BundleEndpointProfile::HttpsSpiffe);
}
