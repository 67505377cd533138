//! Writing output files (private keys and tokens 0600; certificates and bundles 0644) atomically
//! and without following links: a temporary file with a random name is created exclusively
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`) in the target directory, given its exact mode, written, synced,
//! then renamed over the target. A reader sees the old content or the new, never a partial file or
//! a moment of wider permissions; a symlink or another user's file planted at the target is
//! replaced, never written through; the directory itself is used as given.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Mode of secret files: read and write for the owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of directories created for secret files: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of public files (certificates, trust bundles): readable by everyone, written by the owner.
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of directories created for public files.
pub const PUBLIC_DIR_MODE: u32 = 0o755;

/// Writes `bytes` to `path` atomically with mode 0600, creating missing parent directories with
/// mode 0700. Whatever was at `path` (a file of any owner or mode, a symlink) is replaced, never
/// written through. On error the temporary file is removed and the target is left as it was.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_replacing(path, bytes, PRIVATE_FILE_MODE, PRIVATE_DIR_MODE)
}

/// Writes `bytes` to `path` atomically with mode 0644, creating missing parent directories with
/// mode 0755; otherwise exactly like [`write_private_file`] (replaces, never writes through).
pub fn write_public_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_replacing(path, bytes, PUBLIC_FILE_MODE, PUBLIC_DIR_MODE)
}

fn write_file_replacing(path: &Path, bytes: &[u8], mode: u32, dir_mode: u32) -> io::Result<()> {
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
            .mode(dir_mode)
            .create(&dir)?;
    }

    let suffix = crate::random_bytes(8)
        .map(|b| crate::digest::hex(&b))
        .map_err(|e| io::Error::other(e.to_string()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp-{suffix}"));
    let temp_path = dir.join(temp_name);

    let result = write_then_rename(&temp_path, path, bytes, mode);
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

fn write_then_rename(temp_path: &Path, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    // create_new is O_CREAT|O_EXCL: a name planted by someone else (file or symlink) is an error,
    // never opened. O_NOFOLLOW says the same for links explicitly.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(temp_path)?;
    // The umask may have narrowed `mode`; the file gets exactly `mode` before any byte is written.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    // rename(2) replaces the directory entry: a symlink at `path` is replaced, not followed.
    fs::rename(temp_path, path)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn public_file_gets_mode_0644_and_replaces_a_private_one() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("bundle.pem");
        write_public_file(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o644);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_public_file(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn symlink_at_the_target_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        let out = tmp.path().join("out");
        fs::create_dir(&out).unwrap();
        for (name, write) in [
            (
                "svid.pem",
                write_public_file as fn(&Path, &[u8]) -> io::Result<()>,
            ),
            ("svid.key", write_private_file),
        ] {
            let target = out.join(name);
            std::os::unix::fs::symlink(&victim, &target).unwrap();
            // Positive first: through the link, the victim is what a naive write would reach.
            assert_eq!(fs::read(&target).unwrap(), b"untouched");
            write(&target, b"new content").unwrap();
            let meta = fs::symlink_metadata(&target).unwrap();
            assert!(meta.file_type().is_file(), "{name} is a regular file now");
            assert_eq!(fs::read(&target).unwrap(), b"new content");
        }
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(mode(&victim), 0o600);
    }

    #[test]
    fn hard_link_at_the_target_is_replaced_not_written_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let target = tmp.path().join("bundle.pem");
        fs::hard_link(&victim, &target).unwrap();
        write_public_file(&target, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
    }
}
