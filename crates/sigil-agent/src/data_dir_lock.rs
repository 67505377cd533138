//! The exclusive lock on the agent's data directory: one running agent per directory. A second
//! agent started on the same configuration must fail before it touches the state, the join
//! token or the Workload API socket of the one already running.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::AgentError;

/// Name of the lock file inside the data directory.
const LOCK_FILE: &str = "agent.lock";

/// An exclusive `flock` on `<data_dir>/agent.lock`, held until dropped (or the process exits,
/// however it exits: the kernel releases it, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct DataDirLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) without waiting. Fails with
    /// [`AgentError::AlreadyRunning`] when another process holds it, or [`AgentError::Lock`] when
    /// the lock file cannot be opened (it is never followed through a symlink).
    pub fn acquire(data_dir: &Path) -> Result<Self, AgentError> {
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(&path)
            .map_err(|source| AgentError::Lock {
                path: path.clone(),
                source,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Self { _lock: lock, path }),
            Err((_, Errno::EWOULDBLOCK)) => Err(AgentError::AlreadyRunning {
                path: data_dir.to_owned(),
                lock: path,
            }),
            Err((_, errno)) => Err(AgentError::Lock {
                path,
                source: errno.into(),
            }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        assert_eq!(first.path(), dir.path().join("agent.lock"));
        // flock locks belong to the open file description, so a second open in the same process
        // contends exactly as another process would.
        let second = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(
            matches!(&second, AgentError::AlreadyRunning { path, .. } if path == dir.path()),
            "{second}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn directories_lock_independently() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let _a = DataDirLock::acquire(a.path()).unwrap();
        DataDirLock::acquire(b.path()).unwrap();
    }

    #[test]
    fn a_symlinked_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, b"keep").unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("agent.lock")).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, AgentError::Lock { .. }), "{err}");
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
    }
}
