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
}

impl Default for RawCa {
    fn default() -> Self {
        Self {
            ca_ttl: default_ca_ttl(),
            root_ca_ttl: default_root_ttl(),
            jwt_key_ttl: default_ca_ttl(),
            bundle_refresh_hint: default_refresh_hint(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatastore {
    /// `sqlite` (the only backend so far).
    #[serde(default)]
    kind: Option<String>,
    /// SQLite file; default `<data_dir>/datastore.sqlite3`.
    path: Option<PathBuf>,
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
    pub datastore_path: PathBuf,
    pub data_dir: PathBuf,
}

fn ttl(field: &str, value: &str) -> anyhow::Result<u64> {
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
    if let Some(kind) = raw.datastore.kind.as_deref()
        && kind != "sqlite"
    {
        bail!("unsupported datastore.kind `{kind}` (supported: `sqlite`)");
    }
    let data_dir = raw.server.data_dir.clone();
    let ca = CaLifetimes {
        root_ttl: ttl("ca.root_ca_ttl", &raw.ca.root_ca_ttl)?,
        intermediate_ttl: ttl("ca.ca_ttl", &raw.ca.ca_ttl)?,
        jwt_key_ttl: ttl("ca.jwt_key_ttl", &raw.ca.jwt_key_ttl)?,
        bundle_refresh_hint: ttl("ca.bundle_refresh_hint", &raw.ca.bundle_refresh_hint)?,
    };
    if ca.intermediate_ttl > ca.root_ttl {
        bail!("ca.ca_ttl must not exceed ca.root_ca_ttl");
    }
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
    Ok(LoadedServerConfig {
        server: ServerConfig {
            trust_domain,
            bind_address,
            admin_socket: raw
                .server
                .admin_socket_path
                .unwrap_or_else(|| data_dir.join("admin.sock")),
            key_dir: data_dir.join("keys"),
            ca,
            issuance,
            tls: raw.tls.policy(),
        },
        datastore_path: raw
            .datastore
            .path
            .unwrap_or_else(|| data_dir.join("datastore.sqlite3")),
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
    let path = config.datastore_path.clone();
    let store = tokio::task::spawn_blocking(move || sigil_store::SqliteStore::open(&path))
        .await
        .context("datastore open task failed")?
        .with_context(|| {
            format!(
                "cannot open datastore sqlite://{}",
                config.datastore_path.display()
            )
        })?;
    let keys = sigil_keys::DiskKeyManager::new(config.server.key_dir.clone());
    sigil_server::start(
        config.server.clone(),
        Arc::new(store),
        Arc::new(keys),
        clock,
    )
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
    tokio::select! {
        () = shutdown_signal() => {}
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
        assert_eq!(
            c.datastore_path,
            PathBuf::from("/var/lib/sigil/server/datastore.sqlite3")
        );
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
