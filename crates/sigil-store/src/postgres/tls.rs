//! TLS to PostgreSQL as libpq does it: `sslmode` and `sslrootcert` in the connection string,
//! taken out before tokio-postgres parses it (it knows neither `verify-ca`, `verify-full` nor
//! `sslrootcert`), and the tokio-postgres connector over sigil-tls' rustls configuration that
//! both the pool and the LISTEN connection use.
//!
//! | `sslmode`           | TLS                  | server certificate                                   |
//! |---------------------|----------------------|------------------------------------------------------|
//! | `disable`           | never                | -                                                    |
//! | `prefer` (default)  | if the server has it | unchecked; with `sslrootcert`, must chain to it      |
//! | `require`           | always               | unchecked; with `sslrootcert`, must chain to it      |
//! | `verify-ca`         | always               | must chain to `sslrootcert` (required)               |
//! | `verify-full`       | always               | chain to `sslrootcert` (default: the system's roots) |
//! |                     |                      | and be issued for the host connected to              |
//!
//! `sslrootcert=system` names the system's trust store; like libpq, only `verify-full` accepts
//! it (any publicly trusted certificate would pass the weaker checks), and for the same reason
//! `verify-ca` requires a `sslrootcert` file. Over Unix-domain sockets PostgreSQL never offers
//! TLS, so `prefer` connects in plaintext there.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sigil_tls::{DatabaseServerAuth, ServerName, TlsConnector, TlsPolicy};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::{StoreError, StoreResult};

/// The ALPN protocol PostgreSQL 17 and later expect (older servers ignore ALPN).
const ALPN: &[u8] = b"postgresql";
/// Largest `sslrootcert` file read, in bytes: the PEM decoder's own bound (a full system CA
/// bundle is about 200 KiB).
const MAX_ROOT_CERT_BYTES: u64 = sigil_keys::pem::MAX_PEM_BYTES as u64;
/// Longest `sslmode` or `sslrootcert` value accepted.
const MAX_VALUE_LEN: usize = 4096;

