//! Certificates and keys the server reads from PEM files at start: the upstream authority every
//! server replica of a trust domain shares (`[ca] upstream_cert_file`, `upstream_key_file`,
//! `upstream_bundle_file`) and the public listener's certificate (`[public] cert_file`,
//! `key_file`). Files are bounded in size; key files must be private to their owner.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use sigil_keys::PrivateKey;
use sigil_keys::pem::{CERTIFICATE_LABEL, decode_all};
use sigil_server::ca::UpstreamAuthority;

/// Largest upstream certificate, bundle or key file read, in bytes.
const MAX_UPSTREAM_FILE_BYTES: u64 = 256 * 1024;

/// Where the upstream authority's files are.
#[derive(Debug, Clone)]
pub struct UpstreamFiles {
    /// PEM certificates: the upstream's own first, then its intermediates (and root).
    pub cert_file: PathBuf,
    /// PEM PKCS#8 P-256 private key; must not be readable by group or others.
    pub key_file: PathBuf,
    /// PEM certificates relying parties trust; default: the root the cert file ends in.
    pub bundle_file: Option<PathBuf>,
}

impl UpstreamFiles {
    /// The files named in `[ca]`: all or nothing of the certificate and key.
    pub fn from_config(
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        bundle_file: Option<PathBuf>,
    ) -> anyhow::Result<Option<Self>> {
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(Self {
                cert_file,
                key_file,
                bundle_file,
            })),
            (None, None) if bundle_file.is_none() => Ok(None),
            (None, None) => bail!(
                "ca.upstream_bundle_file needs ca.upstream_cert_file and ca.upstream_key_file"
            ),
            (Some(_), None) => bail!("ca.upstream_cert_file needs ca.upstream_key_file"),
            (None, Some(_)) => bail!("ca.upstream_key_file needs ca.upstream_cert_file"),
        }
    }

    /// Reads and checks the files at `now` (see [`UpstreamAuthority::new`]).
    pub fn load(&self, now: std::time::SystemTime) -> anyhow::Result<Arc<UpstreamAuthority>> {
        let chain = certificates(&self.cert_file, "ca.upstream_cert_file")?;
        let key = private_key(&self.key_file, "ca.upstream_key_file")?;
        let anchors = self
            .bundle_file
            .as_deref()
            .map(|path| certificates(path, "ca.upstream_bundle_file"))
            .transpose()?;
        let upstream =
            UpstreamAuthority::new(chain, Arc::new(key), anchors, now).with_context(|| {
                format!(
                    "ca.upstream_cert_file {} with ca.upstream_key_file {}",
                    self.cert_file.display(),
                    self.key_file.display()
                )
            })?;
        Ok(Arc::new(upstream))
    }
}

/// The `CERTIFICATE` blocks of `path`, DER; at least one.
pub fn certificates(path: &Path, field: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = read_bounded(path, field)?;
    let certs = decode_all(CERTIFICATE_LABEL, &text)
        .with_context(|| format!("{field} {}", path.display()))?;
    if certs.is_empty() {
        bail!("{field} {} holds no CERTIFICATE block", path.display());
    }
    Ok(certs)
}

/// The private key of `path` (PKCS#8 P-256), refused when group or others may read or write the
/// file.
pub fn private_key(path: &Path, field: &str) -> anyhow::Result<PrivateKey> {
    check_private_mode(path, field)?;
    sigil_keys::key_manager::read_private_key(path)
        .with_context(|| format!("{field} {}", path.display()))?
        .ok_or_else(|| anyhow::anyhow!("{field} {} does not exist", path.display()))
}

/// The PKCS#8 DER of the first `PRIVATE KEY` block of `path` (any algorithm TLS can use),
/// refused when group or others may read or write the file.
pub fn pkcs8_der(path: &Path, field: &str) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    check_private_mode(path, field)?;
    let text = zeroize::Zeroizing::new(read_bounded(path, field)?);
    sigil_keys::pem::decode_secret(sigil_keys::pem::PRIVATE_KEY_LABEL, &text).with_context(|| {
        format!(
            "{field} {} (a PEM PKCS#8 `PRIVATE KEY` is expected)",
            path.display()
        )
    })
}

/// Fails when group or others may read or write `path`.
fn check_private_mode(path: &Path, field: &str) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {field} {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{field} {} is accessible by group or others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// The text of `path`, at most [`MAX_UPSTREAM_FILE_BYTES`].
pub(crate) fn read_bounded(path: &Path, field: &str) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {field} {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_UPSTREAM_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {field} {}", path.display()))?;
    if text.len() as u64 > MAX_UPSTREAM_FILE_BYTES {
        bail!("{field} {} is larger than 256 KiB", path.display());
    }
    Ok(text)
}
