//! Fuzzes SPIFFE bundle documents from federated trust domains and bundle endpoints:
//! `BundleDocument::parse` (JSON, size and key-count limits) then
//! `sigil_keys::bundle_json::from_document` (x5c certificates, JWK public keys). Neither may
//! panic; a bundle Sigil can serve again must read back as the same bundle.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_keys::bundle_json::{from_document, to_document};
use sigil_spiffe::bundle::{MAX_BUNDLE_DOCUMENT_BYTES, MAX_BUNDLE_KEYS};
use sigil_spiffe::{BundleDocument, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = BundleDocument::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_BUNDLE_DOCUMENT_BYTES);
    assert!(doc.keys.len() <= MAX_BUNDLE_KEYS);
    let _ = doc.to_json();

    let td = TrustDomain::parse("example.org").expect("a valid trust domain");
    let Ok(bundle) = from_document(td.clone(), &doc) else {
        return;
    };
    assert_eq!(bundle.trust_domain, td);
    assert!(bundle.x509_authorities.len() + bundle.jwt_authorities.len() <= doc.keys.len());
    let _ = bundle.x509_authorities_der();

    // Not every accepted authority can be re-encoded (e.g. a key type Sigil cannot describe as a
    // JWK); whatever can must survive the round trip.
    if let Ok(again) = to_document(&bundle) {
        let reread = from_document(td, &again).expect("a document Sigil wrote reads back");
        assert_eq!(reread, bundle);
    }
});
