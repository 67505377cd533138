//! The SVIDs the agent holds for its authorized entries, and the renewal policy: which entries
//! need an SVID signed, when each is renewed (at once when its chain involves a tainted authority
//! or its serial is revoked), whether a revoked one may still be served, and when the session
//! must wake next. Everything here is a pure function of the held state and the time passed in;
//! the session does the I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sigil_proto::agent::v1 as pb;
use sigil_spiffe::SpiffeId;

use crate::revocation::RevokedIds;
use crate::snapshot::X509SvidMaterial;

/// Wait before retrying a renewal the server refused, in seconds.
pub(crate) const RENEWAL_RETRY_SECS: i64 = 5;

/// How long a held X509-SVID whose serial the server revoked may still be served while its
/// replacement is signed, in seconds.
///
/// Why not withhold it at once: the replacement is requested in the same step that applies the
/// deny-list, over the connection that brought it, and normally arrives milliseconds later.
/// Withholding the revoked SVID in between would leave a workload with a single identity with none
/// for that moment, which ends its open `FetchX509SVID` streams with `PermissionDenied` ("no
/// identity issued") and fails its `FetchJWTSVID` calls, only for it to reconnect and receive the
/// replacement; a streaming client keeps using the SVID it already has meanwhile anyway. So, like
/// an SVID chained to a tainted authority, a revoked one keeps being served until its replacement
/// arrives, and never again afterwards (the replacement takes its place in the same snapshot).
///
/// Why not serve it for as long as no replacement comes: the revocation is an operator's order to
/// stop using that credential. When the server cannot or will not sign a replacement within this
/// grace (unreachable, refusing the entry), the revoked SVID stops being served even though the
/// workload is then left without that identity; the session wakes at the deadline to publish
/// that.
pub const REVOKED_SVID_GRACE_SECS: i64 = 10;

/// When to renew something valid until `expires_at`, seen at `now`: half its remaining life,
/// minus up to a tenth of it as random jitter, so many SVIDs issued together don't renew together.
/// Never before `now` nor after `expires_at` (when that is later than `now`).
pub fn renew_at(now: i64, expires_at: i64) -> i64 {
    renew_at_with_jitter(now, expires_at, random_sample())
}

/// A random `u64` for jitter (0 if the system RNG fails: no jitter, never an error).
pub(crate) fn random_sample() -> u64 {
    sigil_keys::random_bytes(8)
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(0, u64::from_le_bytes)
}

/// How long to wait before reconnecting after `backoff`: between half of it and all of it,
/// drawn from `sample`, so agents cut off together (a server restart) do not reconnect in step.
pub fn jittered_backoff(backoff: Duration, sample: u64) -> Duration {
    let half = backoff / 2;
    let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    let extra = if span == 0 { 0 } else { sample % (span + 1) };
    half + Duration::from_millis(extra)
}

/// [`renew_at`] with the jitter drawn from `sample` (any value; reduced to the jitter span), so
/// the policy itself is deterministic.
pub fn renew_at_with_jitter(now: i64, expires_at: i64, sample: u64) -> i64 {
    let remaining = expires_at.saturating_sub(now).max(0);
    let jitter = u64::try_from(remaining / 10)
        .ok()
        .filter(|span| *span > 0)
        .and_then(|span| i64::try_from(sample % span).ok())
        .unwrap_or(0);
    now + remaining / 2 - jitter
}

/// An SVID held for one entry.
#[derive(Debug)]
pub(crate) struct CachedSvid {
    /// The entry revision it was signed for; a new revision needs a new SVID.
    pub revision: i64,
    pub material: Arc<X509SvidMaterial>,
    /// Unix seconds at which to ask for a new one.
    pub renew_at: i64,
    /// Ids of the authorities its chain depends on (intermediate and root), to replace it at
    /// once when one is tainted.
    pub authorities: Vec<String>,
    /// The leaf's serial number (lowercase hex, as on the deny-list); `None` if the leaf does not
    /// parse (then it cannot be matched against the deny-list; the server never sends such one).
    pub serial: Option<String>,
    /// When the agent learned that its serial is revoked (Unix seconds); `None` while it is not.
    pub revoked_at: Option<i64>,
}

