//! Conformance cases for brokered-credential leases and stored credential targets: create and
//! get, filters and paging, renewal within bounds, the revocation claim's compare-and-swap
//! (also under eight concurrent claimers), finishing, due leases and the next due time,
//! pruning, and targets' CRUD with the revision compare-and-swap. None appends a change event.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{NOW, latest};
use crate::{
    Datastore, Lease, LeaseFilter, LeaseState, MAX_LEASE_NAME_BYTES, MAX_LEASE_PAGE,
    MAX_REVOKE_REASON_BYTES, MAX_TARGET_SPEC_BYTES, StoreError,
};

const WEB: &str = "spiffe://example.org/web";
const API: &str = "spiffe://example.org/api";
const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a";

/// An active lease `id` on target `orders` (role `reader`) for [`WEB`] under entry `e-1`
/// through [`AGENT`], created at `NOW`, expiring at `NOW + 600`, renewable up to
/// `NOW + 3600`.
pub fn lease(id: &str) -> Lease {
    Lease {
        id: id.to_owned(),
        target: "orders".to_owned(),
        role: "reader".to_owned(),
        spiffe_id: WEB.to_owned(),
        entry_id: Some("e-1".to_owned()),
        agent_id: Some(AGENT.to_owned()),
        username: format!("v_{id}"),
        created_at: NOW,
        expires_at: NOW + 600,
        max_expires_at: NOW + 3600,
        renewed_at: None,
        state: LeaseState::Active,
        claim_until: None,
        revoked_at: None,
        revoke_reason: None,
        replica: "r1".to_owned(),
    }
}

/// A lease id in the stored form: `lease_` and 32 hex digits.
fn lease_id(n: u32) -> String {
    format!("lease_{n:032x}")
}

fn ids(leases: &[Lease]) -> Vec<String> {
    leases.iter().map(|lease| lease.id.clone()).collect()
}

