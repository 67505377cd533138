//! The active authorities in memory: what signs SVIDs right now. Swapped whole after each
//! life-cycle tick that changed them, so issuance reads them without a lock.

use std::sync::Arc;

use sigil_ca::{JwtAuthority, X509Authority};
use sigil_spiffe::{AuthorityKind, AuthorityState};
use sigil_store::AuthorityRecord;

/// The authorities that sign now, one per kind.
#[derive(Debug)]
pub(super) struct Signing {
    /// The active root: signs new intermediates.
    pub(super) root: Arc<X509Authority>,
    /// The active intermediate: signs X509-SVIDs.
    pub(super) intermediate: Arc<X509Authority>,
    /// The active JWT key: signs JWT-SVIDs.
    pub(super) jwt: Arc<JwtAuthority>,
}

impl Signing {
    /// Ids of the root, intermediate and JWT key, to tell whether a reload changed anything.
    pub(super) fn ids(&self) -> [String; 3] {
        [
            self.root.subject_key_id(),
            self.intermediate.subject_key_id(),
            self.jwt.kid().to_owned(),
        ]
    }
}

/// Ids of the active root, intermediate and JWT key in `records` (the newest active one of each
/// kind; empty when there is none), comparable with [`Signing::ids`].
pub(super) fn active_ids(records: &[AuthorityRecord]) -> [String; 3] {
    AuthorityKind::ALL.map(|kind| {
        active(records, kind)
            .map(|r| r.id.clone())
            .unwrap_or_default()
    })
}

/// The active authority of `kind` in `records`: the newest, should a crash between an
/// activation and a retirement have left two.
pub(super) fn active(records: &[AuthorityRecord], kind: AuthorityKind) -> Option<&AuthorityRecord> {
    records
        .iter()
        .filter(|r| r.kind == kind && r.state == AuthorityState::Active)
        .max_by_key(|r| (r.not_before, &r.id))
}
