//! The agent's own identity on disk: its SVID chain and trust bundle (`agent-state.json`) and its
//! private key (`agent.key`, PKCS#8 PEM), both mode 0600 and written atomically, so a restarted
//! agent resumes without a new join token; and its removal, when the server refuses the agent
//! (banned, evicted), so the refused identity is never presented again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sigil_keys::PrivateKey;
use sigil_spiffe::{SpiffeId, TrustBundle};

/// Largest state file read, in bytes.
const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;

/// What went wrong reading or writing agent state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("cannot delete {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The agent's SVID, key and bundle.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub spiffe_id: SpiffeId,
    /// DER, leaf first.
    pub cert_chain: Vec<Vec<u8>>,
    pub expires_at: i64,
    pub key: Arc<PrivateKey>,
    pub bundle: TrustBundle,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    spiffe_id: String,
    cert_chain: Vec<String>,
    expires_at: i64,
    bundle: TrustBundle,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("agent-state.json")
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("agent.key")
}

fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut buf = Vec::new();
    file.take(MAX_STATE_BYTES)
        .read_to_end(&mut buf)
        .map_err(|source| StateError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok(Some(buf))
}

impl AgentIdentity {
    /// Loads the identity from `dir`; `None` when the agent has never attested.
    pub fn load(dir: &Path) -> Result<Option<Self>, StateError> {
        let spath = state_path(dir);
        let kpath = key_path(dir);
        let (state, key) = match (read_bounded(&spath)?, read_bounded(&kpath)?) {
            (Some(state), Some(key)) => (state, key),
            (None, None) => return Ok(None),
            // Half an identity is damage, not a fresh node: re-attesting would hide it.
            (Some(_), None) => {
                return Err(StateError::Corrupt {
                    path: kpath,
                    detail: "the agent key is missing while its state file exists".into(),
                });
            }
            (None, Some(_)) => {
                return Err(StateError::Corrupt {
                    path: spath,
                    detail: "the agent state file is missing while its key exists".into(),
                });
            }
        };
        let corrupt = |path: &Path, detail: String| StateError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        let disk: OnDisk =
            serde_json::from_slice(&state).map_err(|e| corrupt(&spath, e.to_string()))?;
        let key_pem = String::from_utf8(key).map_err(|_| corrupt(&kpath, "not UTF-8".into()))?;
        let key =
            PrivateKey::from_pkcs8_pem(&key_pem).map_err(|e| corrupt(&kpath, e.to_string()))?;
        let spiffe_id =
            SpiffeId::parse(&disk.spiffe_id).map_err(|e| corrupt(&spath, e.to_string()))?;
        let cert_chain = disk
            .cert_chain
            .iter()
            .map(|c| STANDARD.decode(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(&spath, e.to_string()))?;
        Ok(Some(Self {
            spiffe_id,
            cert_chain,
            expires_at: disk.expires_at,
            key: Arc::new(key),
            bundle: disk.bundle,
        }))
    }

    /// Writes the identity to `dir` (key first, so a crash never leaves state without its key).
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let kpath = key_path(dir);
        sigil_keys::files::write_private_file(&kpath, self.key.to_pkcs8_pem().as_bytes()).map_err(
            |source| StateError::Write {
                path: kpath,
                source,
            },
        )?;
        let disk = OnDisk {
            spiffe_id: self.spiffe_id.to_string(),
            cert_chain: self.cert_chain.iter().map(|c| STANDARD.encode(c)).collect(),
            expires_at: self.expires_at,
            bundle: self.bundle.clone(),
        };
        let spath = state_path(dir);
        let bytes = serde_json::to_vec_pretty(&disk).map_err(|e| StateError::Corrupt {
            path: spath.clone(),
            detail: e.to_string(),
        })?;
        sigil_keys::files::write_private_file(&spath, &bytes).map_err(|source| StateError::Write {
            path: spath,
            source,
        })
    }

