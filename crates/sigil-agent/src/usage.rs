//! Workload usage: which workload received which identity through the Workload API, counted in
//! memory per (entry, uid, binary path, binary hash) — first and last delivery, calls, SVIDs —
//! and reported to the server in batches (`ReportWorkloadUsage`) every
//! `usage_report_interval`, never per fetch.
//!
//! The counters are bounded ([`MAX_USAGE_KEYS`] keys; beyond that new keys are dropped and
//! counted, with one warning per report period). A report that cannot be delivered is merged
//! back, still bounded, and sent again at the next period. Recording holds a mutex only to bump
//! counters: a Workload API call never waits on the network or on a report in flight.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sigil_proto::agent::v1 as pb;
use sigil_proto::{MAX_USAGE_BINARY_PATH_BYTES, MAX_USAGE_REPORT_ROWS};
use sigil_spiffe::Selector;
use tokio::sync::watch;

use crate::error::AgentError;
use crate::server_client::Client;

/// Most (entry, workload) keys counted between two reports.
pub const MAX_USAGE_KEYS: usize = 10_000;
/// How often usage is reported when the configuration does not say.
pub const DEFAULT_USAGE_REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Shortest report interval honoured (a zero interval would spin).
const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Longest one report call may take before its rows are kept for the next period.
const REPORT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the report sent at shutdown may hold up the agent's stop.
const FINAL_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// A workload as usage tells workloads apart: its user and its binary.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadBinary {
    pub uid: u32,
    /// The executable path read when the workload connected; empty when unknown or longer than
    /// the protocol allows.
    pub path: String,
    /// Lowercase hex SHA-256 of the executable; empty when the attestor did not hash it.
    pub sha256: String,
}

impl WorkloadBinary {
    /// The workload of user `uid` running the binary at `path` (if the agent could read it),
    /// with the hash the attestor already computed for a `unix:sha256:` selector among
    /// `selectors`, if any: nothing is hashed here.
    pub fn new(uid: u32, path: Option<&Path>, selectors: &[Selector]) -> Self {
        let path = path
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| p.len() <= MAX_USAGE_BINARY_PATH_BYTES)
            .unwrap_or_default();
        let sha256 = selectors
            .iter()
            .filter(|s| s.kind() == "unix")
            .find_map(|s| s.value().strip_prefix("sha256:"))
            .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        Self { uid, path, sha256 }
    }
}

/// What one Workload API response delivered of one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The response opens a call's delivery of the identity (counted in `fetches`).
    pub fetch: bool,
    /// SVIDs of the identity newly delivered by the response.
    pub svids: u64,
}

/// Counters of one (entry, workload) over a report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    first_seen: i64,
    last_seen: i64,
    fetches: u64,
    svids: u64,
}

impl Counts {
    fn merge(&mut self, other: Counts) {
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.fetches = self.fetches.saturating_add(other.fetches);
        self.svids = self.svids.saturating_add(other.svids);
    }
}

/// One counted key and its counters, taken out of the counter to be reported.
#[derive(Debug, Clone)]
struct UsageRow {
    workload: Arc<WorkloadBinary>,
    entry_id: String,
    counts: Counts,
}

impl UsageRow {
    fn to_pb(&self) -> pb::WorkloadUsage {
        pb::WorkloadUsage {
            entry_id: self.entry_id.clone(),
            uid: self.workload.uid,
            binary_path: self.workload.path.clone(),
            binary_sha256: self.workload.sha256.clone(),
            first_seen: self.counts.first_seen,
            last_seen: self.counts.last_seen,
            // The protocol allows at most 2^63 - 1.
            fetches: self.counts.fetches.min(i64::MAX.unsigned_abs()),
            svids_issued: self.counts.svids.min(i64::MAX.unsigned_abs()),
        }
    }
}

/// The usage counters shared by the Workload API (which records) and the reporter (which takes
/// them); at most a fixed number of keys.
#[derive(Debug)]
pub struct UsageCounter {
    state: Mutex<UsageState>,
    max_keys: usize,
}