impl CachedSvid {
    /// Whether it may be served at `now`: not revoked, or revoked less than
    /// [`REVOKED_SVID_GRACE_SECS`] ago (its replacement is being signed). Expiry is checked by
    /// the caller.
    pub fn servable(&self, now: i64) -> bool {
        self.withheld_at().is_none_or(|at| now < at)
    }

    /// When a revoked SVID stops being served; `None` when it is not revoked.
    fn withheld_at(&self) -> Option<i64> {
        self.revoked_at
            .map(|at| at.saturating_add(REVOKED_SVID_GRACE_SECS))
    }
}

/// An entry that needs an SVID signed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueSvid {
    pub entry_id: String,
    pub spiffe_id: SpiffeId,
}

/// The authorized entries (as the server last sent them) and the SVID held for each.
#[derive(Debug, Default)]
pub(crate) struct SvidCache {
    entries: Vec<pb::Entry>,
    svids: HashMap<String, CachedSvid>,
    /// The tainted authorities the server last sent, sorted.
    tainted: Vec<String>,
    /// The revoked X509-SVID serials the server last sent.
    revoked: Arc<RevokedIds>,
}

impl SvidCache {
    /// Replaces the authorized set. The SVIDs (and private keys) of entries that left it are
    /// dropped at once.
    pub fn set_entries(&mut self, entries: Vec<pb::Entry>) {
        let live: HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        self.svids.retain(|id, _| live.contains(id.as_str()));
        self.entries = entries;
    }

    /// The authorized entries, in the order the server sent them.
    pub fn entries(&self) -> &[pb::Entry] {
        &self.entries
    }

    /// The SVID held for `entry_id`, if any.
    pub fn svid(&self, entry_id: &str) -> Option<&CachedSvid> {
        self.svids.get(entry_id)
    }

    /// Entries that need an SVID signed at `now`: none held, one signed for an older revision, or
    /// one due for renewal. Entries with an invalid SPIFFE ID are skipped (they are never served).
    pub fn due(&self, now: i64) -> Vec<DueSvid> {
        self.entries
            .iter()
            .filter(|e| match self.svids.get(&e.id) {
                None => true,
                Some(c) => c.revision != e.revision || c.renew_at <= now,
            })
            .filter_map(|e| match SpiffeId::parse(&e.spiffe_id) {
                Ok(spiffe_id) => Some(DueSvid {
                    entry_id: e.id.clone(),
                    spiffe_id,
                }),
                Err(_) => {
                    tracing::warn!(entry = %e.id, "server sent an entry with an invalid SPIFFE ID");
                    None
                }
            })
            .collect()
    }

    /// Holds `material` for `entry_id`, signed at `now`, and schedules its renewal. Returns false
    /// (and keeps nothing) when the entry is no longer authorized.
    pub fn store(&mut self, entry_id: &str, material: X509SvidMaterial, now: i64) -> bool {
        let Some(entry) = self.entries.iter().find(|e| e.id == entry_id) else {
            return false;
        };
        let serial = material
            .cert_chain
            .first()
            .and_then(|leaf| sigil_keys::cert_ids::serial_hex(leaf));
        let revoked = serial.as_deref().is_some_and(|s| self.revoked.contains(s));
        let mut renew = renew_at(now, material.expires_at);
        if revoked {
            // Not expected (the server picks fresh serials), but then it is replaced like one
            // the server refused to renew rather than at every wake-up.
            tracing::warn!(entry = %entry_id, "the server signed an X509-SVID whose serial is revoked");
            renew = now
                .saturating_add(RENEWAL_RETRY_SECS)
                .min(material.expires_at);
        }
        self.svids.insert(
            entry_id.to_owned(),
            CachedSvid {
                revision: entry.revision,
                renew_at: renew,
                authorities: sigil_keys::cert_ids::chain_authority_ids(&material.cert_chain),
                serial,
                revoked_at: revoked.then_some(now),
                material: Arc::new(material),
            },
        );
        true
    }

    /// Takes the server's set of tainted authorities. When it changes, every held SVID chained to
    /// a newly tainted authority is due at `now` (it keeps being served until its replacement
    /// arrives); one signed afterwards is renewed on its normal schedule.
    pub fn set_tainted(&mut self, mut ids: Vec<String>, now: i64) {
        ids.sort();
        ids.dedup();
        if ids == self.tainted {
            return;
        }
        for (entry_id, cached) in &mut self.svids {
            let newly_tainted = cached
                .authorities
                .iter()
                .any(|a| ids.binary_search(a).is_ok() && self.tainted.binary_search(a).is_err());
            if newly_tainted {
                tracing::info!(entry = %entry_id, "X509-SVID chains to a tainted authority; replacing it");
                cached.renew_at = cached.renew_at.min(now);
            }
        }
        self.tainted = ids;
    }

