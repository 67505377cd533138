//! Federation relationships: which foreign trust domains this server federates with, and where
//! and how their bundles are fetched (SPIFFE Trust Domain and Bundle specification, §5).

use std::fmt;

use serde::{Deserialize, Serialize};
use sigil_spiffe::{SpiffeId, TrustDomain};

use super::{MAX_OWNER_BYTES, invalid};
use crate::{StoreError, StoreResult};

/// Longest bundle endpoint URL accepted, in bytes.
pub const MAX_BUNDLE_ENDPOINT_URL_BYTES: usize = 2048;

/// How a federated trust domain's bundle endpoint is authenticated (SPIFFE Trust Domain and
/// Bundle spec §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleEndpointProfile {
    /// The endpoint presents a Web PKI certificate (`https_web`).
    HttpsWeb,
    /// The endpoint presents an X509-SVID with a known SPIFFE ID (`https_spiffe`).
    HttpsSpiffe,
}

/// A federation relationship with a foreign trust domain, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationRelationship {
    /// The foreign trust domain; at most one relationship per trust domain.
    pub trust_domain: TrustDomain,
    /// Where the foreign bundle is fetched: `https://`, at most
    /// [`MAX_BUNDLE_ENDPOINT_URL_BYTES`], no whitespace or control characters.
    pub bundle_endpoint_url: String,
    pub profile: BundleEndpointProfile,
    /// The SPIFFE ID the endpoint must present: `Some` exactly when `profile` is
    /// [`BundleEndpointProfile::HttpsSpiffe`].
    pub endpoint_spiffe_id: Option<SpiffeId>,
    /// The team or contact accountable for the relationship: not blank and at most
    /// [`MAX_OWNER_BYTES`] when created or changed; empty only for a relationship stored before
    /// relationships had owners.
    pub owner: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// The caller-supplied part of a federation relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFederationRelationship {
    pub trust_domain: TrustDomain,
    pub bundle_endpoint_url: String,
    pub profile: BundleEndpointProfile,
    pub endpoint_spiffe_id: Option<SpiffeId>,
    /// The team or contact accountable for the relationship: required, not blank, at most
    /// [`MAX_OWNER_BYTES`].
    pub owner: String,
}

/// A change to a stored federation relationship: only the fields that are `Some` change, each
/// written as its own column, so concurrent updates of different fields do not undo each other.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationUpdate {
    pub bundle_endpoint_url: Option<String>,
    pub profile: Option<BundleEndpointProfile>,
    /// `Some(None)` clears the endpoint SPIFFE ID; `None` leaves it as it is.
    pub endpoint_spiffe_id: Option<Option<SpiffeId>>,
    /// A new owner: not blank, at most [`MAX_OWNER_BYTES`].
    pub owner: Option<String>,
}

impl BundleEndpointProfile {
    /// Both profiles.
    pub const ALL: [Self; 2] = [Self::HttpsWeb, Self::HttpsSpiffe];

    /// The stable name stored and shown (`https_web`, `https_spiffe`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpsWeb => "https_web",
            Self::HttpsSpiffe => "https_spiffe",
        }
    }

    /// The profile named `name` (as returned by [`BundleEndpointProfile::as_str`]), or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|profile| profile.as_str() == name)
    }
}

impl fmt::Display for BundleEndpointProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NewFederationRelationship {
    /// Checks what every backend relies on: the owner is not blank and at most
    /// [`MAX_OWNER_BYTES`]; the URL starts with `https://` and a host, is at most
    /// [`MAX_BUNDLE_ENDPOINT_URL_BYTES`] and holds no whitespace or control character; and
    /// `endpoint_spiffe_id` is set for `https_spiffe` and absent for `https_web`. Fails with
    /// [`StoreError::Invalid`] (field `owner`, `bundle_endpoint_url` or `endpoint_spiffe_id`).
    pub fn validate(&self) -> StoreResult<()> {
        check_owner(&self.owner)?;
        self.validate_endpoint()
    }

    /// The checks of [`NewFederationRelationship::validate`] but the owner's: what a stored
    /// row must still satisfy (rows stored before owners existed have none).
    pub(crate) fn validate_endpoint(&self) -> StoreResult<()> {
        check_bundle_endpoint_url(&self.bundle_endpoint_url)?;
        check_profile_rule(self.profile, self.endpoint_spiffe_id.is_some())
    }
}

