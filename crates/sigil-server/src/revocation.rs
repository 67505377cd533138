//! The deny-list: every revoked credential (X509-SVID by serial, JWT-SVID by `jti`) whose
//! credential has not expired, in memory, kept current by the change feed like the agent index.
//!
//! Readers take a snapshot ([`RevocationIndex::snapshot`], an `Arc`, never a lock held across an
//! await); a batch that adds or prunes revocations swaps in a new snapshot and moves
//! [`RevocationIndex::subscribe`], from which the CA signs new CRLs and every sync stream pushes
//! the new list. The list is small by construction: an entry leaves it when the credential it
//! names expires (the server prunes the store; readers also skip expired entries themselves).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sigil_store::{Change, ChangeEvent, CredentialKind, Datastore, Revocation, StoreError};
use tokio::sync::watch;

use crate::applied::AppliedPosition;

/// The revoked credentials, by kind and id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList {
    revoked: BTreeMap<(CredentialKind, String), Revocation>,
}

impl DenyList {
    /// Whether credential `id` of `kind` is revoked (and has not expired at `now`: an expired
    /// credential is refused for its expiry anyway).
    pub fn is_revoked(&self, kind: CredentialKind, id: &str, now: i64) -> bool {
        self.revoked
            .get(&(kind, id.to_owned()))
            .is_some_and(|r| r.expires_at > now)
    }

    /// The revocations of `kind` whose credential has not expired at `now`, ordered by id.
    pub fn live(&self, kind: CredentialKind, now: i64) -> impl Iterator<Item = &Revocation> {
        self.revoked
            .range((kind, String::new())..)
            .take_while(move |((k, _), _)| *k == kind)
            .map(|(_, r)| r)
            .filter(move |r| r.expires_at > now)
    }

    /// Every revocation held, expired or not.
    pub fn all(&self) -> impl Iterator<Item = &Revocation> {
        self.revoked.values()
    }

    fn insert(&mut self, revocation: Revocation) -> bool {
        let key = (revocation.kind, revocation.id.clone());
        self.revoked.insert(key, revocation.clone()) != Some(revocation)
    }

    fn remove(&mut self, kind: CredentialKind, id: &str) -> bool {
        self.revoked.remove(&(kind, id.to_owned())).is_some()
    }
}

/// The in-memory deny-list. Shared via `Arc`.
#[derive(Debug)]
pub struct RevocationIndex {
    list: ArcSwap<DenyList>,
    /// Bumped whenever the list changes.
    version: watch::Sender<u64>,
    applied: AppliedPosition,
}

impl RevocationIndex {
    /// Builds the index from the store and returns it with the change-feed position it reflects.
    pub async fn load(store: &dyn Datastore) -> Result<(Arc<Self>, u64), StoreError> {
        // Read the position first: changes after it are re-applied, which is idempotent.
        let position = store.latest_change().await?;
        let mut list = DenyList::default();
        for revocation in store.list_revocations().await? {
            list.insert(revocation);
        }
        let index = Self {
            list: ArcSwap::from_pointee(list),
            version: watch::channel(0).0,
            applied: AppliedPosition::default(),
        };
        index.applied.advance(position);
        Ok((Arc::new(index), position))
    }

    /// The deny-list as last applied.
    pub fn snapshot(&self) -> Arc<DenyList> {
        self.list.load_full()
    }

    /// A receiver that changes whenever the deny-list changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Waits, at most [`crate::applied::READ_YOUR_WRITE_WAIT`], until every change `store` had when
    /// called is applied, so a revocation just written is enforced by this server's next call.
    pub async fn catch_up_with(&self, store: &dyn Datastore) {
        self.applied.catch_up_with(store, "revocation index").await;
    }