    /// Takes the server's revoked X509-SVID serials (the whole deny-list). When it changes, every
    /// held SVID whose serial is newly listed is due at `now` (the replacement is signed even
    /// though the entry's revision did not change) and is served for at most
    /// [`REVOKED_SVID_GRACE_SECS`] more (see there why); the replacement, having another serial,
    /// takes its place and is renewed on its normal schedule. A serial that leaves the list (its
    /// certificate expired) is no longer treated as revoked.
    ///
    /// The agent's own SVID is not held here: if its serial is listed, the server refuses the
    /// agent's next call with `PermissionDenied` and the session's refusal handling applies.
    pub fn set_revoked(&mut self, revoked: Arc<RevokedIds>, now: i64) {
        if revoked == self.revoked {
            return;
        }
        for (entry_id, cached) in &mut self.svids {
            let listed = cached
                .serial
                .as_deref()
                .is_some_and(|serial| revoked.contains(serial));
            match (listed, cached.revoked_at) {
                (true, None) => {
                    tracing::info!(entry = %entry_id, serial = ?cached.serial, "X509-SVID is revoked; replacing it");
                    cached.revoked_at = Some(now);
                    cached.renew_at = cached.renew_at.min(now);
                }
                (false, Some(_)) => cached.revoked_at = None,
                _ => {}
            }
        }
        self.revoked = revoked;
    }

    /// The server did not sign a new SVID for `entry_id` at `now`: keep serving the one held and
    /// retry after [`RENEWAL_RETRY_SECS`] (not later than it expires, not earlier than planned)
    /// rather than at every wake-up.
    pub fn defer(&mut self, entry_id: &str, now: i64) {
        if let Some(cached) = self.svids.get_mut(entry_id) {
            cached.renew_at = now
                .saturating_add(RENEWAL_RETRY_SECS)
                .min(cached.material.expires_at)
                .max(cached.renew_at);
        }
    }

    /// When the state next changes on its own: the earliest renewal of a held SVID, the earliest
    /// expiry of an authorized entry (after which it is no longer served), or the moment a
    /// revoked SVID still served stops being served. `None` when nothing is scheduled.
    pub fn next_wake(&self, now: i64) -> Option<i64> {
        let renewals = self.svids.values().map(|c| c.renew_at);
        let expiries = self
            .entries
            .iter()
            .map(|e| e.expires_at)
            .filter(|at| *at > now);
        let withdrawals = self
            .svids
            .values()
            .filter_map(CachedSvid::withheld_at)
            .filter(|at| *at > now);
        renewals.chain(expiries).chain(withdrawals).min()
    }

    #[cfg(test)]
    pub fn hold(&mut self, entry: pb::Entry, svid: CachedSvid) {
        self.svids.insert(entry.id.clone(), svid);
        self.entries.push(entry);
    }

