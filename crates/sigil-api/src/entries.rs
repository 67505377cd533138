//! Registration entries on the wire: the request body of `POST /api/v1/entries` and
//! `PUT /api/v1/entries/{id}`, the entry as answered, the list answer, and the request and
//! answer of a batch create.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TtlValue;

/// Most selectors one entry may have.
pub const MAX_ENTRY_SELECTORS: usize = 128;
/// Most DNS names one entry may have.
pub const MAX_ENTRY_DNS_NAMES: usize = 128;
/// Most federated trust domains one entry may name.
pub const MAX_ENTRY_FEDERATES_WITH: usize = 64;
/// Longest `hint`, in characters.
pub const MAX_HINT_CHARS: usize = 1024;
/// Longest `owner`, in characters: a quarter of the datastore's byte limit, so any text within it
/// fits, and the OpenAPI document can state it as `maxLength`.
pub const MAX_OWNER_CHARS: usize = 64;
/// Most entries one batch create accepts (the datastore's own bound, checked equal where both
/// are in reach).
pub const MAX_ENTRY_BATCH: usize = 1000;
/// Longest `description`, in characters (a quarter of the datastore's byte limit, as for owner).
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Most labels one entry may have (the datastore's own bound).
pub const MAX_ENTRY_LABELS: usize = 32;
/// Longest label key, in characters: lowercase ASCII letters, digits, `.`, `_`, `/` and `-`,
/// starting and ending with a letter or digit (the datastore's rule).
pub const MAX_LABEL_KEY_CHARS: usize = 63;
/// Longest label value, in characters: printable ASCII, `=` included (the datastore's rule).
pub const MAX_LABEL_VALUE_CHARS: usize = 128;

/// Body of entry create (`POST`) and full replacement (`PUT`). Every field is raw: the server
/// parses each one and answers 400 naming the field when it is missing or invalid. Unknown fields
/// are rejected, so a misspelt field is an error rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryRequest {
    /// Required: the SPIFFE ID to issue, in the server's trust domain.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub spiffe_id: Option<String>,
    /// Required: an agent ID, a node alias or another entry's SPIFFE ID.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_id: Option<String>,
    /// Required, non-empty: `type:value` selectors such as `unix:uid:1000`.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// X509-SVID lifetime; absent or `0` = server default.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub x509_svid_ttl: Option<TtlValue>,
    /// JWT-SVID lifetime; absent or `0` = server default.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub jwt_svid_ttl: Option<TtlValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Trust domain names whose bundles the workload also receives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federates_with: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub downstream: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hint: String,
    /// Required, non-empty: the team or contact accountable for this identity.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `key: value` labels that policy reads as the workload's `labels` (`"key=value"`); at most
    /// [`MAX_ENTRY_LABELS`]. A replacement replaces them whole; absent = none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds after which the entry is no longer served; absent = never.
    #[serde(
        default,
        deserialize_with = "crate::present_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<i64>,
    /// `PUT` only: the revision the caller read; a mismatch answers 409 `conflict`.
    #[serde(
        default,
        deserialize_with = "crate::present_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub revision: Option<i64>,
}

/// A registration entry as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub spiffe_id: String,
    pub parent_id: String,
    pub selectors: Vec<String>,
    /// Seconds; `0` = server default.
    pub x509_svid_ttl: u64,
    /// Seconds; `0` = server default.
    pub jwt_svid_ttl: u64,
    pub dns_names: Vec<String>,
    pub federates_with: Vec<String>,
    pub admin: bool,
    pub downstream: bool,
    pub hint: String,
    pub owner: String,
    pub description: String,
    /// The entry's labels, by key; absent from an answer of a server that predates them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Unix seconds, or `null` for never.
    pub expires_at: Option<i64>,
    /// Starts at 1, +1 on every update.
    pub revision: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Answer of `GET /api/v1/entries`: one page of entries, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryList {
    pub entries: Vec<Entry>,
    /// Opaque token that reads the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Body of `POST /api/v1/entries/batch-create`: at most [`MAX_ENTRY_BATCH`] entries, each as
/// the body of an entry create, stored all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBatchRequest {
    pub entries: Vec<EntryRequest>,
}

/// Answer of `POST /api/v1/entries/batch-create`: every entry of the request as stored, in the
/// request's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBatch {
    pub entries: Vec<Entry>,
}

