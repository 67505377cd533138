//! The ids Sigil names X.509 things by: the authorities a chain depends on (the hex subject key
//! identifier of each CA: every certificate's subject and authority key identifiers), which an
//! agent compares with the tainted authorities the server pushes, and a certificate's serial
//! number (lowercase hex), which it compares with the deny-list.

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

/// The serial number of DER certificate `der` as Sigil names it on the deny-list and in CRL
/// bookkeeping: lowercase hex of the DER INTEGER's content octets (a leading `00` octet included
/// when the encoding has one). `None` when `der` does not parse as a certificate.
pub fn serial_hex(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(crate::digest::hex(cert.tbs_certificate.raw_serial()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    fn cert_with_serial(serial: &[u8]) -> Vec<u8> {
        let key = PrivateKey::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn serial_hex_is_the_lowercase_hex_of_the_integer_content_octets() {
        assert_eq!(
            serial_hex(&cert_with_serial(&[0x0a, 0xbc, 0xde, 0xf1])).as_deref(),
            Some("0abcdef1")
        );
        // A high first bit needs a leading zero octet in DER; it is part of the serial's name.
        assert_eq!(
            serial_hex(&cert_with_serial(&[0x80, 0x01])).as_deref(),
            Some("008001")
        );
        assert_eq!(serial_hex(b"not a certificate"), None);
        assert_eq!(serial_hex(&[]), None);
    }
}
