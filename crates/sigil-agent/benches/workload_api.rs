//! Workload API throughput and latency over the Unix socket, with the third-party Rust `spiffe`
//! client (=0.19.0) against the real server (through the `:authority` adapter, pinned
//! attestation with the `unix` attestor), in one process: a cached FetchJWTSVID and the first
//! message of FetchX509SVID, with 1 and 16 concurrent clients (one connection each), each as a
//! ratio to the same call refused before attestation (no security header, sent by a raw tonic
//! client over the same stack), measured in the same run.
//!
//! `cargo bench -p sigil-agent --bench workload_api` (env `SIGIL_BENCH_SECS`, default 3: time
//! per measurement). Prints one line per case: calls/s, p50, p99 and the ratio.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "../tests/workload_api_fixture/mod.rs"]
mod workload_api_fixture;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sigil_agent::workload::ServeOptions;
use sigil_proto::workload::spiffe_workload_api_client::SpiffeWorkloadApiClient;
use sigil_proto::workload::{JwtsvidRequest, X509svidRequest};
use tonic::transport::Channel;
use workload_api_fixture::{Harness, client_at, my_uid_selector};

const AUD: &str = "spiffe://example.org/bench";

type Call = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One client's call, repeatable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SpiffeJwt,
    SpiffeX509,
    RejectedJwt,
    RejectedX509,
}

async fn make_call(kind: Kind, h: &Harness) -> Call {
    match kind {
        Kind::SpiffeJwt | Kind::SpiffeX509 => {
            let client =
                spiffe::WorkloadApiClient::connect_to(format!("unix:{}", h.socket.display()))
                    .await
                    .unwrap();
            let client = std::sync::Arc::new(client);
            Box::new(move || {
                let client = std::sync::Arc::clone(&client);
                Box::pin(async move {
                    if kind == Kind::SpiffeJwt {
                        client.fetch_jwt_svid([AUD], None).await.unwrap();
                    } else {
                        client.fetch_x509_svid().await.unwrap();
                    }
                })
            })
        }
        Kind::RejectedJwt | Kind::RejectedX509 => {
            let client: SpiffeWorkloadApiClient<Channel> = client_at(h.socket.clone()).await;
            Box::new(move || {
                let mut client = client.clone();
                Box::pin(async move {
                    let status = if kind == Kind::RejectedJwt {
                        client
                            .fetch_jwtsvid(JwtsvidRequest {
                                audience: vec![AUD.into()],
                                spiffe_id: String::new(),
                            })
                            .await
                            .map(|_| ())
                            .unwrap_err()
                    } else {
                        client
                            .fetch_x509svid(X509svidRequest {})
                            .await
                            .map(|_| ())
                            .unwrap_err()
                    };
                    assert_eq!(status.code(), tonic::Code::InvalidArgument);
                })
            })
        }
    }
}

struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Runs `clients` concurrent clients of `kind` for `secs` (after a short warm-up).
async fn measure(kind: Kind, clients: usize, h: &Harness, secs: f64) -> Figures {
    let mut calls = Vec::new();
    for _ in 0..clients {
        calls.push(make_call(kind, h).await);
    }
    let run = |mut call: Call, span: Duration| async move {
        let mut latencies = Vec::new();
        let start = Instant::now();
        while start.elapsed() < span {
            let t = Instant::now();
            call().await;
            latencies.push(t.elapsed());
        }
        (call, latencies)
    };
    let warm = futures::future::join_all(
        calls
            .into_iter()
            .map(|c| tokio::spawn(run(c, Duration::from_millis(300)))),
    )
    .await;
    let calls: Vec<Call> = warm.into_iter().map(|r| r.unwrap().0).collect();
    let span = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let done =
        futures::future::join_all(calls.into_iter().map(|c| tokio::spawn(run(c, span)))).await;
    let elapsed = start.elapsed();
    let mut all: Vec<Duration> = done.into_iter().flat_map(|r| r.unwrap().1).collect();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn main() {
    let secs: f64 = std::env::var("SIGIL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let h = Harness::start(ServeOptions::default()).await;
        h.minter.caching.store(true, Ordering::Relaxed);
        h.publish(vec![h.identity(
            "e1",
            "/bench",
            vec![my_uid_selector()],
            "",
        )]);
        println!(
            "{:<52} {:>8} {:>12} {:>10} {:>10} {:>7}",
            "case", "clients", "calls/s", "p50 µs", "p99 µs", "ratio"
        );
        for clients in [1, 16] {
            for (name, kind, baseline) in [
                ("FetchJWTSVID (cached)", Kind::SpiffeJwt, Kind::RejectedJwt),
                (
                    "FetchX509SVID (first message)",
                    Kind::SpiffeX509,
                    Kind::RejectedX509,
                ),
            ] {
                let base = measure(baseline, clients, &h, secs).await;
                let real = measure(kind, clients, &h, secs).await;
                for (label, f, ratio) in [
                    (format!("{name}: rejected (no header)"), &base, None),
                    (
                        format!("{name}: spiffe client"),
                        &real,
                        Some(real.per_sec / base.per_sec),
                    ),
                ] {
                    println!(
                        "{:<52} {:>8} {:>12.0} {:>10} {:>10} {:>7}",
                        label,
                        clients,
                        f.per_sec,
                        f.p50.as_micros(),
                        f.p99.as_micros(),
                        ratio.map(|r| format!("{r:.2}")).unwrap_or_default()
                    );
                }
            }
        }
        h.stop().await.unwrap();
    });
}