fn invalid_field<T: std::fmt::Debug>(result: Result<T, StoreError>) -> &'static str {
    match result {
        Err(StoreError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

async fn stored<S: Datastore>(store: &S, id: &str) -> Lease {
    store
        .get_lease(id)
        .await
        .expect("get_lease")
        .expect("lease is stored")
}

/// A lease round-trips with every field; a second one with the same id is `AlreadyExists` and
/// leaves the first unchanged; an invalid one is refused; a missing id is `None`. No event.
pub async fn lease_create_get_and_duplicate<S: Datastore>(store: S) {
    let before = latest(&store).await;
    let mut first = lease(&lease_id(1));
    first.renewed_at = Some(NOW + 5);
    first.revoke_reason = Some("kept".to_owned());
    store.create_lease(first.clone()).await.expect("create");
    assert_eq!(stored(&store, &first.id).await, first);

    let mut public = lease(&lease_id(2));
    public.entry_id = None;
    public.agent_id = None;
    store.create_lease(public.clone()).await.expect("create");
    assert_eq!(stored(&store, &public.id).await, public);

    let mut duplicate = lease(&first.id);
    duplicate.username = "other".to_owned();
    let err = store.create_lease(duplicate).await.expect_err("duplicate");
    assert!(
        matches!(err, StoreError::AlreadyExists { kind: "lease", .. }),
        "{err:?}"
    );
    assert_eq!(stored(&store, &first.id).await, first);

    assert_eq!(store.get_lease("lease_missing").await.expect("get"), None);

    for (field, broken) in [
        (
            "id",
            Lease {
                id: String::new(),
                ..lease("x")
            },
        ),
        (
            "id",
            Lease {
                id: "i".repeat(MAX_LEASE_NAME_BYTES + 1),
                ..lease("x")
            },
        ),
        (
            "target",
            Lease {
                target: String::new(),
                ..lease("x")
            },
        ),
        (
            "role",
            Lease {
                role: "r".repeat(MAX_LEASE_NAME_BYTES + 1),
                ..lease("x")
            },
        ),
        (
            "spiffe_id",
            Lease {
                spiffe_id: String::new(),
                ..lease("x")
            },
        ),
        (
            "username",
            Lease {
                username: String::new(),
                ..lease("x")
            },
        ),
        (
            "username",
            Lease {
                username: "a\0b".to_owned(),
                ..lease("x")
            },
        ),
        (
            "expires_at",
            Lease {
                expires_at: NOW + 3601,
                ..lease("x")
            },
        ),
    ] {
        assert_eq!(invalid_field(store.create_lease(broken).await), field);
    }
    assert_eq!(store.get_lease("x").await.expect("get"), None);
    assert_eq!(latest(&store).await, before, "leases append no event");
}

/// Each filter field narrows the list, filters combine, and pages follow `after` and `limit`
/// in id order.
pub async fn list_leases_filters_and_pages<S: Datastore>(store: S) {
    for n in 1..=6 {
        let mut lease = lease(&lease_id(n));
        if n % 2 == 0 {
            lease.spiffe_id = API.to_owned();
            lease.entry_id = Some("e-2".to_owned());
            lease.agent_id = None;
        }
        if n >= 5 {
            lease.target = "billing".to_owned();
            lease.role = "writer".to_owned();
        }
        store.create_lease(lease).await.expect("create");
    }
    store
        .claim_lease_revocation(&lease_id(3), "manual", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("claimed");

    let list = |filter: LeaseFilter| {
        let store = &store;
        async move { ids(&store.list_leases(&filter).await.expect("list_leases")) }
    };
    let expect = |ns: &[u32]| ns.iter().map(|n| lease_id(*n)).collect::<Vec<_>>();

    assert_eq!(
        list(LeaseFilter::default()).await,
        expect(&[1, 2, 3, 4, 5, 6])
    );
    assert_eq!(
        list(LeaseFilter {
            spiffe_id: Some(API.to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[2, 4, 6])
    );
    assert_eq!(
        list(LeaseFilter {
            entry_id: Some("e-1".to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[1, 3, 5])
    );
    assert_eq!(
        list(LeaseFilter {
            agent_id: Some(AGENT.to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[1, 3, 5])
    );
    assert_eq!(
        list(LeaseFilter {
            target: Some("billing".to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[5, 6])
    );
    assert_eq!(
        list(LeaseFilter {
            role: Some("reader".to_owned()),
            spiffe_id: Some(WEB.to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[1, 3])
    );
    assert_eq!(
        list(LeaseFilter {
            state: Some(LeaseState::Revoking),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[3])
    );
    assert_eq!(
        list(LeaseFilter {
            state: Some(LeaseState::Active),
            target: Some("orders".to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[1, 2, 4])
    );
    assert!(
        list(LeaseFilter {
            target: Some("nothing".to_owned()),
            ..LeaseFilter::default()
        })
        .await
        .is_empty()
    );

    // Pages of two cover everything once, in id order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = list(LeaseFilter {
            after: after.clone(),
            limit: 2,
            ..LeaseFilter::default()
        })
        .await;
        assert!(page.len() <= 2, "{page:?}");
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, expect(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(
        list(LeaseFilter {
            after: Some(lease_id(4)),
            spiffe_id: Some(API.to_owned()),
            ..LeaseFilter::default()
        })
        .await,
        expect(&[6])
    );
}

/// A limit above the cap returns at most [`MAX_LEASE_PAGE`] leases.
pub async fn lease_pages_are_capped<S: Datastore>(store: S) {
    let total = MAX_LEASE_PAGE + 2;
    for n in 0..total {
        store
            .create_lease(lease(&lease_id(n)))
            .await
            .expect("create");
    }
    for limit in [0, u32::MAX] {
        let page = store
            .list_leases(&LeaseFilter {
                limit,
                ..LeaseFilter::default()
            })
            .await
            .expect("list");
        assert_eq!(page.len(), MAX_LEASE_PAGE as usize, "limit {limit}");
    }
    let due = store
        .due_leases(NOW + 3600, u32::MAX)
        .await
        .expect("due_leases");
    assert_eq!(due.len(), MAX_LEASE_PAGE as usize);
}

/// Renewal moves `expires_at` and sets `renewed_at` within `max_expires_at`; past it is
/// `Invalid` (`expires_at`); on an expired, revoking or revoked lease it is `Invalid`
/// (`state`); on no lease `NotFound`. A refused renewal changes nothing.
pub async fn renewal_stays_within_bounds_and_state<S: Datastore>(store: S) {
    let id = lease_id(1);
    store.create_lease(lease(&id)).await.expect("create");

    let renewed = store
        .renew_lease(&id, NOW + 1200, NOW + 100)
        .await
        .expect("renew");
    assert_eq!(renewed.expires_at, NOW + 1200);
    assert_eq!(renewed.renewed_at, Some(NOW + 100));
    assert_eq!(stored(&store, &id).await, renewed);

    let exactly_max = store
        .renew_lease(&id, NOW + 3600, NOW + 200)
        .await
        .expect("renew up to max");
    assert_eq!(exactly_max.expires_at, NOW + 3600);

    assert_eq!(
        invalid_field(store.renew_lease(&id, NOW + 3601, NOW + 300).await),
        "expires_at"
    );
    assert_eq!(stored(&store, &id).await, exactly_max);

    // Expired at `now`: too late to renew.
    assert_eq!(
        invalid_field(store.renew_lease(&id, NOW + 3600, NOW + 3600).await),
        "state"
    );

    let err = store
        .renew_lease("lease_missing", NOW + 700, NOW)
        .await
        .expect_err("missing");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let other = lease_id(2);
    store.create_lease(lease(&other)).await.expect("create");
    store
        .claim_lease_revocation(&other, "manual", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(
        invalid_field(store.renew_lease(&other, NOW + 700, NOW + 1).await),
        "state"
    );
    store
        .finish_lease_revocation(&other, NOW + 2)
        .await
        .expect("finish");
    assert_eq!(
        invalid_field(store.renew_lease(&other, NOW + 700, NOW + 3).await),
        "state"
    );
    let revoked = stored(&store, &other).await;
    assert_eq!(revoked.expires_at, NOW + 600);
    assert_eq!(revoked.renewed_at, None);
}

/// A claim is a compare-and-swap: the first takes an active lease, a second gets `None` while
/// the claim holds, an expired claim can be taken again (keeping the first reason), a revoked
/// lease cannot be claimed, a missing one is `NotFound`. Finishing marks it revoked and drops
/// the claim; finishing twice is not an error.
pub async fn claim_is_a_compare_and_swap<S: Datastore>(store: S) {
    let before = latest(&store).await;
    let id = lease_id(1);
    store.create_lease(lease(&id)).await.expect("create");

    let claimed = store
        .claim_lease_revocation(&id, "expired", NOW + 600, NOW + 660)
        .await
        .expect("claim")
        .expect("first claim wins");
    assert_eq!(claimed.state, LeaseState::Revoking);
    assert_eq!(claimed.claim_until, Some(NOW + 660));
    assert_eq!(claimed.revoke_reason.as_deref(), Some("expired"));
    assert_eq!(stored(&store, &id).await, claimed);

    for now in [NOW + 601, NOW + 660] {
        assert_eq!(
            store
                .claim_lease_revocation(&id, "other", now, now + 60)
                .await
                .expect("claim"),
            None,
            "the claim holds at {now}"
        );
    }
    assert_eq!(stored(&store, &id).await, claimed);

    let reclaimed = store
        .claim_lease_revocation(&id, "revoked by uid:0", NOW + 661, NOW + 720)
        .await
        .expect("claim")
        .expect("an expired claim can be taken again");
    assert_eq!(reclaimed.claim_until, Some(NOW + 720));
    assert_eq!(
        reclaimed.revoke_reason.as_deref(),
        Some("expired"),
        "the first reason is kept"
    );

    store
        .finish_lease_revocation(&id, NOW + 700)
        .await
        .expect("finish");
    let revoked = stored(&store, &id).await;
    assert_eq!(revoked.state, LeaseState::Revoked);
    assert_eq!(revoked.revoked_at, Some(NOW + 700));
    assert_eq!(revoked.claim_until, None);
    store
        .finish_lease_revocation(&id, NOW + 800)
        .await
        .expect("finishing twice is not an error");
    assert_eq!(stored(&store, &id).await, revoked);

    assert_eq!(
        store
            .claim_lease_revocation(&id, "again", NOW + 10_000, NOW + 10_060)
            .await
            .expect("claim"),
        None,
        "a revoked lease cannot be claimed"
    );

    for result in [
        store
            .claim_lease_revocation("lease_missing", "x", NOW, NOW + 60)
            .await
            .map(|_| ()),
        store.finish_lease_revocation("lease_missing", NOW).await,
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound { kind: "lease", .. })),
            "{result:?}"
        );
    }

    // A reason longer than the limit is cut, at a character boundary.
    let long = lease_id(2);
    store.create_lease(lease(&long)).await.expect("create");
    let reason = "é".repeat(MAX_REVOKE_REASON_BYTES);
    let claimed = store
        .claim_lease_revocation(&long, &reason, NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("claimed");
    let kept = claimed.revoke_reason.expect("reason kept");
    assert_eq!(kept.len(), MAX_REVOKE_REASON_BYTES);
    assert!(reason.starts_with(&kept));

    assert_eq!(latest(&store).await, before, "leases append no event");
}

/// Eight tasks claim one lease at once: exactly one gets it.
pub async fn concurrent_claims_of_one_lease_one_wins<S: Datastore>(store: S) {
    let id = lease_id(1);
    store.create_lease(lease(&id)).await.expect("create");
    let store = Arc::new(store);
    let mut tasks = JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        let id = id.clone();
        tasks.spawn(async move {
            store
                .claim_lease_revocation(&id, &format!("claimer {i}"), NOW + 600, NOW + 660)
                .await
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Some(lease) = joined.expect("task ran").expect("claim") {
            winners.push(lease);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins: {winners:?}");
    let winner = winners.pop().expect("one winner");
    assert_eq!(stored(&*store, &id).await, winner);
}

/// Due leases at `now`: active ones with `expires_at <= now` and revoking ones whose claim
/// ended before `now`, soonest first, at most `limit`; `next_lease_due` is the least of those
/// times, `None` when nothing is active or revoking; prune deletes only leases revoked before
/// the cutoff.
pub async fn due_leases_next_due_and_prune<S: Datastore>(store: S) {
    assert_eq!(store.next_lease_due().await.expect("next"), None);
    assert!(store.due_leases(NOW, 10).await.expect("due").is_empty());

    // 1 expires at NOW+300, 2 at NOW+100, 3 at NOW+200, 4 at NOW+5000 (not due).
    for (n, expires_at) in [
        (1, NOW + 300),
        (2, NOW + 100),
        (3, NOW + 200),
        (4, NOW + 5000),
    ] {
        let mut lease = lease(&lease_id(n));
        lease.expires_at = expires_at;
        lease.max_expires_at = expires_at;
        store.create_lease(lease).await.expect("create");
    }
    // 5 is revoking with a claim until NOW+150.
    store
        .create_lease(lease(&lease_id(5)))
        .await
        .expect("create");
    store
        .claim_lease_revocation(&lease_id(5), "manual", NOW, NOW + 150)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(store.next_lease_due().await.expect("next"), Some(NOW + 100));

    let due_at = |now: i64, limit: u32| {
        let store = &store;
        async move { ids(&store.due_leases(now, limit).await.expect("due_leases")) }
    };
    assert!(due_at(NOW + 99, 10).await.is_empty());
    assert_eq!(due_at(NOW + 100, 10).await, vec![lease_id(2)]);
    // The claim ends at NOW+150: due only after it.
    assert_eq!(due_at(NOW + 150, 10).await, vec![lease_id(2)]);
    assert_eq!(
        due_at(NOW + 300, 10).await,
        vec![lease_id(2), lease_id(5), lease_id(3), lease_id(1)]
    );
    assert_eq!(due_at(NOW + 300, 2).await, vec![lease_id(2), lease_id(5)]);

    // Claiming and finishing 2 moves the next due time to the claim.
    store
        .claim_lease_revocation(&lease_id(2), "expired", NOW + 100, NOW + 130)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(store.next_lease_due().await.expect("next"), Some(NOW + 130));
    store
        .finish_lease_revocation(&lease_id(2), NOW + 110)
        .await
        .expect("finish");
    assert_eq!(store.next_lease_due().await.expect("next"), Some(NOW + 150));
    assert_eq!(
        due_at(NOW + 300, 10).await,
        vec![lease_id(5), lease_id(3), lease_id(1)]
    );

    for n in [1, 3, 5] {
        store
            .claim_lease_revocation(&lease_id(n), "expired", NOW + 400, NOW + 460)
            .await
            .expect("claim")
            .expect("claimed");
    }
    store
        .finish_lease_revocation(&lease_id(1), NOW + 410)
        .await
        .expect("finish");
    store
        .finish_lease_revocation(&lease_id(3), NOW + 420)
        .await
        .expect("finish");
    assert_eq!(store.next_lease_due().await.expect("next"), Some(NOW + 460));

    // Revoked at NOW+110 (2), NOW+410 (1), NOW+420 (3); 4 active, 5 revoking.
    assert_eq!(store.prune_leases(NOW + 110).await.expect("prune"), 0);
    assert_eq!(store.prune_leases(NOW + 411).await.expect("prune"), 2);
    let left = ids(&store
        .list_leases(&LeaseFilter::default())
        .await
        .expect("list"));
    assert_eq!(left, vec![lease_id(3), lease_id(4), lease_id(5)]);
    assert_eq!(store.prune_leases(NOW + 100_000).await.expect("prune"), 1);
    let left = ids(&store
        .list_leases(&LeaseFilter::default())
        .await
        .expect("list"));
    assert_eq!(left, vec![lease_id(4), lease_id(5)]);
}

/// Targets: created at revision 1, listed by name, a duplicate name is `AlreadyExists`, an
/// update under the right revision bumps it and under a stale one is `RevisionConflict` and
/// changes nothing, invalid fields are refused, delete returns the target and a second delete
/// (or update) is `NotFound`. No event.
pub async fn credential_targets_crud_with_revision_cas<S: Datastore>(store: S) {
    let before = latest(&store).await;
    let created = store
        .create_credential_target("orders", "team-a", r#"{"kind":"postgres"}"#, NOW)
        .await
        .expect("create");
    assert_eq!(created.revision, 1);
    assert_eq!((created.created_at, created.updated_at), (NOW, NOW));
    assert_eq!(
        store.get_credential_target("orders").await.expect("get"),
        Some(created.clone())
    );
    store
        .create_credential_target("billing", "team-b", "{}", NOW)
        .await
        .expect("create");

    let err = store
        .create_credential_target("orders", "team-x", "{}", NOW + 1)
        .await
        .expect_err("duplicate");
    assert!(
        matches!(
            err,
            StoreError::AlreadyExists {
                kind: "credential target",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        store.get_credential_target("orders").await.expect("get"),
        Some(created.clone())
    );

    let names: Vec<String> = store
        .list_credential_targets()
        .await
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["billing".to_owned(), "orders".to_owned()]);

    let updated = store
        .update_credential_target("orders", "team-c", r#"{"kind":"mysql"}"#, 1, NOW + 10)
        .await
        .expect("update");
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.owner, "team-c");
    assert_eq!(updated.spec, r#"{"kind":"mysql"}"#);
    assert_eq!((updated.created_at, updated.updated_at), (NOW, NOW + 10));
    assert_eq!(
        store.get_credential_target("orders").await.expect("get"),
        Some(updated.clone())
    );

    let err = store
        .update_credential_target("orders", "team-d", "{}", 1, NOW + 20)
        .await
        .expect_err("stale revision");
    assert!(
        matches!(
            &err,
            StoreError::RevisionConflict {
                kind: "credential target",
                id,
                expected: 1,
                found: 2,
            } if id == "orders"
        ),
        "{err:?}"
    );
    assert_eq!(
        store.get_credential_target("orders").await.expect("get"),
        Some(updated.clone())
    );

    for (field, result) in [
        (
            "name",
            store.create_credential_target("", "team", "{}", NOW).await,
        ),
        (
            "name",
            store
                .create_credential_target(&"n".repeat(MAX_LEASE_NAME_BYTES + 1), "team", "{}", NOW)
                .await,
        ),
        (
            "owner",
            store.create_credential_target("new", "", "{}", NOW).await,
        ),
        (
            "spec",
            store
                .create_credential_target(
                    "new",
                    "team",
                    &"x".repeat(MAX_TARGET_SPEC_BYTES + 1),
                    NOW,
                )
                .await,
        ),
        (
            "owner",
            store
                .update_credential_target("orders", "", "{}", 2, NOW)
                .await,
        ),
    ] {
        assert_eq!(invalid_field(result), field);
    }
    assert_eq!(store.get_credential_target("new").await.expect("get"), None);

    let deleted = store
        .delete_credential_target("orders")
        .await
        .expect("delete");
    assert_eq!(deleted, updated);
    assert_eq!(
        store.get_credential_target("orders").await.expect("get"),
        None
    );
    for result in [
        store.delete_credential_target("orders").await,
        store
            .update_credential_target("orders", "team", "{}", 2, NOW)
            .await,
    ] {
        assert!(
            matches!(
                result,
                Err(StoreError::NotFound {
                    kind: "credential target",
                    ..
                })
            ),
            "{result:?}"
        );
    }
    assert_eq!(latest(&store).await, before, "targets append no event");
}
