//! `sigil server run -c server.toml`: the server's configuration file (raw TOML, then validated
//! into `sigil_server::ServerConfig`) and the run loop that stops cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;
use sigil_server::ServerConfig;
use sigil_server::agent_api::IssuanceDefaults;
use sigil_server::ca::CaLifetimes;
use sigil_spiffe::{Clock, SystemClock, TrustDomain, Ttl};

use crate::pem_files::UpstreamFiles;

/// Largest configuration file read, in bytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerFile {
    server: RawServer,
    #[serde(default)]
    ca: RawCa,
    #[serde(default)]
    datastore: RawDatastore,
    #[serde(default)]
    tls: RawTls,
    public: Option<RawPublic>,
    #[serde(default)]
    federation: Vec<RawFederation>,
    oauth: Option<crate::oauth_config::RawOAuth>,
    policy: Option<RawPolicy>,
    #[serde(default)]
    audit: crate::governance_config::RawAudit,
    #[serde(default)]
    inventory: crate::governance_config::RawInventory,
    #[serde(default)]
    credentials: crate::credentials_config::RawCredentials,
}

/// `[policy]`: Cedar policies deciding issuance, token exchange and `/authz/v1/decide`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// The directory of `*.cedar` policies and `*.cedarschema` fragments.
    dir: PathBuf,
}

/// `[[federation]]`: a foreign trust domain whose bundle this server fetches and trusts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    trust_domain: String,
    bundle_endpoint_url: String,
    /// `https_web` or `https_spiffe`.
    profile: String,
    /// The SPIFFE ID the endpoint presents (https_spiffe).
    endpoint_spiffe_id: Option<String>,
    /// PEM X.509 authorities of the peer to trust until the first refresh (https_spiffe).
    bootstrap_bundle_file: Option<PathBuf>,
    /// The team or contact accountable for the relationship (required; `Option` so that its
    /// absence gets an error naming the relationship).
    owner: Option<String>,
}

/// A configured federation relationship, before its bootstrap file is read.
#[derive(Debug, Clone)]
pub struct FederationFiles {
    pub relationship: sigil_store::NewFederationRelationship,
    pub bootstrap_bundle_file: Option<PathBuf>,
}

impl FederationFiles {
    fn from_raw(raw: RawFederation, own: &TrustDomain) -> anyhow::Result<Self> {
        let td = TrustDomain::parse(&raw.trust_domain).map_err(|e| {
            anyhow::anyhow!(
                "invalid federation.trust_domain `{}`: {e}",
                raw.trust_domain
            )
        })?;
        if td == *own {
            bail!("federation.trust_domain `{td}` is this server's own trust domain");
        }
        let profile = sigil_store::BundleEndpointProfile::parse(&raw.profile).ok_or_else(|| {
            anyhow::anyhow!(
                "unsupported federation.profile `{}` for `{td}` (supported: `https_web`, `https_spiffe`)",
                raw.profile
            )
        })?;
        let endpoint_spiffe_id = raw
            .endpoint_spiffe_id
            .as_deref()
            .map(|id| {
                sigil_spiffe::SpiffeId::parse(id).map_err(|e| {
                    anyhow::anyhow!("invalid federation.endpoint_spiffe_id `{id}` for `{td}`: {e}")
                })
            })
            .transpose()?;
        let owner = required_owner(raw.owner, &format!("federation with `{td}`"))?;
        let relationship = sigil_store::NewFederationRelationship {
            trust_domain: td.clone(),
            bundle_endpoint_url: raw.bundle_endpoint_url,
            profile,
            endpoint_spiffe_id,
            owner,
        };
        relationship
            .validate()
            .map_err(|e| anyhow::anyhow!("federation with `{td}`: {e}"))?;
        Ok(Self {
            relationship,
            bootstrap_bundle_file: raw.bootstrap_bundle_file,
        })
    }

    fn load(&self) -> anyhow::Result<sigil_server::federation::ConfiguredFederation> {
        let bootstrap_roots = match &self.bootstrap_bundle_file {
            Some(path) => crate::pem_files::certificates(path, "federation.bootstrap_bundle_file")?,
            None => Vec::new(),
        };
        Ok(sigil_server::federation::ConfiguredFederation {
            relationship: self.relationship.clone(),
            bootstrap_roots,
        })
    }
}

/// The `owner` of a configured thing (`what` names it in errors: "federation with `td`"): the
/// team or contact accountable for it. Fails with one line when it is absent, blank, longer
/// than [`sigil_store::MAX_OWNER_BYTES`] or holds a control character.
pub(crate) fn required_owner(owner: Option<String>, what: &str) -> anyhow::Result<String> {
    let Some(owner) = owner else {
        bail!("{what} has no owner: set `owner` to the team or contact accountable for it");
    };
    if owner.trim().is_empty() {
        bail!("{what} has a blank owner: name the team or contact accountable for it");
    }
    if owner.len() > sigil_store::MAX_OWNER_BYTES {
        bail!(
            "{what} has an owner longer than {} bytes",
            sigil_store::MAX_OWNER_BYTES
        );
    }
    if owner.chars().any(char::is_control) {
        bail!("{what} has an owner holding a control character");
    }
    Ok(owner)
}

/// `[public]`: the public listener (bundle endpoint, OIDC discovery, health, metrics).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPublic {
    bind_address: String,
    /// `svid` (the server's own SVID; bundle profile https_spiffe) or `files` (https_web).
    tls: String,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// The OIDC issuer URL (`https://…`); JWT-SVIDs carry it as `iss`.
    issuer: Option<String>,
}

