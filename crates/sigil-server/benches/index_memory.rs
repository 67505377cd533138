//! Memory of the entry index at scale: N registration entries under M agents, loaded by
//! `EntryIndex::load` (the server's start path) from a SQLite store, and the heap and RSS that
//! costs.
//!
//! The store is a SQLite file (by default in `/dev/shm`, so commits do not wait for a disk),
//! populated once through `Datastore::create_entry` by a child process of this bench and reused
//! by later runs with the same N and M: populating 1M entries one by one takes minutes, and doing
//! it in another process keeps its allocations out of the figures. A file store (unlike an
//! in-memory one) keeps only SQLite's small page cache in the process, so the RSS measured is the
//! index's.
//!
//! Entry `i` hangs under agent `i mod M` (`spiffe://example.org/sigil/agent/join_token/agent-<a>`),
//! has the SPIFFE ID `spiffe://example.org/ns/ns-<a>/sa/svc-<i div M>`, the selector
//! `k8s:ns:ns-<a>` and, for even `i`, `k8s:sa:svc-<i div M>`, owner `team-x`; every tenth entry
//! expires (in a year).
//!
//! It prints, for the load: live heap bytes per entry once the index is built (a counting global
//! allocator), the peak heap above the start during the load per entry, and the process's
//! `VmRSS` before and after and `VmHWM` (peak RSS, reset before the load where the kernel allows).
//!
//! `cargo bench -p sigil-server --bench index_memory`, configured by the environment:
//! `SIGIL_INDEX_ENTRIES` (1000000), `SIGIL_INDEX_AGENTS` (10000), `SIGIL_INDEX_DB` (the SQLite
//! file; default `/dev/shm/sigil-index-memory-<N>-<M>.sqlite`, or the temp dir without
//! `/dev/shm`). Delete the file (and its `.done` marker) to populate again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a broken assumption must fail loudly"
)]

use std::alloc::System;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cap::Cap;
use futures::{StreamExt, stream};
use sigil_server::entry_index::EntryIndex;
use sigil_server::naming;
use sigil_spiffe::{Clock, Selector, SpiffeId, SystemClock, TrustDomain};
use sigil_store::{Datastore, NewEntry, SqliteStore};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// Store writes in flight while populating.
const POPULATE_CONCURRENCY: usize = 16;
/// Set in the child process that populates the store file named by its value.
const POPULATE_VAR: &str = "SIGIL_INDEX_POPULATE";
const YEAR_SECS: i64 = 365 * 86_400;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/self/status` field in MiB (`VmRSS`, `VmHWM`).
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn td() -> TrustDomain {
    TrustDomain::parse("example.org").unwrap()
}

/// Entry `i` of `agents` agents, as the module doc describes.
fn entry(td: &TrustDomain, i: usize, agents: usize, now: i64) -> NewEntry {
    let a = i % agents;
    let w = i / agents;
    let parent = naming::join_token_agent_id(td, &format!("agent-{a}")).unwrap();
    let spiffe_id = SpiffeId::parse(&format!("spiffe://example.org/ns/ns-{a}/sa/svc-{w}")).unwrap();
    let mut selectors = vec![Selector::parse(&format!("k8s:ns:ns-{a}")).unwrap()];
    if i.is_multiple_of(2) {
        selectors.push(Selector::parse(&format!("k8s:sa:svc-{w}")).unwrap());
    }
    let mut spec = NewEntry::new(spiffe_id, parent, selectors, "team-x");
    if i.is_multiple_of(10) {
        spec.expires_at = Some(now + YEAR_SECS);
    }
    spec
}

/// Fills the store file at `path` with `entries` entries under `agents` agents.
async fn populate(path: &Path, entries: usize, agents: usize) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    let td = td();
    let now = SystemClock.unix_secs();
    let started = Instant::now();
    stream::iter(0..entries)
        .map(|i| {
            let store = Arc::clone(&store);
            let spec = entry(&td, i, agents, now);
            async move { store.create_entry(spec, now).await.unwrap() }
        })
        .buffer_unordered(POPULATE_CONCURRENCY)
        .enumerate()
        .for_each(|(n, _)| async move {
            if (n + 1) % 100_000 == 0 {
                eprintln!("  populated {} entries", n + 1);
            }
        })
        .await;
    eprintln!(
        "populated {entries} entries in {:.1} s (one `create_entry` each, {POPULATE_CONCURRENCY} in flight)",
        started.elapsed().as_secs_f64()
    );
}

fn done_marker(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".done");
    PathBuf::from(name)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let entries = env("SIGIL_INDEX_ENTRIES", 1_000_000);
    let agents = env("SIGIL_INDEX_AGENTS", 10_000).max(1);

    if let Some(path) = std::env::var_os(POPULATE_VAR) {
        populate(Path::new(&path), entries, agents).await;
        return;
    }

    let db = std::env::var_os("SIGIL_INDEX_DB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            dir.join(format!("sigil-index-memory-{entries}-{agents}.sqlite"))
        });
    let done = done_marker(&db);
    if !done.exists() {
        for stale in [
            db.clone(),
            db.with_extension("sqlite-wal"),
            db.with_extension("sqlite-shm"),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        eprintln!("populating {} ...", db.display());
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env(POPULATE_VAR, &db)
            .status()
            .unwrap();
        assert!(status.success(), "populating the store failed: {status}");
        std::fs::write(&done, b"").unwrap();
    }

    let store = SqliteStore::open(&db).unwrap();
    let td = td();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // Resets VmHWM to the current RSS (Linux >= 4.0); without it, VmHWM is the process's peak.
    let hwm_reset = std::fs::write("/proc/self/clear_refs", b"5").is_ok();
    let rss_before = status_mib("VmRSS");
    let live_before = ALLOC.allocated();
    let started = Instant::now();
    let (index, _) = EntryIndex::load(&store, &td, clock).await.unwrap();
    let load_time = started.elapsed();
    let live_after = ALLOC.allocated();
    let peak = ALLOC.max_allocated();
    let rss_after = status_mib("VmRSS");
    let hwm = status_mib("VmHWM");
    assert_eq!(
        index.len(),
        entries,
        "the store holds another number of entries"
    );

    let per_entry = |bytes: usize| bytes as f64 / entries.max(1) as f64;
    let live = live_after.saturating_sub(live_before);
    let transient = peak.saturating_sub(live_before);
    println!(
        "entry index: {entries} entries under {agents} agents, loaded by `EntryIndex::load` in {:.2} s",
        load_time.as_secs_f64()
    );
    println!(
        "  heap live after load: {:.1} MiB = {:.0} bytes/entry",
        mib(live),
        per_entry(live)
    );
    println!(
        "  heap peak during load: {:.1} MiB = {:.0} bytes/entry",
        mib(transient),
        per_entry(transient)
    );
    println!(
        "  RSS: {rss_before:.0} MiB before, {rss_after:.0} MiB after (+{:.0} bytes/entry), VmHWM {hwm:.0} MiB{}",
        (rss_after - rss_before) * 1024.0 * 1024.0 / entries.max(1) as f64,
        if hwm_reset {
            " (reset before the load)"
        } else {
            " (process peak: /proc/self/clear_refs not writable)"
        }
    );
    drop(index);
}
