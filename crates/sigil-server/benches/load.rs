//! Load at scale: N entries and M simulated agents on the real server, over SQLite (in memory)
//! or PostgreSQL (a fresh schema, dropped at the end).
//!
//! One process runs the server (`sigil_server::start`: agent API over mutual TLS on 127.0.0.1,
//! the change feed, the entry and agent indexes) and the simulated agents, each attested with its
//! own join token and holding its own mTLS connection and `SyncAuthorizedEntries` stream. It
//! prints one line for each of:
//! 1. setup: the join tokens, created one by one, and the entries, created in batches of
//!    `MAX_ENTRY_BATCH` (`Datastore::create_entries`, a few batches in flight), through the
//!    `Datastore` before any server runs;
//! 2. start-up: `sigil_server::start` on the populated store (CA, then the indexes loading);
//! 3. initial sync: every agent connects and opens its stream at once (or at most
//!    `SIGIL_LOAD_CONNECTS` handshakes at a time), until the last one holds its full entry set;
//! 4. change propagation: entry created in the store → the owning agent's stream carries it;
//! 5. X509-SVID issuance over the agent API (`BatchNewX509Svid`, one CSR per call, several
//!    concurrent callers), per core and as a ratio to the ceiling measured next in the same
//!    process: `X509Authority::sign_x509_svid` (verify the CSR, sign the leaf) on as many threads
//!    as the machine has cores, for as long;
//!    Then, with `SIGIL_LOAD_OPENBAO` set to a `bao` binary, OpenBao's PKI `issue` and `sign`
//!    beside it, same callers, same duration, same ceiling (`load/openbao.rs`);
//! 6. the process RSS at each stage (server and simulated agents together; with SQLite the
//!    database is in the process too).
//!
//! With `SIGIL_LOAD_SPLIT=1` (PostgreSQL only) the server runs in a child process of the bench
//! (the same binary, started with `SIGIL_LOAD_SERVE` set to the schema's URL) on the populated
//! schema: its RSS and CPU are then read from `/proc/<child>` and are its own, and each process
//! holds one end of every agent connection (twice as many agents fit under one file limit).
//! `SIGIL_LOAD_SERVE_WRAPPER` (e.g. `heaptrack`) runs the child under a profiler.
//!
//! `cargo bench -p sigil-server --bench load`, configured by the environment:
//! `SIGIL_LOAD_BACKEND` (`sqlite`, the default, or `postgres`), `SIGIL_LOAD_ENTRIES` (100000),
//! `SIGIL_LOAD_AGENTS` (1000), `SIGIL_LOAD_SECS` (10: the issuance phase, and its ceiling, each),
//! `SIGIL_LOAD_CALLERS` (8 concurrent issuance callers), `SIGIL_LOAD_BATCH` (CSRs per
//! `BatchNewX509Svid` call: 1), `SIGIL_LOAD_CONNECTS` (handshakes in
//! flight during the initial sync; default: every agent at once), `SIGIL_LOAD_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`; the user must be allowed to create schemas).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

#[path = "load/cpu.rs"]
mod cpu;
#[path = "load/openbao.rs"]
mod openbao;
#[path = "shared/openbao_dev.rs"]
mod openbao_dev;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::io::{BufRead as _, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use sigil_keys::PrivateKey;
use sigil_proto::agent::v1 as pb;
use sigil_proto::agent::v1::agent_service_client::AgentServiceClient;
use sigil_spiffe::{Clock, SpiffeId, SystemClock};
use sigil_store::{Datastore, MAX_ENTRY_BATCH, PostgresConfig, PostgresStore, SqliteStore};
use support::{AgentSvid, TestServer};
use tokio::sync::{Semaphore, mpsc};
use tonic::transport::Channel;

/// Store writes in flight while creating the join tokens, and attestations in flight
/// afterwards.
const SETUP_CONCURRENCY: usize = 16;
/// Thread name of the issuance callers' runtime (15 characters at most: Linux truncates).
const CALLER_THREADS: &str = "load-caller";
/// Entry batches (`create_entries`, [`MAX_ENTRY_BATCH`] entries each) in flight during setup.
const SETUP_BATCHES_IN_FLIGHT: usize = 4;
/// Entry creations timed for the propagation figures.
const PROPAGATION_SAMPLES: usize = 200;
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Longest the bench waits for one pushed change; only ever a failure bound.
const PUSH_PATIENCE: Duration = Duration::from_secs(10);
/// Longest the bench waits for the initial sync of every agent; only ever a failure bound.
const SYNC_PATIENCE: Duration = Duration::from_secs(300);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    rss_mib_of("self")
}

