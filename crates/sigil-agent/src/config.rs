//! The agent's validated configuration (the CLI turns `agent.toml` into this).

use std::path::PathBuf;
use std::time::Duration;

use sigil_spiffe::TrustDomain;

/// Everything the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub trust_domain: TrustDomain,
    /// `host:port` of each server replica's agent API, in the order the agent tries them (it
    /// starts from the last one that worked and moves to the next one when a connection fails).
    /// Must not be empty: [`crate::start`] refuses an empty list with
    /// [`crate::AgentError::NoServerAddress`].
    pub server_addresses: Vec<String>,
    /// DER X.509 authorities trusted for the first connection (before the agent holds a bundle).
    pub bootstrap_roots: Vec<Vec<u8>>,
    /// One-time join token for the first attestation; unused once the agent has an SVID.
    pub join_token: Option<String>,
    /// Where the agent keeps its SVID, key and bundle (mode 0700).
    pub data_dir: PathBuf,
    /// The SPIFFE Workload API socket.
    pub socket_path: PathBuf,
    /// Workload binaries larger than this are not hashed for `unix:sha256`.
    pub max_hash_bytes: u64,
    /// Wait between reconnection attempts grows up to this.
    pub max_backoff: Duration,
    /// How often workload usage (which workload received which identity) is reported to the
    /// server, in batches; [`crate::usage::DEFAULT_USAGE_REPORT_INTERVAL`] unless configured.
    pub usage_report_interval: Duration,
    /// Key-exchange policy of the connection to the server.
    pub tls: sigil_tls::TlsPolicy,
}
