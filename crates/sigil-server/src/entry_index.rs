//! The in-memory index of registration entries that answers "which entries may this agent
//! serve?" without touching the datastore. It is built once at start and then kept current by
//! the datastore's change feed (never by periodic rescans). A batch is applied in place under a
//! write lock (nothing copies the index), and wakes exactly the agents whose authorized set it
//! may change: a sync stream subscribes with [`EntryIndex::subscribe_agent`] and is woken only
//! for batches that concern its agent (or the bundle every agent carries). Entry expiry is a
//! change too: [`EntryIndex::run_expiry`] wakes at the next `expires_at` on the injected clock
//! and wakes the agents of the entries that expired, so an entry leaves its agents' sets at its
//! expiry with nothing else happening.
//!
//! Authorization rule: an agent may serve (1) entries whose parent is the agent's SPIFFE ID,
//! (2) entries whose parent is a node alias — an entry parented by the server's ID whose
//! selectors are all among the agent's node selectors — and (3) transitively, entries whose parent
//! is the SPIFFE ID of an entry already authorized. Expired entries are never served.
//!
//! Which agents a changed entry concerns: walk up from its parent through the entries whose
//! SPIFFE ID is that parent, to the agent IDs and node aliases at the top. The cost depends on
//! the entry's ancestry, not on the number of unrelated entries; an ancestry wider than
//! [`MAX_ANCESTRY`] parents wakes every agent instead.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use sigil_spiffe::time::from_unix_secs;
use sigil_spiffe::{Clock, Selector, SpiffeId, TrustDomain};
use sigil_store::{Change, ChangeEvent, Datastore, Entry, EntryFilter, StoreError};
use tokio::sync::watch;

use crate::naming;

mod record;

pub use record::IndexedEntry;
use record::Owners;

/// Changes read from the feed per call.
pub(crate) const FEED_BATCH: u32 = 1000;
/// Entries read from the store per page while loading: the whole list never sits in memory
/// beside the index.
const LOAD_PAGE: u32 = 1000;
/// Longest the expiry timer sleeps before re-reading the clock. Timers run on the monotonic
/// clock while `expires_at` is wall-clock time, so a stepped wall clock delays an expiry by at
/// most this much. Re-reading the clock touches no store and no stream.
const MAX_EXPIRY_SLEEP: Duration = Duration::from_secs(30);
/// Most parent IDs visited to find the agents one changed entry concerns; beyond it, every
/// agent is woken (correct, only slower).
pub(crate) const MAX_ANCESTRY: usize = 4096;

/// Memory: the index is built for a million entries, so each entry is held once (one `Arc`)
/// and every other structure points at it; the maps' SPIFFE ID keys share their text with the
/// entries' IDs (a parent ID's text is held once for all its children), and no entry id is
/// copied.
#[derive(Debug, Default)]
struct IndexState {
    /// Every entry, found by its id.
    entries: HashSet<ById>,
    by_parent: HashMap<SpiffeId, Group>,
    /// Entries by the SPIFFE ID they issue, to walk from a parent ID up to its own parents: a set
    /// keyed through its entries, so no slot holds a second copy of the ID (at 1M entries the
    /// table is most of the index's own memory).
    by_spiffe_id: HashSet<SpiffeGroup>,
    /// Every entry that expires, by `expires_at`, soonest first.
    expiries: BTreeMap<i64, Group>,
    /// The entries' owner names, each held once.
    owners: Owners,
}

/// An entry in a set that compares and hashes it by its id, so the set is a map from id to
/// entry that holds no second copy of the id.
#[derive(Debug, Clone)]
struct ById(Arc<IndexedEntry>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}

impl Eq for ById {}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes: `Borrow<str>` requires the same hash for the same id.
        self.0.id().hash(state);
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        self.0.id()
    }
}

/// The entries under one key: most SPIFFE IDs and expiry times have one, held without a `Vec`.
#[derive(Debug, Clone)]
enum Group {
    One(Arc<IndexedEntry>),
    Many(Vec<Arc<IndexedEntry>>),
}

impl Group {
    fn as_slice(&self) -> &[Arc<IndexedEntry>] {
        match self {
            Self::One(entry) => std::slice::from_ref(entry),
            Self::Many(list) => list,
        }
    }

    fn push(&mut self, entry: Arc<IndexedEntry>) {
        match self {
            Self::Many(list) => list.push(entry),
            Self::One(first) => {
                let first = Arc::clone(first);
                *self = Self::Many(vec![first, entry]);
            }
        }
    }

    /// Removes the entry with `id`, if there; returns whether the group is now empty.
    fn remove(&mut self, id: &str) -> bool {
        let list = match self {
            Self::One(entry) => return entry.id() == id,
            Self::Many(list) => list,
        };
        list.retain(|entry| entry.id() != id);
        if list.len() > 1 {
            if list.capacity() > 4 * list.len() {
                list.shrink_to(2 * list.len());
            }
            return false;
        }
        match list.pop() {
            Some(last) => {
                *self = Self::One(last);
                false
            }
            None => true,
        }
    }

    /// Drops the spare capacity growth left.
    fn shrink(&mut self) {
        if let Self::Many(list) = self {
            list.shrink_to_fit();
        }
    }
}

/// The entries that issue one SPIFFE ID: never empty, hashed and compared as that ID, so a set of
/// them is a map from the ID that holds the ID only inside its entries. Most IDs have one entry,
/// so the others sit behind a box that is absent then (a slot of the set is two pointers).
#[derive(Debug, Clone)]
struct SpiffeGroup {
    first: Arc<IndexedEntry>,
    #[expect(
        clippy::box_collection,
        reason = "one pointer, and no allocation, for the ID with one entry; a `Vec` is three"
    )]
    rest: Option<Box<Vec<Arc<IndexedEntry>>>>,
}

impl SpiffeGroup {
    fn new(entry: Arc<IndexedEntry>) -> Self {
        Self {
            first: entry,
            rest: None,
        }
    }