#[derive(Debug, Default)]
struct UsageState {
    /// Counters by workload, then by entry id: a lookup needs no allocation.
    rows: HashMap<Arc<WorkloadBinary>, HashMap<String, Counts>>,
    /// Keys held, across workloads.
    keys: usize,
    /// New keys dropped because the counter was full, since the agent started.
    dropped: u64,
    /// Whether the current period already warned about a full counter.
    warned: bool,
}

impl Default for UsageCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageCounter {
    /// An empty counter of at most [`MAX_USAGE_KEYS`] keys.
    pub fn new() -> Self {
        Self::with_max_keys(MAX_USAGE_KEYS)
    }

    /// An empty counter of at most `max_keys` keys.
    pub fn with_max_keys(max_keys: usize) -> Self {
        Self {
            state: Mutex::new(UsageState::default()),
            max_keys,
        }
    }

    /// Counts `delivery` of entry `entry_id`'s identity to `workload` at `now` (Unix seconds).
    /// A key the counter does not hold yet is dropped (and counted in [`Self::dropped`]) when
    /// the counter is full.
    pub fn record(
        &self,
        entry_id: &str,
        workload: &Arc<WorkloadBinary>,
        delivery: Delivery,
        now: i64,
    ) {
        let counts = Counts {
            first_seen: now,
            last_seen: now,
            fetches: u64::from(delivery.fetch),
            svids: delivery.svids,
        };
        let mut state = self.lock();
        if let Some(held) = state
            .rows
            .get_mut(workload.as_ref())
            .and_then(|by_entry| by_entry.get_mut(entry_id))
        {
            held.merge(counts);
            return;
        }
        state.insert_new(workload, entry_id, counts, self.max_keys);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().keys
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New keys dropped because the counter was full, since the agent started.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Everything counted, leaving the counter empty (a new report period starts).
    fn take(&self) -> Vec<UsageRow> {
        let mut state = self.lock();
        state.keys = 0;
        state.warned = false;
        let rows = std::mem::take(&mut state.rows);
        drop(state);
        rows.into_iter()
            .flat_map(|(workload, by_entry)| {
                by_entry
                    .into_iter()
                    .map(move |(entry_id, counts)| UsageRow {
                        workload: workload.clone(),
                        entry_id,
                        counts,
                    })
            })
            .collect()
    }

    /// Merges rows that could not be reported back into the counter (which may have counted
    /// more meanwhile), within its bound.
    fn restore(&self, rows: Vec<UsageRow>) {
        let mut state = self.lock();
        for row in rows {
            if let Some(held) = state
                .rows
                .get_mut(&row.workload)
                .and_then(|by_entry| by_entry.get_mut(&row.entry_id))
            {
                held.merge(row.counts);
            } else {
                state.insert_new(&row.workload, &row.entry_id, row.counts, self.max_keys);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, UsageState> {
        // The state is counters only: whatever a panicking holder left is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl UsageState {
    /// Adds a key the state does not hold, unless `max_keys` are held already.
    fn insert_new(
        &mut self,
        workload: &Arc<WorkloadBinary>,
        entry_id: &str,
        counts: Counts,
        max_keys: usize,
    ) {
        if self.keys >= max_keys {
            self.dropped = self.dropped.saturating_add(1);
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    max_keys,
                    dropped_since_start = self.dropped,
                    "the workload usage counter is full; usage of further workloads is not \
                     counted until the next report"
                );
            }
            return;
        }
        self.rows
            .entry(workload.clone())
            .or_default()
            .insert(entry_id.to_owned(), counts);
        self.keys += 1;
    }
}

/// What one report delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReportOutcome {
    /// Rows the server recorded.
    pub recorded: u64,
    /// Rows the server dropped (entries this agent may not serve).
    pub dropped_by_server: u64,
    /// Rows discarded here because the server refused their batch as malformed.
    pub discarded: u64,
}

/// Sends everything `counter` holds through `client`, in batches of at most
/// [`MAX_USAGE_REPORT_ROWS`]. A batch the server refuses as malformed (`InvalidArgument`) is
/// discarded, since sending it again cannot help. At the first other failure (unreachable, timed
/// out, refused) that batch and the ones not sent yet are merged back into `counter`, to be
/// sent with the next report, and the failure is returned; a server that does not know the call
/// (`Unimplemented`) gets nothing merged back either, as it would never take them.
pub(crate) async fn report(
    counter: &UsageCounter,
    client: &mut Client,
) -> Result<ReportOutcome, tonic::Status> {
    let mut rows = counter.take();
    let mut outcome = ReportOutcome::default();
    while !rows.is_empty() {
        let rest = rows.split_off(rows.len().min(MAX_USAGE_REPORT_ROWS));
        let batch = std::mem::replace(&mut rows, rest);
        let request = pb::ReportWorkloadUsageRequest {
            usage: batch.iter().map(UsageRow::to_pb).collect(),
        };
        let sent = tokio::time::timeout(REPORT_CALL_TIMEOUT, client.report_workload_usage(request))
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("usage report timed out")));
        match sent {
            Ok(response) => {
                let response = response.into_inner();
                outcome.recorded += u64::from(response.recorded);
                outcome.dropped_by_server += u64::from(response.dropped);
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                tracing::warn!(rows = batch.len(), error = %status.message(), "the server refused a usage report as malformed; its rows are discarded");
                outcome.discarded += batch.len() as u64;
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => return Err(status),
            Err(status) => {
                let mut keep = batch;
                keep.extend(rows);
                counter.restore(keep);
                return Err(status);
            }
        }
    }
    Ok(outcome)
}

/// Reports `counter` through the connection `client` holds now, if any (without one, the counts
/// wait for the next period); logs the outcome. `failing` remembers whether the previous report
/// failed, so a lasting failure is warned about once.
async fn report_through(
    counter: &UsageCounter,
    client: &ArcSwapOption<Client>,
    failing: &mut bool,
) {
    if counter.is_empty() {
        return;
    }
    let Some(client) = client.load_full() else {
        return;
    };
    let mut client = Client::clone(&client);
    match report(counter, &mut client).await {
        Ok(outcome) => {
            *failing = false;
            tracing::debug!(
                recorded = outcome.recorded,
                dropped_by_server = outcome.dropped_by_server,
                discarded = outcome.discarded,
                "reported workload usage"
            );
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            if !*failing {
                tracing::warn!(
                    "the server does not take workload usage reports; usage is discarded"
                );
            }
            *failing = true;
        }
        Err(status) => {
            if *failing {
                tracing::debug!(code = ?status.code(), error = %status.message(), "cannot report workload usage; kept for the next report");
            } else {
                tracing::warn!(code = ?status.code(), error = %status.message(), "cannot report workload usage; kept for the next report");
            }
            *failing = true;
        }
    }
}

/// Reports `counter` through the current server connection (`client`, as the session keeps it)
/// every `interval` (at least a second), and once more, briefly, when `shutdown` turns `true`
/// (or its sender is dropped); returns only then, always `Ok`: a failed report is kept for the
/// next one and never stops the agent.
pub(crate) async fn report_periodically(
    counter: Arc<UsageCounter>,
    client: Arc<ArcSwapOption<Client>>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let interval = interval.max(MIN_REPORT_INTERVAL);
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            () = tokio::time::sleep(interval) => false,
            _ = shutdown.wait_for(|stopping| *stopping) => true,
        };
        if stopping {
            let last = report_through(&counter, &client, &mut failing);
            let _ = tokio::time::timeout(FINAL_REPORT_TIMEOUT, last).await;
            return Ok(());
        }
        report_through(&counter, &client, &mut failing).await;
    }
}

