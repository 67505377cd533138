//! Federation: the bundles of foreign trust domains this server trusts, kept in memory from the
//! datastore (`bundles` rows of other trust domains, followed through the change feed) and
//! pushed to agents with every trust message; and the refresher that fetches them from each
//! federation relationship's bundle endpoint.

pub mod fetch;
pub mod refresher;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sigil_spiffe::{BundleDocument, TrustBundle, TrustDomain};
use sigil_store::{
    Change, ChangeEvent, Datastore, FederationUpdate, NewFederationRelationship, StoreError,
    StoredBundle,
};
use tokio::sync::watch;

/// A federation relationship named in the server's configuration file.
#[derive(Debug, Clone)]
pub struct ConfiguredFederation {
    /// The relationship as configured, its owner included (required there as everywhere).
    pub relationship: NewFederationRelationship,
    /// X.509 authorities (DER) to trust until the first refresh: needed to authenticate an
    /// `https_spiffe` endpoint the first time.
    pub bootstrap_roots: Vec<Vec<u8>>,
}

/// Creates the configured relationship, or updates the columns of the stored one that differ
/// from it (its owner included); stores the bootstrap roots as the foreign bundle when none is
/// held yet.
pub async fn apply_configured(
    store: &dyn Datastore,
    configured: &ConfiguredFederation,
    now: i64,
) -> Result<(), StoreError> {
    let wanted = &configured.relationship;
    let td = wanted.trust_domain.as_str();
    match store.get_federation(td).await? {
        None => {
            store.create_federation(wanted.clone(), now).await?;
        }
        Some(stored) => {
            // Only what differs is written, so an unchanged column is not rewritten.
            let update = FederationUpdate {
                bundle_endpoint_url: (stored.bundle_endpoint_url != wanted.bundle_endpoint_url)
                    .then(|| wanted.bundle_endpoint_url.clone()),
                profile: (stored.profile != wanted.profile).then_some(wanted.profile),
                endpoint_spiffe_id: (stored.endpoint_spiffe_id != wanted.endpoint_spiffe_id)
                    .then(|| wanted.endpoint_spiffe_id.clone()),
                owner: (stored.owner != wanted.owner).then(|| wanted.owner.clone()),
            };
            if !update.is_empty() {
                store.update_federation(td, update, now).await?;
            }
        }
    }
    if !configured.bootstrap_roots.is_empty() && store.get_bundle(td).await?.is_none() {
        let bundle = TrustBundle {
            trust_domain: wanted.trust_domain.clone(),
            x509_authorities: configured.bootstrap_roots.clone(),
            jwt_authorities: Vec::new(),
            sequence: 0,
            refresh_hint: 0,
        };
        let document =
            sigil_keys::bundle_json::to_document(&bundle).map_err(|e| StoreError::Invalid {
                field: "bootstrap_bundle",
                reason: format!("bootstrap bundle of `{td}`: {e}"),
            })?;
        store
            .put_bundle(StoredBundle {
                trust_domain: wanted.trust_domain.clone(),
                document: document.to_json(),
                sequence: 0,
                updated_at: now,
            })
            .await?;
    }
    Ok(())
}

/// Foreign trust domains' bundles, by trust domain.
pub type BundleMap = BTreeMap<TrustDomain, Arc<TrustBundle>>;

/// The foreign bundles this server holds, swapped whole on change (readers never wait).
#[derive(Debug)]
pub struct ForeignBundles {
    own: TrustDomain,
    bundles: ArcSwap<BundleMap>,
    version: watch::Sender<u64>,
}

impl ForeignBundles {
    /// Every stored bundle of another trust domain than `own`. A stored document that does not
    /// read is left out with an error log (it cannot be trusted, and the others still can).
    pub async fn load(store: &dyn Datastore, own: TrustDomain) -> Result<Self, StoreError> {
        let mut bundles = BundleMap::new();
        for stored in store.list_bundles().await? {
            if stored.trust_domain != own
                && let Some(bundle) = read_stored(&stored)
            {
                bundles.insert(stored.trust_domain.clone(), Arc::new(bundle));
            }
        }
        Ok(Self {
            own,
            bundles: ArcSwap::from_pointee(bundles),
            version: watch::channel(0).0,
        })
    }

    /// The bundles as they are now.
    pub fn snapshot(&self) -> Arc<BundleMap> {
        self.bundles.load_full()
    }

    /// The bundle of `trust_domain`, if held.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<Arc<TrustBundle>> {
        self.bundles.load().get(trust_domain).cloned()
    }

    /// A receiver that changes whenever a foreign bundle is added, replaced or removed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Applies a batch of the change feed: each foreign bundle changed or deleted in it is read
    /// again from `store` (once per batch).
    pub async fn apply_batch(
        &self,
        store: &dyn Datastore,
        batch: &[ChangeEvent],
    ) -> Result<(), StoreError> {
        let mut touched: Vec<&str> = batch
            .iter()
            .filter_map(|event| match &event.change {
                Change::BundleChanged(td) | Change::BundleDeleted(td) => Some(td.as_str()),
                _ => None,
            })
            .filter(|td| *td != self.own.as_str())
            .collect();
        if touched.is_empty() {
            return Ok(());
        }
        touched.sort_unstable();
        touched.dedup();
        let mut next = (*self.bundles.load_full()).clone();
        for name in touched {
            let Ok(td) = TrustDomain::parse(name) else {
                continue;
            };
            match store.get_bundle(name).await? {
                Some(stored) => match read_stored(&stored) {
                    Some(bundle) => {
                        next.insert(td, Arc::new(bundle));
                    }
                    None => {
                        next.remove(&td);
                    }
                },
                None => {
                    next.remove(&td);
                }
            }
        }
        if *self.bundles.load_full() != next {
            self.bundles.store(Arc::new(next));
            self.version.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(())
    }
}

/// The bundle of a stored document, or `None` (logged) when it does not read.
fn read_stored(stored: &StoredBundle) -> Option<TrustBundle> {
    let read = BundleDocument::parse(&stored.document)
        .map_err(|e| e.to_string())
        .and_then(|doc| {
            sigil_keys::bundle_json::from_document(stored.trust_domain.clone(), &doc)
                .map_err(|e| e.to_string())
        });
    match read {
        Ok(mut bundle) => {
            bundle.sequence = stored.sequence;
            Some(bundle)
        }
        Err(e) => {
            tracing::error!(trust_domain = %stored.trust_domain, error = %e, "stored federated bundle does not read; not trusted");
            None
        }
    }
}
