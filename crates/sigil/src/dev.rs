//! `sigil dev`: server and agent in one process on an embedded SQLite store in a state
//! directory, with an entry that gives the calling user an identity. A rerun reuses the state
//! (same root CA, same agent, same entry); Ctrl-C stops both cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use sigil_server::ServerConfig;
use sigil_server::agent_api::IssuanceDefaults;
use sigil_server::ca::CaLifetimes;
use sigil_spiffe::{Clock, Selector, SpiffeId, SystemClock, TrustDomain};
use sigil_store::{EntryFilter, NewEntry};

use crate::server_cmd::{LoadedServerConfig, create_private_dir, shutdown_signal};

/// Longest Unix socket path the kernel accepts (sun_path less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Options of `sigil dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// State directory (default `./.sigil`).
    pub state_dir: PathBuf,
    /// Trust domain (default `example.org`).
    pub trust_domain: String,
}

/// Paths of a dev state directory.
struct DevLayout {
    root: PathBuf,
    server_dir: PathBuf,
    agent_dir: PathBuf,
    admin_socket: PathBuf,
    workload_socket: PathBuf,
    marker: PathBuf,
}

impl DevLayout {
    fn new(root: PathBuf) -> Self {
        Self {
            server_dir: root.join("server"),
            agent_dir: root.join("agent"),
            admin_socket: root.join("admin.sock"),
            workload_socket: root.join("agent").join("workload.sock"),
            marker: root.join("trust-domain"),
            root,
        }
    }
}

/// Refuses to reuse a state directory made for another trust domain.
fn check_trust_domain(layout: &DevLayout, td: &TrustDomain) -> anyhow::Result<()> {
    match std::fs::read_to_string(&layout.marker) {
        Ok(existing) if existing.trim() == td.as_str() => Ok(()),
        Ok(existing) => bail!(
            "state directory {} belongs to trust domain `{}`; pass --trust-domain {} or use another --state-dir",
            layout.root.display(),
            existing.trim(),
            existing.trim()
        ),
        // Written like every other state file (0600, created new and renamed into place), so
        // the umask cannot widen it and a planted link cannot redirect it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            sigil_keys::files::write_private_file(&layout.marker, td.as_str().as_bytes())
                .with_context(|| format!("cannot write {}", layout.marker.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", layout.marker.display())),
    }
}

fn check_socket_path(path: &Path) -> anyhow::Result<()> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --state-dir",
            path.display()
        );
    }
    Ok(())
}

/// The dev workload's SPIFFE ID and selector for `uid`.
fn dev_identity(td: &TrustDomain, uid: u32) -> anyhow::Result<(SpiffeId, Selector)> {
    let id = td
        .id_with_path(&format!("/dev/uid/{uid}"))
        .context("cannot form the dev SPIFFE ID")?;
    let selector =
        Selector::new("unix", &format!("uid:{uid}")).context("cannot form the selector")?;
    Ok((id, selector))
}

