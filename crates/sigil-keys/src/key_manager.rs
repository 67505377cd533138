//! Key managers: where long-lived private keys (CA and JWT authorities, the agent's key) are
//! created, kept and deleted, by key id. [`MemoryKeyManager`] keeps them in memory (tests, `sigil
//! dev`); [`DiskKeyManager`] keeps PKCS#8 PEM files of mode 0600, `<dir>/<key_id>.key`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::files::write_private_file;
use crate::{KeyError, PrivateKey};

/// Longest key id accepted.
pub const MAX_KEY_ID_LEN: usize = 128;
/// Largest key file read, in bytes.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Reads a PKCS#8 PEM private key file of at most 64 KiB through zeroised buffers; `None` when
/// the file does not exist.
pub fn read_private_key(path: &Path) -> Result<Option<PrivateKey>, KeyError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    // Sized from the file length so the key text is never copied by a reallocation.
    let len = file
        .metadata()
        .map(|m| m.len())
        .unwrap_or(0)
        .min(MAX_KEY_FILE_BYTES);
    let mut text = Zeroizing::new(String::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(KeyError::InvalidPrivateKey {
            reason: "key file is larger than 64 KiB",
        });
    }
    Ok(Some(PrivateKey::from_pkcs8_pem(&text)?))
}

/// Creates, loads and deletes private keys by id.
///
/// Key ids are 1 to 128 characters of `A-Z a-z 0-9 . _ -`, not starting with `.`; other ids are
/// refused with [`KeyError::BadKeyId`] by every method.
pub trait KeyManager: Send + Sync + fmt::Debug {
    /// Generates a new key under `key_id`, persists it (replacing any existing one) and returns it.
    fn generate(&self, key_id: &str) -> Result<Arc<PrivateKey>, KeyError>;

    /// The key stored under `key_id`, or `None` if there is none.
    fn load(&self, key_id: &str) -> Result<Option<Arc<PrivateKey>>, KeyError>;

    /// Deletes the key stored under `key_id`; deleting a missing key succeeds.
    fn delete(&self, key_id: &str) -> Result<(), KeyError>;
}

/// Checks a key id: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.` (no hidden files, no
/// `.` or `..`, no separators), so it is always a plain file name.
pub fn validate_key_id(key_id: &str) -> Result<(), KeyError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_LEN
        && !key_id.starts_with('.')
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadKeyId {
            key_id: key_id.chars().take(MAX_KEY_ID_LEN + 1).collect(),
        })
    }
}

/// Keeps keys in memory only; they are lost when it is dropped.
#[derive(Default)]
pub struct MemoryKeyManager {
    keys: Mutex<HashMap<String, Arc<PrivateKey>>>,
}

impl MemoryKeyManager {
    /// An empty manager.
    pub fn new() -> Self {
        Self::default()
    }

    fn keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PrivateKey>>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still safe to use.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryKeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<String> = self.keys().keys().cloned().collect();
        ids.sort();
        f.debug_struct("MemoryKeyManager")
            .field("key_ids", &ids)
            .finish()
    }
}

impl KeyManager for MemoryKeyManager {
    fn generate(&self, key_id: &str) -> Result<Arc<PrivateKey>, KeyError> {
        validate_key_id(key_id)?;
        let key = Arc::new(PrivateKey::generate()?);
        self.keys().insert(key_id.to_owned(), Arc::clone(&key));
        Ok(key)
    }

    fn load(&self, key_id: &str) -> Result<Option<Arc<PrivateKey>>, KeyError> {
        validate_key_id(key_id)?;
        Ok(self.keys().get(key_id).cloned())
    }

    fn delete(&self, key_id: &str) -> Result<(), KeyError> {
        validate_key_id(key_id)?;
        self.keys().remove(key_id);
        Ok(())
    }
}

/// Keeps each key as a PKCS#8 PEM file `<dir>/<key_id>.key`, mode 0600, written atomically.
#[derive(Debug, Clone)]
pub struct DiskKeyManager {
    dir: PathBuf,
}