    fn key(&self) -> &SpiffeId {
        self.first.spiffe_id()
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<IndexedEntry>> {
        std::iter::once(&self.first).chain(self.rest.iter().flat_map(|rest| rest.iter()))
    }

    fn push(&mut self, entry: Arc<IndexedEntry>) {
        self.rest.get_or_insert_with(Box::default).push(entry);
    }

    /// Removes the entry with `id`, if there; `None` when the group is then empty.
    fn without(mut self, id: &str) -> Option<Self> {
        let Some(mut rest) = self.rest.take() else {
            return (self.first.id() != id).then_some(self);
        };
        if self.first.id() == id {
            self.first = rest.pop()?;
        } else {
            rest.retain(|entry| entry.id() != id);
        }
        if !rest.is_empty() {
            if rest.capacity() > 4 * rest.len() {
                rest.shrink_to(2 * rest.len());
            }
            self.rest = Some(rest);
        }
        Some(self)
    }
}

impl PartialEq for SpiffeGroup {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for SpiffeGroup {}

impl Hash for SpiffeGroup {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the ID hashes: `Borrow<SpiffeId>` requires the same hash for the same ID.
        self.key().hash(state);
    }
}

impl Borrow<SpiffeId> for SpiffeGroup {
    fn borrow(&self) -> &SpiffeId {
        self.key()
    }
}

/// The entries that issue `id`.
fn issuing<'a>(
    set: &'a HashSet<SpiffeGroup>,
    id: &SpiffeId,
) -> impl Iterator<Item = &'a Arc<IndexedEntry>> {
    set.get(id).into_iter().flat_map(SpiffeGroup::iter)
}

/// The entries under `key` in `map`.
fn group<'a>(map: &'a HashMap<SpiffeId, Group>, key: &SpiffeId) -> &'a [Arc<IndexedEntry>] {
    map.get(key).map(Group::as_slice).unwrap_or_default()
}

/// Whether, and why not, an agent may be issued an SVID for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAccess {
    /// The entry is in the agent's authorized set now.
    Authorized(Arc<IndexedEntry>),
    /// The entry hangs in the agent's tree but expired at this time (Unix seconds).
    Expired { expired_at: i64 },
    /// The entry is not in the agent's tree (or does not exist).
    NotAuthorized,
}

/// The agents a batch of changes concerns.
#[derive(Debug, Default)]
struct Concerned {
    /// Every agent (the bundle changed, or an ancestry was too wide to follow).
    all: bool,
    /// Agents named as a parent on the way up.
    agents: HashSet<SpiffeId>,
    /// Selector sets of the node aliases on the way up: every agent whose node selectors
    /// include one of them.
    aliases: Vec<Vec<Selector>>,
}

impl Concerned {
    fn is_empty(&self) -> bool {
        !self.all && self.agents.is_empty() && self.aliases.is_empty()
    }

    fn includes(&self, agent_id: &SpiffeId, selectors: &[Selector]) -> bool {
        self.all
            || self.agents.contains(agent_id)
            || self
                .aliases
                .iter()
                .any(|alias| alias.iter().all(|s| selectors.contains(s)))
    }
}

fn push<K: Eq + Hash>(map: &mut HashMap<K, Group>, key: K, entry: &Arc<IndexedEntry>) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut group) => {
            group.get_mut().push(Arc::clone(entry));
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(Group::One(Arc::clone(entry)));
        }
    }
}

fn remove_from(map: &mut HashMap<SpiffeId, Group>, key: &SpiffeId, id: &str) {
    if map.get_mut(key).is_some_and(|group| group.remove(id)) {
        map.remove(key);
    }
}

impl IndexState {
    fn insert(&mut self, mut entry: Entry) {
        self.remove(&entry.id);
        // Share the text of IDs already held: a parent ID with all its siblings' (and with the
        // entry that issues it, when nested), a SPIFFE ID with the entries it parents.
        entry.spec.parent_id = self.shared_id(entry.spec.parent_id);
        entry.spec.spiffe_id = self.shared_id(entry.spec.spiffe_id);
        let entry = Arc::new(IndexedEntry::from_entry(entry, &mut self.owners));
        if let Some(at) = entry.expires_at() {
            match self.expiries.entry(at) {
                std::collections::btree_map::Entry::Occupied(mut group) => {
                    group.get_mut().push(Arc::clone(&entry));
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(Group::One(Arc::clone(&entry)));
                }
            }
        }
        push(&mut self.by_parent, entry.parent_id().clone(), &entry);
        let issuers = match self.by_spiffe_id.take(entry.spiffe_id()) {
            Some(mut group) => {
                group.push(Arc::clone(&entry));
                group
            }
            None => SpiffeGroup::new(Arc::clone(&entry)),
        };
        self.by_spiffe_id.insert(issuers);
        self.entries.insert(ById(entry));
    }

    /// `id`, or an equal ID already held by the index (sharing its text).
    fn shared_id(&self, id: SpiffeId) -> SpiffeId {
        self.by_parent
            .get_key_value(&id)
            .map(|(held, _)| held)
            .or_else(|| self.by_spiffe_id.get(&id).map(SpiffeGroup::key))
            .map_or(id, Clone::clone)
    }

    /// Removes the entry with `id`; returns it if it was there.
    fn remove(&mut self, id: &str) -> Option<Arc<IndexedEntry>> {
        let ById(old) = self.entries.take(id)?;
        self.owners.release(&old);
        if let Some(at) = old.expires_at()
            && self
                .expiries
                .get_mut(&at)
                .is_some_and(|group| group.remove(id))
        {
            self.expiries.remove(&at);
        }
        remove_from(&mut self.by_parent, old.parent_id(), id);
        if let Some(rest) = self
            .by_spiffe_id
            .take(old.spiffe_id())
            .and_then(|group| group.without(id))
        {
            self.by_spiffe_id.insert(rest);
        }
        Some(old)
    }

    /// Drops the spare capacity that building the index left in its lists.
    fn shrink(&mut self) {
        for group in self.by_parent.values_mut() {
            group.shrink();
        }
        for group in self.expiries.values_mut() {
            group.shrink();
        }
    }

    fn get(&self, id: &str) -> Option<&Arc<IndexedEntry>> {
        self.entries.get(id).map(|ById(entry)| entry)
    }

    /// The earliest `expires_at` strictly after `after`.
    fn next_expiry_after(&self, after: i64) -> Option<i64> {
        self.expiries
            .range(after.saturating_add(1)..)
            .next()
            .map(|(at, _)| *at)
    }

    fn children(&self, parent: &SpiffeId) -> impl Iterator<Item = &Arc<IndexedEntry>> {
        group(&self.by_parent, parent).iter()
    }

