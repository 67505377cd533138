//! TLS to PostgreSQL as libpq does it: `sslmode`, `sslrootcert`, `sslcert` and `sslkey` in the
//! connection string, taken out before tokio-postgres parses it (it knows neither `verify-ca`,
//! `verify-full` nor the file parameters), and the tokio-postgres connector over sigil-tls'
//! rustls configuration that both the pool and the LISTEN connection use, with the
//! `tls-server-end-point` channel binding SCRAM needs for libpq's `channel_binding`.
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
//!
//! `sslcert` and `sslkey` name the client certificate (PEM, chain after it allowed) and its
//! private key (PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`, unencrypted), which the
//! client presents when the server asks for one (pg_hba's `cert` method, or `clientcert=`). Both
//! or neither: there is no default `~/.postgresql/postgresql.crt`. As libpq does, the key file
//! is refused when group or others can access it (more than 0600 when owned by the user running
//! Sigil; more than 0640 when owned by root), and both files are read at connect, bounded in
//! size; `sslmode=disable` reads neither.
//!
//! `channel_binding` (`disable`, `prefer` (default), `require`) is tokio-postgres' own; this
//! module supplies the binding data. Over TLS, SCRAM logins use `SCRAM-SHA-256-PLUS` bound to the
//! hash of the certificate the server presented (RFC 5929 `tls-server-end-point`), so a man in the
//! middle that terminates TLS (under `sslmode=require` without `sslrootcert` any certificate
//! passes) cannot relay the login to the real server. `require` also refuses every login that is
//! not so bound: no TLS, or a server that asks for trust, a password or a certificate instead of
//! SCRAM (tokio-postgres: "server did not use channel binding"). `require` with `sslmode=disable`
//! is refused before connecting. Channel binding does not authenticate the server: only
//! `verify-ca` and `verify-full` do.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sigil_tls::{
    DatabaseClientCert, DatabaseClientKeyFormat, DatabaseServerAuth, ServerName, TlsConnector,
    TlsError, TlsPolicy,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use zeroize::Zeroizing;

use crate::{StoreError, StoreResult};

/// The ALPN protocol PostgreSQL 17 and later expect (older servers ignore ALPN).
const ALPN: &[u8] = b"postgresql";
/// Largest `sslrootcert` or `sslcert` file read, in bytes: the PEM decoder's own bound (a full
/// system CA bundle is about 200 KiB).
const MAX_ROOT_CERT_BYTES: u64 = sigil_keys::pem::MAX_PEM_BYTES as u64;
/// Largest `sslkey` file read, in bytes (an 8192-bit RSA key in PEM is about 6.5 KiB).
const MAX_CLIENT_KEY_BYTES: u64 = 64 * 1024;
/// Longest `sslmode`, `sslrootcert`, `sslcert` or `sslkey` value accepted.
const MAX_VALUE_LEN: usize = 4096;
/// The parameters taken out of the connection string.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

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
    /// `sslcert` and `sslkey`: the PEM files of the client certificate and its private key,
    /// both or neither.
    pub(super) client_cert: Option<ClientCertFiles>,
}

/// Where the client certificate and its key are (`sslcert`, `sslkey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientCertFiles {
    pub(super) cert: String,
    pub(super) key: String,
}

