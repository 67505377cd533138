//! `KeySet`: the signing keys of one external issuer, parsed from its JWK Set document (RFC 7517
//! §5) with size and count limits, and the choice of the key that verifies a given token.

use serde_json::Value;

use super::{JoseError, JwsAlgorithm, VerifyingKey};

/// The verifying keys of one issuer. Keys the document held but that cannot verify signatures
/// here (other uses, unknown types or curves, malformed) are left out and counted.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    skipped: usize,
}

impl KeySet {
    /// Largest JWK Set document accepted, in bytes.
    pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
    /// Most entries a JWK Set document may have (usable or not).
    pub const MAX_KEYS: usize = 100;

    /// Parses a JWK Set document (`{"keys": [...]}`). Entries with `use` other than `sig`, of an
    /// unknown `kty` or `crv`, or that [`VerifyingKey::from_jwk`] refuses for any other reason are
    /// left out and counted in [`Self::skipped`], so one odd key does not make an issuer unusable.
    ///
    /// Fails with [`JoseError::DocumentTooLarge`] over [`Self::MAX_DOCUMENT_BYTES`],
    /// [`JoseError::MalformedDocument`] if it is not JSON or not an object with a `keys` array,
    /// and [`JoseError::TooManyKeys`] with more than [`Self::MAX_KEYS`] entries.
    pub fn parse(document: &[u8]) -> Result<Self, JoseError> {
        if document.len() > Self::MAX_DOCUMENT_BYTES {
            return Err(JoseError::DocumentTooLarge {
                len: document.len(),
            });
        }
        let value: Value = serde_json::from_slice(document)
            .map_err(|_| JoseError::MalformedDocument { reason: "not JSON" })?;
        let entries = value
            .as_object()
            .ok_or(JoseError::MalformedDocument {
                reason: "not a JSON object",
            })?
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JoseError::MalformedDocument {
                reason: "no `keys` array",
            })?;
        if entries.len() > Self::MAX_KEYS {
            return Err(JoseError::TooManyKeys {
                count: entries.len(),
            });
        }
        let keys: Vec<VerifyingKey> = entries
            .iter()
            .filter_map(|entry| VerifyingKey::from_jwk(entry).ok())
            .collect();
        Ok(Self {
            skipped: entries.len() - keys.len(),
            keys,
        })
    }

    /// A set of keys built in code (nothing skipped).
    pub fn from_keys(keys: Vec<VerifyingKey>) -> Self {
        Self { keys, skipped: 0 }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of document entries left out by [`Self::parse`].
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The usable keys, in document order.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The key that verifies a token with header `kid` and `alg`:
    ///
    /// - with a `kid`, the first key whose `kid` is exactly that and that
    ///   [`VerifyingKey::supports`] `alg` (keys without a `kid` never match);
    /// - without one, the only key that supports `alg`: `None` when there are none or several,
    ///   because guessing among several would let the token pick.
    pub fn find(&self, kid: Option<&str>, alg: JwsAlgorithm) -> Option<&VerifyingKey> {
        let mut candidates = self.keys.iter().filter(|key| key.supports(alg));
        match kid {
            Some(kid) => candidates.find(|key| key.kid() == Some(kid)),
            None => match (candidates.next(), candidates.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_issuer::TestSigningKey;
    use serde_json::json;

    fn jwk(alg: JwsAlgorithm, kid: &str) -> Value {
        TestSigningKey::generate(alg).unwrap().public_jwk(kid)
    }

    fn document(keys: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn parses_usable_keys_and_counts_the_rest() {
        let mut enc = jwk(JwsAlgorithm::Rs256, "enc");
        enc["use"] = json!("enc");
        let doc = document(vec![
            jwk(JwsAlgorithm::Rs256, "rsa"),
            jwk(JwsAlgorithm::Es256, "ec"),
            enc,
            json!({"kty": "XYZ", "kid": "unknown"}),
            json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            json!("not a key"),
        ]);
        let set = KeySet::parse(&doc).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.skipped(), 4);
        let kids: Vec<_> = set.keys().iter().filter_map(VerifyingKey::kid).collect();
        assert_eq!(kids, ["rsa", "ec"]);
    }

    #[test]
    fn refuses_malformed_oversized_and_overfull_documents() {
        for bad in [&b"not json"[..], b"[]", b"{}", br#"{"keys": {}}"#] {
            assert!(matches!(
                KeySet::parse(bad),
                Err(JoseError::MalformedDocument { .. })
            ));
        }
        let big = vec![b' '; KeySet::MAX_DOCUMENT_BYTES + 1];
        assert_eq!(
            KeySet::parse(&big).unwrap_err(),
            JoseError::DocumentTooLarge { len: big.len() }
        );
        let key = jwk(JwsAlgorithm::Es256, "k");
        let full = document(vec![key.clone(); KeySet::MAX_KEYS]);
        assert_eq!(KeySet::parse(&full).unwrap().len(), KeySet::MAX_KEYS);
        let overfull = document(vec![key; KeySet::MAX_KEYS + 1]);
        assert_eq!(
            KeySet::parse(&overfull).unwrap_err(),
            JoseError::TooManyKeys { count: 101 }
        );
        let empty = KeySet::parse(br#"{"keys": []}"#).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn find_matches_kid_exactly_and_checks_the_algorithm() {
        let set = KeySet::parse(&document(vec![
            jwk(JwsAlgorithm::Es256, "a"),
            jwk(JwsAlgorithm::Rs256, "b"),
        ]))
        .unwrap();
        assert_eq!(
            set.find(Some("a"), JwsAlgorithm::Es256)
                .and_then(VerifyingKey::kid),
            Some("a")
        );
        assert!(set.find(Some("A"), JwsAlgorithm::Es256).is_none());
        assert!(set.find(Some("a"), JwsAlgorithm::Rs256).is_none());
        assert!(
            set.find(Some("b"), JwsAlgorithm::Ps256).is_none(),
            "JWK alg is RS256"
        );
        assert_eq!(
            set.find(None, JwsAlgorithm::Rs256)
                .and_then(VerifyingKey::kid),
            Some("b")
        );
    }

    #[test]
    fn find_without_kid_refuses_to_choose_between_candidates() {
        let set = KeySet::from_keys(vec![
            VerifyingKey::from_jwk(&jwk(JwsAlgorithm::Es256, "a")).unwrap(),
            VerifyingKey::from_jwk(&jwk(JwsAlgorithm::Es256, "b")).unwrap(),
        ]);
        assert!(set.find(Some("b"), JwsAlgorithm::Es256).is_some());
        assert!(set.find(None, JwsAlgorithm::Es256).is_none());
        assert!(set.find(None, JwsAlgorithm::Es384).is_none());
        assert_eq!(set.skipped(), 0);
    }
}