    /// Adds to `out` the agents whose authorized set `entry` (as it is or was) belongs to: the
    /// tops of its ancestry, found by walking up from its parent.
    fn concerned_by(&self, entry: &IndexedEntry, server_id: &SpiffeId, out: &mut Concerned) {
        if out.all {
            return;
        }
        let mut seen: HashSet<&SpiffeId> = HashSet::new();
        let mut stack: Vec<(&SpiffeId, &[Selector])> = vec![(entry.parent_id(), entry.selectors())];
        while let Some((parent, selectors)) = stack.pop() {
            if !seen.insert(parent) {
                continue;
            }
            if seen.len() > MAX_ANCESTRY {
                out.all = true;
                return;
            }
            if parent == server_id {
                // The entry below is a node alias.
                out.aliases.push(selectors.to_vec());
                continue;
            }
            if naming::is_agent_id(parent) {
                out.agents.insert(parent.clone());
            }
            for above in issuing(&self.by_spiffe_id, parent) {
                stack.push((above.parent_id(), above.selectors()));
            }
        }
    }
}

/// One agent's subscription: its node selectors (for node aliases) and its wake-up channel.
#[derive(Debug)]
struct Subscriber {
    selectors: Vec<Selector>,
    wake: watch::Sender<u64>,
}

/// The entry index. Shared via `Arc`.
#[derive(Debug)]
pub struct EntryIndex {
    state: RwLock<IndexState>,
    server_id: SpiffeId,
    clock: Arc<dyn Clock>,
    /// Bumped by every applied batch that changes entries: the expiry timer reschedules on it.
    version: watch::Sender<u64>,
    /// Sync streams' wake-ups, by agent.
    subscribers: Mutex<HashMap<SpiffeId, Subscriber>>,
}

impl EntryIndex {
    /// Builds the index from the store and returns it with the change-feed position it reflects.
    pub async fn load(
        store: &dyn Datastore,
        trust_domain: &TrustDomain,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, u64), StoreError> {
        Self::load_in_pages(store, trust_domain, clock, LOAD_PAGE).await
    }

    /// [`EntryIndex::load`], reading `page` entries at a time.
    async fn load_in_pages(
        store: &dyn Datastore,
        trust_domain: &TrustDomain,
        clock: Arc<dyn Clock>,
        page_size: u32,
    ) -> Result<(Arc<Self>, u64), StoreError> {
        // Read the position first: changes after it are re-applied, which is idempotent.
        let position = store.latest_change().await?;
        let mut state = IndexState::default();
        // Page by page: a change between pages is in the feed after `position`, and re-applied.
        let mut after: Option<String> = None;
        loop {
            let page = store
                .list_entries_page(&EntryFilter::default(), after.as_deref(), page_size)
                .await?;
            let last_page = page.len() < page_size as usize;
            after = page.last().map(|entry| entry.id.clone());
            for entry in page {
                state.insert(entry);
            }
            if last_page {
                break;
            }
        }
        state.shrink();
        let (version, _) = watch::channel(0);
        let index = Arc::new(Self {
            state: RwLock::new(state),
            server_id: naming::server_id(trust_domain),
            clock,
            version,
            subscribers: Mutex::new(HashMap::new()),
        });
        Ok((index, position))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that changes whenever a batch changed entries (not on expiry, not for bundle
    /// changes): for whoever must reschedule on any entry change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// A receiver that changes whenever what the agent `agent_id` with node `selectors` is
    /// served may have changed: an entry of its tree changed or expired, or the bundle changed.
    /// Batches that concern only other agents do not wake it.
    pub fn subscribe_agent(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
    ) -> watch::Receiver<u64> {
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let subscriber = subscribers
            .entry(agent_id.clone())
            .or_insert_with(|| Subscriber {
                selectors: Vec::new(),
                wake: watch::channel(0).0,
            });
        // The newest stream's view of the agent wins (selectors change only on re-attestation).
        selectors.clone_into(&mut subscriber.selectors);
        subscriber.wake.subscribe()
    }

    /// Wakes the subscribers `concerned` includes, forgetting those nobody listens to anymore.
    /// When it names agents only (the common case: an entry under an agent), just those are
    /// looked up, so the cost does not grow with the number of subscribed agents.
    fn wake(&self, concerned: &Concerned) {
        if concerned.is_empty() {
            return;
        }
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !concerned.all && concerned.aliases.is_empty() {
            for agent_id in &concerned.agents {
                let Some(subscriber) = subscribers.get(agent_id) else {
                    continue;
                };
                if subscriber.wake.receiver_count() == 0 {
                    subscribers.remove(agent_id);
                } else {
                    subscriber.wake.send_modify(|v| *v = v.wrapping_add(1));
                }
            }
            return;
        }
        subscribers.retain(|agent_id, subscriber| {
            if subscriber.wake.receiver_count() == 0 {
                return false;
            }
            if concerned.includes(agent_id, &subscriber.selectors) {
                subscriber.wake.send_modify(|v| *v = v.wrapping_add(1));
            }
            true
        });
    }

    /// Wakes every agent: what they all carry (the trust bundle) changed.
    pub fn wake_all(&self) {
        self.wake(&Concerned {
            all: true,
            ..Concerned::default()
        });
    }

    /// The entry with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<IndexedEntry>> {
        self.read().get(id).cloned()
    }

    /// Number of entries indexed.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }
    /// Whether the index holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries an agent with `agent_id` and node `selectors` may serve now (on the index's
    /// clock), ordered by entry id. Expired entries and everything under them are left out.
    pub fn authorized_entries(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
    ) -> Vec<Arc<IndexedEntry>> {
        let mut out: Vec<Arc<IndexedEntry>> = Vec::new();
        self.walk(agent_id, selectors, |entry, expired| {
            if !expired {
                out.push(Arc::clone(entry));
            }
        });
        // The walk visits each entry once.
        out.sort_unstable_by(|a, b| a.id().cmp(b.id()));
        out
    }

    /// Whether the agent may be issued an SVID for entry `entry_id` now: the entry if so, or
    /// why not. An entry that is in the agent's tree but has expired is reported as such.
    pub fn entry_access(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
        entry_id: &str,
    ) -> EntryAccess {
        // Walk up from the entry rather than down the agent's whole tree: the cost is the
        // entry's ancestry, not the size of the agent's set (this runs on every issuance).
        let state = self.read();
        let Some(entry) = state.get(entry_id) else {
            return EntryAccess::NotAuthorized;
        };
        let now = self.clock.unix_secs();
        match self.in_agent_tree(&state, entry.parent_id(), agent_id, selectors, now) {
            Some(true) => match entry.expires_at() {
                Some(expired_at) if expired_at <= now => EntryAccess::Expired { expired_at },
                _ => EntryAccess::Authorized(entry.clone()),
            },
            Some(false) => EntryAccess::NotAuthorized,
            None => {
                drop(state);
                self.entry_access_by_walk(agent_id, selectors, entry_id)
            }
        }
    }

    /// Whether `parent` is a node of the agent's tree, so that an entry under it is in the
    /// agent's set: the agent's own ID, the SPIFFE ID of an unexpired node alias whose
    /// selectors are all among the agent's, or the SPIFFE ID of an unexpired entry whose own
    /// parent is such a node (the rule [`Self::walk`] applies from the top). `None` when more
    /// than [`MAX_ANCESTRY`] IDs would be visited.
    fn in_agent_tree(
        &self,
        state: &IndexState,
        parent: &SpiffeId,
        agent_id: &SpiffeId,
        selectors: &[Selector],
        now: i64,
    ) -> Option<bool> {
        let mut seen: HashSet<&SpiffeId> = HashSet::new();
        let mut pending: Vec<&SpiffeId> = vec![parent];
        while let Some(id) = pending.pop() {
            if id == agent_id {
                return Some(true);
            }
            if !seen.insert(id) {
                continue;
            }
            if seen.len() > MAX_ANCESTRY {
                return None;
            }
            for holder in issuing(&state.by_spiffe_id, id) {
                if holder.expired_at(now) {
                    continue;
                }
                if *holder.parent_id() == self.server_id
                    && holder.selectors().iter().all(|s| selectors.contains(s))
                {
                    return Some(true);
                }
                pending.push(holder.parent_id());
            }
        }
        Some(false)
    }

    /// [`Self::entry_access`] by walking the agent's whole tree from the top.
    fn entry_access_by_walk(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
        entry_id: &str,
    ) -> EntryAccess {
        let mut access = EntryAccess::NotAuthorized;
        self.walk(agent_id, selectors, |entry, expired| {
            if entry.id() == entry_id {
                access = match (expired, entry.expires_at()) {
                    (true, Some(expired_at)) => EntryAccess::Expired { expired_at },
                    _ => EntryAccess::Authorized(entry.clone()),
                };
            }
        });
        access
    }

    /// Whether the agent may serve entry `entry_id`; returns the entry if so.
    pub fn authorized_entry(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
        entry_id: &str,
    ) -> Option<Arc<IndexedEntry>> {
        match self.entry_access(agent_id, selectors, entry_id) {
            EntryAccess::Authorized(entry) => Some(entry),
            EntryAccess::Expired { .. } | EntryAccess::NotAuthorized => None,
        }
    }

    /// The unexpired entries (on the index's clock) that issue `spiffe_id`, ordered by entry
    /// id; empty when none does.
    pub fn entries_with_spiffe_id(&self, spiffe_id: &SpiffeId) -> Vec<Arc<IndexedEntry>> {
        let state = self.read();
        let now = self.clock.unix_secs();
        let mut out: Vec<Arc<IndexedEntry>> = issuing(&state.by_spiffe_id, spiffe_id)
            .filter(|entry| entry.expires_at().is_none_or(|at| at > now))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id().cmp(b.id()));
        out
    }

