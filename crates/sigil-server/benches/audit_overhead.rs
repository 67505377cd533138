//! Issuance throughput with the audit log on, as a ratio to the audit log off, in one process:
//! two servers (in-memory SQLite each, one with auditing switched off) each serve
//! `SIGIL_BENCH_CALLERS` concurrent agent-API callers (default 8) asking for one X509-SVID per
//! `BatchNewX509Svid` call, the same way an agent's sync does. The servers run in turns of
//! `SIGIL_BENCH_SECS` (default 3) seconds, `SIGIL_BENCH_ROUNDS` (default 4) turns each,
//! interleaved, first one then the other, so drift on a noisy machine hits both alike; the ratio of the summed rates is
//! what BENCHMARKS.md records against the target (≥ 0.9). With auditing on, every call also
//! appends one `x509_svid.issue` record to the hash chain (grouped by the audit writer).
//!
//! `cargo bench -p sigil-server --bench audit_overhead`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use support::TestServer;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A server with one attested agent and `callers` entries under it, each visible to the agent
/// API; returns the server, the agent and the entry ids.
async fn prepare(audit: bool, callers: u64) -> (TestServer, support::AgentSvid, Vec<String>) {
    let server = TestServer::start_audited(
        sigil_server::audit::AuditConfig {
            enabled: audit,
            ..sigil_server::audit::AuditConfig::default()
        },
        None,
    )
    .await;
    let agent = server.attest().await;
    let mut ids = Vec::new();
    for n in 0..callers {
        let entry = server
            .create_entry(&format!("spiffe://example.org/bench/{n}"), &agent.id)
            .await;
        ids.push(entry.id);
    }
    // Visible once the agent API issues for the last one.
    let mut client = server.client(&agent).await;
    let key = PrivateKey::generate().unwrap();
    let started = Instant::now();
    loop {
        let answer = client
            .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
                params: vec![pb::NewX509SvidParams {
                    entry_id: ids.last().unwrap().clone(),
                    csr: support::csr(&key),
                }],
            })
            .await;
        if answer.is_ok() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, agent, ids)
}

/// Issuances per second against `server` for `secs`.
async fn run(server: &TestServer, agent: &support::AgentSvid, ids: &[String], secs: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in ids {
        let mut client = server.client(agent).await;
        let done = done.clone();
        let key = PrivateKey::generate().unwrap();
        let csr = support::csr(&key);
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let answer = client
                    .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
                        params: vec![pb::NewX509SvidParams {
                            entry_id: id.clone(),
                            csr: csr.clone(),
                        }],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(answer.results.iter().all(|r| r.svid.is_some()), "refused");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let secs = env("SIGIL_BENCH_SECS", 3);
    let rounds = env("SIGIL_BENCH_ROUNDS", 4);
    let callers = env("SIGIL_BENCH_CALLERS", 8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (off, off_agent, off_ids) = prepare(false, callers).await;
        // SIGIL_BENCH_CONTROL=1: the second server has auditing off too, to see the bench's own
        // bias between two identical servers.
        let control = std::env::var("SIGIL_BENCH_CONTROL").is_ok_and(|v| v == "1");
        let (on, on_agent, on_ids) = prepare(!control, callers).await;
        // Warm both (connections, caches, the SQLite pages).
        run(&off, &off_agent, &off_ids, 1).await;
        run(&on, &on_agent, &on_ids, 1).await;
        let (mut sum_off, mut sum_on) = (0.0, 0.0);
        for round in 1..=rounds {
            // Which goes first alternates, so a trend in the machine's speed favours neither.
            let (rate_off, rate_on) = if round % 2 == 1 {
                let off_rate = run(&off, &off_agent, &off_ids, secs).await;
                (off_rate, run(&on, &on_agent, &on_ids, secs).await)
            } else {
                let on_rate = run(&on, &on_agent, &on_ids, secs).await;
                (run(&off, &off_agent, &off_ids, secs).await, on_rate)
            };
            println!(
                "round {round}: audit off {rate_off:.0}/s, audit on {rate_on:.0}/s, ratio {:.3}",
                rate_on / rate_off
            );
            sum_off += rate_off;
            sum_on += rate_on;
        }
        let records = on
            .handle
            .store
            .audit_head()
            .await
            .unwrap()
            .map_or(0, |(seq, _)| seq);
        println!(
            "audit off {:.0} issuances/s, audit on {:.0} issuances/s: ratio {:.3} (target >= 0.9); \
             {records} audit records written by the audited server",
            sum_off / rounds as f64,
            sum_on / rounds as f64,
            sum_on / sum_off
        );
        assert!(
            control || records > 0,
            "the audited server wrote no audit records"
        );
        off.stop().await;
        on.stop().await;
    });
}
