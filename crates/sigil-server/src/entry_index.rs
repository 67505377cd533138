//! The in-memory index of registration entries that answers "which entries may this agent
//! serve?" without touching the datastore. It is built once at start and then kept current by
//! the datastore's change feed (never by periodic rescans); every applied batch bumps a version
//! on a `watch` channel so agent sync streams can push the new state at once.
//!
//! Authorization rule: an agent may serve (1) entries whose parent is the agent's SPIFFE ID,
//! (2) entries whose parent is a node alias — an entry parented by the server's ID whose
//! selectors are all among the agent's node selectors — and (3) transitively, entries whose parent
//! is the SPIFFE ID of an entry already authorized. Expired entries are never served.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use sigil_spiffe::{Clock, Selector, SpiffeId, TrustDomain};
use sigil_store::{Change, Datastore, Entry, EntryFilter, StoreError};
use tokio::sync::watch;

use crate::naming;

/// Changes read from the feed per call.
const FEED_BATCH: u32 = 1000;

#[derive(Debug, Default, Clone)]
struct IndexState {
    entries: HashMap<String, Arc<Entry>>,
    by_parent: HashMap<SpiffeId, Vec<String>>,
}

impl IndexState {
    fn insert(&mut self, entry: Entry) {
        self.remove(&entry.id);
        let parent = entry.spec.parent_id.clone();
        let id = entry.id.clone();
        self.entries.insert(id.clone(), Arc::new(entry));
        self.by_parent.entry(parent).or_default().push(id);
    }

    fn remove(&mut self, id: &str) {
        if let Some(old) = self.entries.remove(id)
            && let Some(ids) = self.by_parent.get_mut(&old.spec.parent_id)
        {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_parent.remove(&old.spec.parent_id);
            }
        }
    }

    fn children(&self, parent: &SpiffeId) -> impl Iterator<Item = &Arc<Entry>> {
        self.by_parent
            .get(parent)
            .into_iter()
            .flatten()
            .filter_map(|id| self.entries.get(id))
    }
}

/// The entry index. Cheap to clone handles via `Arc`.
#[derive(Debug)]
pub struct EntryIndex {
    state: ArcSwap<IndexState>,
    server_id: SpiffeId,
    clock: Arc<dyn Clock>,
    version: watch::Sender<u64>,
}

impl EntryIndex {
    /// Builds the index from the store and returns it with the change-feed position it reflects.
    pub async fn load(
        store: &dyn Datastore,
        trust_domain: &TrustDomain,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, u64), StoreError> {
        // Read the position first: changes after it are re-applied, which is idempotent.
        let position = store.latest_change().await?;
        let mut state = IndexState::default();
        for entry in store.list_entries(&EntryFilter::default()).await? {
            state.insert(entry);
        }
        let (version, _) = watch::channel(0);
        let index = Arc::new(Self {
            state: ArcSwap::from_pointee(state),
            server_id: naming::server_id(trust_domain),
            clock,
            version,
        });
        Ok((index, position))
    }

    /// A receiver that changes whenever the index (or anything agents depend on) changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The entry with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.state.load().entries.get(id).cloned()
    }

    /// Number of entries indexed.
    pub fn len(&self) -> usize {
        self.state.load().entries.len()
    }

    /// Whether the index holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries an agent with `agent_id` and node `selectors` may serve, ordered by entry id.
    pub fn authorized_entries(&self, agent_id: &SpiffeId, selectors: &[Selector]) -> Vec<Arc<Entry>> {
        let state = self.state.load();
        let now = self.clock.unix_secs();
        let mut roots: Vec<SpiffeId> = vec![agent_id.clone()];
        roots.extend(
            state
                .children(&self.server_id)
                .filter(|alias| alias.spec.selectors.iter().all(|s| selectors.contains(s)))
                .filter(|alias| alias.spec.expires_at.is_none_or(|e| e > now))
                .map(|alias| alias.spec.spiffe_id.clone()),
        );
        let mut out: BTreeMap<String, Arc<Entry>> = BTreeMap::new();
        let mut seen_parents: HashSet<SpiffeId> = HashSet::new();
        let mut queue: VecDeque<SpiffeId> = roots.into();
        while let Some(parent) = queue.pop_front() {
            if !seen_parents.insert(parent.clone()) {
                continue;
            }
            for entry in state.children(&parent) {
                if entry.spec.expires_at.is_some_and(|e| e <= now) {
                    continue;
                }
                if out.insert(entry.id.clone(), entry.clone()).is_none() {
                    queue.push_back(entry.spec.spiffe_id.clone());
                }
            }
        }
        out.into_values().collect()
    }

    /// Whether the agent may serve entry `entry_id`; returns the entry if so.
    pub fn authorized_entry(
        &self,
        agent_id: &SpiffeId,
        selectors: &[Selector],
        entry_id: &str,
    ) -> Option<Arc<Entry>> {
        // The set is small per agent; recomputing keeps one source of truth for the rule.
        self.authorized_entries(agent_id, selectors)
            .into_iter()
            .find(|e| e.id == entry_id)
    }

    /// Applies the feed after `position` until `shutdown` resolves. Agent and bundle changes
    /// also bump the version, because sync streams carry bundles and ban decisions.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Datastore>,
        mut position: u64,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut changes = store.watch_changes();
        loop {
            match self.apply_changes(store.as_ref(), position).await {
                Ok(next) => position = next,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the change feed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Applies every change after `position`; returns the new position.
    pub async fn apply_changes(&self, store: &dyn Datastore, mut position: u64) -> Result<u64, StoreError> {
        loop {
            let batch = store.changes_since(position, FEED_BATCH).await?;
            let Some(last) = batch.last() else {
                return Ok(position);
            };
            let last_seq = last.seq;
            let mut state = IndexState::clone(&self.state.load());
            for event in &batch {
                match &event.change {
                    Change::EntryCreated(id) | Change::EntryUpdated(id) => {
                        match store.get_entry(id).await? {
                            Some(entry) => state.insert(entry),
                            None => state.remove(id),
                        }
                    }
                    Change::EntryDeleted(id) => state.remove(id),
                    _ => {}
                }
            }
            self.state.store(Arc::new(state));
            position = last_seq;
            self.version.send_modify(|v| *v = last_seq);
            if batch.len() < FEED_BATCH as usize {
                return Ok(position);
            }
        }
    }
}
