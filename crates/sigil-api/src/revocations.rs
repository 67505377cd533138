//! Revoked credentials on the wire: `POST /api/v1/revocations` (revoke one X509-SVID by serial
//! or one JWT-SVID by `jti`) and `GET /api/v1/revocations` (the revocations still in force).

use serde::{Deserialize, Serialize};

/// Longest `serial` text accepted, in characters: a 20-octet serial (the most RFC 5280 allows)
/// written by openssl as colon-separated pairs with a leading `00:` is 62.
pub const MAX_SERIAL_TEXT_CHARS: usize = 64;
/// Longest `jti` accepted, in characters. A `jti` is printable ASCII without spaces, so this is
/// also its length in bytes: the datastore's limit on a credential id.
pub const MAX_JTI_CHARS: usize = 128;
/// Longest `reason`, in characters: a quarter of the datastore's byte limit, so any text within
/// it fits, and the OpenAPI document can state it as `maxLength`.
pub const MAX_REVOCATION_REASON_CHARS: usize = 256;

/// Body of `POST /api/v1/revocations`: exactly one of `serial` and `jti`, and an optional
/// reason. Fields are raw; the server parses each one and answers 400 naming the field. Unknown
/// fields are rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// The X509-SVID's serial number in hex, any case, colons allowed (`4A:1B:…` as openssl
    /// prints it); leading zeros do not matter.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub serial: Option<String>,
    /// The JWT-SVID's `jti` claim.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub jti: Option<String>,
    /// Why, for the record (one line); absent = empty.
    #[serde(
        default,
        deserialize_with = "crate::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub reason: Option<String>,
}

/// A revoked credential as the API answers it. It is on the deny-list until `expires_at`, when
/// the credential itself expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// `x509_svid` or `jwt_svid`.
    pub kind: String,
    /// X509-SVID: the serial in lowercase hex without colons or leading zeros; JWT-SVID: the
    /// `jti`.
    pub id: String,
    /// The SPIFFE ID the credential was issued for.
    pub spiffe_id: String,
    /// The authority that signed it: hex subject key id (X.509) or `kid` (JWT).
    pub authority_id: String,
    /// The operator's reason; empty when none was given.
    pub reason: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// Unix seconds when the revoked credential expires.
    pub expires_at: i64,
}

/// Answer of `GET /api/v1/revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    pub revocations: Vec<Revocation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_request_reads_optional_fields_and_refuses_null_and_unknown_ones() {
        let req: RevokeRequest =
            serde_json::from_str(r#"{"serial": "4A:1B", "reason": "key leaked"}"#).unwrap();
        assert_eq!(req.serial.as_deref(), Some("4A:1B"));
        assert_eq!(req.jti, None);
        assert_eq!(req.reason.as_deref(), Some("key leaked"));
        // Both or neither is the server's to refuse, so it can say which.
        let both: RevokeRequest = serde_json::from_str(r#"{"serial": "1", "jti": "j"}"#).unwrap();
        assert!(both.serial.is_some() && both.jti.is_some());
        for bad in [
            r#"{"serial": null}"#,
            r#"{"jti": 1}"#,
            r#"{"reason": null, "jti": "j"}"#,
            r#"{"jti": "j", "kind": "jwt_svid"}"#,
        ] {
            assert!(serde_json::from_str::<RevokeRequest>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absent_fields_are_not_sent() {
        let req = RevokeRequest {
            jti: Some("j".into()),
            ..RevokeRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"jti": "j"})
        );
    }
}
