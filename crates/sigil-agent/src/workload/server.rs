//! Serving the Workload API on a Unix socket: the socket is replaced if stale, opened to every
//! local user (0777: attestation, not file permissions, decides what a caller gets), and each
//! accepted connection carries its peer credentials ([`CallerInfo`]) into the handlers and, by
//! default, goes through [`AuthorityRewrite`] so grpcio clients are understood.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use sigil_proto::workload::spiffe_workload_api_server::SpiffeWorkloadApiServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tonic::transport::server::Connected;

use super::authority::AuthorityRewrite;
use super::service::WorkloadApi;
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

/// How to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// Pass client bytes through [`AuthorityRewrite`] (default). Without it, grpcio-based clients
    /// such as py-spiffe are refused by the HTTP/2 stack; turning it off exists for the tests
    /// that prove that.
    pub rewrite_authority: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            rewrite_authority: true,
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
    let (stop_tx, stop_rx) = watch::channel(false);
    let api = api.with_stop_signal(stop_rx);
    let signal = async move {
        shutdown.await;
        stop_tx.send_replace(true);
    };
    let result = tonic::transport::Server::builder()
        .serve_with_incoming_shutdown(
            SpiffeWorkloadApiServer::new(api),
            connections(listener, options),
            signal,
        )
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

/// Accepted connections with their peer credentials; a connection whose credentials cannot be
/// read is dropped (it could not be attested).
fn connections(
    listener: UnixListener,
    options: ServeOptions,
) -> impl Stream<Item = Result<WorkloadConnection, io::Error>> {
    futures::stream::unfold(listener, move |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match stream.peer_cred() {
                    Ok(cred) => {
                        let caller = CallerInfo::from_ucred(&cred);
                        let io = if options.rewrite_authority {
                            ConnectionIo::Rewritten(Box::new(AuthorityRewrite::new(stream)))
                        } else {
                            ConnectionIo::Plain(stream)
                        };
                        return Some((Ok(WorkloadConnection { io, caller }), listener));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read a workload's peer credentials")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a workload api connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}

/// One accepted connection and the credentials of its peer.
struct WorkloadConnection {
    io: ConnectionIo,
    caller: CallerInfo,
}

enum ConnectionIo {
    Rewritten(Box<AuthorityRewrite<UnixStream>>),
    Plain(UnixStream),
}

impl Connected for WorkloadConnection {
    type ConnectInfo = CallerInfo;

    fn connect_info(&self) -> CallerInfo {
        self.caller
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
