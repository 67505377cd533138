//! Serving the Workload API on a Unix socket: the socket is replaced if stale, opened to every
//! local user (0777: attestation, not file permissions, decides what a caller gets), at most
//! [`ServeOptions::max_connections`] connections are served at once (more are closed as soon as
//! they are accepted), and each accepted connection has its peer pinned ([`ConnectionPeer`])
//! and carried into the handlers and, by default, goes through [`AuthorityRewrite`] so grpcio
//! clients are understood. Sigil's credentials service ([`CredentialsApi`]) may share the
//! socket; it is routed by its own gRPC path and leaves `SpiffeWorkloadAPI` as it is.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use sigil_proto::creds::v1::credentials_server::CredentialsServer;
use sigil_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tonic::transport::server::Connected;

use super::authority::{AuthorityRewrite, MAX_HEADER_LIST_BYTES};
use super::credentials::CredentialsApi;
use super::peer::ConnectionPeer;
use super::service::{DEFAULT_MAX_CONCURRENT_ATTESTATIONS, WorkloadApi};
use crate::attestor::CallerInfo;

/// Permissions of the socket file: every local user may connect.
const SOCKET_MODE: u32 = 0o777;
/// Pause after a failed `accept` (out of file descriptors, …) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the Workload API server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadServerError {
    #[error("`{path}` exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("cannot remove the stale socket `{path}`: {source}")]
    RemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on `{path}`: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the permissions of `{path}`: {source}")]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the workload api server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Connections served at once when nothing else is configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Pass client bytes through [`AuthorityRewrite`] (default). Without it, grpcio-based clients
    /// such as py-spiffe are refused by the HTTP/2 stack; turning it off exists for the tests
    /// that prove that.
    pub rewrite_authority: bool,
    /// Connections served at once (default [`DEFAULT_MAX_CONNECTIONS`]); a connection accepted
    /// beyond it is closed at once, before anything is read from it or its peer is attested.
    pub max_connections: usize,
    /// Attestations (binary hashes on blocking threads) running at once across all connections
    /// (default [`DEFAULT_MAX_CONCURRENT_ATTESTATIONS`]); further first calls wait for a turn.
    pub max_concurrent_attestations: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            rewrite_authority: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_attestations: DEFAULT_MAX_CONCURRENT_ATTESTATIONS,
        }
    }
}

