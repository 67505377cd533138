//! Live TLS material: the current SVID (certificate chain + key) and the current trust roots,
//! each swapped atomically when rotation or a bundle update replaces them, so handshakes never
//! wait on writers and never see half an update.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::{TlsError, aws_lc_rs_provider};

/// The SVID this process presents, replaceable at any time.
pub struct LiveSvid(ArcSwap<CertifiedKey>);

impl fmt::Debug for LiveSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LiveSvid(<redacted>)")
    }
}

fn certified_key(chain: &[Vec<u8>], pkcs8_der: &[u8]) -> Result<CertifiedKey, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::EmptyChain);
    }
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_der.to_vec()));
    let signing_key = aws_lc_rs_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(TlsError::BadKey)?;
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect();
    Ok(CertifiedKey::new(certs, signing_key))
}

impl LiveSvid {
    /// Starts with the DER `chain` (leaf first) and its PKCS#8 private key.
    pub fn new(chain: &[Vec<u8>], pkcs8_der: &[u8]) -> Result<Self, TlsError> {
        Ok(Self(ArcSwap::from_pointee(certified_key(
            chain, pkcs8_der,
        )?)))
    }

    /// Replaces the SVID; handshakes started afterwards present the new one.
    pub fn replace(&self, chain: &[Vec<u8>], pkcs8_der: &[u8]) -> Result<(), TlsError> {
        self.0.store(Arc::new(certified_key(chain, pkcs8_der)?));
        Ok(())
    }
}

impl ResolvesServerCert for LiveSvid {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

impl ResolvesClientCert for LiveSvid {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let key = self.0.load_full();
        key.key.choose_scheme(sigschemes).map(|_| key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The X.509 authorities (DER) currently trusted, replaceable at any time.
#[derive(Debug)]
pub struct LiveRoots(ArcSwap<Vec<CertificateDer<'static>>>);

impl LiveRoots {
    /// Starts with `roots` (DER certificates).
    pub fn new(roots: &[Vec<u8>]) -> Self {
        Self(ArcSwap::from_pointee(to_certs(roots)))
    }

    /// Replaces the trusted roots.
    pub fn replace(&self, roots: &[Vec<u8>]) {
        self.0.store(Arc::new(to_certs(roots)));
    }

    /// The current roots.
    pub fn current(&self) -> Arc<Vec<CertificateDer<'static>>> {
        self.0.load_full()
    }
}

fn to_certs(roots: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    roots
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect()
}
