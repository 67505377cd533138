//! How far an index has applied the change feed, and the read-your-writes wait on it: whoever
//! just wrote waits until the index that serves its next call has applied the write.

use std::time::Duration;

use sigil_store::Datastore;
use tokio::sync::watch;

/// Longest [`AppliedPosition::catch_up_with`] waits for an index to apply a write.
pub const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(5);

/// How far an index has applied the feed: the highest sequence applied, which read-your-writes
/// waits on.
#[derive(Debug, Default)]
pub struct AppliedPosition(watch::Sender<u64>);

impl AppliedPosition {
    /// Records that everything up to `seq` is applied (never moves back).
    pub fn advance(&self, seq: u64) {
        self.0.send_if_modified(|applied| {
            let moved = seq > *applied;
            if moved {
                *applied = seq;
            }
            moved
        });
    }

    /// The highest sequence applied so far.
    pub fn current(&self) -> u64 {
        *self.0.borrow()
    }

    /// Waits until everything up to `seq` is applied. Returns at once if it is; returns early if
    /// the feed follower is gone.
    pub async fn reached(&self, seq: u64) {
        let mut applied = self.0.subscribe();
        let _ = applied.wait_for(|applied| *applied >= seq).await;
    }

    /// Waits, at most [`READ_YOUR_WRITE_WAIT`], until every change `store` had when called is
    /// applied: read-your-writes for whoever just wrote, so the next call sees it. On a store
    /// error or a timeout it logs (naming `index`) and returns; the change takes effect when the
    /// feed follower applies it.
    pub async fn catch_up_with(&self, store: &dyn Datastore, index: &'static str) {
        let written = match store.latest_change().await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the change feed position");
                return;
            }
        };
        if tokio::time::timeout(READ_YOUR_WRITE_WAIT, self.reached(written))
            .await
            .is_err()
        {
            tracing::warn!(
                seq = written,
                index,
                "the index did not apply the change in time; it takes effect when it does"
            );
        }
    }
}
