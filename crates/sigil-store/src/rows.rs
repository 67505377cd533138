//! What both backends share of the authority, issued-credential, revocation and federation
//! records: the names and column lists, and the step from a row's raw values to a checked
//! record. Each backend only reads its columns into these rows.

use sigil_spiffe::{SpiffeId, TrustDomain};

use crate::{
    AuthorityKind, AuthorityRecord, AuthorityState, BundleEndpointProfile, CredentialKind,
    FederationRelationship, IssuedCredential, NewFederationRelationship, Revocation, StoreError,
    StoreResult,
};

mod governance;

pub(crate) use governance::*;

pub(crate) const ISSUED_KIND: &str = "issued credential";
pub(crate) const REVOCATION_KIND: &str = "revocation";
/// The kind `NotFound` names when there is no issued record to revoke.
pub(crate) const CREDENTIAL_KIND: &str = "credential";

pub(crate) const ISSUED_COLUMNS: &str =
    "kind, id, spiffe_id, authority_id, issued_to, issued_at, expires_at";
pub(crate) const REVOCATION_COLUMNS: &str =
    "kind, id, spiffe_id, authority_id, reason, revoked_at, expires_at";

/// What a missing or corrupt authority is called in errors.
pub(crate) const AUTHORITY_KIND: &str = "authority";

/// An `authorities` row as a backend reads it, before the kind and state are parsed.
pub(crate) struct AuthorityRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) state: String,
    pub(crate) cert_der: Option<Vec<u8>>,
    pub(crate) public_key_der: Vec<u8>,
    pub(crate) key_id: String,
    pub(crate) issuer_id: Option<String>,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
    pub(crate) created_at: i64,
    pub(crate) replica: String,
}

impl AuthorityRow {
    /// The record, or `Corrupt` if the kind or state is not one this build knows.
    pub(crate) fn into_record(self) -> StoreResult<AuthorityRecord> {
        let kind = AuthorityKind::from_name(&self.kind).ok_or_else(|| {
            corrupt(
                AUTHORITY_KIND,
                &self.id,
                format!("unknown kind `{}`", self.kind),
            )
        })?;
        let state = AuthorityState::from_name(&self.state).ok_or_else(|| {
            corrupt(
                AUTHORITY_KIND,
                &self.id,
                format!("unknown state `{}`", self.state),
            )
        })?;
        Ok(AuthorityRecord {
            id: self.id,
            kind,
            state,
            cert_der: self.cert_der,
            public_key_der: self.public_key_der,
            key_id: self.key_id,
            issuer_id: self.issuer_id,
            not_before: self.not_before,
            not_after: self.not_after,
            created_at: self.created_at,
            replica: self.replica,
        })
    }
}

/// An `issued_credentials` row as a backend reads it, before the kind and SPIFFE IDs are parsed.
pub(crate) struct IssuedRow {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) spiffe_id: String,
    pub(crate) authority_id: String,
    pub(crate) issued_to: String,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
}

impl IssuedRow {
    /// The record, or `Corrupt` if the kind or a SPIFFE ID no longer parses.
    pub(crate) fn into_credential(self) -> StoreResult<IssuedCredential> {
        let key = format!("{}:{}", self.kind, self.id);
        let kind = parse_kind(ISSUED_KIND, &key, &self.kind)?;
        let spiffe_id = parse_spiffe_id(ISSUED_KIND, &key, "spiffe_id", &self.spiffe_id)?;
        let issued_to = parse_spiffe_id(ISSUED_KIND, &key, "issued_to", &self.issued_to)?;
        Ok(IssuedCredential {
            kind,
            id: self.id,
            spiffe_id,
            authority_id: self.authority_id,
            issued_to,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        })
    }
}

/// A `revocations` row as a backend reads it, before the kind and SPIFFE ID are parsed.
pub(crate) struct RevocationRow {
    pub(crate) kind: String,
    pub(crate) id: String,
    pub(crate) spiffe_id: String,
    pub(crate) authority_id: String,
    pub(crate) reason: String,
    pub(crate) revoked_at: i64,
    pub(crate) expires_at: i64,
}