    /// Applies one batch of the feed, re-reading each added revocation from `store`; swaps in a
    /// new list and wakes subscribers only if it changed.
    pub async fn apply_batch(
        &self,
        store: &dyn Datastore,
        batch: &[ChangeEvent],
    ) -> Result<(), StoreError> {
        let mut next: Option<DenyList> = None;
        for event in batch {
            let (added, key) = match &event.change {
                Change::RevocationAdded(key) => (true, key),
                Change::RevocationDeleted(key) => (false, key),
                _ => continue,
            };
            let Some((kind, id)) = Revocation::parse_feed_key(key) else {
                tracing::warn!(key, "ignoring a revocation event with a malformed key");
                continue;
            };
            let list = next.get_or_insert_with(|| DenyList::clone(&self.list.load()));
            if added {
                if let Some(revocation) = store.get_revocation(kind, id).await? {
                    list.insert(revocation);
                } else {
                    // Pruned since: its delete event follows.
                    list.remove(kind, id);
                }
            } else {
                list.remove(kind, id);
            }
        }
        if let Some(list) = next
            && list != **self.list.load()
        {
            self.list.store(Arc::new(list));
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
        if let Some(last) = batch.last() {
            self.applied.advance(last.seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sigil_spiffe::SpiffeId;
    use sigil_store::{IssuedCredential, SqliteStore};

    use super::*;

    fn issued(kind: CredentialKind, id: &str, expires_at: i64) -> IssuedCredential {
        IssuedCredential {
            kind,
            id: id.to_owned(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/w").unwrap(),
            authority_id: "ab".to_owned(),
            issued_to: SpiffeId::parse("spiffe://example.org/spire/agent/x").unwrap(),
            issued_at: 100,
            expires_at,
        }
    }

    async fn follow(store: &SqliteStore, index: &RevocationIndex, from: u64) -> u64 {
        let batch = store.changes_since(from, 1000).await.unwrap();
        index.apply_batch(store, &batch).await.unwrap();
        batch.last().map_or(from, |e| e.seq)
    }

    #[tokio::test]
    async fn a_revocation_enters_the_list_wakes_subscribers_and_leaves_when_pruned() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .record_issued(vec![
                issued(CredentialKind::X509Svid, "4a01", 1_000),
                issued(CredentialKind::JwtSvid, "j1", 2_000),
            ])
            .await
            .unwrap();
        let (index, position) = RevocationIndex::load(&store).await.unwrap();
        let mut changes = index.subscribe();
        store
            .revoke_credential(CredentialKind::JwtSvid, "j1", "leaked", 150)
            .await
            .unwrap();
        let position = follow(&store, &index, position).await;
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let list = index.snapshot();
        assert!(list.is_revoked(CredentialKind::JwtSvid, "j1", 150));
        assert!(!list.is_revoked(CredentialKind::X509Svid, "j1", 150));
        assert!(!list.is_revoked(CredentialKind::X509Svid, "4a01", 150));
        assert_eq!(list.live(CredentialKind::JwtSvid, 150).count(), 1);
        assert_eq!(list.live(CredentialKind::X509Svid, 150).count(), 0);
        // Past the credential's expiry it is no longer listed, even before the prune.
        assert!(!list.is_revoked(CredentialKind::JwtSvid, "j1", 2_000));
        assert_eq!(list.live(CredentialKind::JwtSvid, 2_000).count(), 0);

        store.prune_expired_credentials(2_001).await.unwrap();
        follow(&store, &index, position).await;
        assert!(changes.has_changed().unwrap());
        assert_eq!(index.snapshot().all().count(), 0);
    }

    #[tokio::test]
    async fn a_batch_without_revocations_wakes_nobody() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .record_issued(vec![issued(CredentialKind::X509Svid, "4a01", 1_000)])
            .await
            .unwrap();
        store
            .revoke_credential(CredentialKind::X509Svid, "4a01", "", 150)
            .await
            .unwrap();
        // Loaded after the revocation: it is in the list from the start.
        let (index, position) = RevocationIndex::load(&store).await.unwrap();
        assert!(
            index
                .snapshot()
                .is_revoked(CredentialKind::X509Svid, "4a01", 150)
        );
        let changes = index.subscribe();
        store
            .create_join_token(sigil_store::JoinToken {
                id: "t".to_owned(),
                token_hash: sigil_keys::sha256_hex(b"t"),
                expires_at: 500,
                used_at: None,
                created_at: 100,
            })
            .await
            .unwrap();
        // Re-applying the revocation already loaded, and an unrelated change: no wake-up.
        follow(&store, &index, position.saturating_sub(1)).await;
        assert!(!changes.has_changed().unwrap());
    }
}
