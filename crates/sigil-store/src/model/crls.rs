//! Signed CRLs, one per X.509 authority: the replica that holds an authority's key signs its CRL
//! and stores it here, so every replica can serve the CRLs of every replica's authorities. A CRL
//! only ever moves forward: [`crate::Datastore::put_crl`] writes one only when its number is
//! greater than the stored one's, so of two writers the newer CRL stays whatever the commit
//! order. A CRL row goes with its authority (the foreign key cascades), so a pruned authority
//! leaves no CRL behind. The store does not check signatures: the replicas that serve a CRL do.

use serde::{Deserialize, Serialize};
use sigil_spiffe::MAX_AUTHORITY_ID_CHARS;

use crate::{StoreError, StoreResult};

/// Largest DER CRL stored, in bytes (1 MiB): some 29 000 revoked serials at about 36 bytes an
/// entry. Agents keep 2 MiB of CRLs in all, so a larger one would crowd out the others.
pub const MAX_CRL_DER_BYTES: usize = 1024 * 1024;

/// One X.509 authority's newest CRL, as its replica signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCrl {
    /// The authority that signed it (the authority record's id).
    pub authority_id: String,
    /// The server replica that holds that authority's key and signed it.
    pub replica: String,
    /// The CRL number (RFC 5280 §5.2.3) written into the CRL; grows from one CRL of the
    /// authority to the next.
    pub number: u64,
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// Its `nextUpdate`, Unix seconds.
    pub next_update: i64,
}

impl StoredCrl {
    /// Checks the bounds every backend enforces before writing: an authority id of 1 to
    /// [`MAX_AUTHORITY_ID_CHARS`] bytes, a replica of at most
    /// [`sigil_audit::record::MAX_REPLICA_BYTES`], a non-empty DER of at most
    /// [`MAX_CRL_DER_BYTES`], and a number that fits a signed 64-bit column. `Invalid` naming
    /// the field otherwise.
    pub fn validate(&self) -> StoreResult<()> {
        if self.authority_id.is_empty() || self.authority_id.len() > MAX_AUTHORITY_ID_CHARS {
            return Err(invalid(
                "authority_id",
                format!("must be 1 to {MAX_AUTHORITY_ID_CHARS} bytes long"),
            ));
        }
        if self.replica.len() > sigil_audit::record::MAX_REPLICA_BYTES {
            return Err(invalid(
                "replica",
                format!(
                    "is longer than {} bytes",
                    sigil_audit::record::MAX_REPLICA_BYTES
                ),
            ));
        }
        if self.der.is_empty() {
            return Err(invalid("der", "the CRL is empty"));
        }
        if self.der.len() > MAX_CRL_DER_BYTES {
            return Err(invalid(
                "der",
                format!(
                    "the CRL is {} bytes, larger than {MAX_CRL_DER_BYTES}",
                    self.der.len()
                ),
            ));
        }
        if i64::try_from(self.number).is_err() {
            return Err(invalid(
                "number",
                format!("`{}` is larger than {}", self.number, i64::MAX),
            ));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.into(),
    }
}
