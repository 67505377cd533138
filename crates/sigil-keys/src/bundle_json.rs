//! Conversion between a binary [`TrustBundle`] and its JSON [`BundleDocument`] (SPIFFE Trust
//! Domain and Bundle spec §4): X.509 authorities become `use: x509-svid` JWKs carrying the
//! certificate's key and `x5c`; JWT authorities become `use: jwt-svid` JWKs with `kid`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sigil_spiffe::bundle::{USE_JWT_SVID, USE_X509_SVID};
use sigil_spiffe::{BundleDocument, Jwk, JwtAuthorityKey, TrustBundle, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;

use crate::{KeyError, PublicKey};

/// Largest certificate accepted in an `x5c` entry, in bytes.
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// The SPIFFE bundle document of `bundle`: every X.509 authority (EC P-256/P-384 or RSA) as an
/// `x509-svid` JWK with `x5c`, every JWT authority as a `jwt-svid` JWK with `kid`, plus
/// `spiffe_sequence` and `spiffe_refresh_hint`. Fails with [`KeyError::InvalidBundle`] if a
/// certificate or key cannot be read.
pub fn to_document(bundle: &TrustBundle) -> Result<BundleDocument, KeyError> {
    let mut keys = Vec::with_capacity(bundle.x509_authorities.len() + bundle.jwt_authorities.len());
    for (index, cert_der) in bundle.x509_authorities.iter().enumerate() {
        let mut jwk = certificate_jwk(cert_der).map_err(|e| KeyError::InvalidBundle {
            reason: format!("X.509 authority #{index}: {e}"),
        })?;
        jwk.x5c = Some(vec![STANDARD.encode(cert_der)]);
        keys.push(jwk);
    }
    for authority in &bundle.jwt_authorities {
        keys.push(jwt_authority_jwk(authority)?);
    }
    Ok(BundleDocument {
        keys,
        spiffe_sequence: Some(bundle.sequence),
        spiffe_refresh_hint: Some(bundle.refresh_hint),
    })
}

/// The JWT bundle of `bundle` (what the Workload API's `FetchJWTBundles` serves): a JWK Set of the
/// `jwt-svid` keys only, each with `use` and `kid`. Keys that cannot be parsed are left out.
pub fn jwks_for_jwt(bundle: &TrustBundle) -> BundleDocument {
    BundleDocument {
        keys: bundle
            .jwt_authorities
            .iter()
            .filter_map(|authority| jwt_authority_jwk(authority).ok())
            .collect(),
        spiffe_sequence: None,
        spiffe_refresh_hint: None,
    }
}

/// Reads the bundle document of trust domain `td`. `x509-svid` keys must carry exactly one
/// certificate in `x5c`; `jwt-svid` keys must have a `kid` and be EC P-256/P-384 keys. Keys with
/// another or no `use` are ignored. Fails with [`KeyError::InvalidBundle`] naming the key.
pub fn from_document(td: TrustDomain, doc: &BundleDocument) -> Result<TrustBundle, KeyError> {
    let mut x509_authorities = Vec::new();
    let mut jwt_authorities = Vec::new();
    for (index, jwk) in doc.keys.iter().enumerate() {
        let invalid = |reason: &str| KeyError::InvalidBundle {
            reason: format!("key #{index}: {reason}"),
        };
        match jwk.key_use.as_deref() {
            Some(USE_X509_SVID) => {
                let chain = jwk.x5c.as_deref().unwrap_or_default();
                let [cert_b64] = chain else {
                    return Err(invalid(
                        "an `x509-svid` key must have exactly one `x5c` entry",
                    ));
                };
                let der = STANDARD
                    .decode(cert_b64)
                    .map_err(|_| invalid("`x5c` entry is not standard base64"))?;
                parse_certificate(&der).map_err(|e| invalid(&e.to_string()))?;
                x509_authorities.push(der);
            }
            Some(USE_JWT_SVID) => {
                let kid = jwk
                    .kid
                    .as_deref()
                    .filter(|kid| !kid.is_empty())
                    .ok_or_else(|| invalid("a `jwt-svid` key must have a `kid`"))?;
                let key = PublicKey::from_jwk(jwk).map_err(|e| invalid(&e.to_string()))?;
                jwt_authorities.push(JwtAuthorityKey {
                    kid: kid.to_owned(),
                    public_key_der: key.spki_der().to_vec(),
                    expires_at: 0,
                });
            }
            _ => {}
        }
    }
    Ok(TrustBundle {
        trust_domain: td,
        x509_authorities,
        jwt_authorities,
        sequence: doc.spiffe_sequence.unwrap_or(0),
        refresh_hint: doc.spiffe_refresh_hint.unwrap_or(0),
    })
}

fn jwt_authority_jwk(authority: &JwtAuthorityKey) -> Result<Jwk, KeyError> {
    let key = PublicKey::from_spki_der(&authority.public_key_der).map_err(|e| {
        KeyError::InvalidBundle {
            reason: format!("JWT authority `{}`: {e}", authority.kid),
        }
    })?;
    Ok(key.to_jwk(Some(&authority.kid), USE_JWT_SVID))
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, KeyError> {
    if der.len() > MAX_CERTIFICATE_BYTES {
        return Err(KeyError::InvalidCertificate {
            reason: "larger than 64 KiB",
        });
    }
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(KeyError::InvalidCertificate {
            reason: "trailing bytes after the certificate",
        }),
        Err(_) => Err(KeyError::InvalidCertificate {
            reason: "not a DER X.509 certificate",
        }),
    }
}

/// The JWK (`use: x509-svid`, no `x5c` yet) of a certificate's subject public key.
fn certificate_jwk(cert_der: &[u8]) -> Result<Jwk, KeyError> {
    let cert = parse_certificate(cert_der)?;
    let spki = &cert.tbs_certificate.subject_pki;
    if let Ok(key) = PublicKey::from_spki_der(spki.raw) {
        return Ok(key.to_jwk(None, USE_X509_SVID));
    }
    match spki.parsed() {
        Ok(ParsedKey::RSA(rsa)) => Ok(Jwk {
            kty: "RSA".to_owned(),
            key_use: Some(USE_X509_SVID.to_owned()),
            kid: None,
            alg: None,
            crv: None,
            x: None,
            y: None,
            n: Some(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.modulus))),
            e: Some(URL_SAFE_NO_PAD.encode(strip_leading_zeros(rsa.exponent))),
            x5c: None,
        }),
        _ => Err(KeyError::UnsupportedKey {
            what: "certificate key is neither EC P-256/P-384 nor RSA".to_owned(),
        }),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    fn self_signed_cert(key: &PrivateKey) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(key).unwrap().der().to_vec()
    }

    fn bundle() -> (TrustBundle, PrivateKey, PrivateKey) {
        let ca_key = PrivateKey::generate().unwrap();
        let jwt_key = PrivateKey::generate().unwrap();
        let bundle = TrustBundle {
            trust_domain: TrustDomain::parse("example.org").unwrap(),
            x509_authorities: vec![self_signed_cert(&ca_key)],
            jwt_authorities: vec![JwtAuthorityKey {
                kid: "kid-1".into(),
                public_key_der: jwt_key.public_key().spki_der().to_vec(),
                expires_at: 0,
            }],
            sequence: 42,
            refresh_hint: 300,
        };
        (bundle, ca_key, jwt_key)
    }

    #[test]
    fn document_has_spec_shaped_keys() {
        let (b, ca_key, jwt_key) = bundle();
        let doc = to_document(&b).unwrap();
        assert_eq!(doc.spiffe_sequence, Some(42));
        assert_eq!(doc.spiffe_refresh_hint, Some(300));
        let x509: Vec<_> = doc.keys_for(USE_X509_SVID).collect();
        assert_eq!(x509.len(), 1);
        assert_eq!(
            x509[0].x5c.as_ref().unwrap()[0],
            STANDARD.encode(&b.x509_authorities[0])
        );
        assert_eq!(PublicKey::from_jwk(x509[0]).unwrap(), ca_key.public_key());
        assert!(x509[0].kid.is_none());
        let jwt: Vec<_> = doc.keys_for(USE_JWT_SVID).collect();
        assert_eq!(jwt[0].kid.as_deref(), Some("kid-1"));
        assert_eq!(PublicKey::from_jwk(jwt[0]).unwrap(), jwt_key.public_key());
    }

    #[test]
    fn document_round_trips_through_json() {
        let (b, _, _) = bundle();
        let json = to_document(&b).unwrap().to_json();
        let doc = BundleDocument::parse(&json).unwrap();
        let back = from_document(b.trust_domain.clone(), &doc).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn jwt_bundle_holds_only_jwt_keys() {
        let (b, _, _) = bundle();
        let doc = jwks_for_jwt(&b);
        assert_eq!(doc.keys.len(), 1);
        assert_eq!(doc.keys[0].key_use.as_deref(), Some(USE_JWT_SVID));
        assert_eq!(doc.keys[0].kid.as_deref(), Some("kid-1"));
        assert!(doc.keys[0].x5c.is_none());
    }

    #[test]
    fn from_document_rejects_bad_keys_and_ignores_unknown_use() {
        let (b, _, _) = bundle();
        let good = to_document(&b).unwrap();
        let td = b.trust_domain.clone();

        let mut two_certs = good.clone();
        let cert = two_certs.keys[0].x5c.as_ref().unwrap()[0].clone();
        two_certs.keys[0].x5c = Some(vec![cert.clone(), cert]);
        assert!(from_document(td.clone(), &two_certs).is_err());

        let mut garbage_cert = good.clone();
        garbage_cert.keys[0].x5c = Some(vec![STANDARD.encode(b"nope")]);
        assert!(from_document(td.clone(), &garbage_cert).is_err());

        let mut no_kid = good.clone();
        no_kid.keys[1].kid = None;
        assert!(from_document(td.clone(), &no_kid).is_err());

        let mut other_use = good;
        other_use.keys[1].key_use = Some("sig".into());
        let parsed = from_document(td, &other_use).unwrap();
        assert!(parsed.jwt_authorities.is_empty());
        assert_eq!(parsed.x509_authorities.len(), 1);
    }
}
