//! Serving the admin router on a Unix socket. Access control is the filesystem: the socket is
//! mode 0600 and a missing parent directory is created 0700. The socket is bound inside a fresh
//! private (0700) staging directory, chmod-ed, then renamed into place, so it is never reachable
//! with looser permissions, whatever the parent directory's mode. It is removed on shutdown.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::{AdminError, AdminState, router};

/// Mode of the admin socket.
const SOCKET_MODE: u32 = 0o600;
/// Mode of a socket directory Sigil creates.
const DIR_MODE: u32 = 0o700;

/// An admin socket bound at its final path with its final permissions, not yet serving.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    /// Device and inode of the socket file, to remove it on shutdown only if it is still ours.
    identity: Option<(u64, u64)>,
}

/// Serves the admin API on `socket_path` until `shutdown` completes, then removes the socket:
/// [`bind`] followed by [`serve_bound`].
pub async fn serve(
    socket_path: &Path,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    let bound = bind(socket_path).await?;
    serve_bound(bound, socket_path, state, shutdown).await
}

/// Binds the admin socket at `socket_path`, so callers can report readiness (or a bind error)
/// before serving.
///
/// Creates the parent directory (0700) if missing and replaces a stale socket left by a crashed
/// server. Fails without touching anything when `socket_path` is a file that is not a socket, or
/// a socket another server still answers on.
pub async fn bind(socket_path: &Path) -> Result<BoundSocket, AdminError> {
    let listener = bind_private(socket_path).await?;
    Ok(BoundSocket {
        listener,
        identity: file_identity(socket_path),
    })
}

/// Serves the admin API on a socket from [`bind`] (bound at `socket_path`) until `shutdown`
/// completes, then removes the socket file if it is still the one bound.
pub async fn serve_bound(
    bound: BoundSocket,
    socket_path: &Path,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    tracing::info!(path = %socket_path.display(), "admin API listening");
    let served = axum::serve(
        bound.listener,
        router(state).into_make_service_with_connect_info::<super::AdminPeer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    // Only remove the socket if it is still ours (a newer server may have replaced it).
    if bound.identity.is_some()
        && file_identity(socket_path) == bound.identity
        && let Err(err) = std::fs::remove_file(socket_path)
    {
        tracing::warn!(path = %socket_path.display(), error = %err, "cannot remove the admin socket");
    }
    served.map_err(AdminError::Serve)
}

/// Binds `path` as described in the module documentation.
async fn bind_private(path: &Path) -> Result<UnixListener, AdminError> {
    let display = || path.display().to_string();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&parent)
            .map_err(|source| AdminError::CreateDir {
                path: parent.display().to_string(),
                source,
            })?;
    }
    remove_stale_socket(path)?;

    let staging = create_staging_dir(&parent, path).map_err(|source| AdminError::Bind {
        path: display(),
        source,
    })?;
    let staged = staging.join("s");
    let bound = UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    // The staging directory is empty after the rename (or holds a socket we failed to move).
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    bound.map_err(|source| AdminError::Bind {
        path: display(),
        source,
    })
}

/// Removes a socket at `path` that nobody answers on; refuses anything else that exists there
/// (the agent's Workload API socket is reclaimed by the same rule).
fn remove_stale_socket(path: &Path) -> Result<(), AdminError> {
    use sigil_keys::unix_socket::StaleSocketError;
    let display = path.display().to_string();
    sigil_keys::unix_socket::remove_stale_socket(path).map_err(|e| match e {
        StaleSocketError::NotASocket { .. } => AdminError::NotASocket { path: display },
        StaleSocketError::InUse { .. } => AdminError::InUse { path: display },
        StaleSocketError::Inspect { source, .. } => AdminError::Bind {
            path: display,
            source,
        },
        StaleSocketError::Remove { source, .. } => AdminError::RemoveStale {
            path: display,
            source,
        },
    })
}

/// A new empty 0700 directory beside the socket, named after it and this process.
fn create_staging_dir(parent: &Path, socket: &Path) -> io::Result<PathBuf> {
    let stem = socket
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(16).collect::<String>())
        .unwrap_or_default();
    let dir = parent.join(format!(".{stem}-{}", std::process::id()));
    let create = || std::fs::DirBuilder::new().mode(DIR_MODE).create(&dir);
    match create() {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            // Left behind by a crashed earlier run of a process with the same id.
            std::fs::remove_dir_all(&dir)?;
            create()?;
        }
        other => other?,
    }
    Ok(dir)
}

/// Device and inode of `path`, to recognise our own socket later.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::os::unix::fs::FileTypeExt;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::admin::test_support::state;

    async fn get_health(path: &Path) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream
            .write_all(
                b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    async fn start(path: &Path) -> (oneshot::Sender<()>, JoinHandle<Result<(), AdminError>>) {
        let (stop, stopped) = oneshot::channel::<()>();
        let owned = path.to_path_buf();
        let state = state().await;
        let task = tokio::spawn(async move {
            serve(&owned, state, async move {
                let _ = stopped.await;
            })
            .await
        });
        for _ in 0..200 {
            if UnixStream::connect(path).await.is_ok() {
                return (stop, task);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("admin socket never answered: {:?}", task.await);
    }

    #[tokio::test]
    async fn serves_on_a_private_socket_and_removes_it_on_shutdown() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state").join("run");
        let path = dir.join("admin.sock");
        let (stop, task) = start(&path).await;

        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "staging directory left behind");

        let answer = get_health(&path).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains(r#""trust_domain":"example.org""#),
            "{answer}"
        );

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn replaces_a_stale_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("admin.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (stop, task) = start(&path).await;
        assert!(get_health(&path).await.starts_with("HTTP/1.1 200"));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn refuses_to_replace_a_regular_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("admin.sock");
        std::fs::write(&path, b"precious").unwrap();
        let err = serve(&path, state().await, async {}).await.unwrap_err();
        assert!(matches!(err, AdminError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn refuses_a_socket_another_server_answers_on() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("admin.sock");
        let (stop, task) = start(&path).await;
        let err = serve(&path, state().await, async {}).await.unwrap_err();
        assert!(matches!(err, AdminError::InUse { .. }), "{err}");
        assert!(get_health(&path).await.starts_with("HTTP/1.1 200"));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
