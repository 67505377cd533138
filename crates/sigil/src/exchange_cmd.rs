//! `sigil exchange`: an OAuth 2.0 token exchange client (RFC 8693) for a Sigil token endpoint.
//! It finds the endpoint by OpenID discovery, authenticates with this workload's own SVIDs from
//! the Workload API (a JWT-SVID client assertion, draft-ietf-oauth-spiffe-client-auth, or the
//! X509-SVID as TLS client certificate, RFC 8705) or not at all, and prints the issued token.
//! Every step is one HTTP/1.1 request, bounded in time and in the size of what it reads.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::{ArgGroup, Args, ValueEnum};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::{StatusCode, header};
use serde_json::{Map, Value};
use sigil_tls::{HttpsServerAuth, LiveSvid, ServerName, TlsConnector, TlsPolicy};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use crate::workload_cmd;

/// `grant_type` of a token exchange (RFC 8693 §2.1).
const GRANT_TYPE_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `client_assertion_type` of a JWT-SVID client assertion (draft-ietf-oauth-spiffe-client-auth).
const CLIENT_ASSERTION_TYPE_JWT_SPIFFE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
/// The registered token types (RFC 8693 §3) share this prefix.
const TOKEN_TYPE_URN_PREFIX: &str = "urn:ietf:params:oauth:token-type:";
/// Where a Sigil server's token endpoint is, below its issuer URL.
const TOKEN_ENDPOINT_PATH: &str = "/oauth2/token";
/// Largest discovery document or token response read, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Largest token read from `@FILE` or standard input, in bytes.
const MAX_TOKEN_BYTES: u64 = 16 * 1024;
/// Largest `--ca-file`, in bytes.
const MAX_CA_FILE_BYTES: u64 = sigil_keys::pem::MAX_PEM_BYTES as u64;
/// Longest each step (a Workload API call, discovery, the exchange) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest text taken from a server's error answer into our one-line message, in characters.
const MAX_SHOWN_CHARS: usize = 300;

/// `sigil exchange`: the options of one token exchange.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("endpoint").required(true).args(["server", "token_endpoint"])))]
#[command(group(ArgGroup::new("subject").required(true).args(["subject_token", "subject_jwt_svid"])))]
pub struct ExchangeArgs {
    /// Issuer URL of the server; the token endpoint is read from its OpenID discovery document.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Token endpoint URL, used as given (no discovery). The issuer, when a JWT-SVID needs it as
    /// audience, is this URL without its `/oauth2/token` suffix.
    #[arg(long, value_name = "URL")]
    pub token_endpoint: Option<String>,
    /// The subject token: the token itself, `@FILE` (at most 16 KiB) or `-` for standard input.
    #[arg(long, value_name = "TOKEN", value_parser = TokenSource::parse, allow_hyphen_values = true)]
    pub subject_token: Option<TokenSource>,
    /// Use a JWT-SVID of this workload (from the Workload API, audience: the issuer) as the
    /// subject token.
    #[arg(long)]
    pub subject_jwt_svid: bool,
    /// Type of the subject token: `jwt`, `id_token`, `access_token` or a token type URN
    /// [default: jwt].
    #[arg(long, value_name = "TYPE", value_parser = token_type_urn, conflicts_with = "subject_jwt_svid")]
    pub subject_token_type: Option<String>,
    /// A token of the party acting for the subject (delegation): the token, `@FILE` or `-`.
    #[arg(long, value_name = "TOKEN", value_parser = TokenSource::parse, allow_hyphen_values = true)]
    pub actor_token: Option<TokenSource>,
    /// Type of the actor token, as `--subject-token-type` [default: jwt].
    #[arg(long, value_name = "TYPE", value_parser = token_type_urn, requires = "actor_token")]
    pub actor_token_type: Option<String>,
    /// Audience of the issued token (repeat for several).
    #[arg(long = "audience", value_name = "AUD")]
    pub audiences: Vec<String>,
    /// Resource (absolute URI) the issued token is for (repeat for several).
    #[arg(long = "resource", value_name = "URI")]
    pub resources: Vec<String>,
    /// Scopes of the issued token, space-separated.
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,
    /// Type of token to issue: `access_token` (an RFC 9068 JWT access token), `jwt` (a
    /// JWT-SVID) or a token type URN [default: the server's, access_token].
    #[arg(long, value_name = "TYPE", value_parser = token_type_urn)]
    pub requested_token_type: Option<String>,
    /// How to authenticate to the token endpoint.
    #[arg(long, value_enum, value_name = "METHOD", default_value_t = ClientAuth::None)]
    pub client_auth: ClientAuth,
    /// Workload API socket (`unix:///path` or a path), for `--subject-jwt-svid` and
    /// `--client-auth jwt-svid|mtls`.
    #[arg(long, value_name = "SOCKET", env = "SPIFFE_ENDPOINT_SOCKET")]
    pub socket: Option<String>,
    /// PEM certificates to trust for the server's TLS certificate [default: the system trust
    /// store, which honours SSL_CERT_FILE and SSL_CERT_DIR].
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// What to print on success.
    #[arg(long, value_enum, default_value_t = ExchangeOutput::Token)]
    pub output: ExchangeOutput,
}

