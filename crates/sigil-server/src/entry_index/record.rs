//! An entry as the index holds it: what serving and issuance read, in about half the memory of
//! the store's [`Entry`]. The index holds a million of them, so the fields most entries leave
//! empty (DNS names, federations, hint, labels) sit behind one optional box, the owner's text is
//! shared by every entry of that owner, and what nothing served reads (description, creation and
//! update times) is not kept: whoever needs the whole record reads it from the store.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sigil_spiffe::{Selector, SpiffeId, TrustDomain};
use sigil_store::Entry;

/// No labels, for entries without the rarely set fields.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// One registration entry in the index. Built only by the index ([`IndexedEntry::from_entry`]);
/// read through its accessors, which name the store's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEntry {
    id: Box<str>,
    spiffe_id: SpiffeId,
    parent_id: SpiffeId,
    selectors: Box<[Selector]>,
    owner: Arc<str>,
    x509_svid_ttl: u64,
    jwt_svid_ttl: u64,
    expires_at: Option<i64>,
    revision: i64,
    admin: bool,
    downstream: bool,
    rare: Option<Box<RareFields>>,
}

/// The fields most entries leave empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct RareFields {
    dns_names: Vec<String>,
    federates_with: Vec<TrustDomain>,
    hint: String,
    labels: BTreeMap<String, String>,
}

impl RareFields {
    fn is_empty(&self) -> bool {
        self.dns_names.is_empty()
            && self.federates_with.is_empty()
            && self.hint.is_empty()
            && self.labels.is_empty()
    }
}

/// Owner names held once for every entry that names them.
#[derive(Debug, Default)]
pub(super) struct Owners(HashSet<Arc<str>>);

impl Owners {
    /// The shared text of `owner`, added if new.
    fn intern(&mut self, owner: String) -> Arc<str> {
        if let Some(held) = self.0.get(owner.as_str()) {
            return Arc::clone(held);
        }
        let held: Arc<str> = Arc::from(owner);
        self.0.insert(Arc::clone(&held));
        held
    }