/// libpq's `sslmode`, minus `allow` (plaintext first, TLS on refusal), which tokio-postgres
/// cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> StoreResult<Self> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            "allow" => Err(invalid(
                "sslmode=allow is not supported: use disable or prefer".to_owned(),
            )),
            other => Err(invalid(format!(
                "sslmode `{}` is not one of disable, prefer, require, verify-ca, verify-full",
                other.escape_debug()
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether it may go without.
    pub(super) fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TLS settings found in a connection string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TlsParams {
    pub(super) mode: SslMode,
    /// `sslrootcert`: a PEM file of trust anchors, or `system`.
    pub(super) root_cert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` off `url` (URL or `key=value` form; the last occurrence
/// wins, as in libpq): returns the rest, for tokio-postgres, and the settings.
pub(super) fn split_tls_params(url: &str) -> StoreResult<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| -> StoreResult<bool> {
        if !matches!(key, "sslmode" | "sslrootcert") {
            return Ok(false);
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(invalid(format!(
                "{key} is longer than {MAX_VALUE_LEN} bytes"
            )));
        }
        if key == "sslmode" {
            params.mode = SslMode::parse(&value)?;
        } else {
            params.root_cert = (!value.is_empty()).then_some(value);
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url_query(url, &mut take)?
    } else {
        split_keywords(url, &mut take)?
    };
    Ok((rest, params))
}

/// The URL form: drops the query parameters `take` claims.
fn split_url_query(
    url: &str,
    take: &mut impl FnMut(&str, String) -> StoreResult<bool>,
) -> StoreResult<String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    for param in query.split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = percent_decode(key)?;
        if !take(&key, percent_decode(value)?)? {
            kept.push(param);
        }
    }
    if kept.is_empty() {
        Ok(base.to_owned())
    } else {
        Ok(format!("{base}?{}", kept.join("&")))
    }
}

fn percent_decode(s: &str) -> StoreResult<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| invalid("a query parameter is not UTF-8 once percent-decoded".to_owned()))
}

/// The `key=value` form (values bare or single-quoted, `\` escaping the next character): drops
/// the pairs `take` claims and keeps the others as written.
fn split_keywords(
    conninfo: &str,
    take: &mut impl FnMut(&str, String) -> StoreResult<bool>,
) -> StoreResult<String> {
    let mut kept: Vec<&str> = Vec::new();
    let mut chars = conninfo.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            // Not a pair: left for tokio-postgres to reject with its own message.
            return Ok(conninfo.to_owned());
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut end = conninfo.len();
        let mut closed = !quoted;
        while let Some(&(i, c)) = chars.peek() {
            if !quoted && c.is_whitespace() {
                end = i;
                break;
            }
            chars.next();
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    closed = true;
                    end = chars.peek().map_or(conninfo.len(), |(i, _)| *i);
                    break;
                }
                c => value.push(c),
            }
        }
        if !closed {
            return Ok(conninfo.to_owned());
        }
        if !take(&key, value)? {
            kept.push(conninfo.get(start..end).unwrap_or(""));
        }
    }
    Ok(kept.join(" "))
}

/// The connector both the pool and the listener use: TLS as `mode` says, the server checked
/// with the trust anchors loaded at connect.
#[derive(Clone)]
pub(super) struct PostgresTls {
    mode: SslMode,
    /// `None` for `disable`, when tokio-postgres never asks for TLS.
    connector: Option<TlsConnector>,
}

impl fmt::Debug for PostgresTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PostgresTls {
    /// Reads the trust anchors `params` names and builds the client configuration. A missing,
    /// oversized or unparsable `sslrootcert`, or a combination libpq refuses, is
    /// [`StoreError::Invalid`] for the field `url`.
    pub(super) async fn load(params: &TlsParams) -> StoreResult<Self> {
        let auth = match (params.mode, params.root_cert.as_deref()) {
            (SslMode::Disable, _) => {
                return Ok(Self {
                    mode: SslMode::Disable,
                    connector: None,
                });
            }
            (SslMode::VerifyFull, None | Some("system")) => {
                DatabaseServerAuth::ChainAndName(sigil_tls::system_roots())
            }
            (mode, Some("system")) => {
                return Err(invalid(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {mode}: any publicly \
                     trusted certificate would pass"
                )));
            }
            (SslMode::VerifyCa, None) => {
                return Err(invalid(
                    "sslmode=verify-ca needs sslrootcert, the PEM file of the database's CA"
                        .to_owned(),
                ));
            }
            (SslMode::Prefer | SslMode::Require, None) => DatabaseServerAuth::Unverified,
            (SslMode::VerifyFull, Some(path)) => {
                DatabaseServerAuth::ChainAndName(read_root_certs(path).await?)
            }
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(path)) => {
                DatabaseServerAuth::Chain(read_root_certs(path).await?)
            }
        };
        let config =
            sigil_tls::database_client_config(&auth, ALPN, TlsPolicy::default()).map_err(|e| {
                let roots = params.root_cert.as_deref().unwrap_or("system");
                invalid(format!("sslrootcert `{roots}`: {e}"))
            })?;
        Ok(Self {
            mode: params.mode,
            connector: Some(TlsConnector::from(Arc::new(config))),
        })
    }
}

/// The DER certificates of the PEM file at `path`, read with a size limit.
async fn read_root_certs(path: &str) -> StoreResult<Vec<Vec<u8>>> {
    let shown = path.escape_debug();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| invalid(format!("sslrootcert `{shown}`: cannot open: {e}")))?;
    let mut pem = Vec::new();
    file.take(MAX_ROOT_CERT_BYTES + 1)
        .read_to_end(&mut pem)
        .await
        .map_err(|e| invalid(format!("sslrootcert `{shown}`: cannot read: {e}")))?;
    if u64::try_from(pem.len()).unwrap_or(u64::MAX) > MAX_ROOT_CERT_BYTES {
        return Err(invalid(format!(
            "sslrootcert `{shown}` is larger than {MAX_ROOT_CERT_BYTES} bytes"
        )));
    }
    let text = String::from_utf8(pem)
        .map_err(|_| invalid(format!("sslrootcert `{shown}` is not PEM: not UTF-8 text")))?;
    let certs = sigil_keys::pem::decode_all(sigil_keys::pem::CERTIFICATE_LABEL, &text)
        .map_err(|e| invalid(format!("sslrootcert `{shown}` is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "sslrootcert `{shown}` holds no PEM CERTIFICATE block"
        )));
    }
    Ok(certs)
}

fn invalid(reason: String) -> StoreError {
    StoreError::Invalid {
        field: "url",
        reason,
    }
}

impl<S> MakeTlsConnect<S> for PostgresTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type TlsConnect = PostgresTlsConnect;
    type Error = HandshakeError;

    /// Never fails here: a host that is no valid TLS server name (a Unix-domain socket path,
    /// where TLS is never offered anyway) fails only if a handshake is attempted.
    fn make_tls_connect(&mut self, domain: &str) -> Result<PostgresTlsConnect, HandshakeError> {
        Ok(PostgresTlsConnect {
            mode: self.mode,
            connector: self.connector.clone(),
            server: ServerName::try_from(domain.to_owned()).map_err(|_| domain.to_owned()),
        })
    }
}

/// One connection's handshake.
pub(super) struct PostgresTlsConnect {
    mode: SslMode,
    connector: Option<TlsConnector>,
    server: Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for PostgresTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type Error = HandshakeError;
    type Future =
        Pin<Box<dyn Future<Output = Result<PostgresTlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let mode = self.mode;
        Box::pin(async move {
            let fail = |detail: String| HandshakeError { mode, detail };
            let connector = self
                .connector
                .ok_or_else(|| fail("TLS is disabled".to_owned()))?;
            let server = self.server.map_err(|host| {
                fail(format!(
                    "`{}` is not a host name or IP address to verify",
                    host.escape_debug()
                ))
            })?;
            connector
                .connect(server, stream)
                .await
                .map(PostgresTlsStream)
                .map_err(|e: io::Error| fail(e.to_string()))
        })
    }
}

/// A failed TLS handshake (an unverifiable certificate, no common protocol version...), with
/// the `sslmode` it was made under.
#[derive(Debug)]
pub(super) struct HandshakeError {
    mode: SslMode,
    detail: String,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sslmode={}: {}", self.mode, self.detail)?;
        if self.mode == SslMode::Prefer {
            f.write_str(" (prefer is the default; sslmode=disable connects without TLS)")?;
        }
        Ok(())
    }
}

impl std::error::Error for HandshakeError {}

/// A TLS session to the database.
pub(super) struct PostgresTlsStream<S>(sigil_tls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PostgresTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PostgresTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PostgresTlsStream<S> {
    /// No `tls-server-end-point` binding yet, so SCRAM runs without channel binding (what
    /// tokio-postgres' default `channel_binding=prefer` does when TLS offers none).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::str::FromStr;
    use std::time::Duration;

    use super::*;
    use crate::postgres::{PostgresConfig, PostgresStore, describe, pg_config};

    fn split(url: &str) -> (String, TlsParams) {
        split_tls_params(url).unwrap()
    }

    fn params(mode: SslMode, root_cert: Option<&str>) -> TlsParams {
        TlsParams {
            mode,
            root_cert: root_cert.map(str::to_owned),
        }
    }

    #[test]
    fn splits_tls_params_off_a_url_and_keeps_the_rest_in_order() {
        assert_eq!(
            split("postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=/path/ca.pem"),
            (
                "postgres://u@h:5432/db".to_owned(),
                params(SslMode::VerifyFull, Some("/path/ca.pem"))
            )
        );
        assert_eq!(
            split(
                "postgresql://u@h/db?application_name=a&ssl%6Dode=verify-ca&options=-c%20x%3Dy\
                 &sslrootcert=%2Fetc%2Fmy%20ca.pem"
            ),
            (
                "postgresql://u@h/db?application_name=a&options=-c%20x%3Dy".to_owned(),
                params(SslMode::VerifyCa, Some("/etc/my ca.pem"))
            )
        );
        assert_eq!(
            split("postgres://u@h/db?connect_timeout=3"),
            (
                "postgres://u@h/db?connect_timeout=3".to_owned(),
                TlsParams::default()
            )
        );
    }

    #[test]
    fn splits_tls_params_off_a_keyword_string() {
        assert_eq!(
            split(
                "host=h sslmode = 'verify-ca' options='-c a=b' sslrootcert='/a b/c\\'a.pem' \
                 user=u"
            ),
            (
                "host=h options='-c a=b' user=u".to_owned(),
                params(SslMode::VerifyCa, Some("/a b/c'a.pem"))
            )
        );
        assert_eq!(
            split("  host=h sslmode=require"),
            ("host=h".to_owned(), params(SslMode::Require, None))
        );
    }

    #[test]
    fn defaults_to_prefer_and_the_last_value_wins() {
        assert_eq!(TlsParams::default().mode, SslMode::Prefer);
        assert_eq!(split("host=h").1.mode, SslMode::Prefer);
        assert_eq!(
            split("postgres://h/db?sslmode=disable&sslmode=require").1,
            params(SslMode::Require, None)
        );
    }

    #[test]
    fn rejects_unknown_sslmodes_naming_the_url() {
        for url in [
            "postgres://h/db?sslmode=allow",
            "postgres://h/db?sslmode=verify_full",
            "host=h sslmode=strict",
            "postgres://h/db?sslmode=%FF",
        ] {
            let err = split_tls_params(url).unwrap_err();
            assert!(
                matches!(&err, StoreError::Invalid { field: "url", reason } if reason.contains("sslmode") || reason.contains("UTF-8")),
                "{url}: {err}"
            );
        }
        // The accepted values still parse, so the rejections above are about the value.
        assert!(split_tls_params("postgres://h/db?sslmode=verify-full").is_ok());
    }

    #[test]
    fn tokio_postgres_gets_the_url_without_libpq_only_params() {
        let url = "postgres://u@h/db?sslmode=verify-full&sslrootcert=/ca.pem";
        // tokio-postgres alone refuses them, which is why they are taken out first.
        assert!(tokio_postgres::Config::from_str(url).is_err());
        let (pg, tls) = pg_config(&PostgresConfig::new(url)).unwrap();
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(tls, params(SslMode::VerifyFull, Some("/ca.pem")));
        let (pg, _) = pg_config(&PostgresConfig::new("host=h user=u sslmode=disable")).unwrap();
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
    }

    fn other_ca_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap()
            .cert
            .pem()
    }

    fn invalid_reason(result: StoreResult<PostgresTls>) -> String {
        match result {
            Err(StoreError::Invalid {
                field: "url",
                reason,
            }) => reason,
            other => panic!("expected Invalid {{ field: url }}, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn refuses_missing_oversized_or_non_pem_root_certs() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, other_ca_pem()).unwrap();
        let good = good.to_str().unwrap();
        // The positive case first: a PEM certificate loads.
        PostgresTls::load(&params(SslMode::VerifyCa, Some(good)))
            .await
            .unwrap();

        let missing = dir.path().join("missing.pem");
        let not_pem = dir.path().join("not.pem");
        std::fs::write(
            &not_pem,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let key_only = dir.path().join("key.pem");
        std::fs::write(&key_only, sigil_keys::pem::encode("PRIVATE KEY", &[1])).unwrap();
        let bad_der = dir.path().join("bad-der.pem");
        std::fs::write(&bad_der, sigil_keys::pem::encode("CERTIFICATE", &[1])).unwrap();
        let huge = dir.path().join("huge.pem");
        let mut big = other_ca_pem();
        while (big.len() as u64) <= MAX_ROOT_CERT_BYTES {
            big.push_str(&other_ca_pem());
        }
        std::fs::write(&huge, big).unwrap();
        for (path, says) in [
            (&missing, "cannot open"),
            (&not_pem, "is not PEM"),
            (&key_only, "no PEM CERTIFICATE"),
            (&bad_der, "no usable trust anchor"),
            (&huge, "larger than"),
        ] {
            let path = path.to_str().unwrap();
            let reason =
                invalid_reason(PostgresTls::load(&params(SslMode::VerifyFull, Some(path))).await);
            assert!(reason.contains(path) && reason.contains(says), "{reason}");
        }
    }

    #[tokio::test]
    async fn refuses_verify_ca_without_a_root_and_system_roots_below_verify_full() {
        let reason = invalid_reason(PostgresTls::load(&params(SslMode::VerifyCa, None)).await);
        assert!(reason.contains("verify-ca needs sslrootcert"), "{reason}");
        for mode in [SslMode::Prefer, SslMode::Require, SslMode::VerifyCa] {
            let reason = invalid_reason(PostgresTls::load(&params(mode, Some("system"))).await);
            assert!(reason.contains("needs sslmode=verify-full"), "{reason}");
        }
        // What they are refused in favour of is accepted.
        for ok in [
            params(SslMode::VerifyFull, Some("system")),
            params(SslMode::Require, None),
            params(SslMode::Disable, Some("system")),
        ] {
            PostgresTls::load(&ok).await.unwrap();
        }
    }

    /// The local server for the live tests: its plain configuration and the PEM file of the CA
    /// of its certificate.
    struct TlsServer {
        pg: tokio_postgres::Config,
        url: String,
        ca: String,
    }

    /// The test database (`SIGIL_TEST_POSTGRES_URL`, default
    /// `postgres://postgres@127.0.0.1:5432/test`) when it runs with `ssl = on`, and the CA of its
    /// certificate (`SIGIL_TEST_POSTGRES_CA`, default Debian's self-signed snakeoil certificate).
    /// `None`, after a notice, when either is missing; under `CI` that fails the test instead.
    async fn tls_server() -> Option<TlsServer> {
        let url = std::env::var("SIGIL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let ca = std::env::var("SIGIL_TEST_POSTGRES_CA")
            .unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".to_owned());
        let mut pg = tokio_postgres::Config::from_str(&url).unwrap();
        pg.connect_timeout(Duration::from_secs(3));
        let ssl = async {
            let (client, connection) = pg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("the database is unreachable: {}", describe(&e)))?;
            tokio::spawn(connection);
            let ssl: String = client
                .query_one("SHOW ssl", &[])
                .await
                .map_err(|e| describe(&e))?
                .get(0);
            if ssl != "on" {
                return Err("the database runs with ssl = off".to_owned());
            }
            if !std::path::Path::new(&ca).exists() {
                return Err(format!(
                    "the CA file {ca} (SIGIL_TEST_POSTGRES_CA) does not exist"
                ));
            }
            Ok(())
        }
        .await;
        match ssl {
            Ok(()) => Some(TlsServer { pg, url, ca }),
            Err(why) => {
                if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
                    panic!("the PostgreSQL TLS tests may not be skipped under CI: {why}");
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "NOTICE: skipping a PostgreSQL TLS test (SIGIL_TEST_POSTGRES_URL, \
                     SIGIL_TEST_POSTGRES_CA): {why}"
                );
                None
            }
        }
    }

    impl TlsServer {
        /// Connects to `host` (default: the URL's) with `tls`; returns whether the session is
        /// encrypted, as the server sees it.
        async fn session_ssl(&self, tls: &TlsParams, host: Option<&str>) -> Result<bool, String> {
            let connector = PostgresTls::load(tls).await.map_err(|e| e.to_string())?;
            let mut pg = match host {
                None => self.pg.clone(),
                Some(host) => {
                    let mut pg = tokio_postgres::Config::new();
                    pg.host(host)
                        .port(self.pg.get_ports().first().copied().unwrap_or(5432))
                        .user(self.pg.get_user().unwrap_or("postgres"))
                        .dbname(self.pg.get_dbname().unwrap_or("test"))
                        .connect_timeout(Duration::from_secs(3));
                    if let Some(password) = self.pg.get_password() {
                        pg.password(password);
                    }
                    pg
                }
            };
            pg.ssl_mode(tls.mode.wire());
            let (client, connection) = pg.connect(connector).await.map_err(|e| describe(&e))?;
            tokio::spawn(connection);
            let row = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await
                .map_err(|e| describe(&e))?;
            Ok(row.get(0))
        }
    }

    #[tokio::test]
    async fn require_and_prefer_encrypt_the_session_and_disable_does_not() {
        let Some(server) = tls_server().await else {
            return;
        };
        for mode in [SslMode::Require, SslMode::Prefer] {
            assert_eq!(
                server.session_ssl(&params(mode, None), None).await,
                Ok(true)
            );
        }
        assert_eq!(
            server
                .session_ssl(&params(SslMode::Disable, None), None)
                .await,
            Ok(false)
        );
    }

    #[tokio::test]
    async fn verify_ca_accepts_the_servers_ca_and_refuses_another() {
        let Some(server) = tls_server().await else {
            return;
        };
        assert_eq!(
            server
                .session_ssl(&params(SslMode::VerifyCa, Some(&server.ca)), None)
                .await,
            Ok(true)
        );
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other-ca.pem");
        std::fs::write(&other, other_ca_pem()).unwrap();
        for mode in [SslMode::VerifyCa, SslMode::Require] {
            let err = server
                .session_ssl(&params(mode, other.to_str()), None)
                .await
                .unwrap_err();
            assert!(
                err.contains("certificate") && err.contains("UnknownIssuer"),
                "{err}"
            );
        }
    }

    /// The server's certificate names `SIGIL_TEST_POSTGRES_TLS_HOST` (default `localhost`, the
    /// name on this machine's snakeoil certificate) but not the IP address 127.0.0.1.
    #[tokio::test]
    async fn verify_full_checks_the_host_name() {
        let Some(server) = tls_server().await else {
            return;
        };
        let name = std::env::var("SIGIL_TEST_POSTGRES_TLS_HOST")
            .unwrap_or_else(|_| "localhost".to_owned());
        let full = params(SslMode::VerifyFull, Some(&server.ca));
        assert_eq!(server.session_ssl(&full, Some(&name)).await, Ok(true));
        let err = server
            .session_ssl(&full, Some("127.0.0.1"))
            .await
            .unwrap_err();
        assert!(
            err.contains("sslmode=verify-full")
                && err.contains("certificate not valid for name \"127.0.0.1\""),
            "{err}"
        );
        // verify-ca takes the same certificate at the same address.
        assert_eq!(
            server
                .session_ssl(
                    &params(SslMode::VerifyCa, Some(&server.ca)),
                    Some("127.0.0.1")
                )
                .await,
            Ok(true)
        );
    }

    /// A fresh schema for a store, dropped with its tables afterwards.
    struct Schema {
        name: String,
        client: tokio_postgres::Client,
    }

    impl Schema {
        async fn create(server: &TlsServer) -> Self {
            let (client, connection) = server.pg.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let name: String = client
                .query_one(
                    "SELECT 'sigil_tls_' || translate(gen_random_uuid()::text, '-', '')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            client
                .batch_execute(&format!("CREATE SCHEMA {name}"))
                .await
                .unwrap();
            Self { name, client }
        }

        /// The server's URL in this schema, named after it, with `tls` appended.
        fn url(&self, server: &TlsServer, tls: &str) -> String {
            let separator = if server.url.contains('?') { '&' } else { '?' };
            format!(
                "{}{separator}options=-c%20search_path%3D{name}&application_name={name}&{tls}",
                server.url,
                name = self.name
            )
        }

        /// (sessions, encrypted sessions) named `application_name`.
        async fn sessions(&self, application_name: &str) -> (i64, i64) {
            let row = self
                .client
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE s.ssl) \
                     FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                     WHERE a.application_name = $1",
                    &[&application_name],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        }

        async fn drop_schema(self) {
            self.client
                .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn the_store_pool_and_listener_use_the_urls_tls_settings() {
        let Some(server) = tls_server().await else {
            return;
        };
        let schema = Schema::create(&server).await;
        let listener_name = format!("{} listener", schema.name);
        let root =
            percent_encoding::utf8_percent_encode(&server.ca, percent_encoding::NON_ALPHANUMERIC);

        // Plain first, so the counts below can tell the difference.
        let plain =
            PostgresStore::connect(&PostgresConfig::new(schema.url(&server, "sslmode=disable")))
                .await
                .unwrap();
        assert_eq!(schema.sessions(&listener_name).await, (1, 0));
        let (pooled, encrypted) = schema.sessions(&schema.name).await;
        assert!(pooled >= 1 && encrypted == 0, "{pooled} {encrypted}");
        drop(plain);

        let store = PostgresStore::connect(&PostgresConfig::new(
            schema.url(&server, &format!("sslmode=verify-ca&sslrootcert={root}")),
        ))
        .await
        .unwrap();
        store.schema_version().await.unwrap();
        // The plain store's sessions may take a moment to go once it is dropped.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listener = schema.sessions(&listener_name).await;
            let pool = schema.sessions(&schema.name).await;
            if listener == (1, 1) && pool.0 >= 1 && pool.0 == pool.1 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "listener {listener:?}, pool {pool:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(store);

        // A certificate that does not verify is named as such, with the server's address.
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other-ca.pem");
        std::fs::write(&other, other_ca_pem()).unwrap();
        let err = PostgresStore::connect(&PostgresConfig::new(schema.url(
            &server,
            &format!("sslmode=verify-ca&sslrootcert={}", other.display()),
        )))
        .await
        .unwrap_err()
        .to_string();
        let host = server.pg.get_hosts().first().map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
        });
        let host = host.unwrap();
        assert!(
            err.contains(&format!("cannot connect to PostgreSQL at {host}"))
                && err.contains("invalid peer certificate"),
            "{err}"
        );

        // A root certificate file that is not there is a configuration error, before connecting.
        let missing = dir.path().join("missing.pem");
        let err = PostgresStore::connect(&PostgresConfig::new(schema.url(
            &server,
            &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
        )))
        .await
        .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid { field: "url", reason } if reason.contains("cannot open")),
            "{err}"
        );
        schema.drop_schema().await;
    }
}