/// `--client-auth`: how the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// No client authentication.
    None,
    /// A fresh JWT-SVID (audience: the issuer) as `client_assertion` (type `jwt-spiffe`), and
    /// its SPIFFE ID as `client_id`.
    JwtSvid,
    /// The X509-SVID as TLS client certificate (RFC 8705), and its SPIFFE ID as `client_id`.
    Mtls,
}

/// `--output` of `sigil exchange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExchangeOutput {
    /// Only the issued token, on one line.
    Token,
    /// The token endpoint's whole JSON response, pretty-printed.
    Json,
}

/// Where a token comes from: the command line, a file (`@FILE`) or standard input (`-`).
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    Inline(String),
    File(PathBuf),
    Stdin,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A bearer token: never in logs or panic messages.
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Stdin => f.write_str("Stdin"),
        }
    }
}

impl TokenSource {
    /// `-` is standard input, `@FILE` a file, anything else the token itself.
    fn parse(raw: &str) -> Result<Self, String> {
        if raw == "-" {
            Ok(Self::Stdin)
        } else if let Some(path) = raw.strip_prefix('@') {
            if path.is_empty() {
                Err("`@` must be followed by a file name".to_owned())
            } else {
                Ok(Self::File(PathBuf::from(path)))
            }
        } else if raw.trim().is_empty() {
            Err("the token is empty".to_owned())
        } else {
            Ok(Self::Inline(raw.trim().to_owned()))
        }
    }

    /// The token, without surrounding whitespace; a file or standard input is read up to
    /// [`MAX_TOKEN_BYTES`] and must be UTF-8 and not empty.
    fn read(&self, flag: &str) -> anyhow::Result<String> {
        let (text, from) = match self {
            Self::Inline(token) => return Ok(token.clone()),
            Self::File(path) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot read {flag} file {}", path.display()))?;
                (
                    read_bounded(file, MAX_TOKEN_BYTES)
                        .with_context(|| format!("cannot read {flag} file {}", path.display()))?,
                    path.display().to_string(),
                )
            }
            Self::Stdin => (
                read_bounded(std::io::stdin().lock(), MAX_TOKEN_BYTES)
                    .with_context(|| format!("cannot read {flag} from standard input"))?,
                "standard input".to_owned(),
            ),
        };
        let text = String::from_utf8(text).map_err(|_| anyhow!("{flag} in {from} is not UTF-8"))?;
        let token = text.trim();
        if token.is_empty() {
            bail!("{flag} in {from} is empty");
        }
        Ok(token.to_owned())
    }
}

/// A token type URN for `raw`: the short names `jwt`, `id_token`, `access_token` (and the other
/// RFC 8693 names), or any `urn:` as given.
fn token_type_urn(raw: &str) -> Result<String, String> {
    match raw {
        "jwt" | "id_token" | "access_token" | "refresh_token" | "saml1" | "saml2" => {
            Ok(format!("{TOKEN_TYPE_URN_PREFIX}{raw}"))
        }
        urn if urn.starts_with("urn:") && !urn.contains(char::is_whitespace) => Ok(urn.to_owned()),
        _ => Err("expected jwt, id_token, access_token or a token type URN (urn:…)".to_owned()),
    }
}