    /// The earliest entry expiry strictly after `after` (Unix seconds), if any.
    pub fn next_expiry_after(&self, after: i64) -> Option<i64> {
        self.read().next_expiry_after(after)
    }

    /// Visits each entry of the agent's tree once with whether it has expired; expired entries
    /// are visited but not descended into, so their children are not served either.
    fn walk(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
        mut visit: impl FnMut(&Arc<IndexedEntry>, bool),
    ) {
        let state = self.read();
        let now = self.clock.unix_secs();
        let expired = |entry: &IndexedEntry| entry.expired_at(now);
        let mut roots: Vec<SpiffeId> = vec![agent_id.clone()];
        roots.extend(
            state
                .children(&self.server_id)
                .filter(|alias| alias.selectors().iter().all(|s| selectors.contains(s)))
                .filter(|alias| !expired(alias))
                .map(|alias| alias.spiffe_id().clone()),
        );
        let mut seen_entries: HashSet<&str> = HashSet::new();
        let mut seen_parents: HashSet<SpiffeId> = HashSet::new();
        let mut queue: VecDeque<SpiffeId> = roots.into();
        while let Some(parent) = queue.pop_front() {
            if !seen_parents.insert(parent.clone()) {
                continue;
            }
            for entry in state.children(&parent) {
                if !seen_entries.insert(entry.id()) {
                    continue;
                }
                let gone = expired(entry);
                visit(entry, gone);
                if !gone {
                    queue.push_back(entry.spiffe_id().clone());
                }
            }
        }
    }

