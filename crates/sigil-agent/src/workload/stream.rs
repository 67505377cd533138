//! Server streams driven by snapshot changes: the first message is sent at once, then one more
//! each time a new snapshot changes what this caller gets (no polling); the stream ends with
//! `PermissionDenied` when the caller loses its last identity, and with `Unavailable` when the
//! agent shuts down (unless the caller's identity went in the same instant, as when the server
//! refuses the agent and it stops: then `PermissionDenied`, whichever of the two the stream sees
//! first). Dropping the stream (the client went away) stops everything: no task is spawned.

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
/// Told of each snapshot a message sent on the stream was built from (usage counting).
pub(crate) type Observe = Box<dyn FnMut(&IdentitySnapshot) + Send + 'static>;

struct WatchState<T> {
    snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
    stop: watch::Receiver<bool>,
    build: Build<T>,
    observe: Option<Observe>,
    first: Option<T>,
    last: Option<T>,
    done: bool,
}

/// A stream that starts with `first` (built from the snapshot `snapshots` has already marked
/// seen) and follows `snapshots` until `stop` turns true. `observe`, if any, is told of the
/// snapshot behind each later message sent (not of the first, nor of snapshots that change
/// nothing for this caller).
pub(crate) fn watch_stream<T>(
    snapshots: watch::Receiver<Arc<IdentitySnapshot>>,
    stop: watch::Receiver<bool>,
    first: T,
    build: Build<T>,
    observe: Option<Observe>,
) -> ResponseStream<T>
where
    T: Clone + PartialEq + Send + Sync + 'static,
{
    let state = WatchState {
        snapshots,
        stop,
        build,
        observe,
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
                let snapshot = Arc::clone(&st.snapshots.borrow_and_update());
                let status = if (st.build)(&snapshot).is_none() {
                    Status::permission_denied(NO_IDENTITY)
                } else {
                    Status::unavailable(SHUTTING_DOWN)
                };
                return Some((Err(status), st));
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
                    if let Some(observe) = st.observe.as_mut() {
                        observe(&snapshot);
                    }
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

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use sigil_spiffe::SpiffeId;
    use tonic::Code;

    use super::*;
    use crate::snapshot::WorkloadIdentity;
    use crate::state::tests::sample_identity;
    use crate::svid_cache::tests::{NOW, material};

    /// A snapshot serving `count` identities.
    fn snapshot(count: usize) -> Arc<IdentitySnapshot> {
        let mut snapshot = IdentitySnapshot::empty(Arc::new(sample_identity(NOW + 3_600).bundle));
        for i in 0..count {
            let spiffe_id = SpiffeId::parse(&format!("spiffe://example.org/w{i}")).unwrap();
            snapshot.identities.push(WorkloadIdentity {
                entry_id: format!("e{i}"),
                svid: Arc::new(material(spiffe_id.as_str(), NOW + 3_600)),
                spiffe_id,
                selectors: Vec::new(),
                hint: String::new(),
                federates_with: Vec::new(),
            });
        }
        Arc::new(snapshot)
    }

    /// A stream whose message is the number of identities, `None` (no identity) at zero; its
    /// first message already taken.
    async fn counting_stream(
        snapshots: &watch::Sender<Arc<IdentitySnapshot>>,
        stop: &watch::Sender<bool>,
    ) -> ResponseStream<usize> {
        let build: Build<usize> =
            Box::new(|s| (!s.identities.is_empty()).then_some(s.identities.len()));
        let mut rx = snapshots.subscribe();
        rx.mark_unchanged();
        let mut stream = watch_stream(rx, stop.subscribe(), 1, build, None);
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        stream
    }

    async fn end_code(stream: &mut ResponseStream<usize>) -> Code {
        let end = stream.next().await.unwrap().unwrap_err().code();
        assert!(stream.next().await.is_none(), "nothing after the end");
        end
    }

    #[tokio::test]
    async fn losing_the_identity_as_the_agent_stops_is_permission_denied() {
        let (snapshots, _) = watch::channel(snapshot(1));
        let (stop, _) = watch::channel(false);
        let mut stream = counting_stream(&snapshots, &stop).await;
        // Both before the stream looks again: the stop signal is checked first.
        snapshots.send_replace(snapshot(0));
        stop.send_replace(true);
        assert_eq!(end_code(&mut stream).await, Code::PermissionDenied);
    }

    #[tokio::test]
    async fn a_plain_stop_is_unavailable() {
        let (snapshots, _) = watch::channel(snapshot(1));
        let (stop, _) = watch::channel(false);
        let mut stream = counting_stream(&snapshots, &stop).await;
        stop.send_replace(true);
        assert_eq!(end_code(&mut stream).await, Code::Unavailable);
    }

    #[tokio::test]
    async fn a_stop_after_a_change_that_keeps_the_identity_is_unavailable() {
        let (snapshots, _) = watch::channel(snapshot(1));
        let (stop, _) = watch::channel(false);
        let mut stream = counting_stream(&snapshots, &stop).await;
        snapshots.send_replace(snapshot(2));
        stop.send_replace(true);
        assert_eq!(end_code(&mut stream).await, Code::Unavailable);
    }

    #[tokio::test]
    async fn the_snapshot_feed_ending_without_identities_is_permission_denied() {
        let (snapshots, _) = watch::channel(snapshot(1));
        let (stop, _) = watch::channel(false);
        let mut stream = counting_stream(&snapshots, &stop).await;
        snapshots.send_replace(snapshot(0));
        drop(snapshots);
        assert_eq!(end_code(&mut stream).await, Code::PermissionDenied);
    }
}