/// Serves `api` on the Unix socket `path` until `shutdown` completes, with the default
/// [`ServeOptions`]. See [`serve_with_options`].
pub async fn serve(
    path: &Path,
    api: WorkloadApi,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadServerError> {
    serve_with_options(path, api, ServeOptions::default(), shutdown).await
}

/// Serves `api` on the Unix socket `path` until `shutdown` completes: removes a stale socket
/// (never another kind of file), binds, makes the socket reachable by every user, and accepts
/// connections. On shutdown, open streams end with `Unavailable`, connections drain, and the
/// socket file is removed. Fails if the socket cannot be set up or the transport fails.
pub async fn serve_with_options(
    path: &Path,
    api: WorkloadApi,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadServerError> {
    let listener = bind(path)?;
    serve_listener(listener, path, api, options, shutdown).await
}

/// Serves `api` on a listener from [`bind`] (so callers can report bind errors before
/// spawning); `path` is removed on shutdown. Otherwise as [`serve_with_options`].
pub async fn serve_listener(
    listener: UnixListener,
    path: &Path,
    api: WorkloadApi,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadServerError> {
    serve_services(listener, path, api, None, options, shutdown).await
}

/// As [`serve_listener`], with Sigil's credentials service `credentials` on the same socket
/// (its callers attested as the Workload API's are).
pub async fn serve_listener_with_credentials(
    listener: UnixListener,
    path: &Path,
    api: WorkloadApi,
    credentials: CredentialsApi,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadServerError> {
    serve_services(listener, path, api, Some(credentials), options, shutdown).await
}

async fn serve_services(
    listener: UnixListener,
    path: &Path,
    api: WorkloadApi,
    credentials: Option<CredentialsApi>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkloadServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = api
        .with_stop_signal(stop_rx)
        .with_attestation_limit(options.max_concurrent_attestations);
    let credentials = credentials.map(|c| {
        CredentialsServer::new(c.with_attestation_limit(options.max_concurrent_attestations))
    });
    let signal = async move {
        shutdown.await;
        stop_tx.send_replace(true);
    };
    let result = tonic::transport::Server::builder()
        .http2_max_header_list_size(u32::try_from(MAX_HEADER_LIST_BYTES).unwrap_or(u32::MAX))
        .add_service(SpiffeWorkloadApiServer::new(api))
        .add_optional_service(credentials)
        .serve_with_incoming_shutdown(connections(listener, options), signal)
        .await;
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the workload api socket");
    }
    result.map_err(WorkloadServerError::from)
}

/// Replaces a stale socket at `path`, binds it and opens it to every user.
pub fn bind(path: &Path) -> Result<UnixListener, WorkloadServerError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| WorkloadServerError::RemoveStale {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(WorkloadServerError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(WorkloadServerError::Bind {
                path: path.to_owned(),
                source,
            });
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| WorkloadServerError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| WorkloadServerError::Permissions {
            path: path.to_owned(),
            source,
        },
    )?;
    Ok(listener)
}

/// Accepted connections with their pinned peers. A connection beyond
/// [`ServeOptions::max_connections`], or whose credentials cannot be read, is closed at once.
fn connections(
    listener: UnixListener,
    options: ServeOptions,
) -> impl Stream<Item = Result<WorkloadConnection, io::Error>> {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    futures::stream::unfold(listener, move |listener| {
        let slots = Arc::clone(&slots);
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        if let Some(conn) = admit(stream, &slots, options) {
                            return Some((Ok(conn), listener));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept a workload api connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    })
}

/// Takes a connection slot and pins the peer of a freshly accepted `stream`; `None` (and the
/// stream closed) if every slot is taken or the peer's credentials cannot be read.
fn admit(
    stream: UnixStream,
    slots: &Arc<Semaphore>,
    options: ServeOptions,
) -> Option<WorkloadConnection> {
    let Ok(slot) = Arc::clone(slots).try_acquire_owned() else {
        tracing::debug!(
            limit = options.max_connections,
            "closing a workload api connection: too many open connections"
        );
        return None;
    };
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a workload's peer credentials");
            return None;
        }
    };
    let peer = Arc::new(ConnectionPeer::accept(CallerInfo::from_ucred(&cred)));
    let io = if options.rewrite_authority {
        ConnectionIo::Rewritten(Box::new(AuthorityRewrite::new(stream)))
    } else {
        ConnectionIo::Plain(stream)
    };
    Some(WorkloadConnection {
        io,
        peer,
        _slot: slot,
    })
}

/// One accepted connection, its pinned peer, and its connection slot (freed when the
/// connection is dropped).
struct WorkloadConnection {
    io: ConnectionIo,
    peer: Arc<ConnectionPeer>,
    _slot: OwnedSemaphorePermit,
}

enum ConnectionIo {
    Rewritten(Box<AuthorityRewrite<UnixStream>>),
    Plain(UnixStream),
}

impl Connected for WorkloadConnection {
    type ConnectInfo = Arc<ConnectionPeer>;

    fn connect_info(&self) -> Arc<ConnectionPeer> {
        Arc::clone(&self.peer)
    }
}

impl AsyncRead for WorkloadConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnectionIo::Rewritten(s) => Pin::new(s).poll_read(cx, buf),
            ConnectionIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WorkloadConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnectionIo::Rewritten(s) => Pin::new(s).poll_write(cx, buf),
            ConnectionIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnectionIo::Rewritten(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ConnectionIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ConnectionIo::Rewritten(s) => s.is_write_vectored(),
            ConnectionIo::Plain(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnectionIo::Rewritten(s) => Pin::new(s).poll_flush(cx),
            ConnectionIo::Plain(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            ConnectionIo::Rewritten(s) => Pin::new(s).poll_shutdown(cx),
            ConnectionIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