    /// Wakes the agents of each expiring entry at its `expires_at` until `shutdown` resolves, so
    /// their sync streams recompute (and drop the entry) even when nothing else changes.
    ///
    /// Sleeps until the next expiry on the injected clock (re-reading it at least every
    /// [`MAX_EXPIRY_SLEEP`]); a new or changed entry wakes it to reschedule. A timer that fires
    /// before the clock reaches the expiry (a fake clock not yet advanced) just sleeps again.
    pub async fn run_expiry(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut versions = self.subscribe();
        // Entries that expired before this instant are already left out by every reader.
        let mut expired_through = self.clock.unix_secs();
        loop {
            // Marked before reading the state, so a change landing meanwhile wakes the select.
            versions.mark_unchanged();
            let next = self.next_expiry_after(expired_through);
            let sleep = match next {
                Some(at) => from_unix_secs(at)
                    .duration_since(self.clock.now())
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_EXPIRY_SLEEP),
                None => MAX_EXPIRY_SLEEP,
            };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {
                    let now = self.clock.unix_secs();
                    if next.is_some_and(|at| at <= now) {
                        let concerned = self.expired_between(expired_through, now);
                        expired_through = now;
                        tracing::debug!(at = now, "registration entries expired");
                        self.wake(&concerned);
                    }
                }
                changed = versions.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The agents concerned by the entries that expire in `(after, through]`.
    fn expired_between(&self, after: i64, through: i64) -> Concerned {
        let state = self.read();
        let mut concerned = Concerned::default();
        if after >= through {
            return concerned;
        }
        for (_, group) in state.expiries.range(after.saturating_add(1)..=through) {
            for entry in group.as_slice() {
                state.concerned_by(entry, &self.server_id, &mut concerned);
            }
        }
        concerned
    }

    /// Applies every change after `position`; returns the new position. The server follows the
    /// feed with [`crate::feed::follow`]; this is the same catch-up for one index.
    pub async fn apply_changes(
        &self,
        store: &dyn Datastore,
        mut position: u64,
    ) -> Result<u64, StoreError> {
        loop {
            let batch = store.changes_since(position, FEED_BATCH).await?;
            let Some(last) = batch.last() else {
                return Ok(position);
            };
            position = last.seq;
            self.apply_batch(store, &batch).await?;
            if batch.len() < FEED_BATCH as usize {
                return Ok(position);
            }
        }
    }

    /// Applies one batch of the feed in place: re-reads each changed entry from `store` (before
    /// taking the lock), applies them all under one write lock, and wakes the agents whose
    /// authorized set they may change (before and after the change). Bundle and authority
    /// changes wake every agent, because sync streams carry the bundle. A batch of agent or
    /// join-token changes only (renewals, bans) wakes no one here: those reach streams through
    /// the agent index.
    pub async fn apply_batch(
        &self,
        store: &dyn Datastore,
        batch: &[ChangeEvent],
    ) -> Result<(), StoreError> {
        let mut concerned = Concerned {
            all: batch.iter().any(|event| {
                matches!(
                    event.change,
                    Change::BundleChanged(_)
                        | Change::BundleDeleted(_)
                        | Change::AuthorityChanged(_)
                        | Change::AuthorityDeleted(_)
                )
            }),
            ..Concerned::default()
        };
        let mut fetched: Vec<(&str, Option<Entry>)> = Vec::new();
        for event in batch {
            match &event.change {
                Change::EntryCreated(id) | Change::EntryUpdated(id) => {
                    fetched.push((id, store.get_entry(id).await?));
                }
                Change::EntryDeleted(id) => fetched.push((id, None)),
                _ => {}
            }
        }
        if !fetched.is_empty() {
            {
                let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
                for (id, entry) in fetched {
                    if let Some(old) = state.remove(id) {
                        state.concerned_by(&old, &self.server_id, &mut concerned);
                    }
                    if let Some(entry) = entry {
                        state.insert(entry);
                        if let Some(new) = state.get(id).cloned() {
                            state.concerned_by(&new, &self.server_id, &mut concerned);
                        }
                    }
                }
            }
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
        self.wake(&concerned);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sigil_store::{NewEntry, SqliteStore};
    use sigil_testkit::FakeClock;

    use super::*;

    const START: i64 = 1_700_000_000;
    const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a1";
    const OTHER_AGENT: &str = "spiffe://example.org/sigil/agent/join_token/b2";
    const SERVER: &str = "spiffe://example.org/sigil/server";

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn selectors(list: &[&str]) -> Vec<Selector> {
        list.iter().map(|s| Selector::parse(s).unwrap()).collect()
    }

    fn spec(spiffe_id: &str, parent_id: &str, sels: &[&str]) -> NewEntry {
        NewEntry::new(id(spiffe_id), id(parent_id), selectors(sels), "team-test")
    }

    struct Fixture {
        store: SqliteStore,
        clock: FakeClock,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                store: SqliteStore::open_in_memory().unwrap(),
                clock: FakeClock::new(from_unix_secs(START)),
            }
        }

        async fn create(&self, spec: NewEntry) -> Entry {
            self.store.create_entry(spec, START).await.unwrap()
        }

        async fn index(&self) -> (Arc<EntryIndex>, u64) {
            EntryIndex::load(&self.store, &td(), Arc::new(self.clock.clone()))
                .await
                .unwrap()
        }
    }

    fn ids(entries: &[Arc<IndexedEntry>]) -> Vec<String> {
        let mut ids: Vec<String> = entries.iter().map(|e| e.spiffe_id().to_string()).collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn serves_direct_children_of_the_agent_only() {
        let f = Fixture::new();
        let mine = f
            .create(spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]))
            .await;
        f.create(spec(
            "spiffe://example.org/db",
            OTHER_AGENT,
            &["unix:uid:2"],
        ))
        .await;
        let (index, _) = f.index().await;

        let got = index.authorized_entries(&id(AGENT), &[]);
        assert_eq!(ids(&got), ["spiffe://example.org/web"]);
        assert!(index.authorized_entry(&id(AGENT), &[], &mine.id).is_some());
        assert_eq!(
            ids(&index.authorized_entries(&id(OTHER_AGENT), &[])),
            ["spiffe://example.org/db"]
        );
        assert!(
            index
                .authorized_entry(&id(OTHER_AGENT), &[], &mine.id)
                .is_none()
        );
    }

    #[tokio::test]
    async fn node_alias_children_are_served_when_alias_selectors_are_a_subset_of_the_agents() {
        let f = Fixture::new();
        f.create(spec(
            "spiffe://example.org/nodes/eu",
            SERVER,
            &["region:eu", "tier:web"],
        ))
        .await;
        let child = f
            .create(spec(
                "spiffe://example.org/eu-web",
                "spiffe://example.org/nodes/eu",
                &["unix:uid:1"],
            ))
            .await;
        let (index, _) = f.index().await;

        let matching = selectors(&["region:eu", "tier:web", "zone:a"]);
        let got = index.authorized_entries(&id(AGENT), &matching);
        // The alias itself is not served, only what hangs under it.
        assert_eq!(ids(&got), ["spiffe://example.org/eu-web"]);
        assert!(
            index
                .authorized_entry(&id(AGENT), &matching, &child.id)
                .is_some()
        );

        let partial = selectors(&["region:eu"]);
        assert!(index.authorized_entries(&id(AGENT), &partial).is_empty());
        let other = selectors(&["region:us", "tier:web"]);
        assert!(index.authorized_entries(&id(AGENT), &other).is_empty());
        assert!(
            index
                .authorized_entry(&id(AGENT), &other, &child.id)
                .is_none()
        );
    }