#[cfg(test)]
mod tests {
    use sigil_spiffe::SpiffeId;
    use sigil_tls::{LiveRoots, LiveSvid};

    use super::*;
    use crate::fake_server::{AGENT_ID, FakeServer, SERVER_ID, TestCa};

    const NOW: i64 = 1_700_000_000;

    fn workload(uid: u32, path: &str) -> Arc<WorkloadBinary> {
        Arc::new(WorkloadBinary {
            uid,
            path: path.into(),
            sha256: String::new(),
        })
    }

    fn fetch() -> Delivery {
        Delivery {
            fetch: true,
            svids: 1,
        }
    }

    /// The counter's rows as (entry, uid, path, first, last, fetches, svids), sorted.
    fn rows_of(counter: &UsageCounter) -> Vec<(String, u32, String, i64, i64, u64, u64)> {
        let mut rows: Vec<_> = counter
            .take()
            .into_iter()
            .map(|r| {
                (
                    r.entry_id,
                    r.workload.uid,
                    r.workload.path.clone(),
                    r.counts.first_seen,
                    r.counts.last_seen,
                    r.counts.fetches,
                    r.counts.svids,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn deliveries_of_one_key_are_merged_and_other_keys_counted_apart() {
        let counter = UsageCounter::new();
        let web = workload(1000, "/usr/bin/web");
        counter.record("e1", &web, fetch(), NOW);
        counter.record(
            "e1",
            &web,
            Delivery {
                fetch: false,
                svids: 1,
            },
            NOW + 30,
        );
        counter.record(
            "e1",
            &web,
            Delivery {
                fetch: false,
                svids: 0,
            },
            NOW + 45,
        );
        // Another entry, another user, another binary: three other keys.
        counter.record("e2", &web, fetch(), NOW + 10);
        counter.record("e1", &workload(1001, "/usr/bin/web"), fetch(), NOW + 20);
        counter.record("e1", &workload(1000, "/usr/bin/other"), fetch(), NOW + 20);
        assert_eq!(counter.len(), 4);
        assert_eq!(
            rows_of(&counter),
            [
                (
                    "e1".into(),
                    1000,
                    "/usr/bin/other".into(),
                    NOW + 20,
                    NOW + 20,
                    1,
                    1
                ),
                (
                    "e1".into(),
                    1000,
                    "/usr/bin/web".into(),
                    NOW,
                    NOW + 45,
                    1,
                    2
                ),
                (
                    "e1".into(),
                    1001,
                    "/usr/bin/web".into(),
                    NOW + 20,
                    NOW + 20,
                    1,
                    1
                ),
                (
                    "e2".into(),
                    1000,
                    "/usr/bin/web".into(),
                    NOW + 10,
                    NOW + 10,
                    1,
                    1
                ),
            ]
        );
        assert!(counter.is_empty(), "taking the rows starts a new period");
    }

    #[test]
    fn a_full_counter_drops_new_keys_and_still_counts_held_ones() {
        let counter = UsageCounter::with_max_keys(2);
        let web = workload(1000, "/usr/bin/web");
        counter.record("e1", &web, fetch(), NOW);
        counter.record("e2", &web, fetch(), NOW);
        assert_eq!(counter.dropped(), 0, "up to the bound, nothing is dropped");
        counter.record("e3", &web, fetch(), NOW);
        counter.record("e1", &workload(1, "/bin/sh"), fetch(), NOW);
        counter.record("e1", &web, fetch(), NOW + 5);
        assert_eq!(counter.len(), 2);
        assert_eq!(counter.dropped(), 2);
        let rows = rows_of(&counter);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows.first().map(|r| r.5),
            Some(2),
            "a held key goes on counting"
        );
        // A new period has room again.
        counter.record("e3", &web, fetch(), NOW + 60);
        assert_eq!(counter.len(), 1);
    }

    #[test]
    fn restored_rows_merge_with_new_counts_within_the_bound() {
        let counter = UsageCounter::with_max_keys(2);
        let web = workload(1000, "/usr/bin/web");
        counter.record("e1", &web, fetch(), NOW);
        counter.record("e2", &web, fetch(), NOW);
        let taken = counter.take();
        // Meanwhile: more of e1, and a new key that takes the last free place.
        counter.record("e1", &web, fetch(), NOW + 60);
        counter.record("e3", &web, fetch(), NOW + 60);
        counter.restore(taken);
        assert_eq!(counter.dropped(), 1, "e2 no longer fits");
        assert_eq!(
            rows_of(&counter),
            [
                (
                    "e1".into(),
                    1000,
                    "/usr/bin/web".into(),
                    NOW,
                    NOW + 60,
                    2,
                    2
                ),
                (
                    "e3".into(),
                    1000,
                    "/usr/bin/web".into(),
                    NOW + 60,
                    NOW + 60,
                    1,
                    1
                ),
            ]
        );
    }

    #[test]
    fn the_workload_takes_the_attestors_hash_and_a_bounded_path() {
        let hash = "ab".repeat(32);
        let selectors = [
            Selector::new("unix", "uid:1000").unwrap(),
            Selector::new("unix", &format!("sha256:{hash}")).unwrap(),
        ];
        let w = WorkloadBinary::new(1000, Some(Path::new("/usr/bin/web")), &selectors);
        assert_eq!(w.path, "/usr/bin/web");
        assert_eq!(w.sha256, "ab".repeat(32));
        let unhashed = WorkloadBinary::new(1000, None, &selectors[..1]);
        assert_eq!((unhashed.path.as_str(), unhashed.sha256.as_str()), ("", ""));
        let long = format!("/{}", "p".repeat(MAX_USAGE_BINARY_PATH_BYTES));
        assert_eq!(
            WorkloadBinary::new(1000, Some(Path::new(&long)), &[]).path,
            "",
            "a path the server would refuse is left out"
        );
        let longest = format!("/{}", "p".repeat(MAX_USAGE_BINARY_PATH_BYTES - 1));
        assert_eq!(
            WorkloadBinary::new(1000, Some(Path::new(&longest)), &[]).path,
            longest
        );
    }

    /// A fake server of a fresh test CA, and a client connected to it as the agent.
    async fn connected() -> (FakeServer, Client) {
        let ca = TestCa::new("example.org");
        let server = FakeServer::start(ca.svid(SERVER_ID), &[ca.root()], Default::default()).await;
        let (chain, key) = ca.svid(AGENT_ID);
        let svid = Arc::new(LiveSvid::new(&chain, key.pkcs8_der()).unwrap());
        let client = crate::server_client::connect(
            &server.addr(),
            &SpiffeId::parse(AGENT_ID).unwrap().trust_domain(),
            Arc::new(LiveRoots::new(&[ca.root()])),
            Some(svid),
            sigil_tls::TlsPolicy::default(),
        )
        .await
        .unwrap();
        (server, client)
    }

    fn reported_entries(server: &FakeServer) -> Vec<Vec<(String, u64)>> {
        server
            .usage_reports()
            .into_iter()
            .map(|report| {
                let mut rows: Vec<_> = report
                    .into_iter()
                    .map(|r| (r.entry_id, r.fetches))
                    .collect();
                rows.sort();
                rows
            })
            .collect()
    }

    #[tokio::test]
    async fn a_failed_report_keeps_the_counts_and_the_next_one_delivers_them_merged() {
        let (server, mut client) = connected().await;
        let counter = UsageCounter::new();
        let web = workload(1000, "/usr/bin/web");
        counter.record("e1", &web, fetch(), NOW);
        counter.record("e2", &web, fetch(), NOW);

        server.refuse_usage_reports(Some(tonic::Status::unavailable("down for a moment")));
        let failed = report(&counter, &mut client).await.unwrap_err();
        assert_eq!(failed.code(), tonic::Code::Unavailable);
        assert!(server.usage_reports().is_empty());
        assert_eq!(counter.len(), 2, "the counts are kept");

        counter.record("e1", &web, fetch(), NOW + 60);
        server.refuse_usage_reports(None);
        let outcome = report(&counter, &mut client).await.unwrap();
        assert_eq!(outcome.recorded, 2);
        assert_eq!(
            reported_entries(&server),
            [vec![("e1".to_owned(), 2), ("e2".to_owned(), 1)]],
            "one report, the kept counts merged with the new ones"
        );
        let row = server.usage_reports().concat();
        let e1 = row.iter().find(|r| r.entry_id == "e1").unwrap();
        assert_eq!((e1.first_seen, e1.last_seen), (NOW, NOW + 60));
        assert_eq!((e1.uid, e1.binary_path.as_str()), (1000, "/usr/bin/web"));
        assert!(counter.is_empty());

        // Nothing new: the next report sends nothing.
        report(&counter, &mut client).await.unwrap();
        assert_eq!(server.usage_reports().len(), 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_large_count_is_sent_in_batches_of_the_protocols_size() {
        let (server, mut client) = connected().await;
        let counter = UsageCounter::new();
        let web = workload(1000, "/usr/bin/web");
        for i in 0..(MAX_USAGE_REPORT_ROWS + 5) {
            counter.record(&format!("e{i}"), &web, fetch(), NOW);
        }
        let outcome = report(&counter, &mut client).await.unwrap();
        assert_eq!(outcome.recorded, (MAX_USAGE_REPORT_ROWS + 5) as u64);
        let sizes: Vec<usize> = server.usage_reports().iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_USAGE_REPORT_ROWS, 5]);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_batch_refused_as_malformed_is_discarded_not_sent_again() {
        let (server, mut client) = connected().await;
        let counter = UsageCounter::new();
        counter.record("e1", &workload(1000, "/usr/bin/web"), fetch(), NOW);
        server.refuse_usage_reports(Some(tonic::Status::invalid_argument("bad row")));
        let outcome = report(&counter, &mut client).await.unwrap();
        assert_eq!(outcome.discarded, 1);
        assert!(counter.is_empty());
        server.stop().await;
    }

    #[tokio::test]
    async fn the_periodic_reporter_waits_for_a_connection_then_reports_through_it() {
        let (server, client) = connected().await;
        let counter = Arc::new(UsageCounter::new());
        let slot = Arc::new(ArcSwapOption::empty());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(report_periodically(
            counter.clone(),
            slot.clone(),
            Duration::from_millis(10),
            stop_rx,
        ));
        counter.record("e1", &workload(1000, "/usr/bin/web"), fetch(), NOW);
        // Not connected: the counts wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(counter.len(), 1);

        slot.store(Some(Arc::new(client)));
        tokio::time::timeout(Duration::from_secs(10), async {
            while server.usage_reports().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the reporter did not report through the connection");
        assert!(!task.is_finished(), "the reporter runs until shutdown");
        stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(result.unwrap().unwrap().is_ok());
        server.stop().await;
    }

    #[tokio::test]
    async fn what_was_counted_since_the_last_report_is_sent_at_shutdown() {
        let (server, client) = connected().await;
        let counter = Arc::new(UsageCounter::new());
        let slot = Arc::new(ArcSwapOption::from_pointee(client));
        let (stop, stop_rx) = watch::channel(false);
        // A period far longer than the test: only the report at shutdown can deliver.
        let task = tokio::spawn(report_periodically(
            counter.clone(),
            slot,
            Duration::from_secs(3_600),
            stop_rx,
        ));
        counter.record("e1", &workload(1000, "/usr/bin/web"), fetch(), NOW);
        stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(result.unwrap().unwrap().is_ok());
        assert_eq!(reported_entries(&server), [vec![("e1".to_owned(), 1)]]);
        assert!(counter.is_empty());
        server.stop().await;
    }
}