    #[cfg(test)]
    pub fn svid_mut(&mut self, entry_id: &str) -> Option<&mut CachedSvid> {
        self.svids.get_mut(entry_id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use proptest::prelude::*;
    use sigil_keys::PrivateKey;
    use sigil_spiffe::Clock;
    use sigil_spiffe::time::from_unix_secs;
    use sigil_testkit::FakeClock;

    use super::*;
    use crate::state::tests::self_signed;

    pub(crate) const NOW: i64 = 1_700_000_000;

    pub(crate) fn entry(id: &str, spiffe_id: &str, revision: i64) -> pb::Entry {
        pb::Entry {
            id: id.into(),
            spiffe_id: spiffe_id.into(),
            selectors: vec![pb::Selector {
                r#type: "unix".into(),
                value: "uid:1000".into(),
            }],
            revision,
            ..Default::default()
        }
    }

    pub(crate) fn material(spiffe_id: &str, expires_at: i64) -> X509SvidMaterial {
        let key = PrivateKey::generate().unwrap();
        let cert = self_signed(&SpiffeId::parse(spiffe_id).unwrap(), &key);
        X509SvidMaterial {
            cert_chain: vec![cert],
            key,
            expires_at,
        }
    }

    /// A current SVID for `e` (valid 600 s from `NOW`, renewal at `NOW + 300`).
    pub(crate) fn current(e: &pb::Entry) -> CachedSvid {
        let material = material(&e.spiffe_id, NOW + 600);
        CachedSvid {
            authorities: Vec::new(),
            revision: e.revision,
            serial: sigil_keys::cert_ids::serial_hex(material.cert_chain.first().unwrap()),
            revoked_at: None,
            material: Arc::new(material),
            renew_at: NOW + 300,
        }
    }

    /// The serial of the SVID held for `entry_id`.
    pub(crate) fn held_serial(cache: &SvidCache, entry_id: &str) -> String {
        cache.svid(entry_id).unwrap().serial.clone().unwrap()
    }

    /// A deny-list of `serials`, each expiring an hour after `NOW`.
    pub(crate) fn revoked_serials(serials: &[&str]) -> Arc<RevokedIds> {
        let list = serials
            .iter()
            .map(|s| pb::RevokedCredential {
                id: (*s).to_owned(),
                expires_at: NOW + 3_600,
            })
            .collect();
        Arc::new(RevokedIds::x509_serials(list, NOW))
    }

    fn held(entries: &[pb::Entry]) -> SvidCache {
        let mut cache = SvidCache::default();
        for e in entries {
            cache.hold(e.clone(), current(e));
        }
        cache
    }

    fn due_ids(cache: &SvidCache, now: i64) -> Vec<String> {
        cache.due(now).into_iter().map(|d| d.entry_id).collect()
    }

    proptest! {
        #[test]
        fn renewal_falls_between_four_and_five_tenths_of_the_remaining_life(
            now in -10_000_000_000i64..10_000_000_000,
            remaining in 0i64..10_000_000_000,
            sample in any::<u64>(),
        ) {
            let offset = renew_at_with_jitter(now, now + remaining, sample) - now;
            prop_assert!(offset <= remaining / 2, "{offset} > half of {remaining}");
            // Whole seconds: at least 0.4 of the remaining life, rounded down.
            prop_assert!(offset >= remaining * 4 / 10, "{offset} < 0.4 of {remaining}");
        }

        #[test]
        fn renewal_is_never_before_now_nor_after_expiry(
            now in any::<i64>(),
            expires_at in any::<i64>(),
            sample in any::<u64>(),
        ) {
            let at = renew_at_with_jitter(now, expires_at, sample);
            prop_assert!(at >= now);
            prop_assert!(at <= now.max(expires_at));
        }
    }

    #[test]
    fn expired_or_expiring_input_renews_now() {
        for sample in [0, 7, u64::MAX] {
            assert_eq!(renew_at_with_jitter(NOW, NOW, sample), NOW);
            assert_eq!(renew_at_with_jitter(NOW, NOW - 1, sample), NOW);
            assert_eq!(renew_at_with_jitter(NOW, i64::MIN, sample), NOW);
            assert_eq!(renew_at_with_jitter(i64::MAX, i64::MIN, sample), i64::MAX);
            assert_eq!(renew_at_with_jitter(NOW, NOW + 1, sample), NOW);
        }
    }

    #[test]
    fn the_jitter_sample_moves_renewal_earlier_by_at_most_a_tenth() {
        assert_eq!(renew_at_with_jitter(NOW, NOW + 3_600, 0), NOW + 1_800);
        assert_eq!(renew_at_with_jitter(NOW, NOW + 3_600, 359), NOW + 1_441);
        assert_eq!(renew_at_with_jitter(NOW, NOW + 3_600, 360), NOW + 1_800);
    }

    #[test]
    fn svids_issued_together_renew_at_spread_out_times() {
        let times: HashSet<i64> = (0..64).map(|_| renew_at(NOW, NOW + 3_600)).collect();
        assert!(times.len() > 1, "no jitter: {times:?}");
    }

    #[test]
    fn entries_without_an_svid_or_with_a_new_revision_are_due() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        let mut cache = held(std::slice::from_ref(&a));
        cache.set_entries(vec![a.clone(), b]);
        assert_eq!(
            due_ids(&cache, NOW),
            vec!["e-b"],
            "e-a holds a current SVID"
        );

        cache.set_entries(vec![entry("e-a", "spiffe://example.org/a", 2)]);
        assert_eq!(due_ids(&cache, NOW), vec!["e-a"], "signed for revision 1");
    }

    #[test]
    fn an_svid_is_due_at_its_renewal_time_on_the_clock() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let cache = held(std::slice::from_ref(&a));
        let clock = FakeClock::new(from_unix_secs(NOW));
        assert!(due_ids(&cache, clock.unix_secs()).is_empty());
        clock.advance(Duration::from_secs(299));
        assert!(due_ids(&cache, clock.unix_secs()).is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(due_ids(&cache, clock.unix_secs()), vec!["e-a"]);
    }

    #[test]
    fn entries_with_an_invalid_spiffe_id_are_never_due() {
        let mut cache = SvidCache::default();
        cache.set_entries(vec![entry("e-bad", "not a spiffe id", 1)]);
        assert!(cache.due(NOW).is_empty());
    }

    proptest! {
        #[test]
        fn a_jittered_backoff_is_between_half_and_all_of_it(ms in 0u64..120_000, sample: u64) {
            let backoff = Duration::from_millis(ms);
            let wait = jittered_backoff(backoff, sample);
            prop_assert!(wait >= backoff / 2 && wait <= backoff, "{wait:?} for {backoff:?}");
        }
    }

    #[test]
    fn jittered_backoffs_differ_with_the_sample() {
        let backoff = Duration::from_secs(8);
        let waits: HashSet<Duration> = (0..50u64)
            .map(|i| jittered_backoff(backoff, i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        assert!(waits.len() > 40, "{waits:?}");
    }

    #[test]
    fn svids_chained_to_a_newly_tainted_authority_are_due_at_once_and_only_once() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        let mut cache = held(&[a, b]);
        cache.svid_mut("e-a").unwrap().authorities = vec!["int-1".into(), "root".into()];
        cache.svid_mut("e-b").unwrap().authorities = vec!["int-2".into(), "root".into()];
        assert!(due_ids(&cache, NOW + 10).is_empty());

        cache.set_tainted(vec!["int-1".into()], NOW + 10);
        assert_eq!(due_ids(&cache, NOW + 10), ["e-a"]);
        // Its replacement (another intermediate) is renewed on its normal schedule, even though
        // the same tainted set keeps arriving.
        cache.store(
            "e-a",
            material("spiffe://example.org/a", NOW + 610),
            NOW + 10,
        );
        cache.set_tainted(vec!["int-1".into()], NOW + 11);
        assert!(due_ids(&cache, NOW + 11).is_empty());

        // Tainting the root concerns every SVID still chained to it.
        cache.svid_mut("e-a").unwrap().authorities = vec!["int-3".into(), "root".into()];
        cache.set_tainted(vec!["int-1".into(), "root".into()], NOW + 12);
        let mut due = due_ids(&cache, NOW + 12);
        due.sort();
        assert_eq!(due, ["e-a", "e-b"]);
    }

    #[test]
    fn a_revoked_serial_makes_its_svid_due_at_once_and_an_unrelated_one_not() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        let mut cache = held(&[a, b]);
        let serial_a = held_serial(&cache, "e-a");
        assert_ne!(serial_a, held_serial(&cache, "e-b"));
        assert!(due_ids(&cache, NOW + 10).is_empty());

        cache.set_revoked(revoked_serials(&[&serial_a, "00ffee"]), NOW + 10);
        assert_eq!(
            due_ids(&cache, NOW + 10),
            ["e-a"],
            "same revision, still due"
        );
        assert_eq!(cache.svid("e-a").unwrap().revoked_at, Some(NOW + 10));
        assert_eq!(cache.svid("e-b").unwrap().revoked_at, None);
        assert_eq!(cache.svid("e-b").unwrap().renew_at, NOW + 300);
    }

    #[test]
    fn the_replacement_of_a_revoked_svid_is_not_revoked_and_renews_on_schedule() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let mut cache = held(std::slice::from_ref(&a));
        let revoked = revoked_serials(&[&held_serial(&cache, "e-a")]);
        cache.set_revoked(revoked.clone(), NOW + 10);
        assert!(cache.store(
            "e-a",
            material("spiffe://example.org/a", NOW + 610),
            NOW + 10
        ));
        let replacement = cache.svid("e-a").unwrap();
        assert_eq!(replacement.revoked_at, None);
        assert!(replacement.servable(NOW + 10_000));
        // The same deny-list keeps arriving: the replacement is not due again.
        cache.set_revoked(revoked, NOW + 11);
        assert!(due_ids(&cache, NOW + 11).is_empty());
    }

