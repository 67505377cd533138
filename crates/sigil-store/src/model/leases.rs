//! Brokered database credentials: the lease of each credential the server created in a target
//! database (who holds it, which user it is, when it ends, whether it was revoked), and the
//! credential targets created through the admin API (those from the server's config file are not
//! stored). A target's administrative password is never stored: a stored target names the file or
//! environment variable it comes from.
//!
//! A lease is revoked in two steps so that several replicas never drop the same user twice and a
//! crash half-way is finished later: [`crate::Datastore::claim_lease_revocation`] moves it from
//! active to revoking for a bounded claim, the claimer runs the revocation in the target
//! database, then [`crate::Datastore::finish_lease_revocation`] marks it revoked. A claim that
//! runs out (the claimer died) makes the lease due again.

use serde::{Deserialize, Serialize};
use sigil_spiffe::id::MAX_SPIFFE_ID_BYTES;

use crate::rows::corrupt;
use crate::{MAX_ENTRY_ID_BYTES, MAX_OWNER_BYTES, StoreError, StoreResult};

/// Longest lease id, target name, role name or database user name accepted, in bytes.
pub const MAX_LEASE_NAME_BYTES: usize = 128;
/// Longest revocation reason kept, in bytes (longer reasons are cut at a character boundary).
pub const MAX_REVOKE_REASON_BYTES: usize = 256;
/// Longest stored target specification (JSON), in bytes.
pub const MAX_TARGET_SPEC_BYTES: usize = 64 * 1024;
/// Most leases one [`crate::Datastore::list_leases`] or [`crate::Datastore::due_leases`] call
/// returns.
pub const MAX_LEASE_PAGE: u32 = 1000;

/// Where a lease is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// The user exists and may log in until `expires_at`.
    Active,
    /// A replica is revoking it (until `claim_until`; after that it is due again).
    Revoking,
    /// The revocation ran: the user is gone.
    Revoked,
}

impl LeaseState {
    /// The stored name: `active`, `revoking`, `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoking => "revoking",
            Self::Revoked => "revoked",
        }
    }

    /// The state of a stored name, `None` for any other string.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revoking" => Some(Self::Revoking),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// One brokered credential: a user created in a target database for a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `lease_` and 32 lowercase hex digits.
    pub id: String,
    /// The credential target's name.
    pub target: String,
    /// The role of the target the credential was created for.
    pub role: String,
    /// The SPIFFE ID of the workload that asked.
    pub spiffe_id: String,
    /// The registration entry the workload was served under, when known (always through an
    /// agent; through the public endpoint, the entry with that SPIFFE ID when there is exactly
    /// one).
    pub entry_id: Option<String>,
    /// The agent the request came through, `None` for the public endpoint.
    pub agent_id: Option<String>,
    /// The database user (or role) name.
    pub username: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the credential stops working at this time.
    pub expires_at: i64,
    /// Unix seconds: renewals never move `expires_at` past this.
    pub max_expires_at: i64,
    /// Unix seconds of the last renewal, `None` if never renewed.
    pub renewed_at: Option<i64>,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// While revoking: the claim ends at this Unix second.
    pub claim_until: Option<i64>,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked (`expired`, `revoked by uid:0`, `entry deleted`, ...), once claimed.
    pub revoke_reason: Option<String>,
    /// The server replica that created it.
    pub replica: String,
}

/// Which leases [`crate::Datastore::list_leases`] returns: every given field must match. Ordered
/// by id; `after` is the last id of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseFilter {
    /// Only leases of this credential target.
    pub target: Option<String>,
    /// Only leases of this role.
    pub role: Option<String>,
    /// Only leases held by this SPIFFE ID.
    pub spiffe_id: Option<String>,
    /// Only leases served under this registration entry.
    pub entry_id: Option<String>,
    /// Only leases requested through this agent.
    pub agent_id: Option<String>,
    /// Only leases in this state.
    pub state: Option<LeaseState>,
    /// Only leases whose id is greater than this.
    pub after: Option<String>,
    /// At most this many (capped at [`MAX_LEASE_PAGE`]; 0 means the cap).
    pub limit: u32,
}

/// A credential target created through the admin API. `spec` is the target's definition as
/// JSON (the server's own format; the store does not read it), which names where the
/// administrative password comes from but never holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredentialTarget {
    /// The target's name, unique among stored targets.
    pub name: String,
    /// Who answers for it.
    pub owner: String,
    /// The definition, as JSON.
    pub spec: String,
    /// Starts at 1; every update adds 1.
    pub revision: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last update (`created_at` until then).
    pub updated_at: i64,
}

