//! Reclaiming a Unix socket path before binding it: a socket left behind by a crashed process is
//! removed, while a socket some process still answers on, or a file of any other kind, is refused
//! and left untouched. Agent (Workload API) and server (admin API) both bind sockets this way.

use std::io;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why a socket path cannot be reclaimed.
#[derive(Debug, thiserror::Error)]
pub enum StaleSocketError {
    /// Something other than a socket is there; it is never removed.
    #[error("`{path}` exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    /// A process accepts connections on the socket: it is live, not stale.
    #[error("`{path}` is in use: another process answers on it")]
    InUse { path: PathBuf },
    /// The path could not be examined, or probing the socket failed in a way that does not prove
    /// nobody listens (for example, permission denied); it is left in place.
    #[error("cannot tell whether `{path}` is in use: {source}")]
    Inspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket is stale but could not be removed.
    #[error("cannot remove the stale socket `{path}`: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Makes `path` free for a new socket: returns `Ok` when nothing is there, or after removing a
/// socket that refuses connections (its listener is gone). Refuses, touching nothing, when `path`
/// is not a socket (a symlink is not followed, and counts as not a socket), when a connection to
/// it succeeds, or when the probe fails for another reason than "connection refused".
///
/// The probe is a blocking `connect`: it returns at once unless the live listener's backlog is
/// full, in which case it waits until that listener accepts.
pub fn remove_stale_socket(path: &Path) -> Result<(), StaleSocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StaleSocketError::Inspect {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(StaleSocketError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => {
            return Err(StaleSocketError::InUse {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StaleSocketError::Inspect {
                path: path.to_owned(),
                source,
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StaleSocketError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn a_missing_path_is_free() {
        let tmp = tempfile::tempdir().unwrap();
        remove_stale_socket(&tmp.path().join("none.sock")).unwrap();
    }

    #[test]
    fn a_socket_nobody_listens_on_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("stale.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "the listener leaves its socket file behind");
        remove_stale_socket(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_socket_a_process_answers_on_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("live.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let err = remove_stale_socket(&path).unwrap_err();
        assert!(matches!(err, StaleSocketError::InUse { .. }), "{err}");
        assert!(path.exists());
        // Still the live listener's socket: a new connection reaches it.
        let _client = UnixStream::connect(&path).unwrap();
        assert!(listener.accept().is_ok());
    }

    #[test]
    fn a_regular_file_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("file.sock");
        std::fs::write(&path, b"precious").unwrap();
        let err = remove_stale_socket(&path).unwrap_err();
        assert!(matches!(err, StaleSocketError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn a_symlink_to_a_stale_socket_is_refused_and_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("stale.sock");
        drop(UnixListener::bind(&target).unwrap());
        let link = tmp.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = remove_stale_socket(&link).unwrap_err();
        assert!(matches!(err, StaleSocketError::NotASocket { .. }), "{err}");
        assert!(target.exists() && link.exists());
    }
}