impl Entry {
    /// The `PUT` body that replaces this entry with itself, guarded by its current revision:
    /// the starting point of a read-modify-write update.
    pub fn to_update_request(&self) -> EntryRequest {
        EntryRequest {
            spiffe_id: Some(self.spiffe_id.clone()),
            parent_id: Some(self.parent_id.clone()),
            selectors: self.selectors.clone(),
            x509_svid_ttl: Some(TtlValue::Seconds(self.x509_svid_ttl)),
            jwt_svid_ttl: Some(TtlValue::Seconds(self.jwt_svid_ttl)),
            dns_names: self.dns_names.clone(),
            federates_with: self.federates_with.clone(),
            admin: self.admin,
            downstream: self.downstream,
            hint: self.hint.clone(),
            owner: Some(self.owner.clone()),
            description: self.description.clone(),
            labels: self.labels.clone(),
            expires_at: self.expires_at,
            revision: Some(self.revision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_request_decodes_with_defaults() {
        let req: EntryRequest = serde_json::from_str(
            r#"{"spiffe_id":"spiffe://td/a","parent_id":"spiffe://td/p","selectors":["unix:uid:1"],"owner":"team"}"#,
        )
        .unwrap();
        assert_eq!(req.x509_svid_ttl, None);
        assert!(!req.admin);
        assert!(req.dns_names.is_empty());
        assert_eq!(req.owner.as_deref(), Some("team"));
    }

    #[test]
    fn null_is_not_an_absent_value() {
        for field in [
            "spiffe_id",
            "parent_id",
            "x509_svid_ttl",
            "jwt_svid_ttl",
            "owner",
            "expires_at",
            "revision",
        ] {
            let absent = serde_json::from_str::<EntryRequest>("{}");
            assert!(absent.is_ok(), "{field} may be absent");
            let null = serde_json::from_str::<EntryRequest>(&format!(r#"{{"{field}": null}}"#));
            assert!(null.is_err(), "{field}: null is refused");
        }
    }

    #[test]
    fn integers_may_be_written_with_an_integral_fraction() {
        let req: EntryRequest =
            serde_json::from_str(r#"{"expires_at": 9231.0, "revision": 2}"#).unwrap();
        assert_eq!(req.expires_at, Some(9231));
        assert_eq!(req.revision, Some(2));
        assert!(serde_json::from_str::<EntryRequest>(r#"{"expires_at": 1.5}"#).is_err());
        assert!(serde_json::from_str::<EntryRequest>(r#"{"revision": 1e300}"#).is_err());
    }

    #[test]
    fn misspelt_fields_are_rejected() {
        let err = serde_json::from_str::<EntryRequest>(r#"{"selector":["unix:uid:1"]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `selector`"), "{err}");
    }

    #[test]
    fn update_request_round_trips_the_entry_and_pins_its_revision() {
        let entry = Entry {
            id: "e1".into(),
            spiffe_id: "spiffe://td/a".into(),
            parent_id: "spiffe://td/p".into(),
            selectors: vec!["unix:uid:1".into()],
            x509_svid_ttl: 0,
            jwt_svid_ttl: 300,
            dns_names: vec!["a.example".into()],
            federates_with: vec![],
            admin: true,
            downstream: false,
            hint: String::new(),
            owner: "team".into(),
            description: "d".into(),
            labels: BTreeMap::from([("tier".to_owned(), "web".to_owned())]),
            expires_at: None,
            revision: 4,
            created_at: 1,
            updated_at: 2,
        };
        let req = entry.to_update_request();
        assert_eq!(req.revision, Some(4));
        assert_eq!(req.x509_svid_ttl, Some(TtlValue::Seconds(0)));
        assert_eq!(req.jwt_svid_ttl, Some(TtlValue::Seconds(300)));
        assert!(req.admin);
        assert_eq!(req.labels, entry.labels);
    }

    #[test]
    fn labels_are_an_object_of_strings_and_optional() {
        let req: EntryRequest =
            serde_json::from_str(r#"{"labels": {"tier": "web", "x": "a=b"}}"#).unwrap();
        assert_eq!(req.labels.get("x").map(String::as_str), Some("a=b"));
        assert!(serde_json::from_str::<EntryRequest>(r#"{"labels": ["tier=web"]}"#).is_err());
        assert!(serde_json::from_str::<EntryRequest>(r#"{"labels": {"tier": 1}}"#).is_err());
        let empty = serde_json::to_value(EntryRequest::default()).unwrap();
        assert!(empty.get("labels").is_none(), "no labels, no field");
    }
}