/// Longest OIDC issuer URL accepted.
const MAX_ISSUER_LEN: usize = 2048;

/// Where the public listener is and what it presents, before its files are read.
#[derive(Debug, Clone)]
pub struct PublicFiles {
    pub bind_address: SocketAddr,
    /// `None`: the server's SVID; else the certificate and key files.
    pub files: Option<(PathBuf, PathBuf)>,
    pub issuer: Option<String>,
}

impl PublicFiles {
    fn from_raw(raw: RawPublic) -> anyhow::Result<Self> {
        let bind_address: SocketAddr = raw.bind_address.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid public.bind_address `{}`: expected ip:port",
                raw.bind_address
            )
        })?;
        let files = match (raw.tls.as_str(), raw.cert_file, raw.key_file) {
            ("svid", None, None) => None,
            ("svid", _, _) => {
                bail!("public.cert_file and public.key_file apply to tls = \"files\" only")
            }
            ("files", Some(cert), Some(key)) => Some((cert, key)),
            ("files", _, _) => {
                bail!("public.tls = \"files\" needs public.cert_file and public.key_file")
            }
            (other, _, _) => bail!("unsupported public.tls `{other}` (supported: `svid`, `files`)"),
        };
        if let Some(issuer) = &raw.issuer {
            check_issuer(issuer)?;
        }
        Ok(Self {
            bind_address,
            files,
            issuer: raw.issuer,
        })
    }

    /// Reads the certificate files, if any.
    fn load(&self) -> anyhow::Result<sigil_server::public::PublicConfig> {
        use sigil_server::public::PublicTls;
        let tls = match &self.files {
            None => PublicTls::Svid,
            Some((cert, key)) => PublicTls::Files {
                chain: crate::pem_files::certificates(cert, "public.cert_file")?,
                key_pkcs8: Arc::new(crate::pem_files::pkcs8_der(key, "public.key_file")?),
            },
        };
        Ok(sigil_server::public::PublicConfig {
            bind_address: self.bind_address,
            tls,
            issuer: self.issuer.clone(),
        })
    }
}

/// An OIDC issuer must be an `https` URL without query or fragment (OpenID Connect Discovery
/// §3), at most 2048 characters.
fn check_issuer(issuer: &str) -> anyhow::Result<()> {
    let shown = || issuer.chars().take(80).collect::<String>();
    if issuer.len() > MAX_ISSUER_LEN {
        bail!("public.issuer is longer than {MAX_ISSUER_LEN} characters");
    }
    let Some(rest) = issuer.strip_prefix("https://") else {
        bail!(
            "invalid public.issuer `{}`: an https:// URL is required",
            shown()
        );
    };
    if rest.is_empty()
        || rest.starts_with('/')
        || rest.contains(['?', '#', ' '])
        || rest.chars().any(char::is_control)
    {
        bail!(
            "invalid public.issuer `{}`: expected https://host[:port][/path], without query or fragment",
            shown()
        );
    }
    Ok(())
}

/// `[tls]` of the server and agent files: the part of the TLS policy an operator may change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    #[serde(default = "default_post_quantum")]
    post_quantum: bool,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            post_quantum: default_post_quantum(),
        }
    }
}

impl RawTls {
    pub(crate) fn policy(&self) -> sigil_tls::TlsPolicy {
        sigil_tls::TlsPolicy {
            post_quantum: self.post_quantum,
        }
    }
}

fn default_post_quantum() -> bool {
    sigil_tls::TlsPolicy::default().post_quantum
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    trust_domain: String,
    /// This server's name among replicas sharing one PostgreSQL datastore; empty for one server.
    #[serde(default)]
    replica_id: String,
    #[serde(default = "default_bind")]
    bind_address: String,
    data_dir: PathBuf,
    admin_socket_path: Option<PathBuf>,
    #[serde(default = "default_x509_ttl")]
    default_x509_svid_ttl: String,
    #[serde(default = "default_jwt_ttl")]
    default_jwt_svid_ttl: String,
    #[serde(default = "default_agent_ttl")]
    agent_svid_ttl: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    #[serde(default = "default_ca_ttl")]
    ca_ttl: String,
    #[serde(default = "default_root_ttl")]
    root_ca_ttl: String,
    #[serde(default = "default_ca_ttl")]
    jwt_key_ttl: String,
    #[serde(default = "default_refresh_hint")]
    bundle_refresh_hint: String,
    /// PEM certificates of the upstream authority that signs this replica's roots.
    upstream_cert_file: Option<PathBuf>,
    /// Its PEM PKCS#8 P-256 private key (mode 0600).
    upstream_key_file: Option<PathBuf>,
    /// PEM trust anchors to publish in its place; default: the root its cert file ends in.
    upstream_bundle_file: Option<PathBuf>,
}