impl FederationUpdate {
    /// Whether the update changes no field at all.
    pub fn is_empty(&self) -> bool {
        self.bundle_endpoint_url.is_none()
            && self.profile.is_none()
            && self.endpoint_spiffe_id.is_none()
            && self.owner.is_none()
    }

    /// Checks the fields the update sets: a new URL and a new owner as
    /// [`NewFederationRelationship::validate`] does, and, when it sets both the profile and the
    /// endpoint SPIFFE ID, that they agree. Whether the row that results agrees is checked by
    /// the store as it writes. Fails with [`StoreError::Invalid`].
    pub fn validate(&self) -> StoreResult<()> {
        if let Some(owner) = &self.owner {
            check_owner(owner)?;
        }
        if let Some(url) = &self.bundle_endpoint_url {
            check_bundle_endpoint_url(url)?;
        }
        if let (Some(profile), Some(endpoint_spiffe_id)) = (self.profile, &self.endpoint_spiffe_id)
        {
            check_profile_rule(profile, endpoint_spiffe_id.is_some())?;
        }
        Ok(())
    }
}

impl FederationRelationship {
    /// A new relationship as created at `now`.
    pub(crate) fn created(new: NewFederationRelationship, now: i64) -> Self {
        Self {
            trust_domain: new.trust_domain,
            bundle_endpoint_url: new.bundle_endpoint_url,
            profile: new.profile,
            endpoint_spiffe_id: new.endpoint_spiffe_id,
            owner: new.owner,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Checks a bundle endpoint URL: it starts with `https://` followed by a host, is at most
/// [`MAX_BUNDLE_ENDPOINT_URL_BYTES`] long, and holds no whitespace or control character. Fails
/// with [`StoreError::Invalid`] (field `bundle_endpoint_url`). The URL is not otherwise parsed:
/// the federation client does that when it fetches.
pub(crate) fn check_bundle_endpoint_url(url: &str) -> StoreResult<()> {
    const FIELD: &str = "bundle_endpoint_url";
    if url.len() > MAX_BUNDLE_ENDPOINT_URL_BYTES {
        return Err(invalid(
            FIELD,
            format!("is longer than {MAX_BUNDLE_ENDPOINT_URL_BYTES} bytes"),
        ));
    }
    if let Some(bad) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            FIELD,
            format!(
                "holds the character {bad:?}: whitespace and control characters are not allowed"
            ),
        ));
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid(
            FIELD,
            format!("`{url}` does not start with `https://`"),
        ));
    };
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return Err(invalid(FIELD, format!("`{url}` names no host")));
    }
    Ok(())
}

