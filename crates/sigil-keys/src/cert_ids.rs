//! The authorities an X.509 chain depends on, by the ids Sigil names them with (the hex subject
//! key identifier of each CA): every certificate's subject and authority key identifiers. An
//! agent compares them with the tainted authorities the server pushes.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

/// Hex key identifiers of the CAs `chain` depends on, without duplicates: the authority key
/// identifier of every certificate that parses, and the subject key identifier of those that
/// are CAs (a leaf's own key is not an authority). The leaf's authority key identifier names its issuer, the intermediate's
/// its root, so a chain `[leaf, intermediate]` yields the intermediate's and the root's ids.
pub fn chain_authority_ids(chain: &[Vec<u8>]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for der in chain {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            continue;
        };
        let is_ca = cert.tbs_certificate.is_ca();
        for ext in cert.iter_extensions() {
            let id = match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) if is_ca => crate::digest::hex(ski.0),
                ParsedExtension::AuthorityKeyIdentifier(aki) => match &aki.key_identifier {
                    Some(kid) => crate::digest::hex(kid.0),
                    None => continue,
                },
                _ => continue,
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}