    /// Deletes the identity stored in `dir`: the key first (the secret goes before anything else),
    /// then the state file, then makes the removal durable. Files already gone are no error, so a
    /// second call, or a call on an agent that never attested, succeeds. Afterwards
    /// [`AgentIdentity::load`] returns `None`.
    pub fn remove(dir: &Path) -> Result<(), StateError> {
        for path in [key_path(dir), state_path(dir)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StateError::Remove { path, source }),
            }
        }
        // Persist the unlinks, so a crash now cannot bring the identity back.
        if let Ok(handle) = std::fs::File::open(dir) {
            let _ = handle.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::unix::fs::PermissionsExt;

    use sigil_spiffe::{JwtAuthorityKey, TrustDomain};

    use super::*;

    /// A self-signed certificate for `spiffe_id`, signed by `key` (the agent's SVID stand-in).
    pub(crate) fn self_signed(spiffe_id: &SpiffeId, key: &PrivateKey) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names =
            vec![rcgen::SanType::URI(spiffe_id.as_str().try_into().unwrap())];
        params.self_signed(key).unwrap().der().to_vec()
    }

    /// An agent identity for `example.org` valid until `expires_at`.
    pub(crate) fn sample_identity(expires_at: i64) -> AgentIdentity {
        let spiffe_id = SpiffeId::parse("spiffe://example.org/sigil/agent/join_token/n1").unwrap();
        let key = PrivateKey::generate().unwrap();
        let leaf = self_signed(&spiffe_id, &key);
        let root_key = PrivateKey::generate().unwrap();
        let root_id = SpiffeId::parse("spiffe://example.org/root").unwrap();
        let root = self_signed(&root_id, &root_key);
        AgentIdentity {
            spiffe_id,
            cert_chain: vec![leaf],
            expires_at,
            key: Arc::new(key),
            bundle: TrustBundle {
                trust_domain: TrustDomain::parse("example.org").unwrap(),
                x509_authorities: vec![root],
                jwt_authorities: vec![JwtAuthorityKey {
                    kid: "k1".into(),
                    public_key_der: root_key.public_key().spki_der().to_vec(),
                    expires_at: expires_at + 60,
                }],
                sequence: 3,
                refresh_hint: 300,
            },
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn saved_identity_loads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let identity = sample_identity(1_700_000_000);
        identity.save(dir.path()).unwrap();
        let loaded = AgentIdentity::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.spiffe_id, identity.spiffe_id);
        assert_eq!(loaded.cert_chain, identity.cert_chain);
        assert_eq!(loaded.expires_at, identity.expires_at);
        assert_eq!(loaded.bundle, identity.bundle);
        assert_eq!(loaded.key.pkcs8_der(), identity.key.pkcs8_der());
    }

    #[test]
    fn saving_again_replaces_the_previous_identity() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        let renewed = sample_identity(1_700_003_600);
        renewed.save(dir.path()).unwrap();
        let loaded = AgentIdentity::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.expires_at, 1_700_003_600);
        assert_eq!(loaded.key.pkcs8_der(), renewed.key.pkcs8_der());
        assert_eq!(loaded.cert_chain, renewed.cert_chain);
    }

    #[test]
    fn state_and_key_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        // A world-readable leftover must not keep its mode when the identity is saved over it.
        std::fs::write(key_path(dir.path()), b"old").unwrap();
        std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        assert_eq!(mode(&key_path(dir.path())), 0o600);
        assert_eq!(mode(&state_path(dir.path())), 0o600);
    }

    #[test]
    fn key_is_stored_as_pkcs8_pem_and_not_in_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let identity = sample_identity(1_700_000_000);
        identity.save(dir.path()).unwrap();
        let key_text = std::fs::read_to_string(key_path(dir.path())).unwrap();
        assert!(key_text.starts_with("-----BEGIN PRIVATE KEY-----"));
        let state_text = std::fs::read_to_string(state_path(dir.path())).unwrap();
        assert!(!state_text.contains("PRIVATE KEY"));
        let key_b64 = STANDARD.encode(identity.key.pkcs8_der());
        assert!(!state_text.contains(&key_b64));
    }

    #[test]
    fn debug_output_does_not_reveal_the_key() {
        let identity = sample_identity(1_700_000_000);
        let printed = format!("{identity:?}");
        assert!(printed.contains("<redacted>"), "{printed}");
        let pem = identity.key.to_pkcs8_pem();
        let body: String = pem.lines().nth(1).unwrap().chars().take(24).collect();
        assert!(!printed.contains(&body));
    }

    #[test]
    fn missing_files_mean_never_attested() {
        let dir = tempfile::tempdir().unwrap();
        assert!(AgentIdentity::load(dir.path()).unwrap().is_none());
        assert!(
            AgentIdentity::load(&dir.path().join("does-not-exist"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn half_an_identity_is_corrupt_not_absent() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        std::fs::remove_file(key_path(dir.path())).unwrap();
        assert_corrupt(dir.path(), &key_path(dir.path()));

        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        std::fs::remove_file(state_path(dir.path())).unwrap();
        assert_corrupt(dir.path(), &state_path(dir.path()));
    }

    fn assert_corrupt(dir: &Path, expected_path: &Path) {
        match AgentIdentity::load(dir) {
            Err(StateError::Corrupt { path, detail }) => {
                assert_eq!(path, expected_path, "{detail}");
            }
            other => panic!("expected StateError::Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_state_file_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        let spath = state_path(dir.path());
        let good = std::fs::read_to_string(&spath).unwrap();

        std::fs::write(&spath, b"{ not json").unwrap();
        assert_corrupt(dir.path(), &spath);

        std::fs::write(&spath, b"").unwrap();
        assert_corrupt(dir.path(), &spath);

        let bad_id = good.replace("spiffe://example.org/sigil", "https://example.org/sigil");
        assert_ne!(bad_id, good);
        std::fs::write(&spath, bad_id).unwrap();
        assert_corrupt(dir.path(), &spath);

        let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
        value["cert_chain"] = serde_json::json!(["%%% not base64 %%%"]);
        std::fs::write(&spath, value.to_string()).unwrap();
        assert_corrupt(dir.path(), &spath);
    }

    #[test]
    fn corrupt_key_file_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        let kpath = key_path(dir.path());

        std::fs::write(
            &kpath,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert_corrupt(dir.path(), &kpath);

        std::fs::write(&kpath, [0xff, 0xfe, 0x00]).unwrap();
        assert_corrupt(dir.path(), &kpath);
    }

    #[test]
    fn oversized_state_file_is_refused_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        let spath = state_path(dir.path());
        let limit = usize::try_from(MAX_STATE_BYTES).unwrap();
        let mut big = b"{\"spiffe_id\":\"".to_vec();
        big.resize(limit + 1024, b'a');
        std::fs::write(&spath, big).unwrap();
        assert_corrupt(dir.path(), &spath);
    }

    #[test]
    fn removing_the_identity_deletes_key_and_state_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        let other = dir.path().join("agent.lock");
        std::fs::write(&other, b"").unwrap();
        assert!(AgentIdentity::load(dir.path()).unwrap().is_some());

        AgentIdentity::remove(dir.path()).unwrap();
        assert!(!key_path(dir.path()).exists());
        assert!(!state_path(dir.path()).exists());
        assert!(AgentIdentity::load(dir.path()).unwrap().is_none());
        assert!(other.exists(), "only the identity is deleted");

        AgentIdentity::remove(dir.path()).unwrap();
        AgentIdentity::remove(&dir.path().join("never-created")).unwrap();
    }

    #[test]
    fn an_identity_that_cannot_be_deleted_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        sample_identity(1_700_000_000).save(dir.path()).unwrap();
        // A directory in place of the state file: unlink fails with something other than
        // "not found", and the error names the file.
        std::fs::remove_file(state_path(dir.path())).unwrap();
        std::fs::create_dir(state_path(dir.path())).unwrap();
        match AgentIdentity::remove(dir.path()) {
            Err(StateError::Remove { path, .. }) => assert_eq!(path, state_path(dir.path())),
            other => panic!("expected StateError::Remove, got {other:?}"),
        }
        assert!(!key_path(dir.path()).exists(), "the key went first");
    }

    #[test]
    fn unwritable_directory_is_a_write_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        // A regular file where the data directory should be.
        let err = sample_identity(1_700_000_000).save(&file).unwrap_err();
        assert!(matches!(err, StateError::Write { .. }), "{err:?}");
    }
}
