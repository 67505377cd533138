//! Fuzzes the SPIFFE vocabulary parsers (`SpiffeId`, `TrustDomain`, `Selector`, `Ttl`): none may
//! panic, and whatever one accepts must print back to a string it accepts again, unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_spiffe::id::{MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES};
use sigil_spiffe::ttl::{MAX_TTL_SECS, MIN_TTL_SECS};
use sigil_spiffe::{Selector, SpiffeId, TrustDomain, Ttl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(id) = SpiffeId::parse(text) {
        assert!(id.as_str().len() <= MAX_SPIFFE_ID_BYTES);
        assert_eq!(id.as_str(), text, "an accepted ID is kept verbatim");
        assert_eq!(
            format!("spiffe://{}{}", id.trust_domain_str(), id.path()),
            text
        );
        assert!(id.path().is_empty() || id.path().starts_with('/'));
        let again = SpiffeId::parse(&id.to_string()).expect("a printed ID parses again");
        assert_eq!(again, id);
        let td = id.trust_domain();
        assert!(id.is_member_of(&td));
        assert_eq!(TrustDomain::parse(td.as_str()).as_ref(), Ok(&td));
    }

    if let Ok(td) = TrustDomain::parse(text) {
        assert!(!td.as_str().is_empty() && td.as_str().len() <= MAX_TRUST_DOMAIN_BYTES);
        assert_eq!(TrustDomain::parse(td.as_str()).as_ref(), Ok(&td));
        assert_eq!(TrustDomain::parse(&td.id_string()).as_ref(), Ok(&td));
    }

    if let Ok(selector) = Selector::parse(text) {
        assert_eq!(selector.to_string(), text);
        assert_eq!(
            Selector::new(selector.kind(), selector.value()).as_ref(),
            Ok(&selector)
        );
    }

    if let Ok(ttl) = Ttl::parse(text) {
        assert!((MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl.as_secs()));
        assert_eq!(Ttl::parse(&ttl.to_string()), Ok(ttl));
    }
});