/// Runs one token exchange and prints the result as `args.output` says.
pub async fn run(args: ExchangeArgs) -> anyhow::Result<()> {
    if args.subject_token == Some(TokenSource::Stdin)
        && args.actor_token == Some(TokenSource::Stdin)
    {
        bail!("only one of --subject-token and --actor-token can be read from standard input");
    }
    // Local input first: a bad file fails before anything goes on the network.
    let subject_token = args
        .subject_token
        .as_ref()
        .map(|source| source.read("--subject-token"))
        .transpose()?;
    let actor_token = args
        .actor_token
        .as_ref()
        .map(|source| source.read("--actor-token"))
        .transpose()?;
    let roots = match &args.ca_file {
        Some(path) => read_roots(path)?,
        None => sigil_tls::system_roots(),
    };

    let (issuer, token_endpoint) = match (&args.server, &args.token_endpoint) {
        (Some(server), _) => {
            let discovered = discover(server, &roots).await?;
            let endpoint = match (&discovered.mtls_token_endpoint, args.client_auth) {
                (Some(alias), ClientAuth::Mtls) => alias.clone(),
                _ => discovered.token_endpoint,
            };
            (Some(discovered.issuer), endpoint)
        }
        (None, Some(endpoint)) => (
            endpoint
                .strip_suffix(TOKEN_ENDPOINT_PATH)
                .map(str::to_owned),
            HttpUrl::parse(endpoint)?,
        ),
        (None, None) => bail!("one of --server and --token-endpoint is required"),
    };
    let issuer_for = |what: &str| {
        issuer.clone().ok_or_else(|| {
            anyhow!(
                "{what} needs the issuer as JWT-SVID audience, and the --token-endpoint does not \
                 end in `{TOKEN_ENDPOINT_PATH}`: pass --server ISSUER instead"
            )
        })
    };

    let mut client_cert = None;
    let mut client_id = None;
    let mut client_assertion = None;
    match args.client_auth {
        ClientAuth::None => {}
        ClientAuth::Mtls => {
            if !token_endpoint.tls {
                bail!("--client-auth mtls needs an https:// token endpoint");
            }
            let (spiffe_id, svid) = fetch_x509_svid(args.socket.clone()).await?;
            client_cert = Some(svid);
            client_id = Some(spiffe_id);
        }
        ClientAuth::JwtSvid => {
            let audience = issuer_for("--client-auth jwt-svid")?;
            let (spiffe_id, token) = fetch_jwt_svid(args.socket.clone(), audience).await?;
            client_id = Some(spiffe_id);
            client_assertion = Some(token);
        }
    }
    let subject_token = match subject_token {
        Some(token) => token,
        None => {
            let audience = issuer_for("--subject-jwt-svid")?;
            fetch_jwt_svid(args.socket.clone(), audience).await?.1
        }
    };
    let jwt_type = format!("{TOKEN_TYPE_URN_PREFIX}jwt");
    let form = ExchangeForm {
        subject_token: &subject_token,
        subject_token_type: args.subject_token_type.as_deref().unwrap_or(&jwt_type),
        actor: actor_token
            .as_deref()
            .map(|token| (token, args.actor_token_type.as_deref().unwrap_or(&jwt_type))),
        audiences: &args.audiences,
        resources: &args.resources,
        scope: args.scope.as_deref(),
        requested_token_type: args.requested_token_type.as_deref(),
        client_id: client_id.as_deref(),
        client_assertion: client_assertion.as_deref(),
    };
    let tls = TlsClient { roots, client_cert };
    let response = tls
        .post_form(&token_endpoint, form.encode())
        .await
        .with_context(|| format!("token endpoint {token_endpoint}"))?;
    let answer = token_response(&response)?;
    match args.output {
        ExchangeOutput::Token => {
            let token = answer
                .get("access_token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            println!("{token}");
        }
        ExchangeOutput::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
    }
    Ok(())
}

/// The form of a token exchange request (RFC 8693 §2.1, client authentication of RFC 7521 §4.2).
#[derive(Debug, Clone, Copy)]
struct ExchangeForm<'a> {
    subject_token: &'a str,
    subject_token_type: &'a str,
    /// The actor token and its type.
    actor: Option<(&'a str, &'a str)>,
    audiences: &'a [String],
    resources: &'a [String],
    scope: Option<&'a str>,
    requested_token_type: Option<&'a str>,
    client_id: Option<&'a str>,
    /// A JWT-SVID, sent with `client_assertion_type` jwt-spiffe.
    client_assertion: Option<&'a str>,
}

impl ExchangeForm<'_> {
    /// The `application/x-www-form-urlencoded` body.
    fn encode(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", GRANT_TYPE_TOKEN_EXCHANGE)
            .append_pair("subject_token", self.subject_token)
            .append_pair("subject_token_type", self.subject_token_type);
        if let Some((token, token_type)) = self.actor {
            form.append_pair("actor_token", token)
                .append_pair("actor_token_type", token_type);
        }
        for audience in self.audiences {
            form.append_pair("audience", audience);
        }
        for resource in self.resources {
            form.append_pair("resource", resource);
        }
        if let Some(scope) = self.scope {
            form.append_pair("scope", scope);
        }
        if let Some(requested) = self.requested_token_type {
            form.append_pair("requested_token_type", requested);
        }
        if let Some(client_id) = self.client_id {
            form.append_pair("client_id", client_id);
        }
        if let Some(assertion) = self.client_assertion {
            form.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT_SPIFFE)
                .append_pair("client_assertion", assertion);
        }
        form.finish()
    }
}

/// An `http(s)://host[:port]/path` URL a request can go to: `https`, or `http` to a loopback
/// address only; no user information or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl {
    tls: bool,
    /// Without the brackets of an IPv6 address.
    host: String,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    /// Path and query.
    path: String,
    /// The URL as given, for messages.
    text: String,
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl HttpUrl {
    fn parse(raw: &str) -> anyhow::Result<Self> {
        let shown = printable(raw);
        if raw.contains(['#', ' ']) || raw.chars().any(char::is_control) {
            bail!("invalid URL `{shown}`");
        }
        let uri: http::Uri = raw.parse().map_err(|_| anyhow!("invalid URL `{shown}`"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("invalid URL `{shown}`: expected https://host[:port]/path"),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("invalid URL `{shown}`: no host"))?;
        if authority.as_str().contains('@') {
            bail!("invalid URL `{shown}`: user information is not allowed");
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            bail!("invalid URL `{shown}`: no host");
        }
        if !tls && !is_loopback(host) {
            bail!(
                "refusing `{shown}`: tokens go over https:// only (plain http:// is allowed to a \
                 loopback address)"
            );
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str)
                .to_owned(),
            text: raw.to_owned(),
        })
    }
}

