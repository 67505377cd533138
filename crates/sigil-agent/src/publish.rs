//! Building the [`IdentitySnapshot`] the Workload API serves from the held SVIDs, and publishing
//! it only when it differs from the current one, so an unchanged state never wakes workload
//! streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use sigil_spiffe::{Selector, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::watch;

use crate::snapshot::{IdentitySnapshot, WorkloadIdentity};
use crate::svid_cache::SvidCache;

/// The identities servable at `now`: authorized entries that hold an unexpired SVID, have not
/// themselves expired, and whose selectors all parse (an entry with an unparsable or no selector
/// is never served: it could match more workloads than intended). Ordered by SPIFFE ID, then
/// entry id.
pub(crate) fn build_snapshot(
    trust_domain: &TrustDomain,
    bundle: &Arc<TrustBundle>,
    cache: &SvidCache,
    now: i64,
) -> IdentitySnapshot {
    let mut identities: Vec<WorkloadIdentity> = cache
        .entries()
        .iter()
        .filter_map(|e| {
            let cached = cache.svid(&e.id)?;
            if cached.material.expires_at <= now || (e.expires_at != 0 && e.expires_at <= now) {
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
    }
}

/// Replaces the published snapshot with `snapshot` unless it serves exactly the same (same
/// bundle, same identities with the same SVIDs, selectors and hints). Returns whether it changed.
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
    a.bundle == b.bundle
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
    use crate::svid_cache::tests::{NOW, current, entry, material};

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

        let snapshot = build_snapshot(&td(), &bundle(), &cache, NOW);
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
        let snapshot = build_snapshot(&td(), &bundle(), &cache, clock.unix_secs());
        assert_eq!(served(&snapshot), vec!["e-a"]);
        clock.advance(Duration::from_secs(600));
        let snapshot = build_snapshot(&td(), &bundle(), &cache, clock.unix_secs());
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
        let snapshot = build_snapshot(&td(), &bundle(), &cache, clock.unix_secs());
        assert_eq!(served(&snapshot), vec!["e-a", "e-b"]);
        clock.advance(Duration::from_secs(60));
        let snapshot = build_snapshot(&td(), &bundle(), &cache, clock.unix_secs());
        assert_eq!(served(&snapshot), vec!["e-b"], "e-b has no expiry");
    }

    #[test]
    fn republishing_an_unchanged_state_does_not_wake_workload_streams() {
        let (tx, mut rx) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle())));
        let b = bundle();
        let mut cache = SvidCache::default();
        hold(&mut cache, entry("e-a", "spiffe://example.org/a", 1));
        assert!(publish(&tx, build_snapshot(&td(), &b, &cache, NOW)));
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();

        assert!(!publish(&tx, build_snapshot(&td(), &b, &cache, NOW)));
        assert!(!rx.has_changed().unwrap(), "same state, no new message");

        // A rotated SVID is a change, even for the same entry.
        if let Some(c) = cache.svid_mut("e-a") {
            c.material = Arc::new(material("spiffe://example.org/a", NOW + 900));
        }
        assert!(publish(&tx, build_snapshot(&td(), &b, &cache, NOW)));
        assert!(rx.has_changed().unwrap());
        assert_eq!(served_now(&tx), vec!["e-a"]);
    }

    #[test]
    fn a_new_bundle_is_a_change() {
        let (tx, mut rx) = watch::channel(Arc::new(IdentitySnapshot::empty(bundle())));
        rx.mark_unchanged();
        let mut other = sample_identity(NOW + 3_600).bundle;
        other.sequence += 1;
        assert!(publish(
            &tx,
            build_snapshot(&td(), &Arc::new(other), &SvidCache::default(), NOW)
        ));
        assert!(rx.has_changed().unwrap());
    }
}