/// Splits `sslmode`, `sslrootcert`, `sslcert` and `sslkey` off `url` (URL or `key=value` form;
/// the last occurrence wins, as in libpq): returns the rest, for tokio-postgres, and the
/// settings. `sslcert` without `sslkey`, or the other way round, is refused.
pub(super) fn split_tls_params(url: &str) -> StoreResult<(String, TlsParams)> {
    let mut params = TlsParams::default();
    let mut cert = None;
    let mut key = None;
    let mut take = |name: &str, value: String| -> StoreResult<bool> {
        if !TLS_KEYS.contains(&name) {
            return Ok(false);
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(invalid(format!(
                "{name} is longer than {MAX_VALUE_LEN} bytes"
            )));
        }
        let path = (!value.is_empty()).then_some(value);
        match name {
            "sslmode" => params.mode = SslMode::parse(path.as_deref().unwrap_or_default())?,
            "sslrootcert" => params.root_cert = path,
            "sslcert" => cert = path,
            _ => key = path,
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url_query(url, &mut take)?
    } else {
        split_keywords(url, &mut take)?
    };
    params.client_cert = match (cert, key) {
        (Some(cert), Some(key)) => Some(ClientCertFiles { cert, key }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(
                "sslcert is set but sslkey is not: give the client certificate's private key \
                 too, or neither"
                    .to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "sslkey is set but sslcert is not: give the client certificate too, or neither"
                    .to_owned(),
            ));
        }
    };
    Ok((rest, params))
}

/// Refuses `channel_binding=require` (tokio-postgres parses `channel_binding` itself) with
/// `sslmode=disable`: no binding without TLS, so no login could succeed.
pub(super) fn check_channel_binding(
    mode: SslMode,
    binding: tokio_postgres::config::ChannelBinding,
) -> StoreResult<()> {
    if mode == SslMode::Disable && binding == tokio_postgres::config::ChannelBinding::Require {
        return Err(invalid(
            "channel_binding=require needs TLS, but sslmode=disable: channel binding ties the \
             login to the TLS session"
                .to_owned(),
        ));
    }
    Ok(())
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
    /// Reads the trust anchors and the client certificate `params` names and builds the client
    /// configuration. A missing, oversized or unparsable `sslrootcert`, `sslcert` or `sslkey`, a
    /// key file others may read, a key that is not the certificate's, or a combination libpq
    /// refuses, is [`StoreError::Invalid`] for the field `url`.
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
                DatabaseServerAuth::ChainAndName(read_pem_certs("sslrootcert", path).await?)
            }
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(path)) => {
                DatabaseServerAuth::Chain(read_pem_certs("sslrootcert", path).await?)
            }
        };
        let client_cert = match &params.client_cert {
            Some(files) => Some(read_client_cert(files).await?),
            None => None,
        };
        let config = sigil_tls::database_client_config(
            &auth,
            client_cert.as_ref(),
            ALPN,
            TlsPolicy::default(),
        )
        .map_err(|e| match (&e, &params.client_cert) {
            (TlsError::EmptyChain | TlsError::BadKey(_) | TlsError::KeyMismatch, Some(files)) => {
                invalid(format!(
                    "sslcert `{}` and sslkey `{}`: {e}",
                    files.cert.escape_debug(),
                    files.key.escape_debug()
                ))
            }
            _ => {
                let roots = params.root_cert.as_deref().unwrap_or("system");
                invalid(format!("sslrootcert `{roots}`: {e}"))
            }
        })?;
        Ok(Self {
            mode: params.mode,
            connector: Some(TlsConnector::from(Arc::new(config))),
        })
    }
}

/// The DER certificates of the PEM file at `path` (the parameter `field` names it), read with a
/// size limit.
async fn read_pem_certs(field: &str, path: &str) -> StoreResult<Vec<Vec<u8>>> {
    let shown = path.escape_debug();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| invalid(format!("{field} `{shown}`: cannot open: {e}")))?;
    let mut pem = Vec::new();
    file.take(MAX_ROOT_CERT_BYTES + 1)
        .read_to_end(&mut pem)
        .await
        .map_err(|e| invalid(format!("{field} `{shown}`: cannot read: {e}")))?;
    if u64::try_from(pem.len()).unwrap_or(u64::MAX) > MAX_ROOT_CERT_BYTES {
        return Err(invalid(format!(
            "{field} `{shown}` is larger than {MAX_ROOT_CERT_BYTES} bytes"
        )));
    }
    let text = String::from_utf8(pem)
        .map_err(|_| invalid(format!("{field} `{shown}` is not PEM: not UTF-8 text")))?;
    let certs = sigil_keys::pem::decode_all(sigil_keys::pem::CERTIFICATE_LABEL, &text)
        .map_err(|e| invalid(format!("{field} `{shown}` is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{field} `{shown}` holds no PEM CERTIFICATE block"
        )));
    }
    Ok(certs)
}