/// `localhost`, or an IPv4 or IPv6 loopback address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Discovered {
    /// The issuer as the document names it (the audience of JWT-SVIDs sent to it).
    issuer: String,
    token_endpoint: HttpUrl,
    /// `mtls_endpoint_aliases.token_endpoint` (RFC 8705 §5), used with `--client-auth mtls`.
    mtls_token_endpoint: Option<HttpUrl>,
}

/// Reads `{issuer}/.well-known/openid-configuration`.
async fn discover(issuer: &str, roots: &[Vec<u8>]) -> anyhow::Result<Discovered> {
    let issuer_url = HttpUrl::parse(issuer)?;
    if issuer_url.path.contains('?') {
        bail!("invalid issuer `{}`: it has a query", printable(issuer));
    }
    let url = HttpUrl::parse(&format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    ))?;
    let tls = TlsClient {
        roots: roots.to_vec(),
        client_cert: None,
    };
    let response = tls
        .get(&url)
        .await
        .with_context(|| format!("OpenID discovery at {url}"))?;
    if response.status != StatusCode::OK {
        bail!(
            "OpenID discovery at {url}: the server answered {}",
            response.status
        );
    }
    parse_discovery(issuer, &response.body).with_context(|| format!("OpenID discovery at {url}"))
}

/// Checks a discovery document against the `issuer` it was fetched for and takes what a token
/// exchange needs from it.
fn parse_discovery(issuer: &str, body: &[u8]) -> anyhow::Result<Discovered> {
    let Ok(Value::Object(document)) = serde_json::from_slice::<Value>(body) else {
        bail!("the document is not a JSON object");
    };
    let named = document
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the document has no `issuer`"))?;
    if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
        bail!("the document is for issuer `{}`", printable(named));
    }
    let token_endpoint = document
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server has no `token_endpoint`"))?;
    let mtls_token_endpoint = document
        .get("mtls_endpoint_aliases")
        .and_then(|aliases| aliases.get("token_endpoint"))
        .and_then(Value::as_str)
        .map(HttpUrl::parse)
        .transpose()?;
    Ok(Discovered {
        issuer: named.to_owned(),
        token_endpoint: HttpUrl::parse(token_endpoint)?,
        mtls_token_endpoint,
    })
}

/// The JSON object of a successful token response, or the error the endpoint answered as one
/// line: `token exchange refused: <error>: <error_description>`.
fn token_response(response: &HttpResponse) -> anyhow::Result<Map<String, Value>> {
    let json = serde_json::from_slice::<Value>(&response.body).ok();
    if response.status.is_success() {
        let Some(Value::Object(answer)) = json else {
            bail!(
                "the token endpoint answered {} with a body that is not a JSON object",
                response.status
            );
        };
        match answer.get("access_token") {
            Some(Value::String(token)) if !token.is_empty() => Ok(answer),
            _ => bail!("the token endpoint's answer has no `access_token`"),
        }
    } else if let Some(error) = json
        .as_ref()
        .and_then(|body| body.get("error"))
        .and_then(Value::as_str)
    {
        let description = json
            .as_ref()
            .and_then(|body| body.get("error_description"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(|d| format!(": {}", printable(d)))
            .unwrap_or_default();
        bail!("token exchange refused: {}{description}", printable(error))
    } else {
        bail!("the token endpoint answered {}", response.status)
    }
}

/// `text` without control characters (a server's words cannot move the cursor or split our one
/// line), cut at [`MAX_SHOWN_CHARS`].
fn printable(text: &str) -> String {
    let mut shown: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_SHOWN_CHARS)
        .collect();
    if text
        .chars()
        .filter(|c| !c.is_control())
        .nth(MAX_SHOWN_CHARS)
        .is_some()
    {
        shown.push('…');
    }
    shown
}

/// Reads at most `limit` bytes of `reader`; more is an error.
fn read_bounded(reader: impl std::io::Read, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        bail!("it is larger than {} KiB", limit / 1024);
    }
    Ok(bytes)
}

/// The certificates of a PEM `--ca-file`.
fn read_roots(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let read = || -> anyhow::Result<Vec<Vec<u8>>> {
        let bytes = read_bounded(std::fs::File::open(path)?, MAX_CA_FILE_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| anyhow!("it is not PEM text"))?;
        let certs = sigil_keys::pem::decode_all(sigil_keys::pem::CERTIFICATE_LABEL, &text)?;
        if certs.is_empty() {
            bail!("it holds no PEM certificate");
        }
        Ok(certs)
    };
    read().with_context(|| format!("cannot read --ca-file {}", path.display()))
}

