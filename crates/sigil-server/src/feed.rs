//! The one reader of the datastore's change feed: each batch is applied to the entry index, the
//! agent index and the revocation index, in that order, so all follow the store without rescans; a batch that
//! changes authorities (an operator command here or on another replica) also wakes the CA's
//! rotation task at once, and one that changes the CRL or the record of an authority another
//! replica holds wakes the task that serves the other replicas' CRLs.

use std::sync::Arc;
use std::time::Duration;

use sigil_store::{Change, Datastore, StoreError};
use tokio::sync::{Notify, watch};

use crate::agent_index::AgentIndex;
use crate::ca::CaManager;
use crate::entry_index::{EntryIndex, FEED_BATCH};
use crate::federation::ForeignBundles;
use crate::revocation::RevocationIndex;

/// Pause before reading the feed again after a store failure.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Everything that follows the feed: the three indexes, the CA's rotation task, woken when an
/// authority changed, and the CA's task serving the other replicas' CRLs.
#[derive(Clone)]
pub struct Followers {
    pub entries: Arc<EntryIndex>,
    pub agents: Arc<AgentIndex>,
    pub revocations: Arc<RevocationIndex>,
    pub authorities: Arc<Notify>,
    /// The federated bundles; `None` where nothing holds them (tests).
    pub foreign: Option<Arc<ForeignBundles>>,
    /// Woken when a federation relationship changed (the refresher reloads them).
    pub federations: Arc<Notify>,
    /// The CA, which says which authorities are this replica's.
    pub ca: Arc<CaManager>,
    /// Woken when the CRL or the record of an authority the CA does not hold changed (the CA
    /// then reads the CRLs other replicas stored: [`CaManager::refresh_replica_crls`]).
    pub replica_crls: Arc<Notify>,
}

/// Applies every change after `position` to the indexes, notifies `authorities` when an
/// authority changed and `replica_crls` when another replica's CRL or authority did; returns the
/// new position.
pub async fn catch_up(
    store: &dyn Datastore,
    followers: &Followers,
    mut position: u64,
) -> Result<u64, StoreError> {
    loop {
        let batch = store.changes_since(position, FEED_BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(position);
        };
        let last_seq = last.seq;
        followers.entries.apply_batch(store, &batch).await?;
        followers.agents.apply_batch(store, &batch).await?;
        followers.revocations.apply_batch(store, &batch).await?;
        if let Some(foreign) = &followers.foreign {
            foreign.apply_batch(store, &batch).await?;
        }
        if batch.iter().any(|event| {
            matches!(
                event.change,
                Change::FederationChanged(_) | Change::FederationDeleted(_)
            )
        }) {
            followers.federations.notify_one();
        }
        if batch.iter().any(|event| {
            matches!(
                event.change,
                Change::AuthorityChanged(_) | Change::AuthorityDeleted(_)
            )
        }) {
            followers.authorities.notify_one();
        }
        if batch.iter().any(|event| match &event.change {
            Change::CrlChanged(id)
            | Change::AuthorityChanged(id)
            | Change::AuthorityDeleted(id) => !followers.ca.holds_authority(id),
            _ => false,
        }) {
            followers.replica_crls.notify_one();
        }
        position = last_seq;
        if batch.len() < FEED_BATCH as usize {
            return Ok(position);
        }
    }
}

/// Follows the feed after `position` until `shutdown` resolves: wakes on the store's watch,
/// catches up, and retries after a pause when the store fails.
pub async fn follow(
    store: Arc<dyn Datastore>,
    followers: Followers,
    mut position: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = store.watch_changes();
    loop {
        changes.mark_unchanged();
        match catch_up(store.as_ref(), &followers, position).await {
            Ok(next) => position = next,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the change feed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}