impl LeaseState {
    /// The state of a stored name, or `Corrupt` naming lease `id` for an unknown one.
    pub(crate) fn from_stored(id: &str, name: &str) -> StoreResult<Self> {
        Self::parse(name).ok_or_else(|| corrupt(Lease::KIND, id, format!("unknown state `{name}`")))
    }
}

impl Lease {
    /// What errors call a lease.
    pub(crate) const KIND: &'static str = "lease";

    /// The columns of `credential_leases`, in the order the backends read them.
    pub(crate) const COLUMNS: &'static str = "id, target, role, spiffe_id, entry_id, agent_id, \
         username, created_at, expires_at, max_expires_at, renewed_at, state, claim_until, \
         revoked_at, revoke_reason, replica";

    /// Checks what [`crate::Datastore::create_lease`] refuses: an empty or over-long id,
    /// target, role or user name (at most [`MAX_LEASE_NAME_BYTES`]), an empty or over-long
    /// SPIFFE ID, an over-long entry id, agent ID, revocation reason or replica, a NUL
    /// character in any text, `expires_at` past `max_expires_at`, a revoking lease without
    /// `claim_until` and a revoked one without `revoked_at`.
    pub fn validate(&self) -> StoreResult<()> {
        for (field, value) in [
            ("id", &self.id),
            ("target", &self.target),
            ("role", &self.role),
            ("username", &self.username),
        ] {
            check_text(field, value, MAX_LEASE_NAME_BYTES)?;
            check_not_empty(field, value)?;
        }
        check_text("spiffe_id", &self.spiffe_id, MAX_SPIFFE_ID_BYTES)?;
        check_not_empty("spiffe_id", &self.spiffe_id)?;
        if let Some(entry_id) = &self.entry_id {
            check_text("entry_id", entry_id, MAX_ENTRY_ID_BYTES)?;
        }
        if let Some(agent_id) = &self.agent_id {
            check_text("agent_id", agent_id, MAX_SPIFFE_ID_BYTES)?;
        }
        if let Some(reason) = &self.revoke_reason {
            check_text("revoke_reason", reason, MAX_REVOKE_REASON_BYTES)?;
        }
        check_text(
            "replica",
            &self.replica,
            sigil_audit::record::MAX_REPLICA_BYTES,
        )?;
        if self.state == LeaseState::Revoking && self.claim_until.is_none() {
            return Err(invalid("claim_until", "a revoking lease needs a claim"));
        }
        if self.state == LeaseState::Revoked && self.revoked_at.is_none() {
            return Err(invalid(
                "revoked_at",
                "a revoked lease needs its revocation time",
            ));
        }
        if self.expires_at > self.max_expires_at {
            return Err(invalid(
                "expires_at",
                format!(
                    "`{}` is past max_expires_at `{}`",
                    self.expires_at, self.max_expires_at
                ),
            ));
        }
        Ok(())
    }

