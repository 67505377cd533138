//! Signed checkpoints: a server replica's signature over the chain's head at some moment
//! (sequence and hash), so that records cut from the end of the chain, or a head rewritten with
//! every hash recomputed, no longer match what a key outside the store signed.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sigil_keys::{PrivateKey, PublicKey};

use crate::AuditError;
use crate::record::push_field;

/// Domain separation for checkpoint signatures.
const CHECKPOINT_DOMAIN: &[u8] = b"sigil-audit-checkpoint-v1\0";

/// A signed statement "the chain's record `seq` has hash `hash`", made at `time` by the replica
/// holding audit key `key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// Unix milliseconds.
    pub time: i64,
    pub replica: String,
    /// The [`AuditKey::key_id`] of the signing key.
    pub key_id: String,
    /// Base64url (no padding) of the ES256/ES384 signature (`r || s`) over
    /// [`Checkpoint::signed_bytes`].
    pub signature: String,
}

/// The public half of a replica's audit signing key, as registered in the store and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditKey {
    /// The first 16 bytes of the SHA-256 of the DER SubjectPublicKeyInfo, in lowercase hex.
    pub key_id: String,
    pub replica: String,
    /// Base64 (standard, padded) of the DER SubjectPublicKeyInfo.
    pub public_key: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Keys a verifier accepts checkpoints from, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl AuditKey {
    /// The registration of `key`'s public half for `replica`.
    pub fn for_key(key: &PrivateKey, replica: &str, created_at: i64) -> Self {
        let public = key.public_key();
        Self {
            key_id: key_id(&public),
            replica: replica.to_owned(),
            public_key: base64::engine::general_purpose::STANDARD.encode(public.spki_der()),
            created_at,
        }
    }

    /// The public key, checked to be one whose id is `key_id`.
    pub fn public_key(&self) -> Result<PublicKey, AuditError> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(&self.public_key)
            .map_err(|_| AuditError::BadKey {
                key_id: self.key_id.clone(),
                reason: "public_key is not base64".to_owned(),
            })?;
        let public = PublicKey::from_spki_der(&der).map_err(|e| AuditError::BadKey {
            key_id: self.key_id.clone(),
            reason: e.to_string(),
        })?;
        if key_id(&public) != self.key_id {
            return Err(AuditError::BadKey {
                key_id: self.key_id.clone(),
                reason: "the key id is not the id of the public key".to_owned(),
            });
        }
        Ok(public)
    }
}

/// The id of an audit key: the first 16 bytes of the SHA-256 of its DER SPKI, in hex.
pub fn key_id(public: &PublicKey) -> String {
    let digest = sigil_keys::sha256(public.spki_der());
    sigil_keys::digest::hex(digest.get(..16).unwrap_or(&digest))
}

impl TrustedKeys {
    /// Trusts every key of `keys`; fails on the first that does not parse or whose id is wrong.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a AuditKey>) -> Result<Self, AuditError> {
        let mut out = Self::default();
        for key in keys {
            out.keys.insert(key.key_id.clone(), key.public_key()?);
        }
        Ok(out)
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted key ids, sorted.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

impl Checkpoint {
    /// Signs the head `(seq, hash)` with `key` at `time` for `replica`.
    pub fn sign(
        key: &PrivateKey,
        replica: &str,
        seq: u64,
        hash: &str,
        time: i64,
    ) -> Result<Self, AuditError> {
        let mut checkpoint = Self {
            seq,
            hash: hash.to_owned(),
            time,
            replica: replica.to_owned(),
            key_id: key_id(key.public_key_ref()),
            signature: String::new(),
        };
        let signature = key
            .sign_jws(&checkpoint.signed_bytes())
            .map_err(|_| AuditError::Sign)?;
        checkpoint.signature = URL_SAFE_NO_PAD.encode(signature);
        Ok(checkpoint)
    }

    /// The bytes the signature covers: a domain tag, the sequence and time as 8 big-endian bytes
    /// each, then hash, replica and key id, each as a 4-byte big-endian length and its bytes.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 16 + 12 + 160);
        out.extend_from_slice(CHECKPOINT_DOMAIN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time.to_be_bytes());
        for field in [&self.hash, &self.replica, &self.key_id] {
            push_field(&mut out, field.as_bytes());
        }
        out
    }

    /// Checks the signature with the trusted key it names: [`AuditError::UnknownKey`] when no
    /// trusted key has its id, [`AuditError::BadSignature`] when the signature does not verify.
    pub fn verify(&self, keys: &TrustedKeys) -> Result<(), AuditError> {
        let key = self
            .keys_entry(keys)
            .ok_or_else(|| AuditError::UnknownKey {
                key_id: self.key_id.clone(),
            })?;
        let signature = URL_SAFE_NO_PAD
            .decode(&self.signature)
            .map_err(|_| AuditError::BadSignature { seq: self.seq })?;
        key.verify_jws(key.curve().jws_alg(), &self.signed_bytes(), &signature)
            .map_err(|_| AuditError::BadSignature { seq: self.seq })
    }

    fn keys_entry<'k>(&self, keys: &'k TrustedKeys) -> Option<&'k PublicKey> {
        keys.keys.get(&self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_verifies_only_unchanged_and_under_its_key() {
        let key = PrivateKey::generate().unwrap();
        let registered = AuditKey::for_key(&key, "r1", 1);
        let keys = TrustedKeys::from_keys([&registered]).unwrap();
        let cp = Checkpoint::sign(&key, "r1", 7, &"a".repeat(64), 5).unwrap();
        cp.verify(&keys).unwrap();

        let mut moved = cp.clone();
        moved.seq = 6;
        assert!(matches!(
            moved.verify(&keys),
            Err(AuditError::BadSignature { seq: 6 })
        ));
        let mut rehashed = cp.clone();
        rehashed.hash = "b".repeat(64);
        assert!(rehashed.verify(&keys).is_err());

        let other = PrivateKey::generate().unwrap();
        let forged = Checkpoint::sign(&other, "r1", 7, &"a".repeat(64), 5).unwrap();
        assert!(matches!(
            forged.verify(&keys),
            Err(AuditError::UnknownKey { .. })
        ));
        // A forged checkpoint that claims the trusted key's id fails on the signature.
        let mut claimed = forged;
        claimed.key_id = registered.key_id.clone();
        assert!(matches!(
            claimed.verify(&keys),
            Err(AuditError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_registered_key_must_match_its_id() {
        let key = PrivateKey::generate().unwrap();
        let mut registered = AuditKey::for_key(&key, "r1", 1);
        registered.public_key().unwrap();
        registered.key_id = "00".repeat(16);
        assert!(TrustedKeys::from_keys([&registered]).is_err());
    }
}
