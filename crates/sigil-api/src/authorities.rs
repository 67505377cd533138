//! Signing authorities on the wire: `GET /api/v1/authorities`, `POST /api/v1/authorities/prepare`
//! and the forced-rotation steps `POST /api/v1/authorities/{id}/activate|taint|revoke`.

use serde::{Deserialize, Serialize};

/// A signing authority as the API answers it. Never carries a private key (the server's records
/// hold none: keys stay in its key manager).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authority {
    /// Lowercase hex subject key id (X.509) or the `kid` (JWT).
    pub id: String,
    /// `x509_root`, `x509_intermediate` or `jwt`.
    pub kind: String,
    /// `prepared`, `active`, `old`, `tainted` or `revoked`.
    pub state: String,
    /// The root that signed an intermediate; absent for roots and JWT keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_id: Option<String>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The certificate as one PEM `CERTIFICATE` block (X.509 kinds); absent for JWT keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
}

/// Answer of `GET /api/v1/authorities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorityList {
    pub authorities: Vec<Authority>,
}

/// Body of `POST /api/v1/authorities/prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareAuthorityRequest {
    /// The kind of authority to prepare: `x509_root`, `x509_intermediate` or `jwt` (the server
    /// checks the name, so its error names the field).
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_needs_kind_and_nothing_else() {
        let req: PrepareAuthorityRequest = serde_json::from_str(r#"{"kind": "jwt"}"#).unwrap();
        assert_eq!(req.kind, "jwt");
        for bad in [
            "{}",
            r#"{"kind": null}"#,
            r#"{"kind": 1}"#,
            r#"{"kind": "jwt", "id": "x"}"#,
        ] {
            assert!(
                serde_json::from_str::<PrepareAuthorityRequest>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn optional_fields_are_absent_not_null() {
        let jwt = Authority {
            id: "k".into(),
            kind: "jwt".into(),
            state: "active".into(),
            issuer_id: None,
            not_before: 1,
            not_after: 2,
            certificate_pem: None,
        };
        assert_eq!(
            serde_json::to_value(&jwt).unwrap(),
            serde_json::json!({"id": "k", "kind": "jwt", "state": "active", "not_before": 1, "not_after": 2})
        );
    }
}
