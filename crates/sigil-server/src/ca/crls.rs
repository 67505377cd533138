//! What each X.509 authority's CRL lists: an intermediate lists the revoked X509-SVIDs it
//! signed (from the deny-list), a root lists the intermediates under it that an operator
//! revoked (removing an intermediate from the bundle does nothing, since the bundle holds only
//! roots: its CRL is what closes it for verifiers that check revocation).

use std::time::SystemTime;

use sigil_ca::{RevokedCert, X509Authority};
use sigil_spiffe::time::unix_secs;
use sigil_spiffe::{AuthorityKind, AuthorityState};
use sigil_store::{AuthorityRecord, CredentialKind};

use crate::revocation::DenyList;

/// The certificates `authority`'s CRL lists at `now`.
pub(super) fn revoked_under(
    authority: &AuthorityRecord,
    records: &[AuthorityRecord],
    list: &DenyList,
    now: i64,
) -> Vec<RevokedCert> {
    match authority.kind {
        AuthorityKind::X509Intermediate => list
            .live(CredentialKind::X509Svid, now)
            .filter(|r| r.authority_id == authority.id)
            .filter_map(|r| {
                Some(RevokedCert {
                    serial: sigil_keys::digest::from_hex(&r.id)?,
                    revoked_at: r.revoked_at,
                })
            })
            .collect(),
        AuthorityKind::X509Root => records
            .iter()
            .filter(|r| {
                r.kind == AuthorityKind::X509Intermediate
                    && r.state == AuthorityState::Revoked
                    && r.issuer_id.as_deref() == Some(authority.id.as_str())
                    && r.not_after > now
            })
            .filter_map(|r| {
                let serial = sigil_keys::cert_ids::serial_hex(r.cert_der.as_deref()?)?;
                Some(RevokedCert {
                    serial: sigil_keys::digest::from_hex(&serial)?,
                    // The record keeps no revocation time; the CRL's own time stands in for it.
                    revoked_at: now,
                })
            })
            .collect(),
        AuthorityKind::Jwt => Vec::new(),
    }
}

/// One DER CRL per signer, each listing [`revoked_under`] it. An authority whose CRL cannot be
/// signed is left out with a warning (a verifier then finds no CRL for it, which it reports).
pub(super) fn sign_all(
    signers: &[(AuthorityRecord, X509Authority)],
    records: &[AuthorityRecord],
    list: &DenyList,
    now: SystemTime,
) -> Vec<Vec<u8>> {
    let secs = unix_secs(now);
    // Grows from one CRL to the next of the same authority, across restarts and replicas whose
    // clocks agree to the millisecond's order.
    let number = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    signers
        .iter()
        .filter_map(|(record, authority)| {
            let revoked = revoked_under(record, records, list, secs);
            authority
                .sign_crl(&revoked, number, now)
                .map_err(|e| {
                    tracing::warn!(authority = %record.id, error = %e, "cannot sign the CRL");
                })
                .ok()
        })
        .collect()
}