/// The client certificate chain (`sslcert`) and its private key (`sslkey`).
async fn read_client_cert(files: &ClientCertFiles) -> StoreResult<DatabaseClientCert> {
    let chain = read_pem_certs("sslcert", &files.cert).await?;
    let (format, key) = read_client_key(&files.key).await?;
    Ok(DatabaseClientCert::new(chain, format, key))
}

/// The private key of the PEM file at `path`, refused, as libpq does, when it is no regular
/// file or others may access it. The file's bytes and the decoded key stay in zeroising
/// buffers, read in one go into a buffer sized for them (no reallocation leaves a copy behind).
async fn read_client_key(path: &str) -> StoreResult<(DatabaseClientKeyFormat, Zeroizing<Vec<u8>>)> {
    let shown = path.escape_debug();
    let cannot = |what: &str, e: io::Error| invalid(format!("sslkey `{shown}`: {what}: {e}"));
    // Checked before opening too, so that a FIFO is never opened (it would block).
    let before = tokio::fs::metadata(path)
        .await
        .map_err(|e| cannot("cannot open", e))?;
    check_key_file(&shown.to_string(), &before)?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| cannot("cannot open", e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| cannot("cannot read", e))?;
    check_key_file(&shown.to_string(), &meta)?;
    if meta.len() > MAX_CLIENT_KEY_BYTES {
        return Err(invalid(format!(
            "sslkey `{shown}` is larger than {MAX_CLIENT_KEY_BYTES} bytes"
        )));
    }
    let len = usize::try_from(meta.len()).map_err(|_| {
        invalid(format!(
            "sslkey `{shown}` is larger than {MAX_CLIENT_KEY_BYTES} bytes"
        ))
    })?;
    let mut pem = Zeroizing::new(vec![0u8; len]);
    file.read_exact(&mut pem)
        .await
        .map_err(|e| cannot("cannot read", e))?;
    let mut more = [0u8; 1];
    if file
        .read(&mut more)
        .await
        .map_err(|e| cannot("cannot read", e))?
        != 0
    {
        return Err(invalid(format!(
            "sslkey `{shown}` changed while it was read"
        )));
    }
    let text = std::str::from_utf8(&pem)
        .map_err(|_| invalid(format!("sslkey `{shown}` is not PEM: not UTF-8 text")))?;
    decode_client_key(text).map_err(|reason| invalid(format!("sslkey `{shown}` {reason}")))
}

/// The one private key of `text`, by its PEM label; the error completes "sslkey `path` ...".
/// Never shows the text.
fn decode_client_key(text: &str) -> Result<(DatabaseClientKeyFormat, Zeroizing<Vec<u8>>), String> {
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(
            "is encrypted, and sslpassword is not supported: give the key unencrypted, mode 0600"
                .to_owned(),
        );
    }
    for (label, format) in [
        (
            sigil_keys::pem::PRIVATE_KEY_LABEL,
            DatabaseClientKeyFormat::Pkcs8,
        ),
        ("RSA PRIVATE KEY", DatabaseClientKeyFormat::Pkcs1),
        ("EC PRIVATE KEY", DatabaseClientKeyFormat::Sec1),
    ] {
        if text.contains(&format!("-----BEGIN {label}-----")) {
            return sigil_keys::pem::decode_secret(label, text)
                .map(|der| (format, der))
                .map_err(|e| format!("is not PEM: {e}"));
        }
    }
    Err("holds no PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block".to_owned())
}

