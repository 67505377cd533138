//! Server streams driven by snapshot changes: the first message is sent at once, then one more
//! each time a new snapshot changes what this caller gets (no polling); the stream ends with
//! `PermissionDenied` when the caller loses its last identity, and with `Unavailable` when the
//! agent shuts down. Dropping the stream (the client went away) stops everything: no task is
//! spawned.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;
use tonic::Status;

use crate::snapshot::IdentitySnapshot;

/// A boxed response stream, as the generated service trait wants it.
pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Status message when the caller has no identity (SPIRE's wording, which clients recognise).
pub(crate) const NO_IDENTITY: &str = "no identity issued";
const SHUTTING_DOWN: &str = "the agent is shutting down";

/// Builds the message a snapshot yields for this caller, `None` if it has no identity.
pub(crate) type Build<T> = Box<dyn Fn(&IdentitySnapshot) -> Option<T> + Send + Sync + 'static>;

struct WatchState<T> {
    snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
    stop: watch::Receiver<bool>,
    build: Build<T>,
    first: Option<T>,
    last: Option<T>,
    done: bool,
}

/// A stream that starts with `first` (built from the snapshot `snapshots` has already marked
/// seen) and follows `snapshots` until `stop` turns true.
pub(crate) fn watch_stream<T>(
    snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
    stop: watch::Receiver<bool>,
    first: T,
    build: Build<T>,
) -> ResponseStream<T>
where
    T: Clone + PartialEq + Send + Sync + 'static,
{
    let state = WatchState {
        snapshots,
        stop,
        build,
        first: Some(first),
        last: None,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        if let Some(first) = st.first.take() {
            st.last = Some(first.clone());
            return Some((Ok(first), st));
        }
        if st.done {
            return None;
        }
        loop {
            let changed = tokio::select! {
                biased;
                () = stopped(&mut st.stop) => false,
                changed = st.snapshots.changed() => changed.is_ok(),
            };
            if !changed {
                st.done = true;
                return Some((Err(Status::unavailable(SHUTTING_DOWN)), st));
            }
            let snapshot = Arc::clone(&st.snapshots.borrow_and_update());
            match (st.build)(&snapshot) {
                None => {
                    st.done = true;
                    return Some((Err(Status::permission_denied(NO_IDENTITY)), st));
                }
                Some(msg) if st.last.as_ref() == Some(&msg) => continue,
                Some(msg) => {
                    st.last = Some(msg.clone());
                    return Some((Ok(msg), st));
                }
            }
        }
    }))
}

/// Resolves when `stop` becomes true; never if its sender is gone without doing so.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}
