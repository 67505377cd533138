//! Fuzzes verification of external issuers' JWTs: `sigil_keys::jose::KeySet::parse` (JWK Set
//! documents, size and key-count limits) and `sigil_keys::jose::verify`. The first input byte
//! picks the mode: 0, the rest is a JWK Set document; 1, the rest is a token verified against a
//! fixed ES256 key; 2, the rest is `header JSON \0 claims JSON`, signed here with the fixed key so
//! the fuzzer also reaches the checks after the signature; 3, the rest is `document \0 token`, the
//! token verified against the keys the fuzzer supplied (RSA, EC, Ed25519 paths).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sigil_keys::jose::{self, JwsAlgorithm, KeySet, VerifyingKey};
use sigil_keys::{PrivateKey, jws};

/// The key id under which the fixed key is known.
const KID: &str = "fuzz-kid";

static KEY: LazyLock<PrivateKey> =
    LazyLock::new(|| PrivateKey::generate().expect("generate the fuzzing key"));

static FIXED_KEYS: LazyLock<KeySet> = LazyLock::new(|| {
    let jwk =
        serde_json::to_value(KEY.public_key().to_jwk(Some(KID), "sig")).expect("a JWK serialises");
    let key = VerifyingKey::from_jwk(&jwk).expect("the fixed JWK is usable");
    KeySet::from_keys(vec![key])
});

fn split_at_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => {
            let (head, tail) = data.split_at(at);
            (head, tail.get(1..).unwrap_or_default())
        }
        None => (data, &b"{}"[..]),
    }
}

fn parse_key_set(document: &[u8]) -> Option<KeySet> {
    let set = KeySet::parse(document).ok()?;
    assert!(document.len() <= KeySet::MAX_DOCUMENT_BYTES);
    assert!(set.len() + set.skipped() <= KeySet::MAX_KEYS);
    for key in set.keys() {
        assert!(JwsAlgorithm::ALL.iter().any(|alg| key.supports(*alg)));
    }
    Some(set)
}

fn check(token: &str, set: &KeySet) {
    let _ = jose::peek(token);
    let find_key = |kid: Option<&str>, alg| set.find(kid, alg).cloned();
    if let Ok(verified) = jose::verify(token, &JwsAlgorithm::ALL, find_key) {
        assert!(token.len() <= jws::MAX_JWS_BYTES);
        assert_eq!(
            verified.header.get("alg").and_then(|alg| alg.as_str()),
            Some(verified.alg.name())
        );
        assert!(!verified.header.contains_key("crit"));
        assert!(jose::peek(token).is_ok());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let _ = parse_key_set(rest);
        }
        1 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                check(token, &FIXED_KEYS);
            }
        }
        2 => {
            let (header, claims) = split_at_nul(rest);
            if let Ok(token) = jws::sign_json_parts(header, claims, &KEY) {
                check(&token, &FIXED_KEYS);
            }
        }
        _ => {
            let (document, token) = split_at_nul(rest);
            if let (Some(set), Ok(token)) = (parse_key_set(document), std::str::from_utf8(token)) {
                check(token, &set);
            }
        }
    }
});
