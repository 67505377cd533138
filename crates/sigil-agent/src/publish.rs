//! Building the [`IdentitySnapshot`] the Workload API serves from the held SVIDs and the
//! revocation state, and publishing it only when it differs from the current one, so an unchanged
//! state never wakes workload streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use sigil_spiffe::{Selector, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::watch;

use crate::revocation::RevokedIds;
use crate::snapshot::{IdentitySnapshot, WorkloadIdentity};
use crate::svid_cache::SvidCache;

/// The identities servable at `now`: authorized entries that hold an unexpired SVID that is not
/// revoked (or revoked so recently that its replacement is still being signed, see
/// [`REVOKED_SVID_GRACE_SECS`](crate::svid_cache::REVOKED_SVID_GRACE_SECS)), have not themselves
/// expired, and whose selectors all parse (an entry with an unparsable or no selector is never
/// served: it could match more workloads than intended). Ordered by SPIFFE ID, then entry id.
/// The snapshot also carries `crls` and the JWT-SVID deny-list.
pub(crate) fn build_snapshot(
    trust_domain: &TrustDomain,
    bundle: &Arc<TrustBundle>,
    cache: &SvidCache,
    crls: &Arc<Vec<Vec<u8>>>,
    revoked_jwt_svids: &Arc<RevokedIds>,
    now: i64,
) -> IdentitySnapshot {
    let mut identities: Vec<WorkloadIdentity> = cache
        .entries()
        .iter()
        .filter_map(|e| {
            let cached = cache.svid(&e.id)?;
            if cached.material.expires_at <= now
                || (e.expires_at != 0 && e.expires_at <= now)
                || !cached.servable(now)
            {
                return None;
            }
            let selectors = e
                .selectors
                .iter()
                .filter_map(|s| Selector::new(&s.r#type, &s.value).ok())
                .collect::<Vec<_>>();
            if selectors.len() != e.selectors.len() || selectors.is_empty() {
                return None;
            }
            Some(WorkloadIdentity {
                entry_id: e.id.clone(),
                spiffe_id: SpiffeId::parse(&e.spiffe_id).ok()?,
                selectors,
                hint: e.hint.clone(),
                federates_with: e
                    .federates_with
                    .iter()
                    .filter_map(|t| TrustDomain::parse(t).ok())
                    .collect(),
                svid: cached.material.clone(),
            })
        })
        .collect();
    identities.sort_by(|a, b| (&a.spiffe_id, &a.entry_id).cmp(&(&b.spiffe_id, &b.entry_id)));
    IdentitySnapshot {
        trust_domain: trust_domain.clone(),
        bundle: bundle.clone(),
        federated_bundles: BTreeMap::new(),
        identities,
        crls: crls.clone(),
        revoked_jwt_svids: revoked_jwt_svids.clone(),
    }
}

/// Replaces the published snapshot with `snapshot` unless it serves exactly the same (same
/// bundle, same identities with the same SVIDs, selectors and hints, same CRLs and JWT-SVID
/// deny-list). Returns whether it changed.
pub(crate) fn publish(
    tx: &watch::Sender<Arc<IdentitySnapshot>>,
    snapshot: IdentitySnapshot,
) -> bool {
    tx.send_if_modified(|current| {
        if serves_the_same(current, &snapshot) {
            false
        } else {
            *current = Arc::new(snapshot);
            true
        }
    })
}

fn serves_the_same(a: &IdentitySnapshot, b: &IdentitySnapshot) -> bool {
    // The session keeps one `Arc` per CRL set and deny-list until they change, so the pointer
    // comparison usually decides without comparing contents.
    a.bundle == b.bundle
        && a.federated_bundles == b.federated_bundles
        && (Arc::ptr_eq(&a.crls, &b.crls) || a.crls == b.crls)
        && (Arc::ptr_eq(&a.revoked_jwt_svids, &b.revoked_jwt_svids)
            || a.revoked_jwt_svids == b.revoked_jwt_svids)
        && a.identities.len() == b.identities.len()
        && a.identities.iter().zip(&b.identities).all(|(x, y)| {
            x.entry_id == y.entry_id
                && Arc::ptr_eq(&x.svid, &y.svid)
                && x.selectors == y.selectors
                && x.hint == y.hint
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sigil_proto::agent::v1 as pb;
    use sigil_spiffe::Clock;
    use sigil_spiffe::time::from_unix_secs;
    use sigil_testkit::FakeClock;

    use super::*;
    use crate::state::tests::sample_identity;
    use crate::svid_cache::REVOKED_SVID_GRACE_SECS;
    use crate::svid_cache::tests::{NOW, current, entry, held_serial, material, revoked_serials};

    fn no_crls() -> Arc<Vec<Vec<u8>>> {
        Arc::new(Vec::new())
    }

    fn no_revoked() -> Arc<RevokedIds> {
        Arc::new(RevokedIds::default())
    }

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn bundle() -> Arc<TrustBundle> {
        Arc::new(sample_identity(NOW + 3_600).bundle)
    }

    fn hold(cache: &mut SvidCache, e: pb::Entry) {
        let svid = current(&e);
        cache.hold(e, svid);
    }

    fn served(snapshot: &IdentitySnapshot) -> Vec<String> {
        snapshot
            .identities
            .iter()
            .map(|i| i.entry_id.clone())
            .collect()
    }

    fn served_now(tx: &watch::Sender<Arc<IdentitySnapshot>>) -> Vec<String> {
        served(&tx.borrow())
    }

    #[test]
    fn serves_entries_with_a_current_svid_in_spiffe_id_order() {
        let mut cache = SvidCache::default();
        hold(&mut cache, entry("e-b", "spiffe://example.org/b", 1));
        hold(&mut cache, entry("e-a", "spiffe://example.org/a", 1));
        // Signed, but expired.
        let expired = entry("e-expired", "spiffe://example.org/d", 1);
        hold(&mut cache, expired.clone());
        if let Some(c) = cache.svid_mut(&expired.id) {
            c.material = Arc::new(material(&expired.spiffe_id, NOW - 1));
        }
        // A selector the agent cannot parse: never served (it could widen the match).
        let mut bad = entry("e-bad-selector", "spiffe://example.org/e", 1);
        bad.selectors.push(pb::Selector {
            r#type: "Unix".into(),
            value: "uid:0".into(),
        });
        hold(&mut cache, bad);
        // No selectors at all: would match every workload.
        let mut none = entry("e-no-selector", "spiffe://example.org/f", 1);
        none.selectors.clear();
        hold(&mut cache, none);
        // Not yet signed.
        let mut entries = cache.entries().to_vec();
        entries.push(entry("e-unsigned", "spiffe://example.org/c", 1));
        cache.set_entries(entries);

        let snapshot = build_snapshot(&td(), &bundle(), &cache, &no_crls(), &no_revoked(), NOW);
        assert_eq!(served(&snapshot), vec!["e-a", "e-b"]);
        assert_eq!(snapshot.trust_domain.as_str(), "example.org");
        assert_eq!(
            snapshot.identities.first().unwrap().spiffe_id.as_str(),
            "spiffe://example.org/a"
        );
    }

    #[test]
    fn an_svid_that_expires_stops_being_served_at_the_next_publish() {
        let mut cache = SvidCache::default();
        hold(&mut cache, entry("e-a", "spiffe://example.org/a", 1));
        let clock = FakeClock::new(from_unix_secs(NOW));
        let snapshot = build_snapshot(
            &td(),
            &bundle(),
            &cache,
            &no_crls(),
            &no_revoked(),
            clock.unix_secs(),
        );
        assert_eq!(served(&snapshot), vec!["e-a"]);
        clock.advance(Duration::from_secs(600));
        let snapshot = build_snapshot(
            &td(),
            &bundle(),
            &cache,
            &no_crls(),
            &no_revoked(),
            clock.unix_secs(),
        );
        assert!(served(&snapshot).is_empty());
    }

    #[test]
    fn an_entry_past_its_expiry_stops_being_served_though_its_svid_is_valid() {
        let mut cache = SvidCache::default();
        let mut a = entry("e-a", "spiffe://example.org/a", 1);
        a.expires_at = NOW + 60;
        hold(&mut cache, a);
        hold(&mut cache, entry("e-b", "spiffe://example.org/b", 1));
        let clock = FakeClock::new(from_unix_secs(NOW));
        let snapshot = build_snapshot(
            &td(),
            &bundle(),
            &cache,
            &no_crls(),
            &no_revoked(),
            clock.unix_secs(),
        );
        assert_eq!(served(&snapshot), vec!["e-a", "e-b"]);
        clock.advance(Duration::from_secs(60));
        let snapshot = build_snapshot(
            &td(),
            &bundle(),
            &cache,
            &no_crls(),
            &no_revoked(),
            clock.unix_secs(),
        );
        assert_eq!(served(&snapshot), vec!["e-b"], "e-b has no expiry");
    }

    #[test]
    fn republishing_an_unchanged_state_does_not_wake_workload_streams() {
        let (tx, mut rx) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle())));
        let b = bundle();
        let mut cache = SvidCache::default();
        hold(&mut cache, entry("e-a", "spiffe://example.org/a", 1));
        assert!(publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &no_crls(), &no_revoked(), NOW)
        ));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();

        assert!(!publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &no_crls(), &no_revoked(), NOW)
        ));
        assert!(!rx.has_changed().unwrap(), "same state, no new message");

        // A rotated SVID is a change, even for the same entry.
        if let Some(c) = cache.svid_mut("e-a") {
            c.material = Arc::new(material("spiffe://example.org/a", NOW + 900));
        }
        assert!(publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &no_crls(), &no_revoked(), NOW)
        ));
        assert!(rx.has_changed().unwrap());
        assert_eq!(served_now(&tx), vec!["e-a"]);
    }

    #[test]
    fn a_revoked_svid_is_served_during_the_grace_only() {
        let mut cache = SvidCache::default();
        hold(&mut cache, entry("e-a", "spiffe://example.org/a", 1));
        hold(&mut cache, entry("e-b", "spiffe://example.org/b", 1));
        let serial = held_serial(&cache, "e-a");
        cache.set_revoked(revoked_serials(&[&serial]), NOW);
        let at = |now| {
            served(&build_snapshot(
                &td(),
                &bundle(),
                &cache,
                &no_crls(),
                &no_revoked(),
                now,
            ))
        };
        assert_eq!(at(NOW), vec!["e-a", "e-b"], "its replacement is on its way");
        assert_eq!(at(NOW + REVOKED_SVID_GRACE_SECS), vec!["e-b"]);
    }

    #[test]
    fn new_crls_or_a_new_jwt_deny_list_are_a_change() {
        let (tx, mut rx) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle())));
        let b = bundle();
        let cache = SvidCache::default();
        let crls = Arc::new(vec![vec![0x30, 0x03, 1, 2, 3]]);
        assert!(publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &crls, &no_revoked(), NOW)
        ));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        // The same CRLs in another allocation are no change.
        let same = Arc::new(crls.as_ref().clone());
        assert!(!publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &same, &no_revoked(), NOW)
        ));
        let revoked = Arc::new(RevokedIds::jwt_ids(
            vec![pb::RevokedCredential {
                id: "j1".into(),
                expires_at: NOW + 60,
            }],
            NOW,
        ));
        assert!(publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &crls, &revoked, NOW)
        ));
        assert!(rx.borrow_and_update().revoked_jwt_svids.contains("j1"));
        assert!(publish(
            &tx,
            build_snapshot(&td(), &b, &cache, &no_crls(), &revoked, NOW)
        ));
        assert!(rx.borrow_and_update().crls.is_empty());
    }

    #[test]
    fn a_new_bundle_is_a_change() {
        let (tx, mut rx) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle())));
        rx.mark_unchanged();
        let mut other = sample_identity(NOW + 3_600).bundle;
        other.sequence += 1;
        assert!(publish(
            &tx,
            build_snapshot(
                &td(),
                &Arc::new(other),
                &SvidCache::default(),
                &no_crls(),
                &no_revoked(),
                NOW
            )
        ));
        assert!(rx.has_changed().unwrap());
    }
}