/// A JWT-SVID of this workload for `audience`: its SPIFFE ID and the token (the first identity's,
/// when the workload has several).
async fn fetch_jwt_svid(
    socket: Option<String>,
    audience: String,
) -> anyhow::Result<(String, String)> {
    let response = tokio::time::timeout(
        STEP_TIMEOUT,
        workload_cmd::fetch_jwt_svids(socket, vec![audience], None),
    )
    .await
    .map_err(|_| anyhow!("the Workload API did not answer within {STEP_TIMEOUT:?}"))??;
    let svid = response
        .svids
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the Workload API returned no JWT-SVID"))?;
    Ok((svid.spiffe_id, svid.svid))
}

/// The X509-SVID of this workload (the first identity's) as a TLS client certificate, and its
/// SPIFFE ID. Private keys are moved into zeroising buffers as soon as they arrive.
async fn fetch_x509_svid(socket: Option<String>) -> anyhow::Result<(String, Arc<LiveSvid>)> {
    let mut response = tokio::time::timeout(STEP_TIMEOUT, workload_cmd::fetch_x509_svids(socket))
        .await
        .map_err(|_| anyhow!("the Workload API did not answer within {STEP_TIMEOUT:?}"))??;
    let keys: Vec<Zeroizing<Vec<u8>>> = response
        .svids
        .iter_mut()
        .map(|svid| Zeroizing::new(std::mem::take(&mut svid.x509_svid_key)))
        .collect();
    let (Some(svid), Some(key)) = (response.svids.first(), keys.first()) else {
        bail!("the Workload API returned no X509-SVID");
    };
    let chain = workload_cmd::split_der_chain(&svid.x509_svid)?;
    let live = LiveSvid::new(&chain, key)
        .map_err(|e| anyhow!("the X509-SVID cannot be used as TLS client certificate: {e}"))?;
    Ok((svid.spiffe_id.clone(), Arc::new(live)))
}

/// An HTTP answer: status and body (at most [`MAX_RESPONSE_BYTES`]).
#[derive(Debug)]
struct HttpResponse {
    status: StatusCode,
    body: Bytes,
}

/// One-request HTTP/1.1 client: the server verified against `roots` (web PKI), presenting
/// `client_cert` when set.
struct TlsClient {
    roots: Vec<Vec<u8>>,
    client_cert: Option<Arc<LiveSvid>>,
}

impl TlsClient {
    async fn get(&self, url: &HttpUrl) -> anyhow::Result<HttpResponse> {
        let request = http::Request::get(url.path.as_str())
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))?;
        self.send(url, request).await
    }

    async fn post_form(&self, url: &HttpUrl, form: String) -> anyhow::Result<HttpResponse> {
        let request = http::Request::post(url.path.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))?;
        self.send(url, request).await
    }

    /// Sends `request` to `url`, all within [`STEP_TIMEOUT`]. Redirects are not followed.
    async fn send(
        &self,
        url: &HttpUrl,
        mut request: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<HttpResponse> {
        let headers = request.headers_mut();
        headers.insert(header::HOST, url.authority.parse()?);
        headers.insert(
            header::USER_AGENT,
            header::HeaderValue::from_static(concat!("sigil/", env!("CARGO_PKG_VERSION"))),
        );
        tokio::time::timeout(STEP_TIMEOUT, self.connect_and_send(url, request))
            .await
            .map_err(|_| anyhow!("no answer within {STEP_TIMEOUT:?}"))?
    }

    async fn connect_and_send(
        &self,
        url: &HttpUrl,
        request: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<HttpResponse> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", url.host, url.port))?;
        if !url.tls {
            return round_trip(tcp, request).await;
        }
        let mut config = sigil_tls::https_client_config(
            &HttpsServerAuth::WebPki(self.roots.clone()),
            TlsPolicy::default(),
        )?;
        if let Some(svid) = &self.client_cert {
            config.client_auth_cert_resolver = svid.clone();
        }
        let name = ServerName::try_from(url.host.clone())
            .map_err(|_| anyhow!("`{}` is not a valid TLS server name", url.host))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .context("TLS handshake failed")?;
        round_trip(tls, request).await
    }
}

/// Sends `request` on a fresh HTTP/1.1 connection over `io` and reads the answer.
async fn round_trip<S>(io: S, request: http::Request<Full<Bytes>>) -> anyhow::Result<HttpResponse>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    let connection = AbortOnDrop(tokio::spawn(connection));
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                anyhow!(
                    "the answer is larger than {} KiB",
                    MAX_RESPONSE_BYTES / 1024
                )
            } else {
                anyhow!("cannot read the answer: {e}")
            }
        })?
        .to_bytes();
    drop(connection);
    Ok(HttpResponse { status, body })
}