impl DiskKeyManager {
    /// A manager storing keys in `dir` (created with mode 0700 on first write if missing).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The directory keys are stored in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key_id` (after validating the id).
    pub fn key_path(&self, key_id: &str) -> Result<PathBuf, KeyError> {
        validate_key_id(key_id)?;
        Ok(self.dir.join(format!("{key_id}.key")))
    }
}

impl KeyManager for DiskKeyManager {
    fn generate(&self, key_id: &str) -> Result<Arc<PrivateKey>, KeyError> {
        let path = self.key_path(key_id)?;
        let key = PrivateKey::generate()?;
        write_private_file(&path, key.to_pkcs8_pem().as_bytes())
            .map_err(|source| KeyError::Io { path, source })?;
        Ok(Arc::new(key))
    }

    fn load(&self, key_id: &str) -> Result<Option<Arc<PrivateKey>>, KeyError> {
        let path = self.key_path(key_id)?;
        Ok(read_private_key(&path)?.map(Arc::new))
    }

    fn delete(&self, key_id: &str) -> Result<(), KeyError> {
        let path = self.key_path(key_id)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn managers(dir: &Path) -> Vec<Box<dyn KeyManager>> {
        vec![
            Box::new(MemoryKeyManager::new()),
            Box::new(DiskKeyManager::new(dir.join("keys"))),
        ]
    }

    #[test]
    fn generate_then_load_gives_the_same_public_key() {
        let tmp = tempfile::tempdir().unwrap();
        for manager in managers(tmp.path()) {
            let key = manager.generate("x509-ca-1").unwrap();
            let loaded = manager.load("x509-ca-1").unwrap().unwrap();
            assert_eq!(loaded.public_key(), key.public_key(), "{manager:?}");
        }
    }

    #[test]
    fn disk_keys_survive_a_new_manager() {
        let tmp = tempfile::tempdir().unwrap();
        let key = DiskKeyManager::new(tmp.path().to_path_buf())
            .generate("jwt.a")
            .unwrap();
        let again = DiskKeyManager::new(tmp.path().to_path_buf())
            .load("jwt.a")
            .unwrap()
            .unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }

    #[test]
    fn disk_key_files_have_mode_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let manager = DiskKeyManager::new(tmp.path().join("keys"));
        manager.generate("agent").unwrap();
        let path = manager.key_path("agent").unwrap();
        assert_eq!(path, tmp.path().join("keys/agent.key"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(tmp.path().join("keys"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }

    #[test]
    fn generate_replaces_and_delete_removes() {
        let tmp = tempfile::tempdir().unwrap();
        for manager in managers(tmp.path()) {
            let first = manager.generate("k").unwrap();
            let second = manager.generate("k").unwrap();
            assert_ne!(first.public_key(), second.public_key());
            assert_eq!(
                manager.load("k").unwrap().unwrap().public_key(),
                second.public_key()
            );
            manager.delete("k").unwrap();
            assert!(manager.load("k").unwrap().is_none());
            manager.delete("k").unwrap();
        }
    }

    #[test]
    fn bad_key_ids_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let long = "a".repeat(MAX_KEY_ID_LEN + 1);
        for manager in managers(tmp.path()) {
            for bad in [
                "",
                ".",
                "..",
                "../x",
                "a/b",
                ".hidden",
                "a b",
                "é",
                "a\0b",
                long.as_str(),
            ] {
                assert!(
                    matches!(manager.generate(bad), Err(KeyError::BadKeyId { .. })),
                    "{bad:?}"
                );
                assert!(
                    matches!(manager.load(bad), Err(KeyError::BadKeyId { .. })),
                    "{bad:?}"
                );
                assert!(
                    matches!(manager.delete(bad), Err(KeyError::BadKeyId { .. })),
                    "{bad:?}"
                );
            }
        }
        assert!(validate_key_id(&"a".repeat(MAX_KEY_ID_LEN)).is_ok());
        assert!(validate_key_id("A-z_0.9").is_ok());
        let entries: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert!(entries.is_empty(), "nothing may be written for a bad id");
    }

    #[test]
    fn debug_never_prints_keys() {
        let manager = MemoryKeyManager::new();
        manager.generate("k").unwrap();
        let text = format!("{manager:?}");
        assert!(text.contains("\"k\""));
        assert!(!text.contains("PRIVATE"));
    }
}