    #[tokio::test]
    async fn descendants_of_authorized_entries_are_served_transitively() {
        let f = Fixture::new();
        f.create(spec("spiffe://example.org/a", AGENT, &["unix:uid:1"]))
            .await;
        f.create(spec(
            "spiffe://example.org/b",
            "spiffe://example.org/a",
            &["k8s:ns:b"],
        ))
        .await;
        f.create(spec(
            "spiffe://example.org/c",
            "spiffe://example.org/b",
            &["k8s:ns:c"],
        ))
        .await;
        // Hangs under an entry that no agent-authorized chain reaches.
        f.create(spec(
            "spiffe://example.org/x",
            "spiffe://example.org/elsewhere",
            &["k8s:ns:x"],
        ))
        .await;
        let (index, _) = f.index().await;

        assert_eq!(
            ids(&index.authorized_entries(&id(AGENT), &[])),
            [
                "spiffe://example.org/a",
                "spiffe://example.org/b",
                "spiffe://example.org/c"
            ]
        );
        assert!(index.authorized_entries(&id(OTHER_AGENT), &[]).is_empty());
    }

    #[tokio::test]
    async fn a_parent_cycle_terminates_and_serves_each_entry_once() {
        let f = Fixture::new();
        f.create(spec("spiffe://example.org/a", AGENT, &["unix:uid:1"]))
            .await;
        f.create(spec(
            "spiffe://example.org/b",
            "spiffe://example.org/a",
            &["k8s:ns:b"],
        ))
        .await;
        // Closes the loop a -> b -> a (a second entry for /a, parented by /b).
        f.create(spec(
            "spiffe://example.org/a",
            "spiffe://example.org/b",
            &["k8s:ns:a"],
        ))
        .await;
        let (index, _) = f.index().await;

        let got = index.authorized_entries(&id(AGENT), &[]);
        assert_eq!(
            ids(&got),
            [
                "spiffe://example.org/a",
                "spiffe://example.org/a",
                "spiffe://example.org/b"
            ]
        );
        let mut entry_ids: Vec<&str> = got.iter().map(|e| e.id()).collect();
        entry_ids.dedup();
        assert_eq!(entry_ids.len(), 3, "entries are listed once each");
    }

    #[tokio::test]
    async fn expired_entries_and_their_descendants_are_not_served() {
        let f = Fixture::new();
        let mut parent = spec("spiffe://example.org/a", AGENT, &["unix:uid:1"]);
        parent.expires_at = Some(START + 60);
        f.create(parent).await;
        f.create(spec(
            "spiffe://example.org/b",
            "spiffe://example.org/a",
            &["k8s:ns:b"],
        ))
        .await;
        let mut alias = spec("spiffe://example.org/nodes/eu", SERVER, &["region:eu"]);
        alias.expires_at = Some(START + 60);
        f.create(alias).await;
        f.create(spec(
            "spiffe://example.org/eu-web",
            "spiffe://example.org/nodes/eu",
            &["unix:uid:2"],
        ))
        .await;
        let (index, _) = f.index().await;
        let node = selectors(&["region:eu"]);

        assert_eq!(index.authorized_entries(&id(AGENT), &node).len(), 3);

        f.clock.advance(std::time::Duration::from_secs(60));
        assert!(index.authorized_entries(&id(AGENT), &node).is_empty());
        // Unrelated to expiry: the index itself still holds every entry.
        assert_eq!(index.len(), 4);
    }

