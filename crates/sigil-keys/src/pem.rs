//! PEM (RFC 7468) encoding and decoding of DER blocks: certificates, CSRs and PKCS#8 private keys.
//! Public material (certificates, chains, bundles, CSRs) goes through the `pem` crate; private
//! keys go through the small zeroising path at the end of this file, because the `pem` crate's
//! intermediate buffers (base64 text, decoded bytes) are not wiped when dropped. Decoding is
//! strict (standard base64, matching labels) and bounded by [`MAX_PEM_BYTES`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::KeyError;

/// Largest PEM text accepted, in bytes.
pub const MAX_PEM_BYTES: usize = 1024 * 1024;
/// PEM label of a PKCS#8 private key.
pub const PRIVATE_KEY_LABEL: &str = "PRIVATE KEY";
/// PEM label of an X.509 certificate.
pub const CERTIFICATE_LABEL: &str = "CERTIFICATE";
/// PEM label of a PKCS#10 CSR.
pub const CSR_LABEL: &str = "CERTIFICATE REQUEST";

const LINE_LEN: usize = 64;

/// Unix line endings, 64-character base64 lines (the `pem` crate's line length).
fn lf() -> pem::EncodeConfig {
    pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF)
}

/// Encodes `der` as one PEM block with `label`, base64 lines of 64 characters, ending in `\n`.
pub fn encode(label: &str, der: &[u8]) -> String {
    pem::encode_config(&pem::Pem::new(label, der), lf())
}

/// Encodes secret DER (a private key) like [`encode`], into a buffer that is zeroised on drop.
pub fn encode_secret(label: &str, der: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    encode_secret_into(&mut out, label, der);
    out
}

/// Encodes several DER blocks with the same label, concatenated (a certificate chain or bundle).
pub fn encode_many<'a>(label: &str, ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    let blocks: Vec<pem::Pem> = ders
        .into_iter()
        .map(|der| pem::Pem::new(label, der))
        .collect();
    pem::encode_many_config(&blocks, lf())
}

/// Decodes every block labelled `label` in `text`, in order, ignoring text between blocks and
/// blocks with other labels. Fails with [`KeyError::InvalidPem`] on oversized input, an
/// unterminated block or bad base64.
pub fn decode_all(label: &str, text: &str) -> Result<Vec<Vec<u8>>, KeyError> {
    check_size(text)?;
    let blocks: Vec<Vec<u8>> = pem::parse_many(text)
        .map_err(|_| KeyError::InvalidPem {
            reason: "malformed block (bad label or not base64)",
        })?
        .into_iter()
        .filter(|block| block.tag() == label)
        .map(pem::Pem::into_contents)
        .collect();
    // The pem crate passes over a BEGIN line that has no END: that is a truncated file here.
    if text.matches(&format!("-----BEGIN {label}-----")).count() != blocks.len() {
        return Err(KeyError::InvalidPem {
            reason: "a block has no END line",
        });
    }
    Ok(blocks)
}

/// Decodes exactly one block labelled `label` (other blocks are ignored) into a zeroising buffer,
/// for private keys. No block or more than one gives [`KeyError::InvalidPem`].
pub fn decode_secret(label: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    check_size(text)?;
    let mut found: Option<Zeroizing<Vec<u8>>> = None;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let after_begin = rest.get(start + begin.len()..).unwrap_or_default();
        let stop = after_begin.find(&end).ok_or(KeyError::InvalidPem {
            reason: "a block has no END line",
        })?;
        if found.is_some() {
            return Err(KeyError::InvalidPem {
                reason: "more than one block with the label",
            });
        }
        found = Some(decode_secret_body(
            after_begin.get(..stop).unwrap_or_default(),
        )?);
        rest = after_begin.get(stop + end.len()..).unwrap_or_default();
    }
    found.ok_or(KeyError::InvalidPem {
        reason: "no block with the expected label",
    })
}

fn check_size(text: &str) -> Result<(), KeyError> {
    if text.len() > MAX_PEM_BYTES {
        return Err(KeyError::InvalidPem {
            reason: "text is larger than 1 MiB",
        });
    }
    Ok(())
}

/// Writes one block into `out` with a single exact reservation, so the secret is never left
/// behind in a buffer freed by a reallocation.
fn encode_secret_into(out: &mut String, label: &str, der: &[u8]) {
    let body = Zeroizing::new(STANDARD.encode(der));
    let lines = body.len().div_ceil(LINE_LEN);
    out.reserve(2 * label.len() + "-----BEGIN -----\n-----END -----\n".len() + body.len() + lines);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        // base64 output is ASCII, so any byte offset is a char boundary.
        let (line, tail) = rest.split_at(rest.len().min(LINE_LEN));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

fn decode_secret_body(body: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    // Sized once so the secret base64 text is never copied by a reallocation.
    let mut compact = Zeroizing::new(String::with_capacity(body.len()));
    compact.extend(body.chars().filter(|c| !c.is_ascii_whitespace()));
    STANDARD
        .decode(compact.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::InvalidPem {
            reason: "block body is not base64",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_64_char_lines_and_round_trips() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = encode(CERTIFICATE_LABEL, &der);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        assert_eq!(decode_all(CERTIFICATE_LABEL, &pem).unwrap(), vec![der]);
    }

    #[test]
    fn secret_encoding_never_reallocates() {
        let der = vec![7u8; 138];
        let pem = encode_secret(PRIVATE_KEY_LABEL, &der);
        assert!(pem.len() <= pem.capacity());
        let mut exact = String::new();
        encode_secret_into(&mut exact, PRIVATE_KEY_LABEL, &der);
        assert_eq!(exact.len(), exact.capacity(), "the reservation is exact");
    }

    #[test]
    fn decodes_chains_in_order_and_skips_other_labels() {
        let text = format!(
            "junk\n{}{}{}",
            encode(CERTIFICATE_LABEL, b"one"),
            encode(PRIVATE_KEY_LABEL, b"key"),
            encode(CERTIFICATE_LABEL, b"two")
        );
        assert_eq!(
            decode_all(CERTIFICATE_LABEL, &text).unwrap(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(
            decode_secret(PRIVATE_KEY_LABEL, &text).unwrap().as_slice(),
            b"key"
        );
    }

    #[test]
    fn secret_decoding_requires_exactly_one_block() {
        assert!(decode_secret(PRIVATE_KEY_LABEL, "").is_err());
        let two = format!(
            "{}{}",
            encode(PRIVATE_KEY_LABEL, b"a"),
            encode(PRIVATE_KEY_LABEL, b"b")
        );
        assert!(decode_secret(PRIVATE_KEY_LABEL, &two).is_err());
    }

    #[test]
    fn rejects_unterminated_blocks_and_bad_base64() {
        assert!(decode_all(CERTIFICATE_LABEL, "-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
        assert!(
            decode_all(
                CERTIFICATE_LABEL,
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"
            )
            .is_err()
        );
    }
}
