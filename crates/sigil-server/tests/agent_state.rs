//! Agent state under concurrency and time, through the agent API over real mutual TLS: a
//! renewal racing heartbeats keeps its new serial, an expiring entry leaves the sync stream at
//! its expiry with nothing else changing, and the issuance choke point refuses an expired
//! entry and never issues past an entry's expiry.
//!
//! Every negative test first shows the same call succeeding, so it cannot pass vacuously.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use std::time::Duration;

use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_spiffe::Clock;
use support::{AgentSvid, PATIENCE, TestServer, csr, serial_hex};
use tonic::Code;

/// Heartbeats per racing task.
const HEARTBEATS: u32 = 8;
/// How far each heartbeat moves the fake clock: past the server's `last_seen` granularity.
const HEARTBEAT_STEP: Duration = Duration::from_secs(61);

/// Heartbeats (authenticated calls, each past the `last_seen` granularity so each writes
/// `last_seen`) run from their own tasks while the agent renews and switches to the new SVID.
/// Before the fix a heartbeat wrote back a record read before the renewal and dropped
/// `new_serial`, so the new SVID was refused; now every call succeeds and the store ends with
/// the new serial and the newest `last_seen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_racing_heartbeats_keeps_the_new_serial() {
    let server = TestServer::start().await;
    // The heartbeats move the fake clock forward; start it in the past by more than they move
    // it, so every SVID issued here is already valid on the real clock rustls checks.
    let real_now = server.clock.now();
    server
        .clock
        .set(real_now - HEARTBEAT_STEP * (2 * HEARTBEATS + 1));
    let old = server.attest().await;
    let start = server.clock.unix_secs();

    let mut heartbeats = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let mut client = server.client(&old).await;
        let clock = server.clock.clone();
        heartbeats.spawn(async move {
            for _ in 0..HEARTBEATS {
                clock.advance(HEARTBEAT_STEP);
                client
                    .batch_new_x509_svid(pb::BatchNewX509SvidRequest { params: vec![] })
                    .await
                    .map(drop)?;
            }
            Ok::<_, tonic::Status>(())
        });
    }

    let mut renewing = server.client(&old).await;
    let key = PrivateKey::generate().unwrap();
    let renewed = renewing
        .renew_agent(pb::RenewAgentRequest { csr: csr(&key) })
        .await
        .unwrap()
        .into_inner()
        .svid
        .unwrap();
    let new = AgentSvid {
        id: old.id.clone(),
        chain: renewed.cert_chain,
        key,
    };
    let mut new_client = server.client(&new).await;
    new_client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest { params: vec![] })
        .await
        .expect("the renewed SVID was refused: its serial was lost");

    while let Some(joined) = heartbeats.join_next().await {
        // A heartbeat made with the old SVID after the switch is refused, which is right.
        if let Err(status) = joined.unwrap() {
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert!(status.message().contains("no longer current"), "{status:?}");
        }
    }
    new_client
        .batch_new_x509_svid(pb::BatchNewX509SvidRequest { params: vec![] })
        .await
        .unwrap();
    let stored = server
        .handle
        .store
        .get_agent(old.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.serial, serial_hex(&new.chain));
    assert_eq!(stored.new_serial, None);
    assert!(
        stored.last_seen > start,
        "no heartbeat reached the store: {} <= {start}",
        stored.last_seen
    );
    assert!(!stored.banned);
    server.stop().await;
}

/// An entry expiring in two seconds (on the server's fake clock) is in the first sync message;
/// once the clock passes its expiry the server pushes a message without it, though no store
/// change happened. The server's timer sleeps in real time until the expiry it computed from
/// the clock, then re-reads the clock.
#[tokio::test]
async fn expiring_entry_leaves_the_sync_stream_at_its_expiry_without_any_other_change() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let now = server.clock.unix_secs();
    let lasting = server
        .create_entry("spiffe://example.org/lasting", &agent.id)
        .await;
    let expiring = server
        .create_entry_expiring("spiffe://example.org/expiring", &agent.id, Some(now + 2))
        .await;
    let mut client = server.client(&agent).await;
    let mut stream = client
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids = |msg: &pb::SyncAuthorizedEntriesResponse| {
        let mut ids: Vec<String> = msg.entries.iter().map(|e| e.id.clone()).collect();
        ids.sort();
        ids
    };
    let mut both = vec![lasting.id.clone(), expiring.id.clone()];
    both.sort();
    // The stream may first show the set before both creates were indexed.
    loop {
        let msg = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("no sync message")
            .unwrap()
            .expect("stream ended");
        if ids(&msg) == both {
            break;
        }
    }
    let seq_before = server.handle.store.latest_change().await.unwrap();

    server.clock.advance(Duration::from_secs(2));
    let after = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("the expired entry was not pushed away")
        .unwrap()
        .expect("stream ended");
    assert_eq!(ids(&after), std::slice::from_ref(&lasting.id));
    assert_eq!(
        server.handle.store.latest_change().await.unwrap(),
        seq_before,
        "the push came from the expiry, not from a store change"
    );
    server.stop().await;
}

/// The choke point: an entry past its expiry gets neither an X509-SVID nor a JWT-SVID, with a
/// refusal that says so; before its expiry it gets both, and neither outlives the entry.
#[tokio::test]
async fn issuance_refuses_an_expired_entry_and_never_outlives_one() {
    let server = TestServer::start().await;
    let agent = server.attest().await;
    let now = server.clock.unix_secs();
    let entry = server
        .create_entry_expiring("spiffe://example.org/web", &agent.id, Some(now + 60))
        .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.handle.index.get(&entry.id).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "entry not indexed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = server.client(&agent).await;
    let key = PrivateKey::generate().unwrap();
    let batch = pb::BatchNewX509SvidRequest {
        params: vec![pb::NewX509SvidParams {
            entry_id: entry.id.clone(),
            csr: csr(&key),
        }],
    };
    let jwt = pb::NewJwtSvidRequest {
        entry_id: entry.id.clone(),
        audience: vec!["spiffe://example.org/db".to_owned()],
    };

    let signed = client.batch_new_x509_svid(batch.clone()).await.unwrap();
    let result = &signed.get_ref().results[0];
    let svid = result.svid.as_ref().expect(&result.error);
    assert!(
        svid.expires_at <= now + 60,
        "X509-SVID outlives its entry: {} > {}",
        svid.expires_at,
        now + 60
    );
    let minted = client.new_jwt_svid(jwt.clone()).await.unwrap().into_inner();
    assert!(minted.expires_at <= now + 60, "JWT-SVID outlives its entry");

    server.clock.advance(Duration::from_secs(60));
    let refused = client.batch_new_x509_svid(batch).await.unwrap();
    let result = &refused.get_ref().results[0];
    assert!(result.svid.is_none(), "signed for an expired entry");
    assert!(result.error.contains("expired"), "{}", result.error);
    match client.new_jwt_svid(jwt).await {
        Err(status) => {
            assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
            assert!(status.message().contains("expired"), "{status:?}");
        }
        Ok(_) => panic!("minted a JWT-SVID for an expired entry"),
    }
    server.stop().await;
}
