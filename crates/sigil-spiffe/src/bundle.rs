//! The SPIFFE bundle document (SPIFFE Trust Domain and Bundle spec §4): a JWK Set whose keys carry
//! `use: x509-svid` (with `x5c`) or `use: jwt-svid` (with `kid`), plus `spiffe_sequence` and
//! `spiffe_refresh_hint`. This module only shapes and bounds the JSON; turning keys into
//! certificates or verifiers is the job of `sigil-keys`.

use serde::{Deserialize, Serialize};

/// Largest bundle document accepted, in bytes.
pub const MAX_BUNDLE_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most keys accepted in one bundle document.
pub const MAX_BUNDLE_KEYS: usize = 1024;

/// `use` value of a JWK that is an X.509 authority.
pub const USE_X509_SVID: &str = "x509-svid";
/// `use` value of a JWK that is a JWT authority.
pub const USE_JWT_SVID: &str = "jwt-svid";

/// Why bytes are not a bundle document.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("bundle document is larger than {MAX_BUNDLE_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("bundle document has more than {MAX_BUNDLE_KEYS} keys")]
    TooManyKeys,
    #[error("bundle document is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// One JSON Web Key as found in SPIFFE bundles and JWKS documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Certificate chain, standard base64 DER (RFC 7517 §4.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5c: Option<Vec<String>>,
}

/// A SPIFFE bundle document or a plain JWKS (`spiffe_*` fields absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleDocument {
    pub keys: Vec<Jwk>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spiffe_refresh_hint: Option<u64>,
}

impl BundleDocument {
    /// Parses a bundle document, refusing oversized input before reading it.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_DOCUMENT_BYTES {
            return Err(BundleError::TooLarge);
        }
        let doc: Self = serde_json::from_slice(bytes)?;
        if doc.keys.len() > MAX_BUNDLE_KEYS {
            return Err(BundleError::TooManyKeys);
        }
        Ok(doc)
    }

    /// The keys whose `use` is `use_`.
    pub fn keys_for<'a>(&'a self, use_: &'a str) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.key_use.as_deref() == Some(use_))
    }

    /// Serialises to JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A JWT signing authority's public half, as carried in a trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtAuthorityKey {
    /// Key ID, matched against a JWT-SVID's `kid` header.
    pub kid: String,
    /// DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// Unix seconds after which the key is no longer trusted (0 = no expiry known).
    pub expires_at: i64,
}

/// A trust domain's bundle in binary form: the X.509 authorities (DER certificates) and JWT
/// authorities (public keys) that verify its SVIDs. Conversion to and from the JSON
/// [`BundleDocument`] needs key parsing and lives in `sigil-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBundle {
    pub trust_domain: crate::TrustDomain,
    pub x509_authorities: Vec<Vec<u8>>,
    pub jwt_authorities: Vec<JwtAuthorityKey>,
    /// Incremented on every change (`spiffe_sequence`).
    pub sequence: u64,
    /// Seconds a consumer should wait before fetching again (`spiffe_refresh_hint`).
    pub refresh_hint: u64,
}

impl TrustBundle {
    /// The X.509 authorities concatenated as DER, the Workload API's bundle encoding.
    pub fn x509_authorities_der(&self) -> Vec<u8> {
        self.x509_authorities.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_shaped_document() {
        let doc =
            br#"{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k1","crv":"P-256","x":"AA","y":"AA"},
            {"use":"x509-svid","kty":"EC","crv":"P-256","x":"AA","y":"AA","x5c":["AAAA"]}],
            "spiffe_sequence":7,"spiffe_refresh_hint":300}"#;
        let b = BundleDocument::parse(doc).unwrap();
        assert_eq!(b.spiffe_sequence, Some(7));
        assert_eq!(b.keys_for(USE_JWT_SVID).count(), 1);
        assert_eq!(b.keys_for(USE_X509_SVID).count(), 1);
    }

    #[test]
    fn rejects_oversized_document() {
        let big = vec![b' '; MAX_BUNDLE_DOCUMENT_BYTES + 1];
        assert!(matches!(
            BundleDocument::parse(&big),
            Err(BundleError::TooLarge)
        ));
    }
}