impl Default for RawCa {
    fn default() -> Self {
        Self {
            ca_ttl: default_ca_ttl(),
            root_ca_ttl: default_root_ttl(),
            jwt_key_ttl: default_ca_ttl(),
            bundle_refresh_hint: default_refresh_hint(),
            upstream_cert_file: None,
            upstream_key_file: None,
            upstream_bundle_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatastore {
    /// `sqlite` (the default) or `postgres`.
    #[serde(default)]
    kind: Option<String>,
    /// SQLite file; default `<data_dir>/datastore.sqlite3`.
    path: Option<PathBuf>,
    /// PostgreSQL connection string, without a password.
    url: Option<String>,
    /// File holding the PostgreSQL password (its first line).
    password_file: Option<PathBuf>,
    /// Environment variable holding the PostgreSQL password.
    password_env: Option<String>,
    /// Most pooled PostgreSQL connections.
    pool_size: Option<usize>,
}

/// Where the datastore lives.
#[derive(Debug, Clone)]
pub enum DatastoreConfig {
    /// An SQLite file.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database shared by every server replica; the password is read at start.
    Postgres {
        url: String,
        password: Option<PasswordSource>,
        pool_size: usize,
    },
}

/// Where the PostgreSQL password comes from (never the configuration file itself).
#[derive(Debug, Clone)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

/// Largest password file read, in bytes.
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

impl DatastoreConfig {
    fn from_raw(raw: RawDatastore, data_dir: &Path) -> anyhow::Result<Self> {
        match raw.kind.as_deref().unwrap_or("sqlite") {
            "sqlite" => {
                for (field, given) in [
                    ("url", raw.url.is_some()),
                    ("password_file", raw.password_file.is_some()),
                    ("password_env", raw.password_env.is_some()),
                    ("pool_size", raw.pool_size.is_some()),
                ] {
                    if given {
                        bail!("datastore.{field} applies to kind = \"postgres\" only");
                    }
                }
                Ok(Self::Sqlite {
                    path: raw
                        .path
                        .unwrap_or_else(|| data_dir.join("datastore.sqlite3")),
                })
            }
            "postgres" => {
                if raw.path.is_some() {
                    bail!("datastore.path applies to kind = \"sqlite\" only");
                }
                let url = raw
                    .url
                    .ok_or_else(|| anyhow::anyhow!("datastore.url is required for postgres"))?;
                if url_has_password(&url) {
                    bail!(
                        "datastore.url must not hold a password: put it in datastore.password_file or datastore.password_env"
                    );
                }
                let password = match (raw.password_file, raw.password_env) {
                    (Some(_), Some(_)) => {
                        bail!("give datastore.password_file or datastore.password_env, not both")
                    }
                    (Some(path), None) => Some(PasswordSource::File(path)),
                    (None, Some(var)) => Some(PasswordSource::Env(var)),
                    (None, None) => None,
                };
                let pool_size = raw
                    .pool_size
                    .unwrap_or(sigil_store::postgres::DEFAULT_POOL_SIZE);
                if pool_size == 0 || pool_size > sigil_store::postgres::MAX_POOL_SIZE {
                    bail!(
                        "invalid datastore.pool_size {pool_size}: expected 1 to {}",
                        sigil_store::postgres::MAX_POOL_SIZE
                    );
                }
                Ok(Self::Postgres {
                    url,
                    password,
                    pool_size,
                })
            }
            other => {
                bail!("unsupported datastore.kind `{other}` (supported: `sqlite`, `postgres`)")
            }
        }
    }

    /// Opens the datastore: the SQLite file (created if missing), or a connection pool to
    /// PostgreSQL with the password read now. Migrations run in both cases.
    async fn open(&self) -> anyhow::Result<Arc<dyn sigil_store::Datastore>> {
        match self {
            Self::Sqlite { path } => {
                let owned = path.clone();
                let store =
                    tokio::task::spawn_blocking(move || sigil_store::SqliteStore::open(&owned))
                        .await
                        .context("datastore open task failed")?
                        .with_context(|| {
                            format!("cannot open datastore sqlite://{}", path.display())
                        })?;
                Ok(Arc::new(store))
            }
            Self::Postgres {
                url,
                password,
                pool_size,
            } => {
                let mut config = sigil_store::PostgresConfig::new(url.clone());
                config.pool_size = *pool_size;
                config.password = password.as_ref().map(read_password).transpose()?;
                let store = sigil_store::PostgresStore::connect(&config)
                    .await
                    .context("cannot open the PostgreSQL datastore")?;
                Ok(Arc::new(store))
            }
        }
    }
}

/// Whether a connection string carries a password (`postgres://user:secret@…` or
/// `password=…`).
fn url_has_password(url: &str) -> bool {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        return authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
            || rest.contains("password=");
    }
    url.split_whitespace()
        .any(|pair| pair.trim_start().starts_with("password="))
}

/// The password from its source: the first line of the file (at most 4 KiB), or the variable.
fn read_password(source: &PasswordSource) -> anyhow::Result<sigil_store::PostgresPassword> {
    let text = match source {
        PasswordSource::File(path) => {
            use std::io::Read;
            let file = std::fs::File::open(path).with_context(|| {
                format!("cannot open datastore.password_file {}", path.display())
            })?;
            let mut text = String::new();
            file.take(MAX_PASSWORD_FILE_BYTES + 1)
                .read_to_string(&mut text)
                .with_context(|| {
                    format!("cannot read datastore.password_file {}", path.display())
                })?;
            if text.len() as u64 > MAX_PASSWORD_FILE_BYTES {
                bail!(
                    "datastore.password_file {} is larger than 4 KiB",
                    path.display()
                );
            }
            text.lines().next().unwrap_or_default().to_owned()
        }
        PasswordSource::Env(var) => std::env::var(var).map_err(|_| {
            anyhow::anyhow!("datastore.password_env names `{var}`, which is not set (or not UTF-8)")
        })?,
    };
    if text.is_empty() {
        bail!("the datastore password is empty");
    }
    Ok(sigil_store::PostgresPassword::new(text))
}

fn default_bind() -> String {
    "0.0.0.0:8081".into()
}
fn default_x509_ttl() -> String {
    "1h".into()
}
fn default_jwt_ttl() -> String {
    "5m".into()
}
fn default_agent_ttl() -> String {
    "1h".into()
}
fn default_ca_ttl() -> String {
    "24h".into()
}
fn default_root_ttl() -> String {
    "365d".into()
}
fn default_refresh_hint() -> String {
    "5m".into()
}

/// A validated server configuration plus where its datastore lives.
#[derive(Debug, Clone)]
pub struct LoadedServerConfig {
    pub server: ServerConfig,
    /// The upstream authority's files, read at start into `server.upstream`.
    pub upstream: Option<UpstreamFiles>,
    /// The public listener, its files read at start into `server.public`.
    pub public: Option<PublicFiles>,
    /// The configured federation relationships, their files read at start.
    pub federations: Vec<FederationFiles>,
    /// Token exchange, its files read at start.
    pub oauth: Option<crate::oauth_config::OAuthFiles>,
    pub datastore: DatastoreConfig,
    pub data_dir: PathBuf,
}

pub(crate) fn ttl(field: &str, value: &str) -> anyhow::Result<u64> {
    Ttl::parse(value)
        .map(Ttl::as_secs)
        .map_err(|e| anyhow::anyhow!("invalid {field} `{value}`: {e}"))
}

/// Reads a file of at most [`MAX_CONFIG_BYTES`].
pub fn read_config_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open configuration file {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read configuration file {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        bail!("configuration file {} is larger than 1 MiB", path.display());
    }
    Ok(text)
}

/// Parses and validates server configuration text.
pub fn parse_server_config(text: &str) -> anyhow::Result<LoadedServerConfig> {
    let raw: RawServerFile = toml::from_str(text)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().lines().collect::<Vec<_>>().join(" ")))?;
    let trust_domain = TrustDomain::parse(&raw.server.trust_domain).map_err(|e| {
        anyhow::anyhow!(
            "invalid server.trust_domain `{}`: {e}",
            raw.server.trust_domain
        )
    })?;
    let bind_address: SocketAddr = raw.server.bind_address.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid server.bind_address `{}`: expected ip:port",
            raw.server.bind_address
        )
    })?;
    let data_dir = raw.server.data_dir.clone();
    let datastore = DatastoreConfig::from_raw(raw.datastore, &data_dir)?;
    let replica_id = raw.server.replica_id;
    if replica_id.len() > 64
        || !replica_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!(
            "invalid server.replica_id `{}`: expected up to 64 lowercase letters, digits or `-`",
            replica_id.chars().take(80).collect::<String>()
        );
    }
    let ca = CaLifetimes {
        root_ttl: ttl("ca.root_ca_ttl", &raw.ca.root_ca_ttl)?,
        intermediate_ttl: ttl("ca.ca_ttl", &raw.ca.ca_ttl)?,
        jwt_key_ttl: ttl("ca.jwt_key_ttl", &raw.ca.jwt_key_ttl)?,
        bundle_refresh_hint: ttl("ca.bundle_refresh_hint", &raw.ca.bundle_refresh_hint)?,
    };
    if ca.intermediate_ttl > ca.root_ttl {
        bail!("ca.ca_ttl must not exceed ca.root_ca_ttl");
    }
    let upstream = UpstreamFiles::from_config(
        raw.ca.upstream_cert_file,
        raw.ca.upstream_key_file,
        raw.ca.upstream_bundle_file,
    )?;
    let issuance = IssuanceDefaults {
        agent_svid_ttl: ttl("server.agent_svid_ttl", &raw.server.agent_svid_ttl)?,
        x509_svid_ttl: ttl(
            "server.default_x509_svid_ttl",
            &raw.server.default_x509_svid_ttl,
        )?,
        jwt_svid_ttl: ttl(
            "server.default_jwt_svid_ttl",
            &raw.server.default_jwt_svid_ttl,
        )?,
    };
    let federations = raw
        .federation
        .into_iter()
        .map(|f| FederationFiles::from_raw(f, &trust_domain))
        .collect::<anyhow::Result<_>>()?;
    let oauth = raw
        .oauth
        .map(|o| crate::oauth_config::OAuthFiles::from_raw(o, &trust_domain))
        .transpose()?;
    if oauth.is_some() && raw.public.as_ref().is_none_or(|p| p.issuer.is_none()) {
        bail!("[oauth] needs the public listener with an issuer URL ([public] issuer)");
    }
    let audit = raw.audit.into_config(&data_dir)?;
    let inventory = raw.inventory.into_config()?;
    let credentials = raw.credentials.into_config()?;
    Ok(LoadedServerConfig {
        server: ServerConfig {
            trust_domain,
            replica_id,
            bind_address,
            admin_socket: raw
                .server
                .admin_socket_path
                .unwrap_or_else(|| data_dir.join("admin.sock")),
            key_dir: data_dir.join("keys"),
            ca,
            upstream: None,
            issuance,
            tls: raw.tls.policy(),
            federations: Vec::new(),
            federation_web_roots: None,
            policy_dir: raw.policy.map(|p| p.dir),
            audit,
            inventory,
            credentials,
            oauth: None,
            public: None,
        },
        upstream,
        public: raw.public.map(PublicFiles::from_raw).transpose()?,
        federations,
        oauth,
        datastore,
        data_dir,
    })
}

