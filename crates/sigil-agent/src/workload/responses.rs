//! Workload API response messages built from one snapshot for one caller's identities: always the
//! full state (SPIFFE Workload API §4.3), bundles keyed by trust domain ID (`spiffe://<td>`),
//! federated bundles limited to the trust domains the caller's identities federate with, and the
//! CRLs of the agent's trust domain in the X.509 messages' `crl` fields (so a CRL change is a new
//! message on open streams).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sigil_proto::workload::{JwtBundlesResponse, X509BundlesResponse, X509svid, X509svidResponse};
use sigil_spiffe::{TrustBundle, TrustDomain};

use crate::snapshot::{IdentitySnapshot, WorkloadIdentity};

/// `identities` without those whose non-empty hint an earlier one already used: hints must be
/// unique within a response (Workload API §5.2.1, §6.2.1), and the first one wins.
pub(crate) fn with_unique_hints<'a>(
    identities: &[&'a WorkloadIdentity],
) -> Vec<&'a WorkloadIdentity> {
    unique_hints(identities, true)
}

/// The identities [`with_unique_hints`] keeps, without warning again about those it drops (for
/// counting what a response delivered after it was built).
pub(crate) fn served_identities<'a>(
    identities: &[&'a WorkloadIdentity],
) -> Vec<&'a WorkloadIdentity> {
    unique_hints(identities, false)
}

fn unique_hints<'a>(identities: &[&'a WorkloadIdentity], warn: bool) -> Vec<&'a WorkloadIdentity> {
    let mut seen = HashSet::new();
    identities
        .iter()
        .copied()
        .filter(|id| {
            let unique = id.hint.is_empty() || seen.insert(id.hint.as_str());
            if !unique && warn {
                tracing::warn!(entry_id = %id.entry_id, hint = %id.hint, "dropping an identity with a duplicate hint");
            }
            unique
        })
        .collect()
}

/// The foreign bundles the caller may see: those of the trust domains its identities federate
/// with that the agent holds.
pub(crate) fn federated_bundles<'a>(
    snapshot: &'a IdentitySnapshot,
    identities: &[&WorkloadIdentity],
) -> BTreeMap<&'a TrustDomain, &'a Arc<TrustBundle>> {
    let mut out = BTreeMap::new();
    for td in identities.iter().flat_map(|id| &id.federates_with) {
        if *td == snapshot.trust_domain {
            continue;
        }
        if let Some((key, bundle)) = snapshot.federated_bundles.get_key_value(td) {
            out.insert(key, bundle);
        }
    }
    out
}

/// `FetchX509SVID`'s message, or `None` when the caller has no identity.
pub(crate) fn x509_svid_response(
    snapshot: &IdentitySnapshot,
    identities: &[&WorkloadIdentity],
) -> Option<X509svidResponse> {
    if identities.is_empty() {
        return None;
    }
    let bundle = snapshot.bundle.x509_authorities_der();
    let svids = with_unique_hints(identities)
        .into_iter()
        .map(|id| X509svid {
            spiffe_id: id.spiffe_id.to_string(),
            x509_svid: id.svid.cert_chain.concat(),
            x509_svid_key: id.svid.key.pkcs8_der().to_vec(),
            bundle: bundle.clone(),
            hint: id.hint.clone(),
        })
        .collect();
    let federated_bundles = federated_bundles(snapshot, identities)
        .into_iter()
        .map(|(td, b)| (td.id_string(), b.x509_authorities_der()))
        .collect();
    Some(X509svidResponse {
        svids,
        crl: snapshot.crls.to_vec(),
        federated_bundles,
    })
}

/// `FetchX509Bundles`' message (own and federated X.509 authorities), or `None` when the caller
/// has no identity.
pub(crate) fn x509_bundles_response(
    snapshot: &IdentitySnapshot,
    identities: &[&WorkloadIdentity],
) -> Option<X509BundlesResponse> {
    if identities.is_empty() {
        return None;
    }
    let mut bundles = HashMap::new();
    bundles.insert(
        snapshot.trust_domain.id_string(),
        snapshot.bundle.x509_authorities_der(),
    );
    for (td, b) in federated_bundles(snapshot, identities) {
        bundles.insert(td.id_string(), b.x509_authorities_der());
    }
    Some(X509BundlesResponse {
        crl: snapshot.crls.to_vec(),
        bundles,
    })
}

/// `FetchJWTBundles`' message (JWK Sets of JWT authorities only), or `None` when the caller has
/// no identity.
pub(crate) fn jwt_bundles_response(
    snapshot: &IdentitySnapshot,
    identities: &[&WorkloadIdentity],
) -> Option<JwtBundlesResponse> {
    if identities.is_empty() {
        return None;
    }
    let jwks = |b: &TrustBundle| sigil_keys::bundle_json::jwks_for_jwt(b).to_json();
    let mut bundles = HashMap::new();
    bundles.insert(snapshot.trust_domain.id_string(), jwks(&snapshot.bundle));
    for (td, b) in federated_bundles(snapshot, identities) {
        bundles.insert(td.id_string(), jwks(b));
    }
    Some(JwtBundlesResponse { bundles })
}