    #[test]
    fn a_revoked_svid_is_served_only_for_the_grace_and_the_session_wakes_then() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let mut cache = held(std::slice::from_ref(&a));
        let serial = held_serial(&cache, "e-a");
        cache.set_revoked(revoked_serials(&[&serial]), NOW + 10);
        let held = cache.svid("e-a").unwrap();
        assert!(held.servable(NOW + 10));
        assert!(held.servable(NOW + 9 + REVOKED_SVID_GRACE_SECS));
        assert!(!held.servable(NOW + 10 + REVOKED_SVID_GRACE_SECS));
        // Its renewal was refused: the next wake is the end of the grace, not the retry later.
        cache.svid_mut("e-a").unwrap().renew_at = NOW + 10 + REVOKED_SVID_GRACE_SECS + 5;
        assert_eq!(
            cache.next_wake(NOW + 11),
            Some(NOW + 10 + REVOKED_SVID_GRACE_SECS)
        );
        // Once its serial leaves the deny-list (it expired), it is no longer treated as revoked.
        cache.set_revoked(revoked_serials(&[]), NOW + 12);
        assert!(cache.svid("e-a").unwrap().servable(NOW + 10_000));
    }

    #[test]
    fn leaving_the_authorized_set_drops_the_svid() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let b = entry("e-b", "spiffe://example.org/b", 1);
        let mut cache = held(&[a.clone(), b]);
        cache.set_entries(vec![a]);
        assert!(cache.svid("e-a").is_some());
        assert!(cache.svid("e-b").is_none(), "its key is dropped");
    }

    #[test]
    fn a_signed_svid_is_kept_only_for_an_authorized_entry() {
        let mut cache = SvidCache::default();
        cache.set_entries(vec![entry("e-a", "spiffe://example.org/a", 3)]);
        assert!(cache.store("e-a", material("spiffe://example.org/a", NOW + 3_600), NOW));
        let held = cache.svid("e-a").unwrap();
        assert_eq!(held.revision, 3);
        assert!((NOW + 1_440..=NOW + 1_800).contains(&held.renew_at));
        assert!(!cache.store("e-gone", material("spiffe://example.org/g", NOW + 60), NOW));
        assert!(cache.svid("e-gone").is_none());
    }

    #[test]
    fn a_refused_renewal_is_retried_later_but_before_expiry() {
        let a = entry("e-a", "spiffe://example.org/a", 1);
        let mut cache = held(std::slice::from_ref(&a));
        // Due at NOW + 300; refused then: retry 5 s later.
        cache.defer("e-a", NOW + 300);
        assert_eq!(cache.svid("e-a").unwrap().renew_at, NOW + 305);
        assert!(due_ids(&cache, NOW + 304).is_empty());
        assert_eq!(due_ids(&cache, NOW + 305), vec!["e-a"]);
        // Refused 2 s before expiry: retry no later than the expiry.
        cache.defer("e-a", NOW + 598);
        assert_eq!(cache.svid("e-a").unwrap().renew_at, NOW + 600);
        // Refused before it was due (a new revision): the planned renewal is not brought forward.
        cache.svid_mut("e-a").unwrap().renew_at = NOW + 300;
        cache.defer("e-a", NOW);
        assert_eq!(cache.svid("e-a").unwrap().renew_at, NOW + 300);
    }

    #[test]
    fn the_next_wake_is_the_earliest_renewal_or_entry_expiry() {
        let mut cache = SvidCache::default();
        assert_eq!(cache.next_wake(NOW), None);
        let a = entry("e-a", "spiffe://example.org/a", 1);
        cache.hold(a.clone(), current(&a));
        assert_eq!(cache.next_wake(NOW), Some(NOW + 300));
        let mut b = entry("e-b", "spiffe://example.org/b", 1);
        b.expires_at = NOW + 100;
        cache.hold(b.clone(), current(&b));
        assert_eq!(cache.next_wake(NOW), Some(NOW + 100));
        // An expiry already past is no reason to wake.
        assert_eq!(cache.next_wake(NOW + 100), Some(NOW + 300));
    }
}
