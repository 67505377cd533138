//! [`ConnectionPeer`]: who is on the other end of one Workload API connection — pinned when the
//! connection is accepted, attested once (on its first call, with at most N attestations
//! running at a time across the agent), and re-checked cheaply on every call.
//!
//! What a connection is bound to: the process that called `connect()` (its credentials as the
//! kernel recorded them then) and the binary it ran when the agent accepted the connection.
//! Every call on the connection gets the selectors of that process as pinned, for as long as
//! that process lives, whichever process holds the socket and whatever the pinned process has
//! exec'd since. Once the pinned process has exited, calls are refused with `PermissionDenied`
//! even if a process it forked still holds the connection.

use std::sync::Arc;

use sigil_spiffe::Selector;
use tokio::sync::{OnceCell, Semaphore};

use crate::attestor::{AttestError, CallerInfo, PinnedPeer, WorkloadAttestor};

/// The peer of one accepted connection; shared by every request on it.
#[derive(Debug)]
pub struct ConnectionPeer {
    caller: CallerInfo,
    /// `None` when the peer could not be pinned at accept (every call is refused).
    pin: Option<Arc<PinnedPeer>>,
    /// The attestation, once done: `None` if it failed (every call is refused).
    selectors: OnceCell<Option<Arc<[Selector]>>>,
}

/// Why a call's peer has no selectors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    #[error("the peer could not be pinned when its connection was accepted")]
    NotPinned,
    #[error("attestation of the peer failed")]
    AttestationFailed,
    #[error(transparent)]
    Changed(#[from] AttestError),
}

impl ConnectionPeer {
    /// Pins the peer `caller` names; to be called as soon as the connection is accepted.
    pub fn accept(caller: CallerInfo) -> Self {
        let pin = match PinnedPeer::capture(caller) {
            Ok(pin) => Some(Arc::new(pin)),
            Err(e) => {
                tracing::warn!(
                    pid = caller.pid,
                    uid = caller.uid,
                    error = %e,
                    "cannot pin a workload api peer; its calls will be refused"
                );
                None
            }
        };
        Self {
            caller,
            pin,
            selectors: OnceCell::new(),
        }
    }

    /// The credentials the kernel recorded when the peer connected.
    pub fn caller(&self) -> CallerInfo {
        self.caller
    }

    /// The path of the binary the peer ran when it was pinned, if the agent could read it.
    pub(crate) fn binary_path(&self) -> Option<&std::path::Path> {
        self.pin.as_ref().and_then(|pin| pin.binary_path())
    }

    /// The peer's selectors: attested on the first call (off the executor, holding a permit of
    /// `limit`), then cached for the connection; on every call, first checks that the pinned
    /// process still runs.
    pub(crate) async fn selectors(
        &self,
        attestor: &Arc<dyn WorkloadAttestor>,
        limit: &Arc<Semaphore>,
    ) -> Result<Arc<[Selector]>, PeerError> {
        let pin = self.pin.as_ref().ok_or(PeerError::NotPinned)?;
        pin.still_running()?;
        let attested = self
            .selectors
            .get_or_init(|| attest(Arc::clone(pin), Arc::clone(attestor), Arc::clone(limit)))
            .await;
        attested.clone().ok_or(PeerError::AttestationFailed)
    }
}

/// Attests `pin` on a blocking thread, at most `limit` at a time; `None` on failure (logged).
async fn attest(
    pin: Arc<PinnedPeer>,
    attestor: Arc<dyn WorkloadAttestor>,
    limit: Arc<Semaphore>,
) -> Option<Arc<[Selector]>> {
    let caller = pin.caller();
    let Ok(_permit) = limit.acquire_owned().await else {
        tracing::error!("the workload attestation limit was closed");
        return None;
    };
    match tokio::task::spawn_blocking(move || attestor.attest(&pin)).await {
        Ok(Ok(selectors)) => Some(selectors.into()),
        Ok(Err(e)) => {
            tracing::warn!(pid = caller.pid, uid = caller.uid, error = %e, "workload attestation failed");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "workload attestation task failed");
            None
        }
    }
}
