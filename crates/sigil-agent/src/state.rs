//! The agent's own identity on disk: its SVID chain and trust bundle (`agent-state.json`) and its
//! private key (`agent.key`, PKCS#8 PEM), both mode 0600 and written atomically, so a restarted
//! agent resumes without a new join token.

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
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
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
        let (Some(state), Some(key)) = (read_bounded(&spath)?, read_bounded(&kpath)?) else {
            return Ok(None);
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
        sigil_keys::files::write_private_file(&kpath, self.key.to_pkcs8_pem().as_bytes())
            .map_err(|source| StateError::Write { path: kpath, source })?;
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
        sigil_keys::files::write_private_file(&spath, &bytes)
            .map_err(|source| StateError::Write { path: spath, source })
    }
}
