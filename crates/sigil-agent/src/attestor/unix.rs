//! The `unix` workload attestor: uid, gid, user and group names, supplementary groups, the path
//! of the binary and its SHA-256, from a [`PinnedPeer`] (captured when the connection was
//! accepted): ids from the connection's credentials, groups read at accept, and the binary
//! hashed through the handle opened at accept, so a later `exec` or pid reuse cannot change
//! what this attestor reports.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use nix::unistd::{Gid, Group, Uid, User};
use sigil_keys::digest::Sha256Stream;
use sigil_spiffe::Selector;

use super::{AttestError, CallerInfo, PinnedPeer, WorkloadAttestor};

/// Selector type of everything this attestor produces.
const SELECTOR_TYPE: &str = "unix";
/// Binaries whose hash is remembered, keyed by file identity; cleared when full.
const HASH_CACHE_ENTRIES: usize = 256;
const HASH_CHUNK: usize = 64 * 1024;

/// Settings of the `unix` attestor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixAttestorConfig {
    /// Binaries larger than this are not hashed (no `unix:sha256` selector); 0 disables hashing.
    pub max_hash_bytes: u64,
}

impl Default for UnixAttestorConfig {
    fn default() -> Self {
        Self {
            max_hash_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The `unix` attestor, with a cache of binary hashes keyed by (device, inode, size, mtime,
/// ctime), so workloads running the same binary are not re-hashed every time. mtime can be set
/// back by the file's owner, ctime cannot: any change to the file changes the key.
#[derive(Debug, Default)]
pub struct UnixAttestor {
    config: UnixAttestorConfig,
    hashes: Mutex<HashMap<FileKey, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Pins and attests `caller` with the default settings (see [`UnixAttestor::attest`]).
pub fn attest_unix(caller: &CallerInfo) -> Result<Vec<Selector>, AttestError> {
    UnixAttestor::default().attest(&PinnedPeer::capture(*caller)?)
}

impl UnixAttestor {
    /// An attestor with `config`.
    pub fn new(config: UnixAttestorConfig) -> Self {
        Self {
            config,
            hashes: Mutex::new(HashMap::new()),
        }
    }

    /// The selectors of `peer`: `uid`, `gid`, `user`, `group`, `supplementary_gid`,
    /// `supplementary_group`, `path` and `sha256` (names, path and hash only when they can be
    /// read and are valid selector values), as they were when `peer` was pinned. The binary is
    /// hashed through the handle pinned at accept, which the first call takes: attest a peer
    /// once and keep the result. Fails only if the pinned binary cannot be read.
    pub fn attest(&self, peer: &PinnedPeer) -> Result<Vec<Selector>, AttestError> {
        let caller = peer.caller();
        let mut selectors = id_selectors(&caller, peer.supplementary_gids());
        if let Some(path) = peer.binary_path() {
            // A deleted binary reads as "<path> (deleted)", which is no selector value.
            selectors.extend(path.to_str().and_then(|p| selector("path", p)));
        }
        if self.config.max_hash_bytes > 0
            && let Some(file) = peer.take_binary()
        {
            let hex = self
                .hash_bounded(file)
                .map_err(|source| AttestError::Proc {
                    path: format!("/proc/{}/exe", caller.pid),
                    source,
                })?;
            selectors.extend(hex.and_then(|hex| selector("sha256", &hex)));
        }
        selectors.sort();
        selectors.dedup();
        Ok(selectors)
    }

    /// The SHA-256 of `file`, or `None` if it is larger than the configured limit.
    fn hash_bounded(&self, file: File) -> std::io::Result<Option<String>> {
        let meta = file.metadata()?;
        if meta.len() > self.config.max_hash_bytes {
            return Ok(None);
        }
        let key = FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        };
        if let Some(hex) = self.hashes.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(Some(hex));
        }
        let mut hasher = Sha256Stream::new();
        let mut limited = file.take(self.config.max_hash_bytes.saturating_add(1));
        let mut chunk = vec![0u8; HASH_CHUNK];
        let mut total = 0u64;
        loop {
            let n = limited.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            total += n as u64;
            hasher.update(chunk.get(..n).unwrap_or_default());
        }
        // The file grew past the limit while being read: no trustworthy hash.
        if total > self.config.max_hash_bytes {
            return Ok(None);
        }
        let hex = hasher.finish_hex();
        if let Ok(mut m) = self.hashes.lock() {
            if m.len() >= HASH_CACHE_ENTRIES {
                m.clear();
            }
            m.insert(key, hex.clone());
        }
        Ok(Some(hex))
    }
}

impl WorkloadAttestor for UnixAttestor {
    fn attest(&self, peer: &PinnedPeer) -> Result<Vec<Selector>, AttestError> {
        UnixAttestor::attest(self, peer)
    }
}

/// Id and name selectors from the connection's credentials and the process's groups.
fn id_selectors(caller: &CallerInfo, supplementary_gids: &[u32]) -> Vec<Selector> {
    let mut out = Vec::new();
    out.extend(selector("uid", &caller.uid.to_string()));
    out.extend(selector("gid", &caller.gid.to_string()));
    if let Ok(Some(user)) = User::from_uid(Uid::from_raw(caller.uid)) {
        out.extend(selector("user", &user.name));
    }
    if let Ok(Some(group)) = Group::from_gid(Gid::from_raw(caller.gid)) {
        out.extend(selector("group", &group.name));
    }
    for &gid in supplementary_gids {
        out.extend(selector("supplementary_gid", &gid.to_string()));
        if let Ok(Some(group)) = Group::from_gid(Gid::from_raw(gid)) {
            out.extend(selector("supplementary_group", &group.name));
        }
    }
    out
}

/// `unix:<key>:<value>`, or `None` if `value` is not a valid selector value.
fn selector(key: &str, value: &str) -> Option<Selector> {
    Selector::new(SELECTOR_TYPE, &format!("{key}:{value}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> CallerInfo {
        CallerInfo {
            pid: i32::try_from(std::process::id()).unwrap(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        }
    }

    fn values(selectors: &[Selector], key: &str) -> Vec<String> {
        let prefix = format!("{key}:");
        selectors
            .iter()
            .filter_map(|s| s.value().strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    #[test]
    fn attests_the_current_process_with_ids_path_and_hash() {
        let selectors = attest_unix(&me()).unwrap();
        assert!(selectors.iter().all(|s| s.kind() == "unix"));
        assert_eq!(values(&selectors, "uid"), vec![me().uid.to_string()]);
        assert_eq!(values(&selectors, "gid"), vec![me().gid.to_string()]);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(values(&selectors, "path"), vec![exe.display().to_string()]);
        let expected = sigil_keys::sha256_hex(&std::fs::read(&exe).unwrap());
        assert_eq!(values(&selectors, "sha256"), vec![expected]);
        if let Ok(Some(user)) = User::from_uid(Uid::from_raw(me().uid)) {
            assert_eq!(values(&selectors, "user"), vec![user.name]);
        }
    }

    #[test]
    fn skips_the_hash_of_binaries_above_the_limit() {
        let attestor = UnixAttestor::new(UnixAttestorConfig {
            max_hash_bytes: 1024,
        });
        let selectors = attestor
            .attest(&PinnedPeer::capture(me()).unwrap())
            .unwrap();
        assert!(values(&selectors, "sha256").is_empty());
        assert_eq!(values(&selectors, "path").len(), 1);
    }

    #[test]
    fn repeated_attestation_uses_the_cached_hash() {
        let attestor = UnixAttestor::default();
        let first = attestor
            .attest(&PinnedPeer::capture(me()).unwrap())
            .unwrap();
        assert_eq!(attestor.hashes.lock().unwrap().len(), 1);
        assert_eq!(
            attestor
                .attest(&PinnedPeer::capture(me()).unwrap())
                .unwrap(),
            first
        );
    }

    #[test]
    fn refuses_a_process_whose_uid_differs_from_the_connection() {
        let mut caller = me();
        caller.uid = caller.uid.wrapping_add(1);
        assert!(matches!(
            attest_unix(&caller),
            Err(AttestError::ProcessChanged { .. })
        ));
    }

    #[test]
    fn refuses_unknown_or_missing_processes() {
        let mut caller = me();
        caller.pid = 0;
        assert!(matches!(attest_unix(&caller), Err(AttestError::UnknownPid)));
        caller.pid = 1 << 30;
        assert!(matches!(
            attest_unix(&caller),
            Err(AttestError::ProcessGone { .. })
        ));
    }
}
