//! The change listener: one dedicated connection per store that LISTENs on the schema's
//! channel and moves the watch channel to the newest sequence any process commits.
//!
//! Notifications sent while the listener is disconnected are lost, so after every (re)connect it
//! LISTENs first and then reads the newest committed sequence: whatever committed before the
//! LISTEN is in that read, whatever commits after it is notified. On connection loss it logs,
//! waits (exponential backoff, capped), and reconnects; it never panics and never gives up. A
//! periodic read of the newest sequence checks that the connection is alive, since a silently
//! dropped TCP connection would otherwise just stop delivering.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::tls::PostgresTls;
use super::{PostgresError, advance, backend, describe};
use crate::{StoreError, StoreResult};

/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the listener checks that its connection still answers.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(30);

/// Connects (with the pool's TLS settings, `tls`), LISTENs on `channel` and reads the newest
/// sequence, then keeps doing so in a task of its own. Returns once the first connection listens, so the watch is live (and current)
/// when the store is handed out; fails if that first connection cannot be made.
pub(super) async fn start(
    mut pg: tokio_postgres::Config,
    tls: PostgresTls,
    channel: String,
    latest: Arc<watch::Sender<u64>>,
    target: Arc<str>,
    timeout: Duration,
) -> StoreResult<JoinHandle<()>> {
    let name = format!("{} listener", pg.get_application_name().unwrap_or("sigil"));
    pg.application_name(name)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    let (ready_tx, ready_rx) = oneshot::channel();
    let listener = Listener {
        pg,
        tls,
        channel,
        latest,
        target,
        timeout,
    };
    let task = tokio::spawn(listener.run(ready_tx));
    match ready_rx.await {
        Ok(Ok(())) => Ok(task),
        Ok(Err(e)) => {
            task.abort();
            Err(e)
        }
        Err(_) => {
            task.abort();
            Err(StoreError::Backend(
                "the change listener stopped before it was ready".into(),
            ))
        }
    }
}

struct Listener {
    pg: tokio_postgres::Config,
    tls: PostgresTls,
    channel: String,
    latest: Arc<watch::Sender<u64>>,
    target: Arc<str>,
    timeout: Duration,
}

impl Listener {
    /// Listens until aborted. The first session's outcome goes to `ready`; later failures are
    /// logged and retried.
    async fn run(self, ready: oneshot::Sender<StoreResult<()>>) {
        let mut ready = Some(ready);
        let mut backoff = MIN_BACKOFF;
        loop {
            let mut listening = false;
            let lost = self.session(&mut ready, &mut listening).await;
            if let Some(ready) = ready.take() {
                // Nobody is told about a failure before the store exists: connect fails.
                let _ = ready.send(Err(lost));
                return;
            }
            if listening {
                backoff = MIN_BACKOFF;
            }
            tracing::warn!(
                target = %self.target,
                error = %lost,
                retry_in = ?backoff,
                "datastore change listener lost its connection; reconnecting"
            );
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: returns why it ended. Sets `listening` once LISTEN took effect.
    async fn session(
        &self,
        ready: &mut Option<oneshot::Sender<StoreResult<()>>>,
        listening: &mut bool,
    ) -> StoreError {
        let (client, mut connection) = match self.pg.connect(self.tls.clone()).await {
            Ok(pair) => pair,
            Err(e) => {
                return StoreError::Backend(Box::new(PostgresError::Unreachable {
                    target: self.target.to_string(),
                    detail: describe(&e),
                }));
            }
        };
        // The connection delivers query results to `client` and notifications here; both
        // only progress while it is polled, so it is driven alongside the queries below.
        let deliver = async {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(note))) => {
                        match note.payload().parse::<u64>() {
                            Ok(seq) => advance(&self.latest, seq),
                            Err(_) => tracing::debug!(
                                channel = note.channel(),
                                "ignoring a notification that is not a change sequence"
                            ),
                        }
                    }
                    Some(Ok(_notice)) => {}
                    Some(Err(e)) => return backend(e),
                    None => return StoreError::Backend("connection closed".into()),
                }
            }
        };
        let watch = async {
            let never: StoreResult<Infallible> = async {
                client
                    .batch_execute(&format!("LISTEN {}", self.channel))
                    .await
                    .map_err(backend)?;
                *listening = true;
                advance(&self.latest, self.read_latest(&client).await?);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(()));
                }
                loop {
                    tokio::time::sleep(LIVENESS_INTERVAL).await;
                    advance(&self.latest, self.read_latest(&client).await?);
                }
            }
            .await;
            match never {
                Err(e) => e,
                Ok(never) => match never {},
            }
        };
        tokio::select! {
            lost = deliver => lost,
            lost = watch => lost,
        }
    }

    /// The newest committed sequence (as `change_feed::latest` reads it, on a plain client),
    /// read on the listener's connection within the timeout.
    async fn read_latest(&self, client: &tokio_postgres::Client) -> StoreResult<u64> {
        let read = async {
            let rows = client
                .query("SELECT coalesce(max(seq), 0) FROM change_events", &[])
                .await
                .map_err(backend)?;
            let seq: i64 = match rows.first() {
                Some(row) => row.try_get(0).map_err(backend)?,
                None => 0,
            };
            Ok(u64::try_from(seq).unwrap_or(0))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Backend(
                format!(
                    "the change listener's connection to {} did not answer within {:?}",
                    self.target, self.timeout
                )
                .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        let mut backoff = MIN_BACKOFF;
        for _ in 0..64 {
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
        assert_eq!(backoff, MAX_BACKOFF);
    }
}