    /// Forgets `entry`'s owner when no other indexed entry names it. Called as the entry leaves
    /// the index (copies held by in-flight requests keep the text alive, not the set's slot).
    pub(super) fn release(&mut self, entry: &IndexedEntry) {
        // Two holders left: this set and `entry` itself.
        if Arc::strong_count(&entry.owner) <= 2 {
            self.0.remove(&*entry.owner);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Entry> for IndexedEntry {
    /// The record of `entry` on its own, sharing no text with other records (the index builds
    /// its records with [`IndexedEntry::from_entry`]).
    fn from(entry: Entry) -> Self {
        Self::from_entry(entry, &mut Owners::default())
    }
}

impl IndexedEntry {
    /// The index's record of `entry`, with its owner's text from `owners`. Its IDs are taken
    /// as they are (the index shares their text before calling this).
    pub(super) fn from_entry(entry: Entry, owners: &mut Owners) -> Self {
        let Entry {
            id, spec, revision, ..
        } = entry;
        let rare = RareFields {
            dns_names: spec.dns_names,
            federates_with: spec.federates_with,
            hint: spec.hint,
            labels: spec.labels,
        };
        Self {
            id: id.into_boxed_str(),
            spiffe_id: spec.spiffe_id,
            parent_id: spec.parent_id,
            selectors: spec.selectors.into_boxed_slice(),
            owner: owners.intern(spec.owner),
            x509_svid_ttl: spec.x509_svid_ttl,
            jwt_svid_ttl: spec.jwt_svid_ttl,
            expires_at: spec.expires_at,
            revision,
            admin: spec.admin,
            downstream: spec.downstream,
            rare: (!rare.is_empty()).then(|| Box::new(rare)),
        }
    }

    /// Server-assigned id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The SPIFFE ID the entry issues.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// An agent's SPIFFE ID, a node alias, or another entry's SPIFFE ID.
    pub fn parent_id(&self) -> &SpiffeId {
        &self.parent_id
    }

    /// Sorted, deduplicated, non-empty.
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// The team or contact accountable for the identity.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// X509-SVID lifetime in seconds; 0 means the server default.
    pub fn x509_svid_ttl(&self) -> u64 {
        self.x509_svid_ttl
    }

    /// JWT-SVID lifetime in seconds; 0 means the server default.
    pub fn jwt_svid_ttl(&self) -> u64 {
        self.jwt_svid_ttl
    }

    /// Unix seconds after which the entry is no longer served; `None` = never.
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// Starts at 1; +1 on every update.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Whether the workload may use the admin API.
    pub fn admin(&self) -> bool {
        self.admin
    }

    /// Whether the workload is a downstream server.
    pub fn downstream(&self) -> bool {
        self.downstream
    }

    /// DNS names for the X509-SVID.
    pub fn dns_names(&self) -> &[String] {
        self.rare.as_ref().map_or(&[], |rare| &rare.dns_names)
    }

    /// Trust domains whose bundles the workload also receives.
    pub fn federates_with(&self) -> &[TrustDomain] {
        self.rare.as_ref().map_or(&[], |rare| &rare.federates_with)
    }

    /// The hint workloads use to pick among several SVIDs.
    pub fn hint(&self) -> &str {
        self.rare.as_ref().map_or("", |rare| &rare.hint)
    }

    /// Operator-chosen labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.rare.as_ref().map_or(&NO_LABELS, |rare| &rare.labels)
    }

    /// Whether the entry has expired at `now` (Unix seconds).
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use sigil_store::NewEntry;

    use super::*;

    fn entry(id: &str, owner: &str) -> Entry {
        let spec = NewEntry::new(
            SpiffeId::parse("spiffe://example.org/web").unwrap(),
            SpiffeId::parse("spiffe://example.org/sigil/agent/join_token/a").unwrap(),
            vec![Selector::parse("unix:uid:1").unwrap()],
            owner,
        );
        Entry {
            id: id.to_owned(),
            spec,
            revision: 3,
            created_at: 10,
            updated_at: 20,
        }
    }

    #[test]
    fn keeps_every_served_field() {
        let mut owners = Owners::default();
        let mut full = entry("e1", "team-a");
        full.spec.dns_names = vec!["web.example.org".to_owned()];
        full.spec.federates_with = vec![TrustDomain::parse("other.org").unwrap()];
        full.spec.hint = "external".to_owned();
        full.spec.labels = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        full.spec.x509_svid_ttl = 600;
        full.spec.jwt_svid_ttl = 300;
        full.spec.expires_at = Some(99);
        full.spec.admin = true;
        full.spec.downstream = true;
        let held = IndexedEntry::from_entry(full.clone(), &mut owners);
        assert_eq!(held.id(), full.id);
        assert_eq!(held.spiffe_id(), &full.spec.spiffe_id);
        assert_eq!(held.parent_id(), &full.spec.parent_id);
        assert_eq!(held.selectors(), full.spec.selectors.as_slice());
        assert_eq!(held.owner(), "team-a");
        assert_eq!(held.dns_names(), full.spec.dns_names.as_slice());
        assert_eq!(held.federates_with(), full.spec.federates_with.as_slice());
        assert_eq!(held.hint(), "external");
        assert_eq!(held.labels(), &full.spec.labels);
        assert_eq!((held.x509_svid_ttl(), held.jwt_svid_ttl()), (600, 300));
        assert_eq!(held.expires_at(), Some(99));
        assert!(held.expired_at(99) && !held.expired_at(98));
        assert!(held.admin() && held.downstream());
        assert_eq!(held.revision(), 3);
    }

    #[test]
    fn an_entry_without_rare_fields_holds_no_box() {
        let mut owners = Owners::default();
        let held = IndexedEntry::from_entry(entry("e1", "team-a"), &mut owners);
        assert!(held.rare.is_none());
        assert!(held.labels().is_empty() && held.dns_names().is_empty());
        assert_eq!(held.hint(), "");
    }

    #[test]
    fn owners_are_shared_and_forgotten_with_their_last_entry() {
        let mut owners = Owners::default();
        let a = IndexedEntry::from_entry(entry("e1", "team-a"), &mut owners);
        let b = IndexedEntry::from_entry(entry("e2", "team-a"), &mut owners);
        assert!(Arc::ptr_eq(&a.owner, &b.owner));
        assert_eq!(owners.len(), 1);
        owners.release(&a);
        drop(a);
        assert_eq!(owners.len(), 1, "b still names team-a");
        owners.release(&b);
        assert_eq!(owners.len(), 0);
    }
}
