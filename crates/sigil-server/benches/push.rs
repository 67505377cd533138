//! Push latency at scale: how long after a store change the agent it concerns sees it on its
//! `SyncAuthorizedEntries` stream, with many unrelated entries and agents around.
//!
//! One process runs the real server (agent API over mutual TLS on 127.0.0.1, SQLite in memory,
//! the change feed, the entry and agent indexes) and simulated agents: each attested with its own
//! join token and holding its own mTLS connection and sync stream. Two sizes run in the same
//! process: the baseline (10 agents with the same number of entries each) and the large one (`SIGIL_BENCH_AGENTS`
//! agents, default 1,000, each parent of `SIGIL_BENCH_ENTRIES_PER_AGENT` entries, default 100:
//! 100,000 entries). For each size:
//! - entry delete → the owning agent's stream carries the set without it;
//! - JWT-SVID revocation → the deny-list on every agent's stream names its `jti` (a revocation
//!   concerns every agent: any of them may be asked to validate the token), reported both for
//!   the agent that obtained the token and for the last of all agents;
//! - agent ban → that agent's stream ends with `PermissionDenied`.
//!
//! It also reports how many unrelated streams were woken (must be 0) and the process RSS
//! (server and all simulated agents together).
//!
//! `cargo bench -p sigil-server --bench push` (env `SIGIL_BENCH_SAMPLES`, default 200 deletes and
//! 100 bans per size; `SIGIL_BENCH_JWT_SAMPLES`, default 50 JWT revocations per size).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sigil_proto::agent::v1 as pb;
use sigil_store::Entry;
use support::{AgentSvid, TestServer};
use tokio::sync::mpsc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one simulated agent's stream delivered.
enum Event {
    Message {
        entries: Arc<HashSet<String>>,
        revoked_jwts: HashSet<String>,
    },
    Ended(tonic::Code),
}

struct SimAgent {
    svid: AgentSvid,
    entries: Vec<Entry>,
    events: mpsc::UnboundedReceiver<(Instant, Event)>,
}