    #[tokio::test]
    async fn apply_changes_follows_creates_updates_and_deletes_and_bumps_the_version() {
        let f = Fixture::new();
        let (index, start) = f.index().await;
        let mut version = index.subscribe();
        assert!(index.is_empty());

        let created = f
            .create(spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]))
            .await;
        // Not visible until the change is applied: the index never reads the store on its own.
        assert!(index.get(&created.id).is_none());
        let after_create = index.apply_changes(&f.store, start).await.unwrap();
        assert!(after_create > start);
        assert!(version.has_changed().unwrap());
        version.mark_unchanged();
        assert!(
            index
                .authorized_entry(&id(AGENT), &[], &created.id)
                .is_some()
        );

        let mut moved = created.spec.clone();
        moved.parent_id = id(OTHER_AGENT);
        f.store
            .update_entry(&created.id, moved, Some(created.revision), START)
            .await
            .unwrap();
        let after_update = index.apply_changes(&f.store, after_create).await.unwrap();
        assert!(after_update > after_create);
        assert!(version.has_changed().unwrap());
        version.mark_unchanged();
        assert!(index.authorized_entries(&id(AGENT), &[]).is_empty());
        assert!(
            index
                .authorized_entry(&id(OTHER_AGENT), &[], &created.id)
                .is_some()
        );
        assert_eq!(
            index.get(&created.id).unwrap().revision(),
            created.revision + 1
        );

        f.store.delete_entry(&created.id).await.unwrap();
        let after_delete = index.apply_changes(&f.store, after_update).await.unwrap();
        assert!(after_delete > after_update);
        assert!(version.has_changed().unwrap());
        version.mark_unchanged();
        assert!(index.get(&created.id).is_none());
        assert!(index.authorized_entries(&id(OTHER_AGENT), &[]).is_empty());

        // Nothing new: the position stays and no version is published.
        let idle = index.apply_changes(&f.store, after_delete).await.unwrap();
        assert_eq!(idle, after_delete);
        assert!(!version.has_changed().unwrap());
    }

    #[tokio::test]
    async fn entry_access_tells_an_expired_entry_from_one_never_authorized() {
        let f = Fixture::new();
        let mut expiring = spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]);
        expiring.expires_at = Some(START + 60);
        let entry = f.create(expiring).await;
        let theirs = f
            .create(spec(
                "spiffe://example.org/db",
                OTHER_AGENT,
                &["unix:uid:2"],
            ))
            .await;
        let (index, _) = f.index().await;
        assert!(matches!(
            index.entry_access(&id(AGENT), &[], &entry.id),
            EntryAccess::Authorized(_)
        ));
        f.clock.advance(Duration::from_secs(60));
        assert_eq!(
            index.entry_access(&id(AGENT), &[], &entry.id),
            EntryAccess::Expired {
                expired_at: START + 60
            }
        );
        assert_eq!(
            index.entry_access(&id(AGENT), &[], &theirs.id),
            EntryAccess::NotAuthorized
        );
        assert_eq!(index.next_expiry_after(START), Some(START + 60));
        assert_eq!(index.next_expiry_after(START + 60), None);
    }

    /// The expiry timer on paused tokio time, with the fake clock moved in step: no version bump
    /// before the entry's `expires_at`, one at it, with no store change at all.
    #[tokio::test(start_paused = true)]
    async fn expiry_bumps_the_version_at_the_next_expires_at_and_not_before() {
        let f = Fixture::new();
        let mut first = spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]);
        first.expires_at = Some(START + 60);
        f.create(first).await;
        let mut second = spec("spiffe://example.org/api", AGENT, &["unix:uid:2"]);
        second.expires_at = Some(START + 90);
        f.create(second).await;
        f.create(spec("spiffe://example.org/db", AGENT, &["unix:uid:3"]))
            .await;
        let (index, _) = f.index().await;
        let (stop, stopped) = watch::channel(false);
        let timer = tokio::spawn(index.clone().run_expiry(stopped));
        let mut version = index.subscribe_agent(&id(AGENT), &[]);
        let other = index.subscribe_agent(&id(OTHER_AGENT), &[]);
        let advance = async |secs: u64| {
            f.clock.advance(Duration::from_secs(secs));
            tokio::time::advance(Duration::from_secs(secs)).await;
            // Let the timer task run.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        };

        advance(59).await;
        assert!(!version.has_changed().unwrap(), "bumped before expiry");
        assert_eq!(index.authorized_entries(&id(AGENT), &[]).len(), 3);

        advance(1).await;
        assert!(version.has_changed().unwrap(), "no bump at the expiry");
        version.mark_unchanged();
        assert_eq!(
            ids(&index.authorized_entries(&id(AGENT), &[])),
            ["spiffe://example.org/api", "spiffe://example.org/db"]
        );

        advance(29).await;
        assert!(!version.has_changed().unwrap());
        advance(1).await;
        assert!(
            version.has_changed().unwrap(),
            "no bump at the second expiry"
        );
        assert_eq!(
            ids(&index.authorized_entries(&id(AGENT), &[])),
            ["spiffe://example.org/db"]
        );
        assert!(
            !other.has_changed().unwrap(),
            "an agent without expiring entries was woken"
        );
        stop.send(true).unwrap();
        timer.await.unwrap();
    }

    /// A timer that fires while the clock has not reached the expiry (the fake clock lagging
    /// behind real sleeps) sleeps again instead of publishing early.
    #[tokio::test(start_paused = true)]
    async fn expiry_timer_waits_for_the_clock_not_for_the_sleep() {
        let f = Fixture::new();
        let mut expiring = spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]);
        expiring.expires_at = Some(START + 60);
        f.create(expiring).await;
        let (index, _) = f.index().await;
        let (stop, stopped) = watch::channel(false);
        let timer = tokio::spawn(index.clone().run_expiry(stopped));
        let version = index.subscribe_agent(&id(AGENT), &[]);

        tokio::time::advance(Duration::from_secs(120)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !version.has_changed().unwrap(),
            "published on the timer alone"
        );

        f.clock.advance(Duration::from_secs(60));
        // The timer re-reads the clock at least every MAX_EXPIRY_SLEEP.
        tokio::time::advance(MAX_EXPIRY_SLEEP).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(version.has_changed().unwrap());
        assert!(index.authorized_entries(&id(AGENT), &[]).is_empty());
        stop.send(true).unwrap();
        timer.await.unwrap();
    }

    /// Applies everything new in the store to `index`, from `position`; returns the new position.
    async fn catch_up(f: &Fixture, index: &EntryIndex, position: u64) -> u64 {
        index.apply_changes(&f.store, position).await.unwrap()
    }

    /// Whether `rx` was woken since last asked, and marks it seen.
    fn woken(rx: &mut watch::Receiver<u64>) -> bool {
        let changed = rx.has_changed().unwrap();
        rx.mark_unchanged();
        changed
    }

    #[tokio::test]
    async fn a_change_wakes_only_the_agents_whose_tree_it_is_in() {
        let f = Fixture::new();
        let web = f
            .create(spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]))
            .await;
        f.create(spec(
            "spiffe://example.org/db",
            OTHER_AGENT,
            &["unix:uid:2"],
        ))
        .await;
        let (index, mut pos) = f.index().await;
        let mut mine = index.subscribe_agent(&id(AGENT), &[]);
        let mut theirs = index.subscribe_agent(&id(OTHER_AGENT), &[]);

        // A grandchild: found by walking up through `web` to AGENT.
        let child = f
            .create(spec(
                "spiffe://example.org/web/worker",
                "spiffe://example.org/web",
                &["unix:uid:3"],
            ))
            .await;
        pos = catch_up(&f, &index, pos).await;
        assert!(woken(&mut mine));
        assert!(!woken(&mut theirs), "an unrelated agent was woken");

        // Moving `web` to the other agent concerns both: the old tree and the new one.
        let mut moved = web.spec.clone();
        moved.parent_id = id(OTHER_AGENT);
        f.store
            .update_entry(&web.id, moved, Some(web.revision), START)
            .await
            .unwrap();
        pos = catch_up(&f, &index, pos).await;
        assert!(woken(&mut mine));
        assert!(woken(&mut theirs));
        assert_eq!(
            ids(&index.authorized_entries(&id(OTHER_AGENT), &[])),
            [
                "spiffe://example.org/db",
                "spiffe://example.org/web",
                "spiffe://example.org/web/worker"
            ]
        );

        // Deleting the grandchild now concerns only its new tree.
        f.store.delete_entry(&child.id).await.unwrap();
        catch_up(&f, &index, pos).await;
        assert!(!woken(&mut mine));
        assert!(woken(&mut theirs));
    }

    #[tokio::test]
    async fn a_node_alias_change_wakes_the_agents_whose_selectors_include_it() {
        let f = Fixture::new();
        let (index, mut pos) = f.index().await;
        let mut in_a = index.subscribe_agent(&id(AGENT), &selectors(&["node:zone:a"]));
        let mut in_b = index.subscribe_agent(&id(OTHER_AGENT), &selectors(&["node:zone:b"]));

        f.create(spec(
            "spiffe://example.org/zone-a",
            SERVER,
            &["node:zone:a"],
        ))
        .await;
        pos = catch_up(&f, &index, pos).await;
        assert!(woken(&mut in_a));
        assert!(!woken(&mut in_b), "an agent outside the alias was woken");

        f.create(spec(
            "spiffe://example.org/zone-a/web",
            "spiffe://example.org/zone-a",
            &["unix:uid:1"],
        ))
        .await;
        catch_up(&f, &index, pos).await;
        assert!(woken(&mut in_a));
        assert!(!woken(&mut in_b));
        assert_eq!(
            ids(&index.authorized_entries(&id(AGENT), &selectors(&["node:zone:a"]))),
            ["spiffe://example.org/zone-a/web"]
        );
    }

    #[tokio::test]
    async fn bundle_changes_wake_every_agent_and_agent_changes_none() {
        let f = Fixture::new();
        let (index, _) = f.index().await;
        let mut mine = index.subscribe_agent(&id(AGENT), &[]);
        let mut theirs = index.subscribe_agent(&id(OTHER_AGENT), &[]);
        let event = |seq, change| ChangeEvent {
            seq,
            change,
            at: START,
        };
        index
            .apply_batch(&f.store, &[event(1, Change::AgentChanged(AGENT.into()))])
            .await
            .unwrap();
        assert!(!woken(&mut mine));
        assert!(!woken(&mut theirs));
        index
            .apply_batch(
                &f.store,
                &[event(2, Change::BundleChanged("example.org".into()))],
            )
            .await
            .unwrap();
        assert!(woken(&mut mine));
        assert!(woken(&mut theirs));
    }

    #[tokio::test]
    async fn subscribers_nobody_listens_to_are_forgotten() {
        let f = Fixture::new();
        let (index, pos) = f.index().await;
        drop(index.subscribe_agent(&id(AGENT), &[]));
        let _kept = index.subscribe_agent(&id(OTHER_AGENT), &[]);
        f.create(spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]))
            .await;
        catch_up(&f, &index, pos).await;
        let subscribers = index.subscribers.lock().unwrap();
        assert!(!subscribers.contains_key(&id(AGENT)));
        assert!(subscribers.contains_key(&id(OTHER_AGENT)));
    }

    /// Pages of 2 over 4 and 5 entries: a full last page, then a short one; and deleting every
    /// entry leaves no key behind in any map.
    #[tokio::test]
    async fn load_reads_every_page_and_removal_leaves_no_keys() {
        let f = Fixture::new();
        for n in 0..5 {
            let mut entry = spec(
                &format!("spiffe://example.org/w{n}"),
                AGENT,
                &["unix:uid:1"],
            );
            entry.expires_at = Some(START + 60);
            f.create(entry).await;
            let (index, _) =
                EntryIndex::load_in_pages(&f.store, &td(), Arc::new(f.clock.clone()), 2)
                    .await
                    .unwrap();
            assert_eq!(index.len(), n + 1);
            assert_eq!(index.authorized_entries(&id(AGENT), &[]).len(), n + 1);
        }
        let (index, position) = f.index().await;
        for entry in f.store.list_entries(&EntryFilter::default()).await.unwrap() {
            f.store.delete_entry(&entry.id).await.unwrap();
        }
        catch_up(&f, &index, position).await;
        let state = index.read();
        assert!(state.entries.is_empty());
        assert!(state.by_parent.is_empty());
        assert!(state.by_spiffe_id.is_empty());
        assert!(state.expiries.is_empty());
    }

    #[tokio::test]
    async fn load_reflects_entries_already_in_the_store() {
        let f = Fixture::new();
        let entry = f
            .create(spec("spiffe://example.org/web", AGENT, &["unix:uid:1"]))
            .await;
        let (index, position) = f.index().await;
        assert_eq!(position, f.store.latest_change().await.unwrap());
        assert_eq!(index.len(), 1);
        assert_eq!(
            index.get(&entry.id).as_deref(),
            Some(&IndexedEntry::from(entry.clone()))
        );
    }

    /// The upward check agrees with the walk from the top on every (agent, entry) pair of a
    /// tangled random graph: nesting, node aliases, cycles, expired links, several entries
    /// sharing a SPIFFE ID.
    #[tokio::test]
    async fn entry_access_upward_agrees_with_the_walk_from_the_top() {
        let f = Fixture::new();
        let agents = [AGENT, OTHER_AGENT];
        let nodes: Vec<String> = (0..12)
            .map(|i| format!("spiffe://example.org/n{i}"))
            .collect();
        let sels = ["k:a", "k:b", "k:c"];
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            usize::try_from(seed >> 33).unwrap() % n
        };
        let mut created = Vec::new();
        for _ in 0..60 {
            let spiffe_id = nodes[next(nodes.len())].clone();
            let parent = match next(4) {
                0 => agents[next(2)].to_owned(),
                1 => SERVER.to_owned(),
                _ => nodes[next(nodes.len())].clone(),
            };
            let mut own: Vec<&str> = vec![sels[next(3)]];
            if next(2) == 0 {
                own.push(sels[next(3)]);
            }
            own.sort();
            own.dedup();
            let mut entry = spec(&spiffe_id, &parent, &own);
            if next(5) == 0 {
                entry.expires_at = Some(START + 30);
            }
            // A repeat of an earlier (SPIFFE ID, parent, selectors) is refused: skip it.
            if let Ok(entry) = f.store.create_entry(entry, START).await {
                created.push(entry);
            }
        }
        f.clock.advance(Duration::from_secs(30));
        let (index, _) = f.index().await;
        let agent_selectors = [selectors(&["k:a"]), selectors(&["k:a", "k:b"]), vec![]];
        let (mut authorized, mut expired, mut refused) = (0, 0, 0);
        for agent in agents {
            for node_selectors in &agent_selectors {
                for entry in &created {
                    let fast = index.entry_access(&id(agent), node_selectors, &entry.id);
                    let walk = index.entry_access_by_walk(&id(agent), node_selectors, &entry.id);
                    assert_eq!(fast, walk, "{agent} {node_selectors:?} {entry:?}");
                    match fast {
                        EntryAccess::Authorized(_) => authorized += 1,
                        EntryAccess::Expired { .. } => expired += 1,
                        EntryAccess::NotAuthorized => refused += 1,
                    }
                }
            }
        }
        // Every outcome occurs, or the comparison proves little.
        assert!(
            authorized > 0 && expired > 0 && refused > 0,
            "{authorized} authorized, {expired} expired, {refused} refused"
        );
        assert_eq!(
            index.entry_access(&id(AGENT), &[], "no-such-entry"),
            EntryAccess::NotAuthorized
        );
    }
}
