//! The agent's identity snapshot: everything the Workload API serves (identities, bundles, CRLs
//! and the JWT-SVID deny-list), swapped atomically as a whole (`tokio::sync::watch`), so Workload
//! API streams never wait on the sync loop and every stream message is built from one consistent
//! state.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use sigil_keys::PrivateKey;
use sigil_spiffe::{Clock, Selector, SpiffeId, TrustBundle, TrustDomain};
use tokio::sync::watch;

use crate::revocation::RevokedIds;

/// An X509-SVID held by the agent: chain (leaf first) and the private key generated on this node.
#[derive(Debug)]
pub struct X509SvidMaterial {
    /// DER certificates, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    /// The leaf's private key.
    pub key: PrivateKey,
    /// Unix seconds, the leaf's NotAfter.
    pub expires_at: i64,
}

/// One identity a matching workload may receive.
#[derive(Debug, Clone)]
pub struct WorkloadIdentity {
    pub entry_id: String,
    pub spiffe_id: SpiffeId,
    /// A workload receives this identity when these are a subset of its own selectors.
    pub selectors: Vec<Selector>,
    pub hint: String,
    pub federates_with: Vec<TrustDomain>,
    pub svid: Arc<X509SvidMaterial>,
}

/// Everything the Workload API serves at one moment.
#[derive(Debug, Clone)]
pub struct IdentitySnapshot {
    pub trust_domain: TrustDomain,
    /// The agent's own trust domain bundle.
    pub bundle: Arc<TrustBundle>,
    /// Bundles of other trust domains, by trust domain.
    pub federated_bundles: BTreeMap<TrustDomain, Arc<TrustBundle>>,
    /// Identities with a current SVID, ordered by SPIFFE ID then entry id.
    pub identities: Vec<WorkloadIdentity>,
    /// DER CRLs of the trust domain's X.509 authorities, served in the `crl` fields of
    /// `X509SVIDResponse` and `X509BundlesResponse`.
    pub crls: Arc<Vec<Vec<u8>>>,
    /// Revoked JWT-SVIDs of the trust domain, by `jti`: `ValidateJWTSVID` refuses them.
    pub revoked_jwt_svids: Arc<RevokedIds>,
}

impl IdentitySnapshot {
    /// An empty snapshot for `bundle`'s trust domain.
    pub fn empty(bundle: Arc<TrustBundle>) -> Self {
        Self {
            trust_domain: bundle.trust_domain.clone(),
            bundle,
            federated_bundles: BTreeMap::new(),
            identities: Vec::new(),
            crls: Arc::new(Vec::new()),
            revoked_jwt_svids: Arc::new(RevokedIds::default()),
        }
    }

    /// The identities whose selectors are all among `workload_selectors`, in snapshot order.
    pub fn identities_for<'a>(
        &'a self,
        workload_selectors: &[Selector],
    ) -> Vec<&'a WorkloadIdentity> {
        self.identities
            .iter()
            .filter(|id| id.selectors.iter().all(|s| workload_selectors.contains(s)))
            .collect()
    }
}

/// Why a JWT-SVID could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum JwtMintError {
    #[error("the server is unreachable: {0}")]
    Unavailable(String),
    #[error("the server refused to mint: {0}")]
    Refused(String),
}

/// Mints JWT-SVIDs for an entry (the agent asks the server; the result may be cached).
#[async_trait]
pub trait JwtSvidMinter: Send + Sync + 'static {
    /// A JWT-SVID (JWS compact) for entry `entry_id` with audiences `audience`.
    async fn mint(&self, entry_id: &str, audience: &[String]) -> Result<String, JwtMintError>;
}

/// What the Workload API needs from the rest of the agent.
#[derive(Clone)]
pub struct WorkloadApiContext {
    pub snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
    pub jwt: Arc<dyn JwtSvidMinter>,
    pub clock: Arc<dyn Clock>,
}