    /// Why [`crate::Datastore::renew_lease`] of lease `id` to `expires_at` at `now` matched
    /// nothing, given the lease as stored afterwards: `NotFound`, `Invalid` (field `state`)
    /// when it is not active or has expired, `Invalid` (field `expires_at`) past its
    /// `max_expires_at`.
    pub(crate) fn renewal_refusal(
        stored: Option<&Lease>,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreError {
        let Some(lease) = stored else {
            return StoreError::NotFound {
                kind: Self::KIND,
                id: id.to_owned(),
            };
        };
        if lease.state != LeaseState::Active {
            return invalid(
                "state",
                format!("lease `{id}` is {}, not active", lease.state.as_str()),
            );
        }
        if lease.expires_at <= now {
            return invalid(
                "state",
                format!("lease `{id}` expired at {}", lease.expires_at),
            );
        }
        if expires_at > lease.max_expires_at {
            return invalid(
                "expires_at",
                format!(
                    "`{expires_at}` is past the lease's max_expires_at `{}`",
                    lease.max_expires_at
                ),
            );
        }
        // The lease was renewable when read: a concurrent write changed it in between.
        invalid("state", format!("lease `{id}` changed while being renewed"))
    }

    /// What [`crate::Datastore::finish_lease_revocation`] answers for this lease when it was
    /// not revoking: nothing to do for a revoked one, `Invalid` (field `state`) for an active
    /// one (it was never claimed).
    pub(crate) fn finish_refusal(&self) -> StoreResult<()> {
        match self.state {
            LeaseState::Revoked | LeaseState::Revoking => Ok(()),
            LeaseState::Active => Err(invalid(
                "state",
                format!(
                    "lease `{}` is active: claim it before finishing its revocation",
                    self.id
                ),
            )),
        }
    }

    /// `reason` as a revocation stores it: cut to at most [`MAX_REVOKE_REASON_BYTES`] at a
    /// character boundary. `Invalid` (field `reason`) when it holds a NUL character.
    pub(crate) fn stored_reason(reason: &str) -> StoreResult<&str> {
        if reason.contains('\0') {
            return Err(invalid("reason", "contains a NUL character"));
        }
        let mut end = reason.len().min(MAX_REVOKE_REASON_BYTES);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Ok(reason.get(..end).unwrap_or_default())
    }
}

impl LeaseFilter {
    /// How many leases one page holds at most for `limit`: [`MAX_LEASE_PAGE`] for 0 and
    /// anything above it.
    pub fn page_size(limit: u32) -> u32 {
        if limit == 0 {
            MAX_LEASE_PAGE
        } else {
            limit.min(MAX_LEASE_PAGE)
        }
    }
}

impl StoredCredentialTarget {
    /// What errors call a stored target.
    pub(crate) const KIND: &'static str = "credential target";

    /// The columns of `credential_targets`, in the order the backends read them.
    pub(crate) const COLUMNS: &'static str = "name, owner, spec, revision, created_at, updated_at";

    /// Checks what creating or updating a target refuses: an empty or over-long name (at most
    /// [`MAX_LEASE_NAME_BYTES`]), an empty or over-long owner (at most
    /// [`crate::MAX_OWNER_BYTES`]), a spec past [`MAX_TARGET_SPEC_BYTES`], a NUL character in
    /// any of them.
    pub fn validate_fields(name: &str, owner: &str, spec: &str) -> StoreResult<()> {
        check_text("name", name, MAX_LEASE_NAME_BYTES)?;
        check_not_empty("name", name)?;
        check_text("owner", owner, MAX_OWNER_BYTES)?;
        check_not_empty("owner", owner)?;
        check_text("spec", spec, MAX_TARGET_SPEC_BYTES)
    }
}

/// `Invalid` when `value` is longer than `max` bytes or holds a NUL character (which
/// PostgreSQL cannot store in text).
fn check_text(field: &'static str, value: &str, max: usize) -> StoreResult<()> {
    if value.len() > max {
        return Err(invalid(
            field,
            format!("is {} bytes, longer than {max}", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(invalid(field, "contains a NUL character"));
    }
    Ok(())
}

fn check_not_empty(field: &'static str, value: &str) -> StoreResult<()> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_REVOKE_REASON_BYTES);
        let cut = Lease::stored_reason(&long).unwrap();
        assert!(cut.len() <= MAX_REVOKE_REASON_BYTES);
        assert_eq!(cut.len(), MAX_REVOKE_REASON_BYTES);
        let odd = format!("x{long}");
        let cut = Lease::stored_reason(&odd).unwrap();
        assert_eq!(cut.len(), MAX_REVOKE_REASON_BYTES - 1);
        assert_eq!(Lease::stored_reason("expired").unwrap(), "expired");
        assert!(Lease::stored_reason("a\0b").is_err());
    }

    #[test]
    fn page_size_caps_and_defaults() {
        assert_eq!(LeaseFilter::page_size(0), MAX_LEASE_PAGE);
        assert_eq!(LeaseFilter::page_size(5), 5);
        assert_eq!(LeaseFilter::page_size(u32::MAX), MAX_LEASE_PAGE);
    }

    #[test]
    fn target_fields_are_checked() {
        let field = |r: StoreResult<()>| match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(StoredCredentialTarget::validate_fields("pg", "team", "{}").is_ok());
        assert_eq!(
            field(StoredCredentialTarget::validate_fields("", "team", "{}")),
            "name"
        );
        assert_eq!(
            field(StoredCredentialTarget::validate_fields("pg", "", "{}")),
            "owner"
        );
        let spec = "x".repeat(MAX_TARGET_SPEC_BYTES + 1);
        assert_eq!(
            field(StoredCredentialTarget::validate_fields("pg", "t", &spec)),
            "spec"
        );
    }
}
