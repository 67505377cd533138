//! The in-memory index of attested agents that agent authentication and sync streams read
//! instead of the datastore: per agent its serials, SVID expiry, ban flag and node selectors.
//! It is loaded once and then kept current by the change feed. Each agent has its own `watch`
//! channel, so a renewal or a ban wakes that agent's sync stream and no other.
//!
//! A batch is applied in place, one agent at a time, under a write lock held only for map
//! updates (never across a store read or an await), so nothing copies the whole index.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use sigil_spiffe::{Selector, SpiffeId};
use sigil_store::{AttestedAgent, Change, ChangeEvent, Datastore, StoreError};
use tokio::sync::watch;

use crate::applied::AppliedPosition;

/// What authentication and sync need to know about one agent (its identity state; `last_seen`
/// is bookkeeping and lives apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub spiffe_id: SpiffeId,
    /// Node selectors from attestation (matched against node aliases).
    pub selectors: Vec<Selector>,
    /// Hex serial of the agent's current SVID.
    pub serial: String,
    /// Hex serial of a renewed SVID not yet seen in use.
    pub new_serial: Option<String>,
    /// Unix seconds when the current SVID expires.
    pub expires_at: i64,
    pub banned: bool,
}

/// One agent's view as sync streams watch it; `None` once the agent is deleted.
pub type AgentWatch = watch::Receiver<Option<Arc<AgentView>>>;

/// The agent index. Shared via `Arc`.
#[derive(Debug, Default)]
pub struct AgentIndex {
    slots: RwLock<HashMap<SpiffeId, Arc<Slot>>>,
    /// Highest change-feed sequence applied; read-your-writes waits on it.
    applied: AppliedPosition,
}

#[derive(Debug)]
struct Slot {
    view: watch::Sender<Option<Arc<AgentView>>>,
    /// Newest `last_seen` written (or loaded), to throttle heartbeat writes.
    last_seen: AtomicI64,
}

impl AgentView {
    /// Whether `serial` is the agent's current SVID serial or its renewed one.
    pub fn accepts_serial(&self, serial: &str) -> bool {
        self.serial == serial || self.new_serial.as_deref() == Some(serial)
    }

    fn of(agent: &AttestedAgent) -> Self {
        Self {
            spiffe_id: agent.spiffe_id.clone(),
            selectors: agent.selectors.clone(),
            serial: agent.serial.clone(),
            new_serial: agent.new_serial.clone(),
            expires_at: agent.expires_at,
            banned: agent.banned,
        }
    }
}

impl AgentIndex {
    /// Builds the index from the store and returns it with the change-feed position it reflects.
    pub async fn load(store: &dyn Datastore) -> Result<(Arc<Self>, u64), StoreError> {
        // Read the position first: changes after it are re-applied, which is idempotent.
        let position = store.latest_change().await?;
        let index = Self::default();
        for agent in store.list_agents().await? {
            index.upsert(&agent);
        }
        index.applied.advance(position);
        Ok((Arc::new(index), position))
    }

    /// The agent's current view, if it is attested.
    pub fn get(&self, spiffe_id: &SpiffeId) -> Option<Arc<AgentView>> {
        self.slot(spiffe_id)
            .and_then(|slot| slot.view.borrow().clone())
    }

    /// A receiver that changes whenever this agent's record changes (renewal, ban) and holds
    /// `None` once it is deleted; `None` if the agent is not in the index.
    pub fn watch(&self, spiffe_id: &SpiffeId) -> Option<AgentWatch> {
        self.slot(spiffe_id).map(|slot| slot.view.subscribe())
    }

    /// Whether `last_seen` of the agent should be written at `now`, given writes at most every
    /// `granularity` seconds. Returns `true` to exactly one caller per period (the check and the
    /// claim are one atomic step), so concurrent calls of one agent write once.
    pub fn claim_last_seen(&self, spiffe_id: &SpiffeId, now: i64, granularity: i64) -> bool {
        let Some(slot) = self.slot(spiffe_id) else {
            return false;
        };
        let mut seen = slot.last_seen.load(Ordering::Relaxed);
        while now.saturating_sub(seen) >= granularity {
            match slot.last_seen.compare_exchange_weak(
                seen,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => seen = actual,
            }
        }
        false
    }

    /// Waits until the index has applied the feed up to `seq` (a write this server just made).
    pub async fn applied_through(&self, seq: u64) {
        self.applied.reached(seq).await;
    }

    /// Waits, at most [`crate::applied::READ_YOUR_WRITE_WAIT`], until the index has applied every
    /// change `store` had when called (an attestation, a renewal, a ban), so the next call sees
    /// it.
    pub async fn catch_up_with(&self, store: &dyn Datastore) {
        self.applied.catch_up_with(store, "agent index").await;
    }

    /// The highest change-feed sequence this index has applied.
    pub fn applied_position(&self) -> u64 {
        self.applied.current()
    }

    /// Applies one batch of the feed, re-reading each changed agent from `store`; wakes the
    /// streams of exactly the agents changed. Records the batch's last sequence as applied.
    pub async fn apply_batch(
        &self,
        store: &dyn Datastore,
        batch: &[ChangeEvent],
    ) -> Result<(), StoreError> {
        for event in batch {
            match &event.change {
                Change::AgentChanged(id) => match store.get_agent(id).await? {
                    Some(agent) => self.upsert(&agent),
                    None => self.remove(id),
                },
                Change::AgentDeleted(id) => self.remove(id),
                _ => {}
            }
        }
        if let Some(last) = batch.last() {
            self.applied.advance(last.seq);
        }
        Ok(())
    }

