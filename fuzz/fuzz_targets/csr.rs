//! Fuzzes PKCS#10 CSRs as agents send them to the server (`sigil_keys::csr::verify_csr`): no input
//! may panic, and an accepted CSR yields a public key that reads back from its own SPKI.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_keys::PublicKey;
use sigil_keys::csr::{MAX_CSR_BYTES, verify_csr};

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = verify_csr(data) else {
        return;
    };
    assert!(data.len() <= MAX_CSR_BYTES);
    let spki = csr.public_key.spki_der();
    let again = PublicKey::from_spki_der(spki).expect("an accepted key reads back");
    assert_eq!(again.spki_der(), spki);
    assert_eq!(again.curve(), csr.public_key.curve());
});
