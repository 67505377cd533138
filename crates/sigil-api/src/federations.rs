//! Federation relationships on the wire: `POST|GET /api/v1/federations` (the list filtered by
//! [`FederationQuery`](crate::FederationQuery)),
//! `GET|PATCH|DELETE /api/v1/federations/{trust_domain}` and
//! `POST /api/v1/federations/{trust_domain}/refresh`.

use serde::{Deserialize, Serialize};

/// Body of `POST /api/v1/federations`. Fields are raw; the server parses each one and answers
/// 400 naming the field. Unknown fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationRequest {
    /// The foreign trust domain, by name or ID; never the server's own.
    pub trust_domain: String,
    /// Where its bundle is fetched: an `https://` URL.
    pub bundle_endpoint_url: String,
    /// `https_web` or `https_spiffe`.
    pub profile: String,
    /// The SPIFFE ID the endpoint presents: required for `https_spiffe`, refused for `https_web`.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_spiffe_id: Option<String>,
    /// The team or contact accountable for the relationship: required (the server answers 400
    /// naming `owner` when it is absent or blank); `Option` only so that answer can be given.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<String>,
    /// The foreign bundle to trust until the first refresh: a SPIFFE bundle document (JSON text)
    /// or PEM `CERTIFICATE` blocks. Stored only when no bundle of that trust domain is held.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub bootstrap_bundle: Option<String>,
}

/// Body of `PATCH /api/v1/federations/{trust_domain}`: only the fields present change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationUpdateRequest {
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub bundle_endpoint_url: Option<String>,
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub profile: Option<String>,
    /// Absent: unchanged; `null`: cleared; a string: set.
    #[serde(
        default,
        deserialize_with = "crate::nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub endpoint_spiffe_id: Option<Option<String>>,
    /// A new owner (not blank).
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<String>,
}

/// A federation relationship as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Federation {
    pub trust_domain: String,
    pub bundle_endpoint_url: String,
    /// `https_web` or `https_spiffe`.
    pub profile: String,
    /// `null` when the profile is `https_web`.
    pub endpoint_spiffe_id: Option<String>,
    /// The team or contact accountable for the relationship; empty for one created before
    /// relationships had owners.
    pub owner: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The sequence of the foreign bundle held; `null` when none is held.
    pub bundle_sequence: Option<u64>,
    /// Unix seconds when the held bundle was stored; `null` when none is held.
    pub bundle_updated_at: Option<i64>,
}

/// Answer of `GET /api/v1/federations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationList {
    pub federations: Vec<Federation>,
}

/// Answer of `POST /api/v1/federations/{trust_domain}/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationRefreshed {
    pub trust_domain: String,
    /// `updated` (a newer bundle was stored) or `unchanged` (the endpoint served what is held).
    pub outcome: String,
    /// The sequence of the bundle held after the refresh.
    pub sequence: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_needs_its_fields_and_refuses_null_and_unknown_ones() {
        let req: FederationRequest = serde_json::from_str(
            r#"{"trust_domain": "partner.org", "bundle_endpoint_url": "https://p/b", "profile": "https_web", "owner": "team"}"#,
        )
        .unwrap();
        assert_eq!(req.trust_domain, "partner.org");
        assert_eq!(req.endpoint_spiffe_id, None);
        assert_eq!(req.owner.as_deref(), Some("team"));
        // A missing owner is read, so the server can answer naming it.
        let unowned: FederationRequest = serde_json::from_str(
            r#"{"trust_domain": "partner.org", "bundle_endpoint_url": "https://p/b", "profile": "https_web"}"#,
        )
        .unwrap();
        assert_eq!(unowned.owner, None);
        for bad in [
            r#"{"trust_domain": "p", "bundle_endpoint_url": "https://p", "profile": "https_web", "owner": null}"#,
            r#"{"trust_domain": "p", "bundle_endpoint_url": "https://p"}"#,
            r#"{"trust_domain": "p", "bundle_endpoint_url": "https://p", "profile": "https_web", "endpoint_spiffe_id": null}"#,
            r#"{"trust_domain": "p", "bundle_endpoint_url": "https://p", "profile": "https_web", "x": 1}"#,
        ] {
            assert!(
                serde_json::from_str::<FederationRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn update_tells_absent_from_null_endpoint_id() {
        let absent: FederationUpdateRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.endpoint_spiffe_id, None);
        let cleared: FederationUpdateRequest =
            serde_json::from_str(r#"{"endpoint_spiffe_id": null}"#).unwrap();
        assert_eq!(cleared.endpoint_spiffe_id, Some(None));
        let set: FederationUpdateRequest =
            serde_json::from_str(r#"{"endpoint_spiffe_id": "spiffe://p/s"}"#).unwrap();
        assert_eq!(set.endpoint_spiffe_id, Some(Some("spiffe://p/s".into())));
        assert_eq!(
            serde_json::to_value(&cleared).unwrap(),
            serde_json::json!({"endpoint_spiffe_id": null})
        );
        assert_eq!(
            serde_json::to_value(&absent).unwrap(),
            serde_json::json!({})
        );
        let owner: FederationUpdateRequest = serde_json::from_str(r#"{"owner": "t"}"#).unwrap();
        assert_eq!(owner.owner.as_deref(), Some("t"));
        for bad in [
            r#"{"profile": null}"#,
            r#"{"owner": null}"#,
            r#"{"revision": 1}"#,
        ] {
            assert!(
                serde_json::from_str::<FederationUpdateRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
