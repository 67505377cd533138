//! Agent composition: [`start`] locks the data directory, makes sure the Workload API socket is
//! free, resumes or attests the agent's identity, binds the socket, and runs the session loop,
//! the Workload API (with the credentials service on its socket) and the usage reporter as owned
//! tasks behind an [`AgentHandle`] that stops them together.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sigil_keys::unix_socket::remove_stale_socket;
use sigil_spiffe::{Clock, SpiffeId};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::attestor::{UnixAttestor, UnixAttestorConfig, WorkloadAttestor};
use crate::config::AgentConfig;
use crate::data_dir_lock::DataDirLock;
use crate::error::AgentError;
use crate::jwt::ServerJwtMinter;
use crate::node_attestation::load_or_attest;
use crate::session::Session;
use crate::snapshot::WorkloadApiContext;
use crate::usage::{UsageCounter, report_periodically};
use crate::workload::{self, CredentialsApi, ServeOptions, ServerCredentialForwarder, WorkloadApi};

/// Mode of directories the agent creates for its data.
const DATA_DIR_MODE: u32 = 0o700;

/// A running agent. Dropping it does not stop it; call [`AgentHandle::shutdown`].
#[derive(Debug)]
pub struct AgentHandle {
    spiffe_id: SpiffeId,
    socket_path: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<Result<(), AgentError>>,
    /// Held until the handle is dropped, after the tasks have stopped.
    _lock: DataDirLock,
}

impl AgentHandle {
    /// The agent's SPIFFE ID.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The Workload API socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Waits until a task ends on its own and returns its result: the session loop ends only
    /// when the server rejects the agent or its SVID expired, the Workload API only when its
    /// transport fails. Waits forever once every task has ended.
    pub async fn wait_any(&mut self) -> Result<(), AgentError> {
        match self.tasks.join_next().await {
            Some(result) => result?,
            None => std::future::pending().await,
        }
    }

