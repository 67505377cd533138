//! `sigil bundle show [--format pem|spiffe]`: the server's own trust bundle, as PEM certificates
//! of its X.509 authorities (default) or as the SPIFFE bundle document.

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand, ValueEnum};
use sigil_api::paths;
use sigil_spiffe::BundleDocument;
use sigil_spiffe::bundle::USE_X509_SVID;

use super::AdminConnection;
use super::client::AdminClient;
use super::output::{emit, emit_json};

/// Characters per line of PEM base64 (RFC 7468 §2).
const PEM_LINE_CHARS: usize = 64;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Show the server's trust bundle.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = BundleFormat::Pem)]
    pub format: BundleFormat,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// How `bundle show` prints the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BundleFormat {
    /// Each X.509 authority as a PEM CERTIFICATE block.
    Pem,
    /// The SPIFFE bundle document (JSON).
    Spiffe,
}

/// Runs one `sigil bundle` command.
pub async fn run(command: BundleCommand) -> anyhow::Result<()> {
    match command {
        BundleCommand::Show(args) => {
            let client = AdminClient::new(&args.conn.admin_socket);
            let bytes = client.get_bytes(paths::BUNDLE).await?;
            match args.format {
                BundleFormat::Pem => {
                    let document = BundleDocument::parse(&bytes)
                        .context("the server's trust bundle is not a SPIFFE bundle document")?;
                    emit(&x509_authorities_pem(&document)?)
                }
                BundleFormat::Spiffe => {
                    let document: serde_json::Value = serde_json::from_slice(&bytes)
                        .context("the server's trust bundle is not JSON")?;
                    emit_json(&document)
                }
            }
        }
    }
}

/// Every certificate in the `x5c` of the document's X.509 authorities, as PEM blocks.
fn x509_authorities_pem(document: &BundleDocument) -> anyhow::Result<String> {
    let mut out = String::new();
    for key in document.keys_for(USE_X509_SVID) {
        for cert in key.x5c.iter().flatten() {
            let der = STANDARD
                .decode(cert)
                .context("the trust bundle has an x5c certificate that is not base64")?;
            out.push_str(&pem_certificate(&der));
        }
    }
    if out.is_empty() {
        bail!("the trust bundle has no X.509 authority");
    }
    Ok(out)
}

fn pem_certificate(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(PEM_LINE_CHARS));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_wrap_at_64_characters() {
        let der = vec![0xAB; 100];
        let pem = pem_certificate(&der);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        assert_eq!(lines[1].len(), 64);
        let body: String = lines[1..lines.len() - 1].concat();
        assert_eq!(STANDARD.decode(body).unwrap(), der);
    }

    #[test]
    fn only_x509_authorities_are_printed() {
        let doc = BundleDocument::parse(
            br#"{"keys":[{"use":"jwt-svid","kty":"EC","kid":"k"},
                         {"use":"x509-svid","kty":"EC","x5c":["AQID"]},
                         {"use":"x509-svid","kty":"EC","x5c":["BAUG"]}]}"#,
        )
        .unwrap();
        let pem = x509_authorities_pem(&doc).unwrap();
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(pem.contains("\nAQID\n") && pem.contains("\nBAUG\n"));
    }

    #[test]
    fn a_bundle_without_x509_authorities_is_an_error() {
        let doc = BundleDocument::parse(br#"{"keys":[]}"#).unwrap();
        assert!(x509_authorities_pem(&doc).is_err());
    }
}