/// The connection task ends with the request, whichever way it ends (answer, error, timeout).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExchangeArgs,
    }

    fn parse(args: &[&str]) -> Result<ExchangeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("exchange").chain(args.iter().copied()))
            .map(|cli| cli.args)
    }

    fn pairs(body: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect()
    }

    fn form<'a>(subject: &'a str) -> ExchangeForm<'a> {
        ExchangeForm {
            subject_token: subject,
            subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
            actor: None,
            audiences: &[],
            resources: &[],
            scope: None,
            requested_token_type: None,
            client_id: None,
            client_assertion: None,
        }
    }

    #[test]
    fn minimal_exchange_defaults_to_no_client_auth_and_token_output() {
        let args = parse(&[
            "--server",
            "https://sigil.example",
            "--subject-token",
            "abc",
        ])
        .unwrap();
        assert_eq!(args.server.as_deref(), Some("https://sigil.example"));
        assert_eq!(args.subject_token, Some(TokenSource::Inline("abc".into())));
        assert_eq!(args.subject_token_type, None);
        assert_eq!(args.client_auth, ClientAuth::None);
        assert_eq!(args.output, ExchangeOutput::Token);
        assert!(args.audiences.is_empty());
    }

    #[test]
    fn parses_every_flag() {
        let args = parse(&[
            "--token-endpoint",
            "https://sigil.example/oauth2/token",
            "--subject-token",
            "@/tmp/subject.jwt",
            "--subject-token-type",
            "id_token",
            "--actor-token",
            "-",
            "--actor-token-type",
            "urn:example:token",
            "--audience",
            "a1",
            "--audience",
            "a2",
            "--resource",
            "https://api.example/",
            "--scope",
            "read write",
            "--requested-token-type",
            "jwt",
            "--client-auth",
            "jwt-svid",
            "--socket",
            "unix:///run/sigil.sock",
            "--ca-file",
            "ca.pem",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(
            args.subject_token,
            Some(TokenSource::File("/tmp/subject.jwt".into()))
        );
        assert_eq!(
            args.subject_token_type.as_deref(),
            Some("urn:ietf:params:oauth:token-type:id_token")
        );
        assert_eq!(args.actor_token, Some(TokenSource::Stdin));
        assert_eq!(args.actor_token_type.as_deref(), Some("urn:example:token"));
        assert_eq!(args.audiences, ["a1", "a2"]);
        assert_eq!(args.resources, ["https://api.example/"]);
        assert_eq!(args.scope.as_deref(), Some("read write"));
        assert_eq!(
            args.requested_token_type.as_deref(),
            Some("urn:ietf:params:oauth:token-type:jwt")
        );
        assert_eq!(args.client_auth, ClientAuth::JwtSvid);
        assert_eq!(args.socket.as_deref(), Some("unix:///run/sigil.sock"));
        assert_eq!(args.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(args.output, ExchangeOutput::Json);

        let args = parse(&[
            "--server",
            "https://s",
            "--subject-jwt-svid",
            "--client-auth",
            "mtls",
            "--requested-token-type",
            "access_token",
        ])
        .unwrap();
        assert!(args.subject_jwt_svid);
        assert_eq!(args.subject_token, None);
        assert_eq!(args.client_auth, ClientAuth::Mtls);
        assert_eq!(
            args.requested_token_type.as_deref(),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
    }

    #[test]
    fn refuses_missing_or_conflicting_sources() {
        // The positive case of each pair parses (above); each of these breaks one rule.
        for bad in [
            &["--subject-token", "t"][..],
            &["--server", "https://s"],
            &[
                "--server",
                "https://s",
                "--token-endpoint",
                "https://s/oauth2/token",
                "--subject-token",
                "t",
            ],
            &[
                "--server",
                "https://s",
                "--subject-token",
                "t",
                "--subject-jwt-svid",
            ],
            &[
                "--server",
                "https://s",
                "--subject-jwt-svid",
                "--subject-token-type",
                "jwt",
            ],
            &[
                "--server",
                "https://s",
                "--subject-token",
                "t",
                "--actor-token-type",
                "jwt",
            ],
            &[
                "--server",
                "https://s",
                "--subject-token",
                "t",
                "--subject-token-type",
                "saml",
            ],
            &[
                "--server",
                "https://s",
                "--subject-token",
                "t",
                "--client-auth",
                "basic",
            ],
            &["--server", "https://s", "--subject-token", "@"],
            &["--server", "https://s", "--subject-token", "  "],
            &[
                "--server",
                "https://s",
                "--subject-token",
                "t",
                "--output",
                "text",
            ],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn token_types_take_short_names_or_urns() {
        assert_eq!(
            token_type_urn("access_token").unwrap(),
            "urn:ietf:params:oauth:token-type:access_token"
        );
        assert_eq!(
            token_type_urn("urn:example:custom").unwrap(),
            "urn:example:custom"
        );
        assert!(token_type_urn("JWT").is_err());
        assert!(token_type_urn("urn:a b").is_err());
    }

    #[test]
    fn inline_tokens_are_redacted_in_debug_output() {
        let args = parse(&["--server", "https://s", "--subject-token", "secret-token"]).unwrap();
        let shown = format!("{args:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("Inline(<redacted>)"), "{shown}");
    }

    #[test]
    fn token_files_are_trimmed_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJ.a.b\n").unwrap();
        let source = TokenSource::File(path.clone());
        assert_eq!(source.read("--subject-token").unwrap(), "eyJ.a.b");

        std::fs::write(&path, "x".repeat(16 * 1024)).unwrap();
        assert_eq!(source.read("--subject-token").unwrap().len(), 16 * 1024);
        std::fs::write(&path, "x".repeat(16 * 1024 + 1)).unwrap();
        let err = format!("{:#}", source.read("--subject-token").unwrap_err());
        assert!(err.contains("larger than 16 KiB"), "{err}");

        std::fs::write(&path, "\n \n").unwrap();
        let err = format!("{:#}", source.read("--subject-token").unwrap_err());
        assert!(err.contains("is empty"), "{err}");
        let err = format!(
            "{:#}",
            TokenSource::File(dir.path().join("missing"))
                .read("--actor-token")
                .unwrap_err()
        );
        assert!(err.starts_with("cannot read --actor-token file"), "{err}");
    }

    #[test]
    fn form_repeats_audience_and_resource_in_order() {
        let audiences = ["https://a.example".to_owned(), "b".to_owned()];
        let resources = ["https://r1/".to_owned(), "https://r2/".to_owned()];
        let body = ExchangeForm {
            audiences: &audiences,
            resources: &resources,
            scope: Some("read write"),
            requested_token_type: Some("urn:ietf:params:oauth:token-type:jwt"),
            actor: Some(("actor.jwt", "urn:ietf:params:oauth:token-type:jwt")),
            ..form("subject.jwt")
        }
        .encode();
        let pairs = pairs(&body);
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "grant_type",
                "subject_token",
                "subject_token_type",
                "actor_token",
                "actor_token_type",
                "audience",
                "audience",
                "resource",
                "resource",
                "scope",
                "requested_token_type"
            ]
        );
        assert_eq!(pairs[0].1, GRANT_TYPE_TOKEN_EXCHANGE);
        assert_eq!(pairs[5].1, "https://a.example");
        assert_eq!(pairs[6].1, "b");
        assert!(body.contains("&scope=read+write&"), "{body}");
        assert!(
            body.starts_with(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&"
            )
        );
    }

    #[test]
    fn form_percent_encodes_plus_ampersand_and_equals_in_tokens() {
        let token = "a+b&c=d/e f";
        let body = ExchangeForm {
            client_id: Some("spiffe://example.org/w"),
            client_assertion: Some("x+y=="),
            ..form(token)
        }
        .encode();
        assert!(
            body.contains("&subject_token=a%2Bb%26c%3Dd%2Fe+f&"),
            "{body}"
        );
        assert!(body.contains("&client_assertion=x%2By%3D%3D"), "{body}");
        assert!(
            body.contains(
                "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-spiffe&"
            ),
            "{body}"
        );
        let pairs = pairs(&body);
        assert!(pairs.contains(&("subject_token".into(), token.into())));
        assert!(pairs.contains(&("client_id".into(), "spiffe://example.org/w".into())));
        assert!(pairs.contains(&("client_assertion".into(), "x+y==".into())));
        // Without client authentication, none of its fields is sent.
        let plain = form(token).encode();
        assert!(!plain.contains("client_"), "{plain}");
    }

    #[test]
    fn urls_must_be_https_except_to_loopback() {
        let url = HttpUrl::parse("https://sigil.example:8443/oauth2/token?x=1").unwrap();
        assert!(url.tls);
        assert_eq!(url.host, "sigil.example");
        assert_eq!(url.port, 8443);
        assert_eq!(url.authority, "sigil.example:8443");
        assert_eq!(url.path, "/oauth2/token?x=1");
        assert_eq!(HttpUrl::parse("https://sigil.example").unwrap().port, 443);
        assert_eq!(HttpUrl::parse("https://sigil.example").unwrap().path, "/");
        let v6 = HttpUrl::parse("http://[::1]:8080/t").unwrap();
        assert_eq!((v6.tls, v6.host.as_str(), v6.port), (false, "::1", 8080));
        assert_eq!(HttpUrl::parse("http://127.0.0.2/").unwrap().port, 80);
        assert!(HttpUrl::parse("http://LOCALHOST:1/").is_ok());

        for bad in [
            "http://sigil.example/oauth2/token",
            "http://10.0.0.1/",
            "http://localhost.evil.example/",
            "ftp://sigil.example/",
            "https://user:pw@sigil.example/",
            "https://sigil.example/#frag",
            "sigil.example/oauth2/token",
            "https:///path",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad} parsed");
        }
        let err = HttpUrl::parse("http://sigil.example/")
            .unwrap_err()
            .to_string();
        assert!(err.contains("https:// only"), "{err}");
    }

    #[test]
    fn discovery_document_must_name_the_issuer_it_was_fetched_for() {
        let doc = br#"{"issuer": "https://sigil.example", "token_endpoint": "https://sigil.example/oauth2/token",
            "mtls_endpoint_aliases": {"token_endpoint": "https://mtls.sigil.example/oauth2/token"}}"#;
        let found = parse_discovery("https://sigil.example/", doc).unwrap();
        assert_eq!(found.issuer, "https://sigil.example");
        assert_eq!(found.token_endpoint.host, "sigil.example");
        assert_eq!(
            found.mtls_token_endpoint.map(|u| u.host).as_deref(),
            Some("mtls.sigil.example")
        );
        let err = parse_discovery("https://other.example", doc)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the document is for issuer `https://sigil.example`");
        let plain =
            br#"{"issuer": "https://sigil.example", "token_endpoint": "http://sigil.example/t"}"#;
        assert!(parse_discovery("https://sigil.example", plain).is_err());
        assert!(parse_discovery("https://sigil.example", b"[]").is_err());
    }

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn oauth_errors_become_one_line() {
        let ok = token_response(&answer(
            200,
            r#"{"access_token":"t","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","token_type":"Bearer","expires_in":300}"#,
        ))
        .unwrap();
        assert_eq!(ok.get("access_token"), Some(&Value::from("t")));

        let err = token_response(&answer(
            400,
            r#"{"error":"invalid_request","error_description":"missing `subject_token`"}"#,
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "token exchange refused: invalid_request: missing `subject_token`"
        );
        let err = token_response(&answer(401, r#"{"error":"invalid_client"}"#)).unwrap_err();
        assert_eq!(err.to_string(), "token exchange refused: invalid_client");
        let err = token_response(&answer(
            400,
            "{\"error\":\"invalid_grant\",\"error_description\":\"bad\\u001b[2J\\nline\"}",
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "token exchange refused: invalid_grant: bad[2Jline"
        );
        let err = token_response(&answer(502, "<html>bad gateway</html>")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the token endpoint answered 502 Bad Gateway"
        );
        assert!(token_response(&answer(200, r#"{"token_type":"Bearer"}"#)).is_err());
        assert!(token_response(&answer(200, "not json")).is_err());
        assert_eq!(
            printable(&"é".repeat(400)).chars().count(),
            MAX_SHOWN_CHARS + 1
        );
    }

    /// A one-shot HTTP/1.1 server on loopback: answers `response` to the first request and hands
    /// back what it received.
    async fn one_shot_server(response: String) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                received.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&received).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .map_or(0, |l| l.trim().parse::<usize>().unwrap());
                    if body.len() >= length {
                        break;
                    }
                }
                assert!(n > 0, "connection closed early");
            }
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            String::from_utf8(received).unwrap()
        });
        (port, task)
    }

    #[tokio::test]
    async fn posts_the_form_to_a_loopback_endpoint() {
        let (port, server) = one_shot_server(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncache-control: no-store\r\ncontent-length: 60\r\n\r\n{\"error\":\"invalid_target\",\"error_description\":\"no such aud\"}"
                .to_owned(),
        )
        .await;
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/oauth2/token")).unwrap();
        let client = TlsClient {
            roots: Vec::new(),
            client_cert: None,
        };
        let body = form("a+b").encode();
        let response = client.post_form(&url, body.clone()).await.unwrap();
        let err = token_response(&response).unwrap_err().to_string();
        let received = server.await.unwrap();
        assert!(
            received.starts_with("POST /oauth2/token HTTP/1.1\r\n"),
            "{received}"
        );
        let lower = received.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{received}"
        );
        assert!(
            lower.contains("\r\ncontent-type: application/x-www-form-urlencoded\r\n"),
            "{received}"
        );
        assert!(received.ends_with(&format!("\r\n\r\n{body}")), "{received}");
        assert_eq!(err, "token exchange refused: invalid_target: no such aud");
    }

    #[tokio::test]
    async fn oversized_answers_are_refused() {
        let body = "x".repeat(MAX_RESPONSE_BYTES + 1);
        let (port, _server) = one_shot_server(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let url = HttpUrl::parse(&format!("http://localhost:{port}/")).unwrap();
        let client = TlsClient {
            roots: Vec::new(),
            client_cert: None,
        };
        let err = client.get(&url).await.unwrap_err().to_string();
        assert_eq!(err, "the answer is larger than 64 KiB");
    }
}