/// Creates `dir` (and parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))
}

/// Opens the datastore and key manager and starts the server.
pub async fn start(
    config: &LoadedServerConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<sigil_server::ServerHandle> {
    create_private_dir(&config.data_dir)?;
    create_private_dir(&config.server.key_dir)?;
    let mut server = config.server.clone();
    server.upstream = config
        .upstream
        .as_ref()
        .map(|files| files.load(clock.now()))
        .transpose()?;
    if let Some(public) = &config.public {
        server.public = Some(public.load()?);
    }
    if let Some(oauth) = &config.oauth {
        server.oauth = Some(oauth.load()?);
    }
    server.federations = config
        .federations
        .iter()
        .map(FederationFiles::load)
        .collect::<anyhow::Result<_>>()?;
    let store = config.datastore.open().await?;
    let keys = sigil_keys::DiskKeyManager::new(config.server.key_dir.clone());
    sigil_server::start(server, store, Arc::new(keys), clock)
        .await
        .context("cannot start the server")
}

/// Resolves when the process receives Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Runs the server described by the TOML file at `config_path`.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let text = read_config_file(config_path)?;
    let config = parse_server_config(&text)
        .with_context(|| format!("invalid configuration {}", config_path.display()))?;
    let mut server = start(&config, Arc::new(SystemClock)).await?;
    eprintln!(
        "sigil server: trust domain {}, agent API on {}, admin API on {}",
        server.trust_domain,
        server.agent_api_addr,
        config.server.admin_socket.display()
    );
    // SIGHUP reloads the policy directory (an invalid set is logged and the one in force stays).
    let policies = server.policies.clone();
    let reload_on_hup = async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return std::future::pending().await;
        };
        while hup.recv().await.is_some() {
            let policies = policies.clone();
            let _ = tokio::task::spawn_blocking(move || policies.reload()).await;
        }
    };
    tokio::select! {
        () = shutdown_signal() => {}
        () = reload_on_hup => {}
        () = server.wait_any() => {
            tracing::error!("a server task stopped unexpectedly; shutting down");
        }
    }
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example_config_parses_with_every_option() {
        let text = include_str!("../../../conf/server.full.toml");
        let c = parse_server_config(text).unwrap();
        assert_eq!(c.server.trust_domain.as_str(), "example.org");
        assert_eq!(c.server.bind_address.port(), 8081);
        assert_eq!(c.server.ca.intermediate_ttl, 24 * 3600);
        assert_eq!(c.server.ca.root_ttl, 365 * 24 * 3600);
        assert_eq!(c.server.issuance.jwt_svid_ttl, 300);
        assert!(c.server.tls.post_quantum);
        assert!(matches!(
            c.datastore,
            DatastoreConfig::Sqlite { ref path } if path.as_path() == Path::new("/var/lib/sigil/server/datastore.sqlite3")
        ));
    }

    /// The commented-out table of `conf/server.full.toml` that starts with `# {header}`, up to
    /// the first line that is empty or a bare `#`, uncommented.
    fn documented_table(header: &str) -> String {
        let text = include_str!("../../../conf/server.full.toml");
        let start = text.find(&format!("# {header}\n")).unwrap();
        text[start..]
            .lines()
            .take_while(|line| !line.is_empty() && *line != "#")
            .map(|line| format!("{}\n", line.strip_prefix("# ").unwrap_or(line)))
            .collect()
    }

    #[test]
    fn documented_federation_and_issuer_tables_parse_with_their_owners() {
        let server = "[server]\ntrust_domain = \"example.org\"\ndata_dir = \"/x\"\n[public]\nbind_address = \"127.0.0.1:8443\"\ntls = \"svid\"\nissuer = \"https://sigil.example.org\"\n";
        // Without its CA file, which this machine does not have, so its files can be read.
        let issuer: String = documented_table("[[oauth.issuer]]")
            .lines()
            .filter(|line| !line.starts_with("ca_file"))
            .map(|line| format!("{line}\n"))
            .collect();
        let text = format!(
            "{server}{}[oauth]\n{issuer}",
            documented_table("[[federation]]"),
        );
        let c = parse_server_config(&text).unwrap();
        assert_eq!(
            c.federations[0].relationship.owner,
            "identity-team@example.org"
        );
        let oauth = c.oauth.unwrap().load().unwrap();
        assert_eq!(oauth.issuers[0].owner, "ci-platform-team");
    }

    const BASE: &str = "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n[datastore]\n";
    const SERVER: &str = "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n";

    #[test]
    fn oauth_takes_issuers_and_federated_domains_and_needs_an_issuer_url() {
        let public = "[public]\nbind_address = \"127.0.0.1:8443\"\ntls = \"svid\"\nissuer = \"https://sigil.example.org\"\n";
        let issuer = "[[oauth.issuer]]\nissuer = \"https://ci.example\"\nowner = \"team-ci\"\naudiences = [\"https://sigil.example.org\"]\nattributes = { repo = \"repository_id\" }\nspiffe_id = \"spiffe://td/ci/{repo}\"\nalgorithms = [\"RS256\"]\n";
        let c = parse_server_config(&format!(
            "{SERVER}{public}[oauth]\nscopes = [\"read\"]\naccess_token_ttl = \"2m\"\n{issuer}[[oauth.federated]]\ntrust_domain = \"partner.example\"\n"
        ))
        .unwrap();
        let oauth = c.oauth.unwrap().load().unwrap();
        assert_eq!(oauth.access_token_ttl, 120);
        assert_eq!(oauth.scopes, ["read"]);
        assert_eq!(oauth.issuers.len(), 1);
        assert!(matches!(
            oauth.issuers[0].keys,
            sigil_server::oauth::KeySource::Discovery
        ));
        assert_eq!(oauth.federated[0].trust_domain.as_str(), "partner.example");

        for (text, needle) in [
            (format!("{SERVER}[oauth]\n"), "needs the public listener"),
            (
                format!(
                    "{SERVER}{public}[oauth]\n{}",
                    issuer.replace("spiffe://td/", "spiffe://other/")
                ),
                "spiffe_id",
            ),
            (
                format!(
                    "{SERVER}{public}[oauth]\n{}",
                    issuer.replace("RS256", "HS256")
                ),
                "`HS256` is not accepted",
            ),
            (
                format!("{SERVER}{public}[oauth]\naccess_token_ttl = \"48h\"\n"),
                "longer than 24h",
            ),
            (
                format!("{SERVER}{public}[oauth]\n[[oauth.federated]]\ntrust_domain = \"td\"\n"),
                "own trust domain",
            ),
        ] {
            let err = parse_server_config(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "`{err}` lacks `{needle}`");
        }
    }

    #[test]
    fn a_condition_is_refused_with_a_pointer_to_the_cedar_policies_that_replaced_it() {
        let public = "[public]\nbind_address = \"127.0.0.1:8443\"\ntls = \"svid\"\nissuer = \"https://sigil.example.org\"\n";
        let issuer = "[[oauth.issuer]]\nissuer = \"https://ci.example\"\nowner = \"team-ci\"\naudiences = [\"https://sigil.example.org\"]\nattributes = { git_ref = \"ref\" }\nspiffe_id = \"spiffe://td/ci\"\n";
        let federated = "[[oauth.federated]]\ntrust_domain = \"partner.example\"\n";
        // The positive path: the same tables without a condition parse.
        let c =
            parse_server_config(&format!("{SERVER}{public}[oauth]\n{issuer}{federated}")).unwrap();
        let oauth = c.oauth.unwrap().load().unwrap();
        assert_eq!((oauth.issuers.len(), oauth.federated.len()), (1, 1));

        let condition = "condition = \"git_ref == 'refs/heads/main'\"\n";
        for (text, table) in [
            (
                format!("{SERVER}{public}[oauth]\n{issuer}{condition}"),
                "oauth.issuer `https://ci.example` condition",
            ),
            (
                format!("{SERVER}{public}[oauth]\n{federated}{condition}"),
                "oauth.federated `partner.example` condition",
            ),
            // Whatever its value: the key itself is refused.
            (
                format!("{SERVER}{public}[oauth]\n{issuer}condition = true\n"),
                "oauth.issuer `https://ci.example` condition",
            ),
        ] {
            let err = format!("{:#}", parse_server_config(&text).unwrap_err());
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.starts_with(table), "`{err}` does not name `{table}`");
            for needle in [
                "replaced by Cedar policies",
                "Sigil::Action::\"Exchange\"",
                "policies/examples/ci-exchange-main-branch",
            ] {
                assert!(err.contains(needle), "`{err}` lacks `{needle}`");
            }
        }
    }

    #[test]
    fn federation_and_oauth_issuers_need_an_owner_each_refused_in_one_line() {
        let public = "[public]\nbind_address = \"127.0.0.1:8443\"\ntls = \"svid\"\nissuer = \"https://sigil.example.org\"\n";
        let federation = "[[federation]]\ntrust_domain = \"partner.example\"\nbundle_endpoint_url = \"https://partner.example/bundle\"\nprofile = \"https_web\"\nowner = \"team-partners\"\n";
        let issuer = "[[oauth.issuer]]\nissuer = \"https://ci.example\"\naudiences = [\"https://sigil.example.org\"]\nspiffe_id = \"spiffe://td/ci\"\nowner = \"team-ci\"\n";
        // The positive path: both parse, owners kept.
        let c =
            parse_server_config(&format!("{SERVER}{public}{federation}[oauth]\n{issuer}")).unwrap();
        assert_eq!(c.federations.len(), 1);
        assert_eq!(c.federations[0].relationship.owner, "team-partners");
        let oauth = c.oauth.unwrap().load().unwrap();
        assert_eq!(oauth.issuers[0].owner, "team-ci");
        let at_limit = "o".repeat(sigil_store::MAX_OWNER_BYTES);
        let c = parse_server_config(&format!(
            "{SERVER}{}",
            federation.replace("team-partners", &at_limit)
        ))
        .unwrap();
        assert_eq!(c.federations[0].relationship.owner, at_limit);

        let over_limit = "o".repeat(sigil_store::MAX_OWNER_BYTES + 1);
        for (text, needle) in [
            (
                format!(
                    "{SERVER}{}",
                    federation.replace("owner = \"team-partners\"\n", "")
                ),
                "federation with `partner.example` has no owner: set `owner`",
            ),
            (
                format!("{SERVER}{}", federation.replace("team-partners", " ")),
                "federation with `partner.example` has a blank owner",
            ),
            (
                format!(
                    "{SERVER}{}",
                    federation.replace("team-partners", &over_limit)
                ),
                "federation with `partner.example` has an owner longer than 256 bytes",
            ),
            (
                format!(
                    "{SERVER}{public}[oauth]\n{}",
                    issuer.replace("owner = \"team-ci\"\n", "")
                ),
                "oauth.issuer `https://ci.example` has no owner: set `owner`",
            ),
            (
                format!("{SERVER}{public}[oauth]\n{}", issuer.replace("team-ci", "")),
                "oauth.issuer `https://ci.example` has a blank owner",
            ),
            (
                format!(
                    "{SERVER}{public}[oauth]\n{}",
                    issuer.replace("team-ci", "team\\tci")
                ),
                "oauth.issuer `https://ci.example` has an owner holding a control character",
            ),
        ] {
            let err = parse_server_config(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "`{err}` lacks `{needle}`");
            assert_eq!(err.lines().count(), 1, "one-line error: {err:?}");
        }
    }

    #[test]
    fn public_listener_takes_the_svid_or_files_and_an_https_issuer() {
        let c = parse_server_config(&format!(
            "{SERVER}[public]\nbind_address = \"127.0.0.1:8443\"\ntls = \"svid\"\nissuer = \"https://oidc.example.org/td\"\n"
        ))
        .unwrap();
        let public = c.public.unwrap();
        assert!(public.files.is_none());
        assert_eq!(
            public.issuer.as_deref(),
            Some("https://oidc.example.org/td")
        );
        let c = parse_server_config(&format!(
            "{SERVER}[public]\nbind_address = \"0.0.0.0:443\"\ntls = \"files\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.public.unwrap().files,
            Some((PathBuf::from("/c"), PathBuf::from("/k")))
        );
        assert!(parse_server_config(SERVER).unwrap().public.is_none());
    }

    #[test]
    fn bad_public_settings_are_refused_each_with_its_reason() {
        for (table, needle) in [
            (
                "bind_address = \"nowhere\"\ntls = \"svid\"",
                "public.bind_address",
            ),
            (
                "bind_address = \"127.0.0.1:1\"\ntls = \"acme\"",
                "unsupported public.tls",
            ),
            (
                "bind_address = \"127.0.0.1:1\"\ntls = \"files\"",
                "needs public.cert_file",
            ),
            (
                "bind_address = \"127.0.0.1:1\"\ntls = \"svid\"\ncert_file = \"/c\"",
                "apply to tls = \"files\" only",
            ),
            (
                "bind_address = \"127.0.0.1:1\"\ntls = \"svid\"\nissuer = \"http://a\"",
                "https:// URL is required",
            ),
            (
                "bind_address = \"127.0.0.1:1\"\ntls = \"svid\"\nissuer = \"https://a/?q=1\"",
                "without query or fragment",
            ),
            (
                "bind_address = \"127.0.0.1:1\"\ntls = \"svid\"\nsurprise = 1",
                "unknown field",
            ),
        ] {
            let err = parse_server_config(&format!("{SERVER}[public]\n{table}\n"))
                .err()
                .unwrap_or_else(|| panic!("accepted: {table}"));
            assert!(err.to_string().contains(needle), "{table}: {err}");
        }
    }

    #[test]
    fn an_upstream_needs_its_certificate_and_key_together() {
        let c = parse_server_config(&format!(
            "{SERVER}[ca]\nupstream_cert_file = \"/u.pem\"\nupstream_key_file = \"/u.key\"\n"
        ))
        .unwrap();
        let upstream = c.upstream.unwrap();
        assert_eq!(upstream.cert_file, PathBuf::from("/u.pem"));
        assert!(upstream.bundle_file.is_none());
        let err = parse_server_config(&format!(
            "{SERVER}[ca]\nupstream_bundle_file = \"/b.pem\"\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string().contains("needs ca.upstream_cert_file"),
            "{err}"
        );
    }

    #[test]
    fn postgres_datastore_takes_a_url_and_a_password_from_a_file_or_the_environment() {
        let c = parse_server_config(&format!(
            "{BASE}kind = \"postgres\"\nurl = \"postgres://sigil@db:5432/sigil\"\npassword_env = \"PGPASS\"\npool_size = 4\n"
        ))
        .unwrap();
        match c.datastore {
            DatastoreConfig::Postgres {
                url,
                password,
                pool_size,
            } => {
                assert_eq!(url, "postgres://sigil@db:5432/sigil");
                assert!(matches!(password, Some(PasswordSource::Env(ref v)) if v == "PGPASS"));
                assert_eq!(pool_size, 4);
            }
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let password = read_password(&PasswordSource::File(file)).unwrap();
        assert_eq!(format!("{password:?}"), "<redacted>");
    }

    #[test]
    fn postgres_datastore_refusals_are_one_clear_line() {
        for (extra, needle) in [
            ("kind = \"postgres\"\n", "datastore.url is required"),
            (
                "kind = \"postgres\"\nurl = \"postgres://u:pw@db/s\"\n",
                "must not hold a password",
            ),
            (
                "kind = \"postgres\"\nurl = \"host=db password=pw\"\n",
                "must not hold a password",
            ),
            (
                "kind = \"postgres\"\nurl = \"postgres://u@db/s\"\npassword_file = \"/f\"\npassword_env = \"V\"\n",
                "not both",
            ),
            (
                "kind = \"postgres\"\nurl = \"postgres://u@db/s\"\npool_size = 0\n",
                "pool_size",
            ),
            (
                "kind = \"postgres\"\nurl = \"postgres://u@db/s\"\npath = \"/db\"\n",
                "datastore.path applies",
            ),
            ("url = \"postgres://u@db/s\"\n", "datastore.url applies"),
        ] {
            let err = parse_server_config(&format!("{BASE}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{extra}: {err}");
            assert!(
                !err.contains("pw@") && !err.contains("password=pw"),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        let missing = read_password(&PasswordSource::Env("SIGIL_TEST_UNSET_VAR".into()))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("SIGIL_TEST_UNSET_VAR"), "{missing}");
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c =
            parse_server_config("[server]\ntrust_domain = \"td.example\"\ndata_dir = \"/tmp/x\"\n")
                .unwrap();
        assert_eq!(c.server.admin_socket, PathBuf::from("/tmp/x/admin.sock"));
        assert_eq!(c.server.issuance.x509_svid_ttl, 3600);
        assert_eq!(c.server.tls, sigil_tls::TlsPolicy::default());
    }

    #[test]
    fn tls_post_quantum_can_be_switched_off() {
        let c = parse_server_config(
            "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n[tls]\npost_quantum = false\n",
        )
        .unwrap();
        assert!(!c.server.tls.post_quantum);
        let err = parse_server_config(
            "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n[tls]\ngroups = []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_bad_values_and_missing_fields() {
        let bad = [
            (
                "[server]\ntrust_domain = \"Bad\"\ndata_dir = \"/x\"\n",
                "trust_domain",
            ),
            (
                "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\ntypo = 1\n",
                "unknown field",
            ),
            ("[server]\ntrust_domain = \"td\"\n", "data_dir"),
            (
                "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\nbind_address = \"nope\"\n",
                "bind_address",
            ),
            (
                "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n[ca]\nca_ttl = \"0\"\n",
                "ca_ttl",
            ),
            (
                "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n[datastore]\nkind = \"mysql\"\n",
                "datastore.kind",
            ),
        ];
        for (text, needle) in bad {
            let err = parse_server_config(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            assert_eq!(err.lines().count(), 1, "one-line error: {err:?}");
        }
    }
}

#[cfg(test)]
mod governance_config_tests {
    use super::*;

    const SERVER: &str = "[server]\ntrust_domain = \"td\"\ndata_dir = \"/x\"\n";

    /// The documented `[[audit.sink]]` tables of `conf/server.full.toml`, uncommented.
    fn documented_sinks() -> String {
        include_str!("../../../conf/server.full.toml")
            .lines()
            .skip_while(|line| !line.starts_with("# [[audit.sink]]"))
            .take_while(|line| line.starts_with('#'))
            .filter(|line| {
                line.starts_with("# [[") || line.starts_with("# ") && line.contains(" = ")
            })
            .map(|line| format!("{}\n", line.trim_start_matches("# ")))
            .collect()
    }

    #[test]
    fn audit_is_on_by_default_and_the_documented_sinks_and_thresholds_parse() {
        let c = parse_server_config(SERVER).unwrap();
        assert!(c.server.audit.enabled);
        assert_eq!(
            c.server.audit.head_file.as_deref(),
            Some(Path::new("/x/audit-head.json"))
        );
        assert_eq!(
            c.server.inventory,
            sigil_server::governance::InventoryConfig::default()
        );
        let full = parse_server_config(include_str!("../../../conf/server.full.toml")).unwrap();
        assert!(full.server.audit.enabled);
        assert_eq!(full.server.inventory.unused_after, 30 * 86_400);
        let sinks = documented_sinks();
        let c = parse_server_config(&format!("{SERVER}[audit]\n{sinks}")).unwrap();
        assert_eq!(c.server.audit.sinks.len(), 3, "{sinks}");
        assert!(matches!(
            c.server.audit.sinks[0],
            sigil_server::audit::sinks::SinkConfig::File { .. }
        ));
    }

    #[test]
    fn bad_audit_and_inventory_tables_are_refused_naming_the_field() {
        for (table, needle) in [
            (
                "[audit]\npolicy_decisions = \"some\"\n",
                "audit.policy_decisions",
            ),
            (
                "[audit]\ncheckpoint_interval = \"soon\"\n",
                "audit.checkpoint_interval",
            ),
            ("[audit]\nspool_records = 0\n", "audit.spool_records"),
            ("[[audit.sink]]\nkind = \"kafka\"\n", "unknown kind `kafka`"),
            ("[[audit.sink]]\nkind = \"file\"\n", "needs `path`"),
            (
                "[[audit.sink]]\nkind = \"file\"\npath = \"rel.log\"\n",
                "must be absolute",
            ),
            (
                "[[audit.sink]]\nkind = \"file\"\npath = \"/a\"\nurl = \"http://x\"\n",
                "`url` does not apply",
            ),
            (
                "[[audit.sink]]\nkind = \"syslog\"\naddress = \"/dev/log\"\nfacility = \"kern\"\n",
                "#1",
            ),
            ("[[audit.sink]]\nkind = \"http\"\nurl = \"ftp://x\"\n", "#1"),
            (
                "[inventory]\nunused_after = \"-1d\"\n",
                "inventory.unused_after",
            ),
            ("[inventory]\nunused_after = \"60d\"\n", "usage_retention"),
            ("[inventory]\ncolour = \"red\"\n", "colour"),
        ] {
            let err = parse_server_config(&format!("{SERVER}{table}"))
                .err()
                .unwrap_or_else(|| panic!("accepted: {table}"));
            assert!(
                format!("{err:#}").contains(needle),
                "{table}: {err:#} does not name {needle}"
            );
        }
    }
}
