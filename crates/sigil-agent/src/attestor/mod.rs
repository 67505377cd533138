//! Workload attestation: turning the kernel's word about who is on the other end of a Workload
//! API connection ([`CallerInfo`], from `SO_PEERCRED`), pinned when the connection is accepted
//! ([`PinnedPeer`]), into selectors (`unix:uid:1000`, …) that registration entries are matched
//! against.
//!
//! Omitting a selector can only make a workload match fewer entries (an entry's selectors must
//! all be present), so facts that cannot be read are left out rather than failing the call;
//! facts that cannot be *trusted* (the process changed under us) fail it.

mod pin;
mod procfs;
mod unix;

pub use pin::PinnedPeer;
pub use unix::{UnixAttestor, UnixAttestorConfig, attest_unix};

use sigil_spiffe::Selector;

/// The peer of a Workload API connection, as the kernel reported it when it connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallerInfo {
    /// Process id; 0 when the platform did not report one.
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

impl CallerInfo {
    /// The caller described by a Unix socket's peer credentials.
    pub fn from_ucred(cred: &tokio::net::unix::UCred) -> Self {
        Self {
            pid: cred.pid().unwrap_or(0),
            uid: cred.uid(),
            gid: cred.gid(),
        }
    }
}

/// Why a caller could not be attested.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("the caller's process id is unknown")]
    UnknownPid,
    #[error("process {pid} exited before it could be attested")]
    ProcessGone { pid: i32 },
    #[error(
        "process {pid} is no longer the process that connected (uid, gid or start time changed)"
    )]
    ProcessChanged { pid: i32 },
    #[error("cannot read `{path}`: {source}")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected contents in `{path}`")]
    Malformed { path: String },
}

/// Produces the selectors of a peer pinned at accept time. Implementations may block (they
/// hash binaries): call them off the async executor, once per connection.
pub trait WorkloadAttestor: Send + Sync + 'static {
    /// The peer's selectors as of when it was pinned, or why it cannot be attested.
    fn attest(&self, peer: &PinnedPeer) -> Result<Vec<Selector>, AttestError>;
}