/// Runs dev mode until Ctrl-C/SIGTERM.
pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let td = TrustDomain::parse(&opts.trust_domain)
        .map_err(|e| anyhow::anyhow!("invalid --trust-domain `{}`: {e}", opts.trust_domain))?;
    let root = std::path::absolute(&opts.state_dir)
        .with_context(|| format!("invalid --state-dir {}", opts.state_dir.display()))?;
    let layout = DevLayout::new(root);
    create_private_dir(&layout.root)?;
    check_trust_domain(&layout, &td)?;
    check_socket_path(&layout.admin_socket)?;
    check_socket_path(&layout.workload_socket)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let server_config = LoadedServerConfig {
        server: ServerConfig {
            trust_domain: td.clone(),
            replica_id: String::new(),
            bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_socket: layout.admin_socket.clone(),
            key_dir: layout.server_dir.join("keys"),
            ca: CaLifetimes::default(),
            upstream: None,
            issuance: IssuanceDefaults::default(),
            tls: sigil_tls::TlsPolicy::default(),
            federations: Vec::new(),
            federation_web_roots: None,
            policy_dir: None,
            inventory: sigil_server::governance::InventoryConfig::default(),
            credentials: sigil_server::credentials::CredentialsConfig::default(),
            audit: sigil_server::audit::AuditConfig {
                head_file: Some(layout.server_dir.join("audit-head.json")),
                ..sigil_server::audit::AuditConfig::default()
            },
            // Token exchange for this trust domain's own identities, on the dev issuer.
            oauth: Some(sigil_server::oauth::OAuthConfig::default()),
            // Plain HTTP on loopback (dev mode only); the issuer is the listener's own URL.
            public: Some(sigil_server::public::PublicConfig {
                bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
                tls: sigil_server::public::PublicTls::PlainLoopback,
                issuer: None,
            }),
        },
        upstream: None,
        public: None,
        federations: Vec::new(),
        oauth: None,
        datastore: crate::server_cmd::DatastoreConfig::Sqlite {
            path: layout.server_dir.join("datastore.sqlite3"),
        },
        data_dir: layout.server_dir.clone(),
    };
    let server = crate::server_cmd::start(&server_config, clock.clone()).await?;

    let has_agent_state = sigil_agent::state::AgentIdentity::load(&layout.agent_dir)
        .ok()
        .flatten()
        .is_some_and(|id| id.expires_at > clock.unix_secs());
    let join_token = if has_agent_state {
        None
    } else {
        let issued =
            sigil_server::join_token::create(server.store.as_ref(), &td, 600, clock.unix_secs())
                .await
                .context("cannot create a join token for the dev agent")?;
        Some(issued.token)
    };
    let agent_config = sigil_agent::AgentConfig {
        trust_domain: td.clone(),
        server_addresses: vec![server.agent_api_addr.to_string()],
        bootstrap_roots: server.bundle().x509_authorities.clone(),
        join_token,
        data_dir: layout.agent_dir.clone(),
        socket_path: layout.workload_socket.clone(),
        max_hash_bytes: 256 * 1024 * 1024,
        max_backoff: Duration::from_secs(5),
        tls: sigil_tls::TlsPolicy::default(),
        usage_report_interval: Duration::from_secs(10),
    };
    let mut agent = match sigil_agent::start(agent_config, clock.clone()).await {
        Ok(a) => a,
        Err(e) => {
            server.shutdown().await;
            return Err(anyhow::Error::new(e).context("cannot start the agent"));
        }
    };
    let agent_id = agent.spiffe_id().clone();

    let uid = nix::unistd::getuid().as_raw();
    let (workload_id, selector) = dev_identity(&td, uid)?;
    let existing = server
        .store
        .list_entries(&EntryFilter {
            spiffe_id: Some(workload_id.clone()),
            parent_id: Some(agent_id.clone()),
            ..EntryFilter::default()
        })
        .await
        .context("cannot read entries")?;
    if existing.is_empty() {
        let owner = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid-{uid}"));
        server
            .store
            .create_entry(
                NewEntry {
                    description: "registered by `sigil dev` for the user who started it".into(),
                    ..NewEntry::new(
                        workload_id.clone(),
                        agent_id.clone(),
                        vec![selector.clone()],
                        owner,
                    )
                },
                clock.unix_secs(),
            )
            .await
            .context("cannot register the dev entry")?;
    }

    println!(
        "export SPIFFE_ENDPOINT_SOCKET=unix://{}",
        layout.workload_socket.display()
    );
    eprintln!("sigil dev: trust domain {td}");
    eprintln!("  agent            {agent_id}");
    eprintln!("  workload         {workload_id} (selector {selector})");
    eprintln!("  admin socket     {}", layout.admin_socket.display());
    if let Some(issuer) = &server.issuer {
        eprintln!("issuer: {issuer}");
    }
    eprintln!("  state directory  {}", layout.root.display());
    eprintln!("Run the export line above, then `sigil svid fetch`. Ctrl-C stops.");

    let failed = tokio::select! {
        () = shutdown_signal() => None,
        r = agent.wait_any() => Some(r),
    };
    let agent_result = agent.shutdown().await;
    server.shutdown().await;
    eprintln!("sigil dev: stopped");
    failed.unwrap_or(agent_result).context("agent stopped")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn trust_domain_marker_is_owner_only_and_refuses_another_domain() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DevLayout::new(dir.path().to_owned());
        let td = TrustDomain::parse("example.org").unwrap();
        check_trust_domain(&layout, &td).unwrap();
        let mode = std::fs::metadata(&layout.marker)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&layout.marker).unwrap(),
            "example.org"
        );
        // The same domain again is accepted; another one is refused.
        check_trust_domain(&layout, &td).unwrap();
        let other = TrustDomain::parse("other.org").unwrap();
        let err = check_trust_domain(&layout, &other).unwrap_err().to_string();
        assert!(err.contains("`example.org`"), "{err}");
    }
}
