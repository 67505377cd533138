//! Group commit for the credential inventory. Every credential is recorded before it is handed
//! out (see [`crate::issuer`]); one store write per RPC made that write the bottleneck of
//! issuance (one serialised connection on SQLite, one fsynced commit on PostgreSQL). Here the
//! RPCs hand their credentials to one writer task, which writes whatever has queued while the
//! previous write ran as ONE `record_issued` call and then answers each RPC. No credential waits
//! longer than one write behind the one in progress, and nothing is answered before its write
//! committed.
//!
//! A group write that fails is retried RPC by RPC, so one RPC's bad credential (a duplicate
//! serial, say) refuses that RPC only.

use std::sync::{Arc, OnceLock};

use sigil_store::{Datastore, IssuedCredential, StoreResult};
use tokio::sync::{mpsc, oneshot};

/// Most RPCs whose credentials go into one write. An RPC carries at most the agent API's batch
/// limit of credentials, so a write holds a bounded number of rows.
const MAX_GROUP: usize = 64;
/// RPCs that may wait for the writer before senders wait for room (back-pressure).
const QUEUE: usize = 1024;

type Reply = oneshot::Sender<Result<(), String>>;

struct Pending {
    credentials: Vec<IssuedCredential>,
    reply: Reply,
}

/// The handle RPCs record through. The writer task starts with the first record (inside the
/// runtime) and ends when the handle is dropped.
pub(crate) struct InventoryWriter {
    store: Arc<dyn Datastore>,
    queue: OnceLock<mpsc::Sender<Pending>>,
}

impl InventoryWriter {
    pub(crate) fn new(store: Arc<dyn Datastore>) -> Self {
        Self {
            store,
            queue: OnceLock::new(),
        }
    }

    /// Records `credentials` (checked here, so one caller's invalid credential never reaches a
    /// shared write); returns once they are committed, with the store's error otherwise.
    pub(crate) async fn record(&self, credentials: Vec<IssuedCredential>) -> Result<(), String> {
        if credentials.is_empty() {
            return Ok(());
        }
        for credential in &credentials {
            credential.validate().map_err(|e| e.to_string())?;
        }
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_groups(self.store.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(Pending { credentials, reply })
            .await
            .map_err(|_| "the inventory writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the inventory writer has stopped".to_owned())?
    }
}

/// The writer: takes every queued RPC (up to [`MAX_GROUP`]), writes their credentials at once,
/// answers them, repeats.
async fn write_groups(store: Arc<dyn Datastore>, mut rx: mpsc::Receiver<Pending>) {
    let mut group: Vec<Pending> = Vec::with_capacity(MAX_GROUP);
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        if group.len() == 1 {
            if let Some(one) = group.pop() {
                let result = store.record_issued(one.credentials).await;
                answer(one.reply, result);
            }
            continue;
        }
        let all: Vec<IssuedCredential> = group
            .iter()
            .flat_map(|p| p.credentials.iter().cloned())
            .collect();
        match store.record_issued(all).await {
            Ok(()) => {
                for p in group.drain(..) {
                    answer(p.reply, Ok(()));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, rpcs = group.len(), "inventory group write failed; retrying RPC by RPC");
                for p in group.drain(..) {
                    let result = store.record_issued(p.credentials).await;
                    answer(p.reply, result);
                }
            }
        }
    }
}

fn answer(reply: Reply, result: StoreResult<()>) {
    // The RPC may have gone (client hung up); its credentials are recorded all the same.
    let _ = reply.send(result.map_err(|e| e.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use sigil_spiffe::SpiffeId;
    use sigil_store::{CredentialKind, SqliteStore};

    fn credential(id: &str) -> IssuedCredential {
        IssuedCredential {
            kind: CredentialKind::X509Svid,
            id: id.to_owned(),
            spiffe_id: SpiffeId::parse("spiffe://example.org/w").unwrap(),
            authority_id: "a1".to_owned(),
            issued_to: SpiffeId::parse("spiffe://example.org/spire/agent/x").unwrap(),
            issued_at: 1,
            expires_at: 1_000_000_000_000,
        }
    }

    async fn store() -> Arc<dyn Datastore> {
        Arc::new(SqliteStore::open_in_memory().unwrap())
    }

    #[tokio::test]
    async fn concurrent_records_are_all_committed_before_they_return() {
        let store = store().await;
        let writer = Arc::new(InventoryWriter::new(store.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let writer = writer.clone();
            tasks.spawn(async move {
                let ids = [format!("{i:x}a"), format!("{i:x}b")];
                writer
                    .record(ids.iter().map(|id| credential(id)).collect())
                    .await
                    .unwrap();
                ids
            });
        }
        while let Some(ids) = tasks.join_next().await {
            for id in ids.unwrap() {
                let found = store
                    .get_issued(CredentialKind::X509Svid, &id)
                    .await
                    .unwrap();
                assert!(found.is_some(), "{id} was answered before it was recorded");
            }
        }
    }

    #[tokio::test]
    async fn a_duplicate_refuses_only_its_own_rpc_in_a_group() {
        let store = store().await;
        store.record_issued(vec![credential("dup")]).await.unwrap();
        let writer = Arc::new(InventoryWriter::new(store.clone()));
        // Queue several RPCs at once so they share a group write, one of them a duplicate.
        let mut tasks = tokio::task::JoinSet::new();
        for id in ["ok1", "dup", "ok2", "ok3"] {
            let writer = writer.clone();
            tasks.spawn(async move { (id, writer.record(vec![credential(id)]).await) });
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            results.push(done.unwrap());
        }
        for (id, result) in results {
            if id == "dup" {
                let e = result.unwrap_err();
                assert!(e.contains("already recorded"), "{e}");
            } else {
                result.unwrap();
                let found = store.get_issued(CredentialKind::X509Svid, id).await;
                assert!(found.unwrap().is_some(), "{id} lost with the duplicate");
            }
        }
    }

    #[tokio::test]
    async fn an_invalid_credential_is_refused_before_it_reaches_a_shared_write() {
        let writer = InventoryWriter::new(store().await);
        let e = writer.record(vec![credential("")]).await.unwrap_err();
        assert!(!e.is_empty());
        assert!(
            writer.queue.get().is_none(),
            "an invalid record reached the writer"
        );
    }
}