struct Figures {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn figures(mut samples: Vec<Duration>) -> Figures {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Figures {
        p50: at(0.5),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Opens the agent's sync stream; its messages (entry-id sets) and its end go to the returned
/// receiver, each stamped on arrival; every message counts in `delivered`.
async fn follow(
    server: &TestServer,
    svid: &AgentSvid,
    delivered: Arc<AtomicU64>,
) -> mpsc::UnboundedReceiver<(Instant, Event)> {
    let mut client = server.client(svid).await;
    let mut stream = client
        // As the agent asks: a push of trust alone comes without the unchanged entries.
        .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {
            omit_unchanged_entries: true,
            accept_entry_parts: true,
        })
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        let mut entries: Arc<HashSet<String>> = Arc::default();
        let mut parts: HashSet<String> = HashSet::new();
        while let Some(item) = stream.next().await {
            let now = Instant::now();
            match item {
                Ok(msg) if msg.entries_continue => {
                    parts.extend(msg.entries.into_iter().map(|e| e.id));
                }
                Ok(msg) => {
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if !msg.entries_unchanged {
                        parts.extend(msg.entries.into_iter().map(|e| e.id));
                        entries = Arc::new(std::mem::take(&mut parts));
                    }
                    let event = Event::Message {
                        entries: Arc::clone(&entries),
                        revoked_jwts: msg.revoked_jwt_svids.into_iter().map(|r| r.id).collect(),
                    };
                    if tx.send((now, event)).is_err() {
                        return;
                    }
                }
                Err(status) => {
                    let _ = tx.send((now, Event::Ended(status.code())));
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for the first event matching `done` (at most 10 s), returning when it arrived.
async fn wait_for(
    events: &mut mpsc::UnboundedReceiver<(Instant, Event)>,
    done: impl Fn(&Event) -> bool,
) -> Instant {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (at, event) = events.recv().await.expect("stream task ended");
            if done(&event) {
                return at;
            }
        }
    })
    .await
    .expect("the change was not pushed within 10 s")
}

struct Size {
    agents: usize,
    entries_per_agent: usize,
}

/// Results of one size.
struct Run {
    delete: Figures,
    jwt_own: Figures,
    jwt_all: Figures,
    ban: Figures,
}

async fn run(size: &Size, samples: usize, jwt_samples: usize) -> Run {
    let server = TestServer::start().await;
    let rss_empty = rss_mib();
    let setup = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let mut agents = Vec::with_capacity(size.agents);
    for a in 0..size.agents {
        let svid = server.attest().await;
        let mut entries = Vec::with_capacity(size.entries_per_agent);
        for e in 0..size.entries_per_agent {
            entries.push(
                server
                    .create_entry(&format!("spiffe://example.org/a{a}/w{e}"), &svid.id)
                    .await,
            );
        }
        agents.push((svid, entries));
    }
    server.agents_caught_up().await;
    // Wait for the entry index too: every entry visible.
    let total = size.agents * size.entries_per_agent;
    while server.handle.index.len() < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sims = Vec::with_capacity(size.agents);
    for (svid, entries) in agents {
        let mut events = follow(&server, &svid, Arc::clone(&delivered)).await;
        let want = entries.len();
        wait_for(
            &mut events,
            |e| matches!(e, Event::Message { entries, .. } if entries.len() == want),
        )
        .await;
        sims.push(SimAgent {
            svid,
            entries,
            events,
        });
    }
    let rss_loaded = rss_mib();
    println!(
        "size: {} agents × {} entries = {} entries; setup {:.1} s; RSS {:.0} MiB empty, {:.0} MiB loaded (server and simulated agents in one process)",
        size.agents,
        size.entries_per_agent,
        total,
        setup.elapsed().as_secs_f64(),
        rss_empty,
        rss_loaded
    );

    // Entry deletes, spread over the agents.
    let before = delivered.load(Ordering::Relaxed);
    let mut latencies = Vec::with_capacity(samples);
    let mut store_writes = Vec::with_capacity(samples);
    for i in 0..samples {
        let a = (i * 7919) % sims.len();
        let sim = &mut sims[a];
        let Some(entry) = sim.entries.pop() else {
            continue;
        };
        let start = Instant::now();
        server.handle.store.delete_entry(&entry.id).await.unwrap();
        store_writes.push(start.elapsed());
        let at = wait_for(
            &mut sim.events,
            |e| matches!(e, Event::Message { entries, .. } if !entries.contains(&entry.id)),
        )
        .await;
        latencies.push(at - start);
    }
    // Let stray wake-ups (there must be none) arrive before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pushed = delivered.load(Ordering::Relaxed) - before;
    let unrelated = pushed.saturating_sub(latencies.len() as u64);
    let delete = figures(latencies);
    let write = figures(store_writes);
    println!(
        "  entry delete → agent stream: p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms; messages to other agents: {unrelated}",
        delete.p50.as_secs_f64() * 1e3,
        delete.p99.as_secs_f64() * 1e3,
        delete.max.as_secs_f64() * 1e3,
    );
    println!(
        "    of which the store write: p50 {:>7.2} ms  p99 {:>7.2} ms",
        write.p50.as_secs_f64() * 1e3,
        write.p99.as_secs_f64() * 1e3,
    );

    // JWT-SVID revocations: each token obtained by a different agent, then revoked.
    let mut own = Vec::with_capacity(jwt_samples);
    let mut all = Vec::with_capacity(jwt_samples);
    for i in 0..jwt_samples {
        let a = (i * 7919) % sims.len();
        let entry_id = sims[a].entries[0].id.clone();
        let mut client = server.client(&sims[a].svid).await;
        let token = client
            .new_jwt_svid(pb::NewJwtSvidRequest {
                entry_id,
                audience: vec!["bench".to_owned()],
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        let jti = sigil_keys::jws::unverified_jti(&token).unwrap();
        let start = Instant::now();
        server
            .handle
            .store
            .revoke_credential(
                sigil_store::CredentialKind::JwtSvid,
                &jti,
                "",
                sigil_spiffe::Clock::unix_secs(&server.clock),
            )
            .await
            .unwrap();
        let mut last = start;
        for (b, sim) in sims.iter_mut().enumerate() {
            let at = wait_for(
                &mut sim.events,
                |e| matches!(e, Event::Message { revoked_jwts, .. } if revoked_jwts.contains(&jti)),
            )
            .await;
            if b == a {
                own.push(at - start);
            }
            last = last.max(at);
        }
        all.push(last - start);
    }
    let jwt_own = figures(own);
    let jwt_all = figures(all);
    println!(
        "  JWT revoke   → its agent:     p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        jwt_own.p50.as_secs_f64() * 1e3,
        jwt_own.p99.as_secs_f64() * 1e3,
        jwt_own.max.as_secs_f64() * 1e3,
    );
    println!(
        "  JWT revoke   → all {:>5} agents: p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        sims.len(),
        jwt_all.p50.as_secs_f64() * 1e3,
        jwt_all.p99.as_secs_f64() * 1e3,
        jwt_all.max.as_secs_f64() * 1e3,
    );

    // Bans, each of a different agent.
    let mut latencies = Vec::new();
    for sim in sims.iter_mut().take(samples.min(100)) {
        let start = Instant::now();
        server
            .handle
            .store
            .set_agent_banned(sim.svid.id.as_str(), true)
            .await
            .unwrap();
        let at = wait_for(&mut sim.events, |e| {
            matches!(e, Event::Ended(tonic::Code::PermissionDenied))
        })
        .await;
        latencies.push(at - start);
    }
    let ban = figures(latencies);
    println!(
        "  agent ban    → stream ended:  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        ban.p50.as_secs_f64() * 1e3,
        ban.p99.as_secs_f64() * 1e3,
        ban.max.as_secs_f64() * 1e3,
    );
    drop(sims);
    server.stop().await;
    Run {
        delete,
        jwt_own,
        jwt_all,
        ban,
    }
}

fn main() {
    let samples = env("SIGIL_BENCH_SAMPLES", 200);
    let jwt_samples = env("SIGIL_BENCH_JWT_SAMPLES", 50);
    let large = Size {
        agents: env("SIGIL_BENCH_AGENTS", 1000),
        entries_per_agent: env("SIGIL_BENCH_ENTRIES_PER_AGENT", 100),
    };
    // The same tree per agent, without the unrelated agents and entries: what the large size
    // adds over it is the cost of the others.
    let baseline = Size {
        agents: 10,
        entries_per_agent: large.entries_per_agent,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("baseline");
        let base = run(&baseline, samples, jwt_samples).await;
        println!("large");
        let large = run(&large, samples, jwt_samples).await;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "large ÷ baseline: delete p50 {:.2} p99 {:.2}; JWT revoke (its agent) p50 {:.2} p99 {:.2}; JWT revoke (all agents) p50 {:.2} p99 {:.2}; ban p50 {:.2} p99 {:.2}",
            ratio(large.delete.p50, base.delete.p50),
            ratio(large.delete.p99, base.delete.p99),
            ratio(large.jwt_own.p50, base.jwt_own.p50),
            ratio(large.jwt_own.p99, base.jwt_own.p99),
            ratio(large.jwt_all.p50, base.jwt_all.p50),
            ratio(large.jwt_all.p99, base.jwt_all.p99),
            ratio(large.ban.p50, base.ban.p50),
            ratio(large.ban.p99, base.ban.p99),
        );
    });
}
