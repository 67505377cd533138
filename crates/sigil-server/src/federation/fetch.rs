//! Fetching a peer's bundle endpoint: one HTTPS GET (HTTP/1.1) with the peer authenticated as
//! its profile says, every step bounded in time and the body in size, and the document checked
//! before anything else sees it: it parses, it is not oversized, and its X.509 authorities name
//! no other trust domain than the peer's.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use sigil_spiffe::{BundleDocument, TrustBundle, TrustDomain};
use sigil_tls::{HttpsServerAuth, ServerName, TlsConnector, TlsPolicy};
use tokio::net::TcpStream;

/// Largest bundle document fetched, in bytes.
pub const MAX_BUNDLE_BYTES: usize = 1024 * 1024;
/// Longest a whole fetch (connect, handshake, request, body) may take, by default.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a fetch failed; the message is logged and counted, and the last good bundle stays.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("invalid bundle endpoint URL `{0}`: expected https://host[:port]/path")]
    Url(String),
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with the bundle endpoint failed: {0}")]
    Tls(std::io::Error),
    #[error("TLS configuration: {0}")]
    TlsConfig(#[from] sigil_tls::TlsError),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("the bundle endpoint answered {0}")]
    Status(u16),
    #[error("the bundle endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the bundle document is larger than {MAX_BUNDLE_BYTES} bytes")]
    TooLarge,
    #[error("the bundle document is invalid: {0}")]
    Invalid(String),
    #[error("the bundle names trust domain `{found}`, not `{expected}`")]
    WrongTrustDomain { expected: String, found: String },
}

/// The parts of an `https://host[:port]/path` URL a fetch needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl EndpointUrl {
    /// Parses `url`: `https` only, a host (name, IPv4 or bracketed IPv6), an optional port, a
    /// path (default `/`); no userinfo, query or fragment.
    pub fn parse(url: &str) -> Result<Self, FetchError> {
        let bad = || FetchError::Url(url.chars().take(200).collect());
        let rest = url.strip_prefix("https://").ok_or_else(bad)?;
        if rest.contains(['?', '#', '@', ' ']) || rest.chars().any(char::is_control) {
            return Err(bad());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (
                rest.get(..i).ok_or_else(bad)?,
                rest.get(i..).ok_or_else(bad)?,
            ),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => 443,
                None => return Err(bad()),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), port.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), 443),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host,
            port,
            path: path.to_owned(),
        })
    }
}

/// Fetches and checks the bundle of `trust_domain` at `url`, authenticating the server with
/// `auth`, all within `timeout`.
pub async fn fetch_bundle(
    url: &EndpointUrl,
    trust_domain: &TrustDomain,
    auth: &HttpsServerAuth,
    policy: TlsPolicy,
    timeout: Duration,
) -> Result<TrustBundle, FetchError> {
    let body = tokio::time::timeout(
        timeout,
        get(url, auth, policy, MAX_BUNDLE_BYTES, "sigil-federation"),
    )
    .await
    .map_err(|_| FetchError::Timeout(timeout))??;
    parse_bundle(&body, trust_domain)
}

/// The bundle of `trust_domain` in `body`, checked: a SPIFFE bundle document of at most
/// [`MAX_BUNDLE_BYTES`] whose keys read, and whose X.509 authorities name (in their URI SANs,
/// when they have any) no trust domain but `trust_domain`.
pub fn parse_bundle(body: &[u8], trust_domain: &TrustDomain) -> Result<TrustBundle, FetchError> {
    if body.len() > MAX_BUNDLE_BYTES {
        return Err(FetchError::TooLarge);
    }
    let document = BundleDocument::parse(body).map_err(|e| FetchError::Invalid(e.to_string()))?;
    let bundle = sigil_keys::bundle_json::from_document(trust_domain.clone(), &document)
        .map_err(|e| FetchError::Invalid(e.to_string()))?;
    if bundle.x509_authorities.is_empty() && bundle.jwt_authorities.is_empty() {
        return Err(FetchError::Invalid("it holds no authority".to_owned()));
    }
    for cert in &bundle.x509_authorities {
        if let Some(found) = san_trust_domain(cert)
            && found != *trust_domain
        {
            return Err(FetchError::WrongTrustDomain {
                expected: trust_domain.to_string(),
                found: found.to_string(),
            });
        }
    }
    Ok(bundle)
}

/// The trust domain a CA certificate's `spiffe://` URI SAN names, if it has one.
fn san_trust_domain(cert_der: &[u8]) -> Option<TrustDomain> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => sigil_spiffe::SpiffeId::parse(uri)
            .ok()
            .map(|id| id.trust_domain()),
        _ => None,
    })
}

/// GET `url` and the body, at most `max_bytes` ([`FetchError::TooLarge`] beyond), as
/// `user_agent`. Not bounded in time: callers wrap it in a timeout.
pub(crate) async fn get(
    url: &EndpointUrl,
    auth: &HttpsServerAuth,
    policy: TlsPolicy,
    max_bytes: usize,
    user_agent: &'static str,
) -> Result<Vec<u8>, FetchError> {
    let config = sigil_tls::https_client_config(auth, policy)?;
    let address = format!("{}:{}", url.host, url.port);
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|e| FetchError::Connect(address.clone(), e))?;
    let name =
        ServerName::try_from(url.host.clone()).map_err(|_| FetchError::Url(url.host.clone()))?;
    let tls = TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(FetchError::Tls)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| FetchError::Http(e.to_string()))?;
    let connection = tokio::spawn(connection);
    let host = if url.port == 443 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let request = http::Request::get(url.path.as_str())
        .header(http::header::HOST, host)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, user_agent)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    if !response.status().is_success() {
        connection.abort();
        return Err(FetchError::Status(response.status().as_u16()));
    }
    let body = Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                FetchError::TooLarge
            } else {
                FetchError::Http(e.to_string())
            }
        })?
        .to_bytes();
    connection.abort();
    Ok(body.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_are_https_with_host_port_and_path() {
        assert_eq!(
            EndpointUrl::parse("https://peer.example:8443/bundle").unwrap(),
            EndpointUrl {
                host: "peer.example".into(),
                port: 8443,
                path: "/bundle".into()
            }
        );
        assert_eq!(
            EndpointUrl::parse("https://peer.example").unwrap().port,
            443
        );
        assert_eq!(
            EndpointUrl::parse("https://[::1]:9/b").unwrap().host,
            "::1".to_owned()
        );
        for bad in [
            "http://peer.example/bundle",
            "https://user@peer.example/",
            "https://peer.example/b?x=1",
            "https://peer.example:0/",
            "https://:443/",
            "https://peer.example:port/",
            "https://[::1/",
        ] {
            assert!(EndpointUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