/// libpq's checks of a private key file (`fe-secure-openssl.c`): a regular file, with no group or
/// world access when owned by the user running this process, and none but group read when
/// owned by root. A file of another owner is left for the open to refuse or allow.
fn check_key_file(shown: &str, meta: &std::fs::Metadata) -> StoreResult<()> {
    if !meta.is_file() {
        return Err(invalid(format!("sslkey `{shown}` is not a regular file")));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;

        let mode = meta.mode() & 0o777;
        let owner = meta.uid();
        let too_open = if owner == nix::unistd::geteuid().as_raw() {
            mode & 0o077 != 0
        } else if owner == 0 {
            mode & 0o037 != 0
        } else {
            false
        };
        if too_open {
            return Err(invalid(format!(
                "sslkey `{shown}` has group or world access (mode {mode:04o}): it must be u=rw \
                 (0600) or less when owned by the current user, or u=rw,g=r (0640) or less when \
                 owned by root"
            )));
        }
    }
    Ok(())
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
            let stream = connector
                .connect(server, stream)
                .await
                .map_err(|e: io::Error| fail(e.to_string()))?;
            let end_point = sigil_tls::tls_server_end_point(&stream);
            Ok(PostgresTlsStream { stream, end_point })
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

/// A TLS session to the database, with its `tls-server-end-point` channel binding data.
pub(super) struct PostgresTlsStream<S> {
    stream: sigil_tls::client::TlsStream<S>,
    /// `None` when the server's certificate allows no binding (see
    /// [`sigil_tls::tls_server_end_point`]).
    end_point: Option<Vec<u8>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PostgresTlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PostgresTlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PostgresTlsStream<S> {
    /// The `tls-server-end-point` binding, which SCRAM-SHA-256-PLUS ties the login to; none
    /// when the certificate allows none (then `channel_binding=require` fails the login).
    fn channel_binding(&self) -> ChannelBinding {
        match &self.end_point {
            Some(hash) => ChannelBinding::tls_server_end_point(hash.clone()),
            None => ChannelBinding::none(),
        }
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
            client_cert: None,
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

    fn files(cert: &str, key: &str) -> Option<ClientCertFiles> {
        Some(ClientCertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    #[test]
    fn splits_client_certificate_files_off_both_forms() {
        let (rest, tls) = split(
            "postgres://u@h/db?sslcert=%2Fa%2Fc.pem&application_name=x&sslkey=/a/k.pem\
             &channel_binding=require",
        );
        assert_eq!(
            rest,
            "postgres://u@h/db?application_name=x&channel_binding=require"
        );
        assert_eq!(tls.client_cert, files("/a/c.pem", "/a/k.pem"));
        let (rest, tls) = split("host=h sslkey='/k 1.pem' sslcert=/c.pem user=u");
        assert_eq!(rest, "host=h user=u");
        assert_eq!(tls.client_cert, files("/c.pem", "/k 1.pem"));
    }

    #[test]
    fn refuses_a_client_certificate_without_its_key_and_the_other_way_round() {
        for (url, missing) in [
            ("postgres://h/db?sslcert=/c.pem", "sslkey is not"),
            ("host=h sslkey=/k.pem", "sslcert is not"),
            // An empty value is no value.
            ("postgres://h/db?sslcert=/c.pem&sslkey=", "sslkey is not"),
        ] {
            let err = split_tls_params(url).unwrap_err();
            assert!(
                matches!(&err, StoreError::Invalid { field: "url", reason } if reason.contains(missing)),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn refuses_channel_binding_require_without_tls_before_connecting() {
        let err = pg_config(&PostgresConfig::new(
            "postgres://u@h/db?sslmode=disable&channel_binding=require",
        ))
        .unwrap_err();
        assert!(
            matches!(&err, StoreError::Invalid { field: "url", reason } if reason.contains("channel_binding=require needs TLS")),
            "{err}"
        );
        // tokio-postgres takes the parameter itself, and what needs no check passes.
        for url in [
            "postgres://u@h/db?sslmode=require&channel_binding=require",
            "host=h sslmode=disable channel_binding=prefer",
            "postgres://u@h/db?channel_binding=require",
        ] {
            let (pg, _) = pg_config(&PostgresConfig::new(url)).unwrap();
            assert_ne!(
                pg.get_channel_binding(),
                tokio_postgres::config::ChannelBinding::Disable,
                "{url}"
            );
        }
    }

    /// A self-signed certificate and its PKCS#8 key, in PEM files under `dir`, the key `mode`.
    fn client_files(dir: &std::path::Path, mode: u32) -> ClientCertFiles {
        use std::os::unix::fs::PermissionsExt as _;

        let certified = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).unwrap();
        let cert = dir.join("client.pem");
        let key = dir.join("client.key");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        ClientCertFiles {
            cert: cert.to_str().unwrap().to_owned(),
            key: key.to_str().unwrap().to_owned(),
        }
    }

    fn with_client(mode: SslMode, client_cert: &ClientCertFiles) -> TlsParams {
        TlsParams {
            mode,
            root_cert: None,
            client_cert: Some(client_cert.clone()),
        }
    }

    #[tokio::test]
    async fn loads_a_client_key_only_when_others_cannot_read_it() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let files = client_files(dir.path(), 0o600);
        // The positive case first.
        PostgresTls::load(&with_client(SslMode::Require, &files))
            .await
            .unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(mode)).unwrap();
            let reason =
                invalid_reason(PostgresTls::load(&with_client(SslMode::Require, &files)).await);
            assert!(
                reason.contains(&files.key)
                    && reason.contains(&format!("mode {mode:04o}"))
                    && reason.contains("group or world access"),
                "{reason}"
            );
        }
        // sslmode=disable reads neither file, as in libpq.
        PostgresTls::load(&with_client(SslMode::Disable, &files))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn refuses_client_keys_that_are_missing_encrypted_oversized_or_not_the_certificates() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let good = client_files(dir.path(), 0o600);
        let write_key = |name: &str, text: &str| -> ClientCertFiles {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            ClientCertFiles {
                cert: good.cert.clone(),
                key: path.to_str().unwrap().to_owned(),
            }
        };
        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let encrypted = sigil_keys::pem::encode("ENCRYPTED PRIVATE KEY", &[1, 2, 3]);
        let certificate_only = std::fs::read_to_string(&good.cert).unwrap();
        let huge = "x".repeat(usize::try_from(MAX_CLIENT_KEY_BYTES).unwrap() + 1);
        let sec1_garbage = "-----BEGIN EC PRIVATE KEY-----\n!!\n-----END EC PRIVATE KEY-----\n";
        let cases = [
            (
                write_key("other.key", &other),
                "does not belong to the certificate",
            ),
            (write_key("enc.key", &encrypted), "is encrypted"),
            (
                write_key("cert.key", &certificate_only),
                "holds no PEM PRIVATE KEY",
            ),
            (write_key("huge.key", &huge), "is larger than"),
            (write_key("sec1.key", sec1_garbage), "is not PEM"),
            (
                ClientCertFiles {
                    cert: good.cert.clone(),
                    key: dir.path().join("missing.key").to_str().unwrap().to_owned(),
                },
                "cannot open",
            ),
            (
                ClientCertFiles {
                    cert: good.cert.clone(),
                    key: dir.path().to_str().unwrap().to_owned(),
                },
                "is not a regular file",
            ),
            (
                ClientCertFiles {
                    cert: dir.path().join("missing.pem").to_str().unwrap().to_owned(),
                    key: good.key.clone(),
                },
                "sslcert",
            ),
        ];
        for (files, says) in cases {
            let reason =
                invalid_reason(PostgresTls::load(&with_client(SslMode::VerifyFull, &files)).await);
            assert!(reason.contains(says), "{says}: {reason}");
            assert!(!reason.contains("BEGIN"), "{reason}");
        }
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
