//! Writing secret files (private keys, tokens) atomically and owner-only: a temporary file created
//! with mode 0600 in the target directory, written, synced, then renamed over the target, so a
//! reader sees the old content or the new, never a partial file or a moment of wider permissions.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of secret files: read and write for the owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of directories created for secret files: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Writes `bytes` to `path` atomically with mode 0600, creating missing parent directories with
/// mode 0700. An existing file at `path` is replaced (its old mode does not survive). On error the
/// temporary file is removed and the target is left as it was.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(PRIVATE_DIR_MODE)
            .create(&dir)?;
    }

    let suffix = crate::random_bytes(8)
        .map(|b| crate::digest::hex(&b))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp-{suffix}"));
    let temp_path = dir.join(temp_name);

    let result = write_then_rename(&temp_path, path, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&temp_path);
    }
    result?;
    // Make the rename durable; a failure here does not undo the (already visible) write.
    if let Ok(dir_handle) = File::open(&dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(())
}

fn write_then_rename(temp_path: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(temp_path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp_path, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_with_mode_0600_and_creates_parent_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys/sub/a.key");
        write_private_file(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join("keys/sub")), 0o700);
    }

    #[test]
    fn replaces_existing_file_and_its_wider_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.key");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn leaves_no_temporary_files_behind() {
        let tmp = tempfile::tempdir().unwrap();
        write_private_file(&tmp.path().join("a.key"), b"x").unwrap();
        write_private_file(&tmp.path().join("a.key"), b"y").unwrap();
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.key")]);
    }

    #[test]
    fn fails_cleanly_when_the_target_is_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("d");
        fs::create_dir(path.join("")).unwrap();
        fs::write(path.join("inner"), b"x").unwrap();
        assert!(write_private_file(&path, b"x").is_err());
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("d")]);
    }
}