impl RevocationRow {
    /// The record, or `Corrupt` if the kind or the SPIFFE ID no longer parses.
    pub(crate) fn into_revocation(self) -> StoreResult<Revocation> {
        let key = format!("{}:{}", self.kind, self.id);
        let kind = parse_kind(REVOCATION_KIND, &key, &self.kind)?;
        let spiffe_id = parse_spiffe_id(REVOCATION_KIND, &key, "spiffe_id", &self.spiffe_id)?;
        Ok(Revocation {
            kind,
            id: self.id,
            spiffe_id,
            authority_id: self.authority_id,
            reason: self.reason,
            revoked_at: self.revoked_at,
            expires_at: self.expires_at,
        })
    }
}

/// What a missing or corrupt federation relationship is called in errors.
pub(crate) const FEDERATION_KIND: &str = "federation relationship";

pub(crate) const FEDERATION_COLUMNS: &str = "trust_domain, bundle_endpoint_url, profile, \
     endpoint_spiffe_id, created_at, updated_at, owner";

/// The name of the CHECK constraint that ties `endpoint_spiffe_id` to `profile` (the same in
/// both backends' migrations), so its violation can be told from any other.
pub(crate) const FEDERATION_PROFILE_CHECK: &str = "federation_endpoint_id_matches_profile";

/// A `federation_relationships` row as a backend reads it, before anything is parsed.
pub(crate) struct FederationRow {
    pub(crate) trust_domain: String,
    pub(crate) bundle_endpoint_url: String,
    pub(crate) profile: String,
    pub(crate) endpoint_spiffe_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) owner: String,
}

impl FederationRow {
    /// The relationship, or `Corrupt` if the trust domain, profile or endpoint SPIFFE ID no
    /// longer parses, or the row breaks a rule a new relationship is held to (but for the
    /// owner: a row stored before relationships had owners has none).
    pub(crate) fn into_relationship(self) -> StoreResult<FederationRelationship> {
        let key = self.trust_domain;
        let trust_domain = TrustDomain::parse(&key)
            .map_err(|e| corrupt(FEDERATION_KIND, &key, format!("trust_domain: {e}")))?;
        let profile = BundleEndpointProfile::parse(&self.profile).ok_or_else(|| {
            corrupt(
                FEDERATION_KIND,
                &key,
                format!("unknown profile `{}`", self.profile),
            )
        })?;
        let endpoint_spiffe_id = self
            .endpoint_spiffe_id
            .map(|id| parse_spiffe_id(FEDERATION_KIND, &key, "endpoint_spiffe_id", &id))
            .transpose()?;
        let relationship = NewFederationRelationship {
            trust_domain,
            bundle_endpoint_url: self.bundle_endpoint_url,
            profile,
            endpoint_spiffe_id,
            owner: self.owner,
        };
        relationship
            .validate_endpoint()
            .map_err(|e| corrupt(FEDERATION_KIND, &key, e.to_string()))?;
        let mut relationship = FederationRelationship::created(relationship, self.created_at);
        relationship.updated_at = self.updated_at;
        Ok(relationship)
    }
}

fn parse_kind(record: &'static str, key: &str, name: &str) -> StoreResult<CredentialKind> {
    CredentialKind::from_name(name)
        .ok_or_else(|| corrupt(record, key, format!("unknown kind `{name}`")))
}

fn parse_spiffe_id(
    record: &'static str,
    key: &str,
    field: &str,
    value: &str,
) -> StoreResult<SpiffeId> {
    SpiffeId::parse(value).map_err(|e| corrupt(record, key, format!("{field}: {e}")))
}

/// A stored record that no longer parses.
pub(crate) fn corrupt(kind: &'static str, id: &str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        kind,
        id: id.to_owned(),
        detail: detail.into(),
    }
}