/// VmRSS of process `pid` (`"self"` for this one), MiB.
fn rss_mib_of(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile of `samples` (sorted here).
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]
}

/// What the run is asked to do.
struct Load {
    postgres_url: Option<String>,
    entries: usize,
    agents: usize,
    secs: u64,
    callers: usize,
    /// CSRs per issuance call.
    batch: usize,
    /// Agents connecting (TCP and TLS handshake) at once during the initial sync.
    connects: usize,
    cores: usize,
    /// Run the server in a child process (PostgreSQL only): its RSS and CPU are then its own.
    split: bool,
}

/// Set (to the PostgreSQL URL) in the child process that runs the server of a split run.
const SERVE_ENV: &str = "SIGIL_LOAD_SERVE";

/// The server under load: in this process, or in a child process (a split run).
enum Target {
    InProcess(TestServer),
    Child {
        child: Child,
        addr: SocketAddr,
        roots: Vec<Vec<u8>>,
    },
}

impl Target {
    /// Starts the child server on the schema at `url` and waits until it serves; returns it with
    /// the start-up time it measured and the number of entries its index loaded.
    async fn spawn_child(url: &str, store: &dyn Datastore) -> (Self, Duration, usize) {
        let exe = std::env::current_exe().unwrap();
        // A profiler to run the child under, e.g. `heaptrack`.
        let mut command = match std::env::var("SIGIL_LOAD_SERVE_WRAPPER") {
            Ok(wrapper) if !wrapper.is_empty() => {
                let mut words = wrapper.split_whitespace();
                let mut command = Command::new(words.next().unwrap());
                command.args(words).arg(exe);
                command
            }
            _ => Command::new(exe),
        };
        let mut child = command
            .env(SERVE_ENV, url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            // A wrapper may print lines of its own, before and after.
            let mut lines = std::io::BufReader::new(stdout).lines();
            let ready = lines
                .find(|l| l.as_ref().map_or(true, |l| l.starts_with("ready ")))
                .unwrap()
                .unwrap();
            std::thread::spawn(move || lines.for_each(drop));
            ready
        })
        .await
        .unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"ready"), "child server: {line:?}");
        let addr: SocketAddr = fields[1].parse().unwrap();
        let startup = Duration::from_secs_f64(fields[2].parse().unwrap());
        let loaded: usize = fields[3].parse().unwrap();
        let stored = store
            .get_bundle(support::td().as_str())
            .await
            .unwrap()
            .unwrap();
        let document = sigil_spiffe::BundleDocument::parse(&stored.document).unwrap();
        let roots = sigil_keys::bundle_json::from_document(support::td(), &document)
            .unwrap()
            .x509_authorities;
        (Self::Child { child, addr, roots }, startup, loaded)
    }

    async fn channel(
        &self,
        svid: Option<&AgentSvid>,
        rt: Option<tokio::runtime::Handle>,
    ) -> Channel {
        match self {
            Self::InProcess(server) => {
                support::channel_to(
                    server.handle.agent_api_addr,
                    &server.handle.bundle().x509_authorities,
                    svid,
                    rt,
                    SYNC_PATIENCE,
                )
                .await
            }
            Self::Child { addr, roots, .. } => {
                support::channel_to(*addr, roots, svid, rt, SYNC_PATIENCE).await
            }
        }
        .unwrap()
    }

    async fn client(&self, svid: &AgentSvid) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel(Some(svid), None).await)
    }

    async fn client_on(
        &self,
        svid: &AgentSvid,
        rt: tokio::runtime::Handle,
    ) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel(Some(svid), Some(rt)).await)
    }

    async fn attest_with(&self, token: &str) -> AgentSvid {
        support::attest_through(
            AgentServiceClient::new(self.channel(None, None).await),
            token,
        )
        .await
    }

    /// CPU seconds the server has used: the child's, or this process's less the callers'
    /// threads'.
    fn server_cpu(&self) -> f64 {
        match self {
            Self::InProcess(_) => cpu::process_secs("self") - cpu::threads_secs(CALLER_THREADS),
            Self::Child { child, .. } => cpu::process_secs(&child.id().to_string()),
        }
    }

    /// The server's RSS (MiB) when it runs apart.
    fn server_rss(&self) -> Option<f64> {
        match self {
            Self::InProcess(_) => None,
            Self::Child { child, .. } => Some(rss_mib_of(&child.id().to_string())),
        }
    }

    async fn stop(self) {
        match self {
            Self::InProcess(server) => server.stop().await,
            Self::Child { mut child, .. } => {
                // End of its standard input is the child's signal to shut down.
                drop(child.stdin.take());
                let status = tokio::task::spawn_blocking(move || child.wait())
                    .await
                    .unwrap()
                    .unwrap();
                assert!(status.success(), "child server: {status}");
            }
        }
    }
}