/// An owner is not blank and at most [`MAX_OWNER_BYTES`] (the rule entries' owners follow).
/// Fails with [`StoreError::Invalid`] (field `owner`).
fn check_owner(owner: &str) -> StoreResult<()> {
    if owner.trim().is_empty() {
        return Err(invalid("owner", "must not be empty"));
    }
    if owner.len() > MAX_OWNER_BYTES {
        return Err(invalid(
            "owner",
            format!("is longer than {MAX_OWNER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// `endpoint_spiffe_id` must be set for `https_spiffe` and absent for `https_web`.
fn check_profile_rule(profile: BundleEndpointProfile, has_endpoint_id: bool) -> StoreResult<()> {
    if (profile == BundleEndpointProfile::HttpsSpiffe) == has_endpoint_id {
        Ok(())
    } else {
        Err(profile_rule_violation())
    }
}

/// The error for a relationship whose `endpoint_spiffe_id` does not match its profile, also
/// what the backends report when the table's CHECK constraint refuses an update.
pub(crate) fn profile_rule_violation() -> StoreError {
    invalid(
        "endpoint_spiffe_id",
        "is required for profile `https_spiffe` and not allowed for profile `https_web`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relationship(
        profile: BundleEndpointProfile,
        endpoint: Option<&str>,
    ) -> NewFederationRelationship {
        NewFederationRelationship {
            trust_domain: TrustDomain::parse("partner.example").unwrap(),
            bundle_endpoint_url: "https://partner.example/bundle".to_owned(),
            profile,
            endpoint_spiffe_id: endpoint.map(|id| SpiffeId::parse(id).unwrap()),
            owner: "team-federation".to_owned(),
        }
    }

    fn invalid_field(result: StoreResult<()>) -> &'static str {
        match result {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid-field error, got {other:?}"),
        }
    }

    #[test]
    fn profile_names_round_trip_through_str_display_and_serde() {
        for profile in BundleEndpointProfile::ALL {
            assert_eq!(
                BundleEndpointProfile::parse(profile.as_str()),
                Some(profile)
            );
            assert_eq!(profile.to_string(), profile.as_str());
            assert_eq!(serde_json::to_value(profile).unwrap(), profile.as_str());
        }
        assert_eq!(BundleEndpointProfile::parse("HttpsWeb"), None);
        assert_eq!(BundleEndpointProfile::parse("https"), None);
    }

    #[test]
    fn endpoint_id_is_required_for_https_spiffe_and_refused_for_https_web() {
        let id = Some("spiffe://partner.example/sigil/server");
        assert!(
            relationship(BundleEndpointProfile::HttpsWeb, None)
                .validate()
                .is_ok()
        );
        assert!(
            relationship(BundleEndpointProfile::HttpsSpiffe, id)
                .validate()
                .is_ok()
        );
        for bad in [
            relationship(BundleEndpointProfile::HttpsWeb, id),
            relationship(BundleEndpointProfile::HttpsSpiffe, None),
        ] {
            assert_eq!(invalid_field(bad.validate()), "endpoint_spiffe_id");
        }
    }

    #[test]
    fn owner_is_required_and_bounded_on_create_and_update() {
        let mut new = relationship(BundleEndpointProfile::HttpsWeb, None);
        new.owner = "o".repeat(MAX_OWNER_BYTES);
        assert!(new.validate().is_ok(), "an owner at the limit is accepted");
        for bad in [
            String::new(),
            " \t".to_owned(),
            "o".repeat(MAX_OWNER_BYTES + 1),
        ] {
            new.owner = bad.clone();
            assert_eq!(invalid_field(new.validate()), "owner", "{bad:?}");
            // The rest of the relationship is fine: only the owner is checked apart.
            assert!(new.validate_endpoint().is_ok());
            let update = FederationUpdate {
                owner: Some(bad),
                ..FederationUpdate::default()
            };
            assert!(!update.is_empty());
            assert_eq!(invalid_field(update.validate()), "owner");
        }
        let update = FederationUpdate {
            owner: Some("team-b".to_owned()),
            ..FederationUpdate::default()
        };
        assert!(update.validate().is_ok());
    }

    #[test]
    fn rejects_urls_that_are_not_https_or_hold_whitespace() {
        for url in [
            "http://partner.example/bundle",
            "HTTPS://partner.example/bundle",
            "partner.example/bundle",
            "https://",
            "https:///bundle",
            "https://partner.example/a b",
            "https://partner.example/\u{7f}",
            "https://partner.example/\n",
            "",
        ] {
            assert_eq!(
                invalid_field(check_bundle_endpoint_url(url)),
                "bundle_endpoint_url",
                "{url:?}"
            );
        }
    }

    #[test]
    fn url_is_limited_in_bytes_and_accepted_at_the_limit() {
        let prefix = "https://partner.example/";
        let at_limit = format!(
            "{prefix}{}",
            "a".repeat(MAX_BUNDLE_ENDPOINT_URL_BYTES - prefix.len())
        );
        assert!(check_bundle_endpoint_url(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            invalid_field(check_bundle_endpoint_url(&over)),
            "bundle_endpoint_url"
        );
    }

    #[test]
    fn update_checks_only_what_it_sets() {
        assert!(FederationUpdate::default().is_empty());
        assert!(FederationUpdate::default().validate().is_ok());
        // A profile alone may or may not fit the stored row: the store decides.
        let profile_only = FederationUpdate {
            profile: Some(BundleEndpointProfile::HttpsSpiffe),
            ..FederationUpdate::default()
        };
        assert!(!profile_only.is_empty());
        assert!(profile_only.validate().is_ok());
        let contradictory = FederationUpdate {
            profile: Some(BundleEndpointProfile::HttpsSpiffe),
            endpoint_spiffe_id: Some(None),
            ..FederationUpdate::default()
        };
        assert_eq!(
            invalid_field(contradictory.validate()),
            "endpoint_spiffe_id"
        );
        let bad_url = FederationUpdate {
            bundle_endpoint_url: Some("http://partner.example".to_owned()),
            ..FederationUpdate::default()
        };
        assert_eq!(invalid_field(bad_url.validate()), "bundle_endpoint_url");
    }
}
