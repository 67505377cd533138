//! Fuzzes compact JWS verification (`sigil_keys::jws::verify_compact`) and JWT-SVID validation
//! (`sigil_keys::jwt_svid::validate`) against one fixed key. The first input byte picks the mode:
//! even, the rest is the token as sent; odd, the rest is `header JSON \0 claims JSON`, signed here
//! with the fixed key, so the fuzzer also reaches the checks that run after the signature.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sigil_keys::{PrivateKey, jws, jwt_svid};
use sigil_spiffe::{JwtAuthorityKey, TrustBundle, TrustDomain};

/// The key id under which the fixed key is known.
const KID: &str = "fuzz-kid";
/// The audience JWT-SVIDs are validated for.
const AUDIENCE: &str = "fuzz-audience";
/// A fixed "now", so expiry decisions are reproducible.
const NOW: i64 = 1_700_000_000;

static KEY: LazyLock<PrivateKey> =
    LazyLock::new(|| PrivateKey::generate().expect("generate the fuzzing key"));

static BUNDLE: LazyLock<TrustBundle> = LazyLock::new(|| TrustBundle {
    trust_domain: TrustDomain::parse("example.org").expect("a valid trust domain"),
    x509_authorities: Vec::new(),
    jwt_authorities: vec![JwtAuthorityKey {
        kid: KID.to_owned(),
        public_key_der: KEY.public_key().spki_der().to_vec(),
        expires_at: 0,
    }],
    sequence: 1,
    refresh_hint: 0,
});

fn token(data: &[u8]) -> Option<String> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        return std::str::from_utf8(rest).ok().map(str::to_owned);
    }
    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(at) => {
            let (header, tail) = rest.split_at(at);
            (header, tail.get(1..).unwrap_or_default())
        }
        None => (rest, &b"{}"[..]),
    };
    jws::sign_json_parts(header, claims, &KEY).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(token) = token(data) else {
        return;
    };

    let find_key = |kid: Option<&str>| (kid == Some(KID)).then(|| KEY.public_key());
    if let Ok((header, _claims)) = jws::verify_compact(&token, find_key) {
        assert!(token.len() <= jws::MAX_JWS_BYTES);
        assert_eq!(
            header.get("alg").and_then(|alg| alg.as_str()),
            Some(jws::ES256)
        );
        assert!(!header.contains_key("crit"));
    }

    if let Ok(svid) = jwt_svid::validate(&token, &BUNDLE, AUDIENCE, NOW) {
        assert!(svid.spiffe_id.is_member_of(&BUNDLE.trust_domain));
        assert_eq!(
            svid.claims.get("sub").and_then(|sub| sub.as_str()),
            Some(svid.spiffe_id.as_str())
        );
    }
});
