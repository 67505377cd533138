//! The Workload API server's bounds, over its real Unix socket: a client whose header blocks
//! expand past the decoded header list limit gets a GOAWAY and a closed connection; connections
//! beyond the limit are closed at once and their slots come back; attestations beyond the
//! limit wait their turn.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod workload_api_fixture;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sigil_agent::attestor::{AttestError, PinnedPeer, UnixAttestor, WorkloadAttestor};
use sigil_agent::workload::ServeOptions;
use sigil_proto::workload::X509BundlesRequest;
use sigil_spiffe::Selector;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use workload_api_fixture::{Harness, my_uid_selector, with_header};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const GOAWAY: u8 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Every frame the server sends until it closes the connection (type, payload).
async fn frames_until_closed(stream: &mut UnixStream) -> Vec<(u8, Vec<u8>)> {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    let mut frames = Vec::new();
    let mut rest = bytes.as_slice();
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let payload = rest[9..(9 + len).min(rest.len())].to_vec();
        frames.push((rest[3], payload));
        rest = &rest[(9 + len).min(rest.len())..];
    }
    frames
}

/// Preface, empty SETTINGS, a HEADERS block adding a 4000-byte entry to the client's dynamic
/// table, then a block of `references` one-byte references to it (~4 KiB decoded each).
fn amplifying_client_bytes(references: usize) -> Vec<u8> {
    let mut block = vec![0x40, 3];
    block.extend_from_slice(b"x-a");
    // 4000 as an HPACK integer with a 7-bit prefix: 127, then 3873 in 7-bit groups.
    block.extend_from_slice(&[0x7f, 0xa1, 0x1e]);
    block.extend_from_slice(&[b'a'; 4000]);
    let mut out = PREFACE.to_vec();
    out.extend_from_slice(&frame(0x4, 0, 0, &[]));
    out.extend_from_slice(&frame(0x1, 0x4, 1, &block));
    out.extend_from_slice(&frame(0x1, 0x5, 3, &vec![0x80 | 62; references]));
    out
}

#[tokio::test]
async fn a_header_block_expanding_past_the_list_limit_gets_a_goaway_and_a_closed_connection() {
    let h = Harness::start(ServeOptions::default()).await;

    // Three references (~12 KiB decoded) are no protocol violation: no GOAWAY.
    let mut within = UnixStream::connect(&h.socket).await.unwrap();
    within.write_all(&amplifying_client_bytes(3)).await.unwrap();
    within.shutdown().await.unwrap();
    let frames = frames_until_closed(&mut within).await;
    assert!(
        frames.iter().all(|(kind, _)| *kind != GOAWAY)
            || frames
                .iter()
                .any(|(kind, p)| *kind == GOAWAY && p[4..8] == [0, 0, 0, 0]),
        "{frames:?}"
    );

    // 4096 references in one 4 KiB block would decode to 16 MB: the connection ends with an
    // HTTP/2 error.
    let mut over = UnixStream::connect(&h.socket).await.unwrap();
    over.write_all(&amplifying_client_bytes(4096))
        .await
        .unwrap();
    let frames = frames_until_closed(&mut over).await;
    let (_, goaway) = frames
        .iter()
        .find(|(kind, _)| *kind == GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY in {frames:?}"));
    let code = u32::from_be_bytes(goaway[4..8].try_into().unwrap());
    assert_ne!(code, 0, "GOAWAY carries an error code");

    // The server still serves others.
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mut c = h.client().await;
    c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
        .unwrap();
    h.stop().await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_their_slots_come_back() {
    let h = Harness::start(ServeOptions {
        max_connections: 2,
        ..ServeOptions::default()
    })
    .await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mut first = h.client().await;
    let mut second = h.client().await;
    for c in [&mut first, &mut second] {
        c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
            .await
            .unwrap();
    }

    // A third connection is closed without a byte.
    let mut third = UnixStream::connect(&h.socket).await.unwrap();
    let _ = third.write_all(PREFACE).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), third.read(&mut buf))
        .await
        .expect("the third connection was neither served nor closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "the third connection must be closed");

    // Once one of the two closes, a new connection is served.
    drop(first);
    let mut served = false;
    for _ in 0..300 {
        let mut probe = UnixStream::connect(&h.socket).await.unwrap();
        probe.write_all(PREFACE).await.unwrap();
        probe.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), probe.read(&mut buf)).await;
        if let Ok(Ok(n)) = got
            && n > 0
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a slot freed by a closed connection is reused");
    second
        .fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
        .unwrap();
    h.stop().await.unwrap();
}

/// The `unix` attestor, slowed down, counting how many attestations run at once.
struct CountingAttestor {
    inner: UnixAttestor,
    running: AtomicUsize,
    most: AtomicUsize,
    total: AtomicUsize,
}

impl WorkloadAttestor for CountingAttestor {
    fn attest(&self, peer: &PinnedPeer) -> Result<Vec<Selector>, AttestError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        self.total.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.inner.attest(peer)
    }
}

#[tokio::test]
async fn attestations_beyond_the_limit_wait_for_a_turn() {
    let attestor = Arc::new(CountingAttestor {
        inner: UnixAttestor::default(),
        running: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        total: AtomicUsize::new(0),
    });
    let h = Harness::start_with_attestor(
        ServeOptions {
            max_concurrent_attestations: 2,
            ..ServeOptions::default()
        },
        Arc::clone(&attestor) as Arc<dyn WorkloadAttestor>,
    )
    .await;
    h.publish(vec![h.identity("e1", "/w", vec![my_uid_selector()], "")]);
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(h.client().await);
    }
    let calls = clients.into_iter().map(|mut c| async move {
        // Two calls per connection: the connection is attested once.
        for _ in 0..2 {
            c.fetch_x509_bundles(with_header(X509BundlesRequest {}))
                .await
                .unwrap();
        }
    });
    futures::future::join_all(calls).await;
    assert_eq!(
        attestor.total.load(Ordering::SeqCst),
        8,
        "once per connection"
    );
    assert_eq!(
        attestor.most.load(Ordering::SeqCst),
        2,
        "eight connections attested concurrently, two at a time"
    );
    h.stop().await.unwrap();
}
