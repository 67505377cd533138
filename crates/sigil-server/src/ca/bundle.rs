//! The trust bundle of the server's own trust domain: built from the authority records (what
//! [`AuthorityStatus::is_published`] says goes in), stored, and given a new sequence number only
//! when its content changed, so relying parties see a new sequence exactly when there is
//! something new to trust or to forget.

use std::sync::Arc;

use sigil_ca::{AuthorityStatus, UpstreamAuthority};
use sigil_spiffe::{AuthorityKind, JwtAuthorityKey, TrustBundle, TrustDomain};
use sigil_store::{AuthorityRecord, Datastore, StoredBundle};
use tokio::sync::Mutex;

use super::CaManagerError;

/// Builds and stores the bundle; one publication at a time, so two never take the same sequence.
pub(super) struct BundlePublisher {
    trust_domain: TrustDomain,
    refresh_hint: u64,
    /// The upstream authority: its anchors are published in place of the roots it signed.
    upstream: Option<Arc<UpstreamAuthority>>,
    publishing: Mutex<()>,
}

impl BundlePublisher {
    pub(super) fn new(
        trust_domain: TrustDomain,
        refresh_hint: u64,
        upstream: Option<Arc<UpstreamAuthority>>,
    ) -> Self {
        Self {
            trust_domain,
            refresh_hint,
            upstream,
            publishing: Mutex::new(()),
        }
    }

    /// Whether `bundle` trusts exactly the authorities `records` publish at `now`.
    pub(super) fn is_current(
        &self,
        bundle: &TrustBundle,
        records: &[AuthorityRecord],
        now: i64,
    ) -> bool {
        same_authorities(bundle, &self.build(records, now, bundle.sequence))
    }

    /// The bundle of `records` at `now`; stored with the next sequence number when its
    /// authorities differ from the stored bundle's, else with the stored sequence unchanged.
    pub(super) async fn publish(
        &self,
        store: &dyn Datastore,
        records: &[AuthorityRecord],
        now: i64,
    ) -> Result<Arc<TrustBundle>, CaManagerError> {
        let _one_at_a_time = self.publishing.lock().await;
        let stored = store.get_bundle(self.trust_domain.as_str()).await?;
        let previous = stored.as_ref().and_then(|s| {
            let document = sigil_spiffe::BundleDocument::parse(&s.document).ok()?;
            sigil_keys::bundle_json::from_document(self.trust_domain.clone(), &document).ok()
        });
        let mut bundle = self.build(records, now, stored.as_ref().map_or(0, |s| s.sequence));
        if !previous.is_some_and(|p| same_authorities(&p, &bundle)) {
            bundle.sequence = bundle.sequence.saturating_add(1);
            let document = sigil_keys::bundle_json::to_document(&bundle)?;
            store
                .put_bundle(StoredBundle {
                    trust_domain: self.trust_domain.clone(),
                    document: document.to_json(),
                    sequence: bundle.sequence,
                    updated_at: now,
                })
                .await?;
            tracing::info!(sequence = bundle.sequence, "published trust bundle");
        }
        Ok(Arc::new(bundle))
    }

    /// The bundle of the authorities `records` publish at `now`, with `sequence`. The X.509
    /// authorities are the published roots, except those the configured upstream signed, whose
    /// place is taken by the upstream's anchors. A root another replica had signed by an
    /// upstream this replica does not know is published itself (verifiers accept it as an
    /// anchor; its chain is complete only with that upstream's root).
    fn build(&self, records: &[AuthorityRecord], now: i64, sequence: u64) -> TrustBundle {
        let published: Vec<&AuthorityRecord> = records
            .iter()
            .filter(|r| status_of(r).is_published(now))
            .collect();
        let mut x509_authorities: Vec<Vec<u8>> = published
            .iter()
            .filter(|r| r.kind == AuthorityKind::X509Root)
            .filter_map(|r| r.cert_der.clone())
            .filter(|cert| !self.upstream.as_ref().is_some_and(|u| u.issued(cert)))
            .collect();
        if let Some(upstream) = &self.upstream {
            for anchor in upstream.anchors() {
                if !x509_authorities.contains(anchor) {
                    x509_authorities.push(anchor.clone());
                }
            }
        }
        let jwt_authorities: Vec<JwtAuthorityKey> = published
            .iter()
            .filter(|r| r.kind == AuthorityKind::Jwt)
            .map(|r| JwtAuthorityKey {
                kid: r.id.clone(),
                public_key_der: r.public_key_der.clone(),
                expires_at: r.not_after,
            })
            .collect();
        TrustBundle {
            trust_domain: self.trust_domain.clone(),
            x509_authorities,
            jwt_authorities,
            sequence,
            refresh_hint: self.refresh_hint,
        }
    }
}

/// Whether two bundles trust the same authorities (sequence, hint and key expiry aside).
fn same_authorities(a: &TrustBundle, b: &TrustBundle) -> bool {
    let jwt_keys = |t: &TrustBundle| {
        t.jwt_authorities
            .iter()
            .map(|k| (k.kid.clone(), k.public_key_der.clone()))
            .collect::<Vec<_>>()
    };
    a.x509_authorities == b.x509_authorities && jwt_keys(a) == jwt_keys(b)
}

/// What the life cycle knows of `record` (the key is not needed to decide publication).
fn status_of(record: &AuthorityRecord) -> AuthorityStatus {
    AuthorityStatus {
        id: record.id.clone(),
        kind: record.kind,
        state: record.state,
        issuer_id: record.issuer_id.clone(),
        not_before: record.not_before,
        not_after: record.not_after,
        key_available: false,
    }
}
