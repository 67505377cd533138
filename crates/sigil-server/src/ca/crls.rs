//! What each X.509 authority's CRL lists: an intermediate lists the revoked X509-SVIDs it
//! signed (from the deny-list), a root lists the intermediates under it that an operator
//! revoked (removing an intermediate from the bundle does nothing, since the bundle holds only
//! roots: its CRL is what closes it for verifiers that check revocation).
//!
//! Each replica signs the CRLs of the authorities whose keys it holds and stores them; next to
//! its own it serves those other replicas stored ([`replica_crls`]), each only after checking
//! that it parses, names the authority's subject as its issuer, carries the stored number and
//! verifies under the public key of the authority's certificate as the authority record holds
//! it.

use std::time::SystemTime;

use sigil_ca::{RevokedCert, X509Authority};
use sigil_keys::PublicKey;
use sigil_spiffe::time::unix_secs;
use sigil_spiffe::{AuthorityKind, AuthorityState};
use sigil_store::{AuthorityRecord, CredentialKind, StoredCrl};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

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

/// A CRL this replica signed, with what the store keeps next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SignedCrl {
    /// The authority that signed it.
    pub(super) authority_id: String,
    /// The CRL, DER.
    pub(super) der: Vec<u8>,
    /// Its `nextUpdate` (the authority's `notAfter`), Unix seconds.
    pub(super) next_update: i64,
}

/// A CRL of another replica's authority, verified, as this replica serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReplicaCrl {
    /// The authority that signed it.
    pub(super) authority_id: String,
    /// The CRL, DER.
    pub(super) der: Vec<u8>,
}

/// One DER CRL per signer, each listing [`revoked_under`] it and numbered `number`. An authority
/// whose CRL cannot be signed is left out with a warning (a verifier then finds no CRL for it,
/// which it reports).
pub(super) fn sign_all(
    signers: &[(AuthorityRecord, X509Authority)],
    records: &[AuthorityRecord],
    list: &DenyList,
    number: u64,
    now: SystemTime,
) -> Vec<SignedCrl> {
    let secs = unix_secs(now);
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
                .map(|der| SignedCrl {
                    authority_id: record.id.clone(),
                    der,
                    next_update: authority.not_after(),
                })
        })
        .collect()
}

/// The number of a CRL signed at `now` after one numbered `last`: the milliseconds since the
/// epoch, which grow across restarts, or `last + 1` when the clock has not moved past `last`
/// (two signings in one millisecond, or a clock stepped back).
pub(super) fn next_number(last: u64, now: SystemTime) -> u64 {
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    // The store keeps numbers as signed 64-bit integers.
    let max = u64::try_from(i64::MAX).unwrap_or(u64::MAX);
    millis.max(last.saturating_add(1)).min(max)
}

/// Whether `record` is an X.509 authority that signs a CRL at `now`: neither revoked nor expired
/// (an old intermediate still vouches for the unexpired SVIDs it signed). The same rule for
/// this replica's authorities and for other replicas'.
pub(super) fn signs_crls(record: &AuthorityRecord, now: i64) -> bool {
    record.kind != AuthorityKind::Jwt
        && record.state != AuthorityState::Revoked
        && record.not_after > now
}

/// Why a stored CRL is not served.
#[derive(Debug, thiserror::Error)]
pub(super) enum CrlRefused {
    #[error("its authority record has no certificate")]
    NoCertificate,
    #[error("its authority's certificate does not parse: {0}")]
    Certificate(String),
    #[error("its authority's public key is not usable: {0}")]
    Key(sigil_keys::KeyError),
    #[error("it is not one DER CRL: {0}")]
    Malformed(String),
    #[error("it was stored by replica `{stored}`, but the authority belongs to `{owner}`")]
    Replica { stored: String, owner: String },
    #[error("its issuer is not its authority's subject")]
    Issuer,
    #[error("its signature does not verify under its authority's key")]
    Signature,
    #[error("it carries CRL number {found:?}, not the stored {stored}")]
    Number { found: Option<String>, stored: u64 },
    #[error("it is valid until {next_update}, which has passed")]
    Expired { next_update: i64 },
}

/// Checks `crl`, stored for `authority`, at `now`: one DER CRL and nothing after it, stored by
/// the authority's replica, issued by the authority's subject, signed by the key of the
/// authority's certificate, numbered as stored (so an old CRL cannot pass for a newer one), and
/// with a `nextUpdate` after `now`.
pub(super) fn verify_stored(
    crl: &StoredCrl,
    authority: &AuthorityRecord,
    now: i64,
) -> Result<(), CrlRefused> {
    if crl.replica != authority.replica {
        return Err(CrlRefused::Replica {
            stored: crl.replica.clone(),
            owner: authority.replica.clone(),
        });
    }
    let cert_der = authority
        .cert_der
        .as_deref()
        .ok_or(CrlRefused::NoCertificate)?;
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| CrlRefused::Certificate(e.to_string()))?;
    let key = PublicKey::from_spki_der(cert.public_key().raw).map_err(CrlRefused::Key)?;
    let (rest, parsed) = CertificateRevocationList::from_der(&crl.der)
        .map_err(|e| CrlRefused::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CrlRefused::Malformed(format!(
            "{} bytes follow the CRL",
            rest.len()
        )));
    }
    if parsed.issuer().as_raw() != cert.subject().as_raw() {
        return Err(CrlRefused::Issuer);
    }
    key.verify_x509(parsed.tbs_cert_list.as_ref(), &parsed.signature_value.data)
        .map_err(|_| CrlRefused::Signature)?;
    let found = parsed.crl_number();
    if found.and_then(|n| u64::try_from(n).ok()) != Some(crl.number) {
        return Err(CrlRefused::Number {
            found: found.map(ToString::to_string),
            stored: crl.number,
        });
    }
    let next_update = parsed
        .next_update()
        .map_or(crl.next_update, |t| t.timestamp());
    if next_update <= now {
        return Err(CrlRefused::Expired { next_update });
    }
    Ok(())
}

/// The stored CRLs this replica serves next to its own at `now`: those of other replicas'
/// X.509 authorities that still sign one ([`signs_crls`]), each passing [`verify_stored`]
/// against its authority's record, ordered by authority id. A CRL that fails is left out with
/// a warning; one of an authority this replica holds, or no longer has, is left out silently.
pub(super) fn replica_crls(
    stored: &[StoredCrl],
    records: &[AuthorityRecord],
    replica: &str,
    now: i64,
) -> Vec<ReplicaCrl> {
    stored
        .iter()
        .filter_map(|crl| {
            let authority = records.iter().find(|r| r.id == crl.authority_id)?;
            if authority.replica == replica || !signs_crls(authority, now) {
                return None;
            }
            match verify_stored(crl, authority, now) {
                Ok(()) => Some(ReplicaCrl {
                    authority_id: crl.authority_id.clone(),
                    der: crl.der.clone(),
                }),
                Err(e) => {
                    tracing::warn!(
                        authority = %crl.authority_id,
                        replica = %crl.replica,
                        error = %e,
                        "not serving a stored CRL"
                    );
                    None
                }
            }
        })
        .collect()
}