    /// Signals every task to stop, waits for them (the Workload API socket is removed), then
    /// releases the data directory. Returns the first error a task ended with.
    pub async fn shutdown(mut self) -> Result<(), AgentError> {
        let _ = self.shutdown.send(true);
        let mut first = Ok(());
        while let Some(result) = self.tasks.join_next().await {
            let result = result.map_err(AgentError::from).and_then(|r| r);
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

/// Starts the agent described by `config`; returns once the Workload API socket is bound.
///
/// A configuration without a server address is refused ([`AgentError::NoServerAddress`]).
/// Before anything else it takes the exclusive lock of the data directory (created 0700 if
/// missing) and fails with [`AgentError::AlreadyRunning`] when another agent holds it; it also
/// refuses a Workload API socket another process answers on ([`AgentError::WorkloadSocket`])
/// instead of replacing it. Then it resumes the stored identity or attests with the join token.
pub async fn start(config: AgentConfig, clock: Arc<dyn Clock>) -> Result<AgentHandle, AgentError> {
    if config.server_addresses.is_empty() {
        return Err(AgentError::NoServerAddress);
    }
    create_dir(&config.data_dir)?;
    let lock = DataDirLock::acquire(&config.data_dir)?;
    if let Some(parent) = config.socket_path.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dir(parent)?;
    }
    // Checked before attesting, so a refused start does not spend the join token.
    remove_stale_socket(&config.socket_path)?;

    sigil_tls::install_default_provider();
    let (identity, first_server) = load_or_attest(&config, clock.unix_secs()).await?;
    let socket_path = config.socket_path.clone();
    let usage_report_interval = config.usage_report_interval;
    let attestor = UnixAttestor::new(UnixAttestorConfig {
        max_hash_bytes: config.max_hash_bytes,
    });
    let session = Session::new(config, clock.clone(), identity, first_server)?;
    let spiffe_id = session.spiffe_id().clone();
    let attestor: Arc<dyn WorkloadAttestor> = Arc::new(attestor);
    let credentials = CredentialsApi::new(
        session.snapshots(),
        attestor.clone(),
        Arc::new(ServerCredentialForwarder::new(session.client_slot())),
    );
    let context = WorkloadApiContext {
        snapshots: session.snapshots(),
        jwt: Arc::new(ServerJwtMinter::new(
            session.client_slot(),
            session.tainted_slot(),
            session.revoked_jwt_slot(),
            clock.clone(),
        )),
        clock,
    };
    let usage = Arc::new(UsageCounter::new());
    let client = session.client_slot();
    let api = WorkloadApi::with_attestor(context, attestor).with_usage(usage.clone());

    // Again right before binding: attestation may have taken a while.
    remove_stale_socket(&socket_path)?;
    let listener = workload::bind(&socket_path)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    {
        let mut stop = shutdown_rx.clone();
        let path = socket_path.clone();
        tasks.spawn(async move {
            let stopped = async move {
                let _ = stop.changed().await;
            };
            workload::serve_listener_with_credentials(
                listener,
                &path,
                api,
                credentials,
                ServeOptions::default(),
                stopped,
            )
            .await
            .map_err(AgentError::from)
        });
    }
    tasks.spawn(report_periodically(
        usage,
        client,
        usage_report_interval,
        shutdown_rx.clone(),
    ));
    tasks.spawn(session.run(shutdown_rx));
    tracing::info!(agent = %spiffe_id, socket = %socket_path.display(), "agent started");
    Ok(AgentHandle {
        spiffe_id,
        socket_path,
        shutdown,
        tasks,
        _lock: lock,
    })
}

/// Creates `dir` and its missing parents with mode 0700 (an existing directory is left as is).
fn create_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(dir)
        .map_err(|source| AgentError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use sigil_keys::unix_socket::StaleSocketError;
    use sigil_spiffe::time::from_unix_secs;
    use sigil_testkit::FakeClock;

    use super::*;
    use crate::session::tests::test_config;
    use crate::state::tests::sample_identity;
    use crate::svid_cache::tests::NOW;

    /// An agent configuration under `dir` with a stored identity valid for an hour after `NOW`
    /// (the server is unreachable: the agent keeps retrying and serving).
    fn resumable(dir: &Path) -> AgentConfig {
        let config = test_config(dir);
        sample_identity(NOW + 3_600).save(&config.data_dir).unwrap();
        config
    }

    fn clock() -> FakeClock {
        FakeClock::new(from_unix_secs(NOW))
    }

    #[tokio::test]
    async fn start_serves_the_workload_api_and_shutdown_removes_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let agent = start(resumable(dir.path()), Arc::new(clock()))
            .await
            .unwrap();
        assert_eq!(
            agent.spiffe_id().as_str(),
            "spiffe://example.org/sigil/agent/join_token/n1"
        );
        UnixStream::connect(agent.socket_path()).unwrap();
        let socket = agent.socket_path().to_owned();
        agent.shutdown().await.unwrap();
        assert!(!socket.exists());
    }

    #[tokio::test]
    async fn a_second_agent_on_the_same_data_directory_is_refused_and_the_first_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let config = resumable(dir.path());
        let first = start(config.clone(), Arc::new(clock())).await.unwrap();
        let socket = first.socket_path().to_owned();
        let inode = std::fs::metadata(&socket).map(|m| std::os::unix::fs::MetadataExt::ino(&m));

        let err = start(config.clone(), Arc::new(clock())).await.unwrap_err();
        assert!(matches!(err, AgentError::AlreadyRunning { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&config.data_dir.display().to_string())
        );

        // The first agent's socket is the same file, and still answers.
        let after = std::fs::metadata(&socket).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        assert_eq!(inode.unwrap(), after.unwrap());
        UnixStream::connect(&socket).unwrap();
        first.shutdown().await.unwrap();

        // Once the first has stopped, the directory is free again.
        let again = start(config, Arc::new(clock())).await.unwrap();
        again.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn an_agent_does_not_take_over_a_socket_another_agent_serves() {
        let dir = tempfile::tempdir().unwrap();
        let first = start(resumable(dir.path()), Arc::new(clock()))
            .await
            .unwrap();
        let other = tempfile::tempdir().unwrap();
        let mut config = resumable(other.path());
        config.socket_path = first.socket_path().to_owned();

        let err = start(config, Arc::new(clock())).await.unwrap_err();
        assert!(
            matches!(
                err,
                AgentError::WorkloadSocket(StaleSocketError::InUse { .. })
            ),
            "{err}"
        );
        UnixStream::connect(first.socket_path()).unwrap();
        first.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_socket_left_by_a_crashed_agent_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let config = resumable(dir.path());
        drop(std::os::unix::net::UnixListener::bind(&config.socket_path).unwrap());
        let agent = start(config, Arc::new(clock())).await.unwrap();
        UnixStream::connect(agent.socket_path()).unwrap();
        agent.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_start_leaves_the_lock_free() {
        let dir = tempfile::tempdir().unwrap();
        // No identity and no join token: attestation cannot happen.
        let config = test_config(dir.path());
        let err = start(config.clone(), Arc::new(clock())).await.unwrap_err();
        assert!(matches!(err, AgentError::NoJoinToken), "{err}");
        DataDirLock::acquire(&config.data_dir).unwrap();
        assert!(!config.socket_path.exists(), "nothing was bound");
    }

    #[tokio::test]
    async fn wait_any_returns_when_the_session_ends_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let clock = clock();
        let mut agent = start(resumable(dir.path()), Arc::new(clock.clone()))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(3_600));
        let result = tokio::time::timeout(Duration::from_secs(10), agent.wait_any())
            .await
            .unwrap();
        assert!(
            matches!(result, Err(AgentError::SvidExpired(t)) if t == NOW + 3_600),
            "{result:?}"
        );
        // The Workload API is still up until shutdown.
        UnixStream::connect(agent.socket_path()).unwrap();
        agent.shutdown().await.unwrap();
    }
}