    fn slot(&self, spiffe_id: &SpiffeId) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(spiffe_id)
            .cloned()
    }

    fn upsert(&self, agent: &AttestedAgent) {
        let view = Arc::new(AgentView::of(agent));
        if let Some(slot) = self.slot(&agent.spiffe_id) {
            slot.last_seen.fetch_max(agent.last_seen, Ordering::Relaxed);
            // Only a real change wakes the agent's stream.
            slot.view.send_if_modified(|current| {
                let changed = current.as_deref() != Some(&*view);
                if changed {
                    *current = Some(view.clone());
                }
                changed
            });
            return;
        }
        let slot = Arc::new(Slot {
            view: watch::Sender::new(Some(view)),
            last_seen: AtomicI64::new(agent.last_seen),
        });
        self.slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(agent.spiffe_id.clone(), slot);
    }

    fn remove(&self, spiffe_id: &str) {
        let Ok(id) = SpiffeId::parse(spiffe_id) else {
            return;
        };
        let removed = self
            .slots
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(slot) = removed {
            slot.view.send_replace(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use sigil_store::SqliteStore;

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const A: &str = "spiffe://example.org/sigil/agent/join_token/a";
    const B: &str = "spiffe://example.org/sigil/agent/join_token/b";

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(s).unwrap()
    }

    fn agent(spiffe_id: &str) -> AttestedAgent {
        AttestedAgent {
            spiffe_id: id(spiffe_id),
            attestation_type: "join_token".to_owned(),
            selectors: Vec::new(),
            serial: "01".to_owned(),
            new_serial: None,
            expires_at: NOW + 3600,
            banned: false,
            can_reattest: false,
            created_at: NOW,
            last_seen: NOW,
        }
    }

    async fn catch_up(index: &AgentIndex, store: &SqliteStore, after: u64) -> u64 {
        let batch = store.changes_since(after, 1000).await.unwrap();
        index.apply_batch(store, &batch).await.unwrap();
        batch.last().map_or(after, |e| e.seq)
    }

    #[tokio::test]
    async fn a_change_wakes_only_the_changed_agents_watch() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.create_agent(agent(A)).await.unwrap();
        store.create_agent(agent(B)).await.unwrap();
        let (index, position) = AgentIndex::load(&store).await.unwrap();
        let mut watch_a = index.watch(&id(A)).unwrap();
        let mut watch_b = index.watch(&id(B)).unwrap();
        assert_eq!(index.get(&id(A)).unwrap().serial, "01");

        store.record_agent_renewal(A, "02").await.unwrap();
        store.touch_agent_last_seen(B, NOW + 600).await.unwrap();
        let position = catch_up(&index, &store, position).await;

        assert!(watch_a.has_changed().unwrap());
        let view = watch_a.borrow_and_update().clone().unwrap();
        assert_eq!(view.new_serial.as_deref(), Some("02"));
        assert!(view.accepts_serial("01") && view.accepts_serial("02"));
        assert!(
            !watch_b.has_changed().unwrap(),
            "a heartbeat of B is no event, and A's renewal is not B's business"
        );

        store.set_agent_banned(B, true).await.unwrap();
        store.delete_agent(A).await.unwrap();
        catch_up(&index, &store, position).await;
        assert!(watch_b.borrow_and_update().as_ref().unwrap().banned);
        assert!(watch_a.has_changed().unwrap_or(true));
        assert!(watch_a.borrow_and_update().is_none(), "deleted agent");
        assert!(index.get(&id(A)).is_none());
    }

    #[tokio::test]
    async fn last_seen_is_claimed_once_per_period() {
        let store = SqliteStore::open_in_memory().unwrap();
        store.create_agent(agent(A)).await.unwrap();
        let (index, _) = AgentIndex::load(&store).await.unwrap();
        assert!(!index.claim_last_seen(&id(A), NOW + 59, 60));
        assert!(index.claim_last_seen(&id(A), NOW + 60, 60));
        assert!(
            !index.claim_last_seen(&id(A), NOW + 60, 60),
            "already claimed"
        );
        assert!(!index.claim_last_seen(&id(A), NOW + 119, 60));
        assert!(index.claim_last_seen(&id(A), NOW + 120, 60));
        assert!(
            !index.claim_last_seen(&id(B), NOW + 999, 60),
            "unknown agent"
        );
    }

    #[tokio::test]
    async fn applied_through_returns_once_the_write_is_applied() {
        let store = SqliteStore::open_in_memory().unwrap();
        let (index, position) = AgentIndex::load(&store).await.unwrap();
        index.applied_through(position).await;
        store.create_agent(agent(A)).await.unwrap();
        let written = store.latest_change().await.unwrap();
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            index.applied_through(written),
        )
        .await;
        assert!(waiting.is_err(), "returned before the write was applied");
        catch_up(&index, &store, position).await;
        index.applied_through(written).await;
        assert!(index.get(&id(A)).is_some());
    }
}
