//! The password file side of a root rotation: the new password is first written beside the
//! target's password file (`<file>.next`, mode 0600, created new and renamed into place by
//! `sigil_keys::files`), then the database is changed, then the staged file replaces the old one.
//! If the database refuses, the staged file is removed and the old password still works; if the
//! server dies between the database change and the rename, the password that works is in
//! `<file>.next`, where an operator finds it.

use std::path::{Path, PathBuf};

/// A new password written next to the password file, not yet in place.
#[derive(Debug)]
pub struct Staged {
    staged: PathBuf,
    target: PathBuf,
}

/// Writes `password` to `<path>.next`.
pub fn stage(path: &Path, password: &str) -> Result<Staged, String> {
    let mut staged = path.as_os_str().to_owned();
    staged.push(".next");
    let staged = PathBuf::from(staged);
    sigil_keys::files::write_private_file(&staged, password.as_bytes())
        .map_err(|e| format!("cannot write `{}`: {e}", staged.display()))?;
    Ok(Staged {
        staged,
        target: path.to_path_buf(),
    })
}

impl Staged {
    /// Moves the staged password over the password file.
    pub fn commit(self) -> Result<(), String> {
        std::fs::rename(&self.staged, &self.target).map_err(|e| {
            format!(
                "cannot rename `{}` to `{}`: {e}",
                self.staged.display(),
                self.target.display()
            )
        })
    }

    /// Removes the staged password (the database kept the old one).
    pub fn discard(self) {
        if let Err(e) = std::fs::remove_file(&self.staged) {
            tracing::warn!(path = %self.staged.display(), error = %e, "cannot remove a staged password file");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn commit_replaces_the_file_with_a_private_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.password");
        std::fs::write(&path, "old").unwrap();
        let staged = stage(&path, "new-secret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        staged.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new-secret");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!dir.path().join("admin.password.next").exists());
    }

    #[test]
    fn discard_keeps_the_old_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.password");
        std::fs::write(&path, "old").unwrap();
        stage(&path, "new-secret").unwrap().discard();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert!(!dir.path().join("admin.password.next").exists());
    }
}