/// The child process of a split run: the server on the schema at `url`, until standard input
/// ends. Prints `ready <agent API address> <start-up seconds> <entries indexed>`.
async fn serve(url: String) {
    let store = PostgresStore::connect(&PostgresConfig::new(url))
        .await
        .unwrap();
    let start = Instant::now();
    let server = TestServer::start_on(Arc::new(store)).await;
    let startup = start.elapsed();
    println!(
        "ready {} {} {}",
        server.handle.agent_api_addr,
        startup.as_secs_f64(),
        server.handle.index.len()
    );
    tokio::task::spawn_blocking(|| {
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
    })
    .await
    .unwrap();
    server.stop().await;
}

/// A schema of its own on the PostgreSQL server; [`PgSchema::remove`] removes it with every table.
struct PgSchema {
    name: String,
    admin: tokio_postgres::Client,
    url: String,
}

impl PgSchema {
    async fn create(admin_url: &str) -> Self {
        let (admin, connection) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at `{admin_url}`: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let name: String = admin
            .query_one(
                "SELECT 'sigil_load_' || translate(gen_random_uuid()::text, '-', '')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{name}");
        Self { name, admin, url }
    }

    async fn remove(self) {
        self.admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}

/// The entry-ID sets an agent's stream delivered, each stamped on arrival.
type Pushes = mpsc::UnboundedReceiver<(Instant, HashSet<String>)>;

/// Connects as `svid` (holding one of `connects` meanwhile) and follows its sync stream in a
/// task of its own.
fn follow(server: Arc<Target>, svid: Arc<AgentSvid>, connects: Arc<Semaphore>) -> Pushes {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let permit = connects.acquire().await.unwrap();
        let mut client = server.client(&svid).await;
        drop(permit);
        // The server is stopped at the end, which needs every other reference gone.
        drop(server);
        let mut stream = client
            // As the agent asks: a push of trust alone comes without the unchanged entries, and
            // a large set comes in parts.
            .sync_authorized_entries(pb::SyncAuthorizedEntriesRequest {
                omit_unchanged_entries: true,
                accept_entry_parts: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut ids = HashSet::new();
        while let Some(Ok(msg)) = stream.next().await {
            let now = Instant::now();
            if msg.entries_unchanged {
                continue;
            }
            ids.extend(msg.entries.into_iter().map(|e| e.id));
            if msg.entries_continue {
                continue;
            }
            if tx.send((now, std::mem::take(&mut ids))).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (at most `patience`) for the first entry set matching `done`, returning when it arrived.
async fn wait_for(
    pushes: &mut Pushes,
    patience: Duration,
    done: impl Fn(&HashSet<String>) -> bool,
) -> Instant {
    tokio::time::timeout(patience, async {
        loop {
            let (at, ids) = pushes.recv().await.expect("the stream ended");
            if done(&ids) {
                return at;
            }
        }
    })
    .await
    .expect("the expected entry set was not pushed in time")
}

/// X509-SVIDs `sign_x509_svid` issues from one CSR on `threads` threads in `duration`: the
/// in-process ceiling of issuance over the agent API.
fn issuance_ceiling(threads: usize, duration: Duration) -> u64 {
    let now = SystemClock.now();
    let td = support::td();
    let key = || Arc::new(PrivateKey::generate().unwrap());
    let root = sigil_ca::self_signed_root(&td, key(), 86_400, now).unwrap();
    let ca = sigil_ca::intermediate(&td, key(), &root, 86_400, now).unwrap();
    let id = SpiffeId::parse("spiffe://example.org/a0/w0").unwrap();
    let csr = support::csr(&PrivateKey::generate().unwrap());
    let deadline = Instant::now() + duration;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut issued = 0;
                    while Instant::now() < deadline {
                        std::hint::black_box(
                            ca.sign_x509_svid(&csr, &id, 3_600, &[], now).unwrap(),
                        );
                        issued += 1;
                    }
                    issued
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

async fn run(load: &Load) {
    let backend = if load.postgres_url.is_some() {
        "postgres"
    } else {
        "sqlite (in memory)"
    };
    println!(
        "load: {backend}, {} entries, {} agents, {} cores",
        load.entries, load.agents, load.cores
    );
    let rss_start = rss_mib();
    let schema = match &load.postgres_url {
        Some(url) => Some(PgSchema::create(url).await),
        None => None,
    };
    let store: Arc<dyn Datastore> = match &schema {
        Some(schema) => Arc::new(
            PostgresStore::connect(&PostgresConfig::new(schema.url.clone()))
                .await
                .unwrap(),
        ),
        None => Arc::new(SqliteStore::open_in_memory().unwrap()),
    };

    // 1. Setup, before any server runs.
    let now = SystemClock.unix_secs();
    let setup = Instant::now();
    let td = support::td();
    let tokens: Vec<_> = stream::iter(0..load.agents)
        .map(|_| sigil_server::join_token::create(store.as_ref(), &td, 86_400, now))
        .buffered(SETUP_CONCURRENCY)
        .map(Result::unwrap)
        .collect()
        .await;
    let tokens_time = setup.elapsed();
    let entries_start = Instant::now();
    // Entry i goes under agent i mod M; batches of MAX_ENTRY_BATCH consecutive entries, each
    // one `create_entries` call (one transaction), a few batches in flight.
    let created: Vec<Vec<(usize, String)>> =
        stream::iter((0..load.entries).step_by(MAX_ENTRY_BATCH))
            .map(|first| {
                let indices: Vec<usize> =
                    (first..load.entries.min(first + MAX_ENTRY_BATCH)).collect();
                let specs = indices
                    .iter()
                    .map(|&i| {
                        support::new_entry(
                            &format!(
                                "spiffe://example.org/a{}/w{}",
                                i % load.agents,
                                i / load.agents
                            ),
                            &tokens[i % load.agents].agent_id,
                        )
                    })
                    .collect();
                let store = Arc::clone(&store);
                async move {
                    let entries = store.create_entries(specs, now).await.unwrap();
                    assert_eq!(entries.len(), indices.len());
                    indices
                        .into_iter()
                        .zip(entries)
                        .map(|(i, entry)| (i % load.agents, entry.id))
                        .collect()
                }
            })
            .buffer_unordered(SETUP_BATCHES_IN_FLIGHT)
            .collect()
            .await;
    let created = created.into_iter().flatten();
    let entries_time = entries_start.elapsed();
    let mut per_agent = vec![Vec::new(); load.agents];
    for (a, id) in created {
        per_agent[a].push(id);
    }
    let rss_setup = rss_mib();
    println!(
        "1. setup: {} entries in {:.1} s ({:.0} entries/s, `create_entries` batches of {MAX_ENTRY_BATCH}, {SETUP_BATCHES_IN_FLIGHT} in flight), after {} join tokens in {:.1} s",
        load.entries,
        entries_time.as_secs_f64(),
        load.entries as f64 / entries_time.as_secs_f64(),
        load.agents,
        tokens_time.as_secs_f64(),
    );

    // 2. Start-up on the populated store.
    let (server, startup, loaded) = match (&schema, load.split) {
        (Some(schema), true) => Target::spawn_child(&schema.url, store.as_ref()).await,
        _ => {
            let start = Instant::now();
            let server = TestServer::start_on(Arc::clone(&store)).await;
            let loaded = server.handle.index.len();
            (Target::InProcess(server), start.elapsed(), loaded)
        }
    };
    let server = Arc::new(server);
    assert_eq!(loaded, load.entries);
    let rss_started = rss_mib();
    let server_rss_started = server.server_rss();
    println!(
        "2. start-up with {} entries in the store: {:.2} s",
        load.entries,
        startup.as_secs_f64()
    );

    // 3. Initial sync: every agent attested first, then all connect and sync at once.
    let attest_start = Instant::now();
    let svids: Vec<Arc<AgentSvid>> = stream::iter(&tokens)
        .map(|t| server.attest_with(&t.token))
        .buffered(SETUP_CONCURRENCY)
        .map(Arc::new)
        .collect()
        .await;
    let attest_time = attest_start.elapsed();
    let sync_start = Instant::now();
    let connects = Arc::new(Semaphore::new(load.connects));
    let mut pushes: Vec<Pushes> = svids
        .iter()
        .map(|svid| follow(Arc::clone(&server), Arc::clone(svid), Arc::clone(&connects)))
        .collect();
    let mut last = sync_start;
    for (agent_pushes, ids) in pushes.iter_mut().zip(&per_agent) {
        let want = ids.len();
        let at = wait_for(agent_pushes, SYNC_PATIENCE, |got| got.len() == want).await;
        last = last.max(at);
    }
    let rss_synced = rss_mib();
    let server_rss_synced = server.server_rss();
    println!(
        "3. initial sync: {} agents connect (mTLS, {} handshakes at once at most) and open their streams; the last holds its {} entries after {:.2} s (attesting them one by one before: {:.1} s)",
        load.agents,
        load.connects,
        load.entries / load.agents,
        (last - sync_start).as_secs_f64(),
        attest_time.as_secs_f64(),
    );

    // 4. Change propagation: entry created in the store → the owning agent's stream.
    let mut latencies = Vec::with_capacity(PROPAGATION_SAMPLES);
    let mut writes = Vec::with_capacity(PROPAGATION_SAMPLES);
    for i in 0..PROPAGATION_SAMPLES {
        let a = (i * 7919) % load.agents;
        let start = Instant::now();
        let entry = store
            .create_entry(
                support::new_entry(
                    &format!("spiffe://example.org/a{a}/new{i}"),
                    &tokens[a].agent_id,
                ),
                SystemClock.unix_secs(),
            )
            .await
            .unwrap();
        writes.push(start.elapsed());
        let at = wait_for(&mut pushes[a], PUSH_PATIENCE, |got| got.contains(&entry.id)).await;
        latencies.push(at - start);
    }
    println!(
        "4. entry create → agent stream ({PROPAGATION_SAMPLES} samples): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms (of which the store write: p50 {:.2} ms  p99 {:.2} ms)",
        ms(quantile(&mut latencies, 0.5)),
        ms(quantile(&mut latencies, 0.99)),
        ms(quantile(&mut latencies, 1.0)),
        ms(quantile(&mut writes, 0.5)),
        ms(quantile(&mut writes, 0.99)),
    );

    // 5. Issuance over the agent API, then its ceiling on as many threads for as long. The
    // callers and their connections run on a runtime of their own, so their CPU is told apart.
    let duration = Duration::from_secs(load.secs);
    let callers_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load.cores)
        .thread_name(CALLER_THREADS)
        .enable_all()
        .build()
        .unwrap();
    let mut clients = Vec::with_capacity(load.callers);
    for c in 0..load.callers {
        let a = c % load.agents;
        let params = pb::NewX509SvidParams {
            entry_id: per_agent[a][0].clone(),
            csr: support::csr(&PrivateKey::generate().unwrap()),
        };
        clients.push((
            server
                .client_on(&svids[a], callers_rt.handle().clone())
                .await,
            params,
        ));
    }
    let cpu_start = (server.server_cpu(), cpu::threads_secs(CALLER_THREADS));
    let issuance_start = Instant::now();
    let deadline = issuance_start + duration;
    let mut callers = Vec::with_capacity(clients.len());
    for (mut client, params) in clients {
        let batch = vec![params; load.batch];
        callers.push(callers_rt.spawn(async move {
            let mut issued = 0_u64;
            while Instant::now() < deadline {
                let response = client
                    .batch_new_x509_svid(pb::BatchNewX509SvidRequest {
                        params: batch.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(response.results.len(), batch.len());
                for result in &response.results {
                    assert!(result.svid.is_some(), "not issued: {}", result.error);
                }
                issued += response.results.len() as u64;
            }
            issued
        }));
    }
    let mut issued = 0_u64;
    for caller in callers {
        issued += caller.await.unwrap();
    }
    let api_rate = issued as f64 / issuance_start.elapsed().as_secs_f64();
    let server_cpu = server.server_cpu() - cpu_start.0;
    let callers_cpu = cpu::threads_secs(CALLER_THREADS) - cpu_start.1;
    callers_rt.shutdown_background();
    let rss_issued = rss_mib();
    let server_rss_issued = server.server_rss();
    let threads = load.cores;
    let ceiling_cpu_start = cpu::process_secs("self");
    let ceiling = tokio::task::spawn_blocking(move || issuance_ceiling(threads, duration))
        .await
        .unwrap();
    let ceiling_cpu = cpu::process_secs("self") - ceiling_cpu_start;
    let ceiling_rate = ceiling as f64 / duration.as_secs_f64();
    let api_per_cpu = issued as f64 / server_cpu;
    let ceiling_per_cpu = ceiling as f64 / ceiling_cpu;
    println!(
        "5. per CPU-second: the server issued {api_per_cpu:.0} SVIDs per CPU-second it used ({server_cpu:.1} CPU-s; the callers' threads used {callers_cpu:.1} CPU-s more); the ceiling {ceiling_per_cpu:.0} per CPU-second ({ceiling_cpu:.1} CPU-s); ratio {:.2} (target ≥ 0.6)",
        api_per_cpu / ceiling_per_cpu,
    );
    println!(
        "5. X509-SVID issuance over the agent API ({} callers, {} CSR(s) per call, {} s): {:.0} SVIDs/s = {:.0} per core (÷ {} cores); ceiling in-process (`sign_x509_svid`, {threads} threads): {:.0}/s = {:.0} per core; ratio {:.2} (target ≥ 0.6)",
        load.callers,
        load.batch,
        load.secs,
        api_rate,
        api_rate / load.cores as f64,
        load.cores,
        ceiling_rate,
        ceiling_rate / load.cores as f64,
        api_rate / ceiling_rate,
    );
    let sigil = openbao::Sigil {
        api_rate,
        ceiling_rate,
        api_per_cpu,
        ceiling_per_cpu,
    };
    openbao::compare(load.secs, load.callers, load.cores, &sigil).await;

    if let (Some(started), Some(synced), Some(issued)) =
        (server_rss_started, server_rss_synced, server_rss_issued)
    {
        println!(
            "6. server RSS (its own process): {started:.0} MiB started, {synced:.0} MiB with every agent connected and synced, {issued:.0} MiB after issuance; the bench process (setup, simulated agents, callers): {rss_synced:.0} MiB with every agent synced"
        );
    } else {
        println!(
            "6. RSS (whole process: server and simulated agents{}): {rss_start:.0} MiB at start, {rss_setup:.0} MiB after setup, {rss_started:.0} MiB with the server started, {rss_synced:.0} MiB with every agent synced, {rss_issued:.0} MiB after issuance",
            if schema.is_some() {
                ""
            } else {
                ", and the SQLite database"
            },
        );
    }

    drop(pushes);
    Arc::into_inner(server)
        .expect("a task still holds the server")
        .stop()
        .await;
    drop(store);
    if let Some(schema) = schema {
        schema.remove().await;
    }
}

fn main() {
    if let Ok(url) = std::env::var(SERVE_ENV) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
            .unwrap()
            .block_on(serve(url));
        return;
    }
    let agents = env("SIGIL_LOAD_AGENTS", 1_000);
    let load = Load {
        postgres_url: match std::env::var("SIGIL_LOAD_BACKEND").as_deref() {
            Ok("sqlite") | Err(_) => None,
            Ok("postgres") => Some(
                std::env::var("SIGIL_LOAD_POSTGRES_URL")
                    .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned()),
            ),
            Ok(other) => panic!("SIGIL_LOAD_BACKEND must be `sqlite` or `postgres`, not `{other}`"),
        },
        entries: env("SIGIL_LOAD_ENTRIES", 100_000),
        agents,
        secs: env("SIGIL_LOAD_SECS", 10) as u64,
        callers: env("SIGIL_LOAD_CALLERS", 8),
        batch: env("SIGIL_LOAD_BATCH", 1).clamp(1, 1000),
        connects: env("SIGIL_LOAD_CONNECTS", agents),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        split: std::env::var("SIGIL_LOAD_SPLIT").is_ok_and(|v| v == "1"),
    };
    assert!(
        !load.split || load.postgres_url.is_some(),
        "SIGIL_LOAD_SPLIT=1 needs SIGIL_LOAD_BACKEND=postgres (the child server shares the database)"
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load.cores)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&load));
}
