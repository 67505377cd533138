//! Workload usage on the server: agents' `ReportWorkloadUsage` batches checked and filtered
//! before they are stored ([`accept_report`]: the agent ID is the authenticated caller's, rows
//! for entries the agent may not serve are dropped), and the retention task that deletes rows
//! not seen for a while ([`prune_usage_periodically`]), so usage stays counters over a bounded
//! period rather than history kept forever.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sigil_proto::agent::v1 as pb;
use sigil_spiffe::{Clock, SpiffeId};
use sigil_store::{Datastore, MAX_BINARY_PATH_BYTES, MAX_USAGE_BATCH, StoreResult, WorkloadUsage};
use tokio::sync::watch;

/// How long a usage row is kept after it was last seen, unless configured otherwise (30 days).
pub const DEFAULT_USAGE_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// How often [`prune_usage_periodically`] deletes rows past the retention.
pub const PRUNE_USAGE_EVERY: Duration = Duration::from_secs(3600);
/// Longest `entry_id` accepted in a usage row, in bytes (entry ids are far shorter).
pub const MAX_USAGE_ENTRY_ID_BYTES: usize = 256;

// The agent bounds its reports by the protocol's limits; the store refuses more than its own.
const _: () = assert!(sigil_proto::MAX_USAGE_REPORT_ROWS == MAX_USAGE_BATCH);
const _: () = assert!(sigil_proto::MAX_USAGE_BINARY_PATH_BYTES == MAX_BINARY_PATH_BYTES);

/// Why a usage report was refused as a whole (the caller's error: `InvalidArgument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageReportError {
    #[error("a usage report holds at most {MAX_USAGE_BATCH} rows, got {0}")]
    TooManyRows(usize),
    #[error("usage row {row}: entry_id is empty or longer than {MAX_USAGE_ENTRY_ID_BYTES} bytes")]
    EntryId { row: usize },
    #[error("usage row {row}: binary_path is longer than {MAX_BINARY_PATH_BYTES} bytes")]
    BinaryPathTooLong { row: usize },
    #[error("usage row {row}: binary_sha256 must be empty or 64 hex digits")]
    BinarySha256 { row: usize },
    #[error("usage row {row}: times must satisfy 0 <= first_seen <= last_seen")]
    Times { row: usize },
    #[error("usage row {row}: counters must be at most 2^63 - 1")]
    Counter { row: usize },
}

/// Whether the reporting agent may serve an entry, as the entry index decides it for SVIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryServed {
    /// In the agent's authorized set now.
    Yes,
    /// In the agent's tree, but expired at this time (Unix seconds): it was served until then,
    /// so use up to that time is kept, later times are taken as that time.
    ExpiredAt(i64),
    /// Not in the agent's tree, or no such entry.
    No,
}

/// A report split into the rows to store and how many were dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedReport {
    /// The rows to store, under the authenticated agent's ID.
    pub rows: Vec<WorkloadUsage>,
    /// Rows dropped because they name an entry the agent may not serve.
    pub dropped: usize,
}

/// Checks a report sent by `agent` at `now` (Unix seconds) and turns it into store rows.
///
/// Refuses the whole report (nothing is stored) for more than [`MAX_USAGE_BATCH`] rows or any
/// malformed row: an empty or over-long entry id, a binary path over [`MAX_BINARY_PATH_BYTES`],
/// a hash that is not empty or 64 hex digits, `first_seen` negative or after `last_seen`, a
/// counter that does not fit a signed 64-bit integer. Otherwise every row is stored under
/// `agent` (the message names no agent), with its hash lowercased and its times no later than
/// `now` (or than the entry's expiry), except rows for entries `served` says the agent may not
/// serve, which are counted in [`AcceptedReport::dropped`]. `served` is asked once per distinct
/// entry id.
pub fn accept_report(
    rows: Vec<pb::WorkloadUsage>,
    agent: &SpiffeId,
    now: i64,
    mut served: impl FnMut(&str) -> EntryServed,
) -> Result<AcceptedReport, UsageReportError> {
    if rows.len() > MAX_USAGE_BATCH {
        return Err(UsageReportError::TooManyRows(rows.len()));
    }
    for (row, usage) in rows.iter().enumerate() {
        check_row(row, usage)?;
    }
    let mut decided: HashMap<String, EntryServed> = HashMap::new();
    let mut accepted = AcceptedReport {
        rows: Vec::with_capacity(rows.len()),
        dropped: 0,
    };
    for usage in rows {
        let decision = match decided.get(&usage.entry_id) {
            Some(d) => *d,
            None => {
                let d = served(&usage.entry_id);
                decided.insert(usage.entry_id.clone(), d);
                d
            }
        };
        let latest = match decision {
            EntryServed::Yes => now,
            EntryServed::ExpiredAt(at) => at.min(now),
            EntryServed::No => {
                accepted.dropped += 1;
                continue;
            }
        };
        accepted.rows.push(WorkloadUsage {
            entry_id: usage.entry_id,
            agent_id: agent.clone(),
            uid: usage.uid,
            binary_path: usage.binary_path,
            binary_sha256: usage.binary_sha256.to_ascii_lowercase(),
            first_seen: usage.first_seen.min(latest),
            last_seen: usage.last_seen.min(latest),
            fetches: usage.fetches,
            svids_issued: usage.svids_issued,
        });
    }
    Ok(accepted)
}

/// The checks of [`accept_report`] on row number `row`.
fn check_row(row: usize, usage: &pb::WorkloadUsage) -> Result<(), UsageReportError> {
    if usage.entry_id.is_empty() || usage.entry_id.len() > MAX_USAGE_ENTRY_ID_BYTES {
        return Err(UsageReportError::EntryId { row });
    }
    if usage.binary_path.len() > MAX_BINARY_PATH_BYTES {
        return Err(UsageReportError::BinaryPathTooLong { row });
    }
    let hash = &usage.binary_sha256;
    if !(hash.is_empty() || (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))) {
        return Err(UsageReportError::BinarySha256 { row });
    }
    if usage.first_seen < 0 || usage.first_seen > usage.last_seen {
        return Err(UsageReportError::Times { row });
    }
    if i64::try_from(usage.fetches).is_err() || i64::try_from(usage.svids_issued).is_err() {
        return Err(UsageReportError::Counter { row });
    }
    Ok(())
}

/// Deletes the usage rows last seen more than `retention` before the clock's time; returns how
/// many, or the store's error.
pub async fn prune_usage_once(
    store: &dyn Datastore,
    clock: &dyn Clock,
    retention: Duration,
) -> StoreResult<u64> {
    let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    store
        .prune_workload_usage(clock.unix_secs().saturating_sub(retention))
        .await
}

/// Prunes usage rows older than `retention` (see [`prune_usage_once`]) once at start, then every
/// [`PRUNE_USAGE_EVERY`], until `shutdown` turns `true` or its sender is dropped; a failed prune
/// is logged and tried again at the next turn, never ends the task. Spawn it with the server's
/// other tasks: it returns only at shutdown.
pub async fn prune_usage_periodically(
    store: Arc<dyn Datastore>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        match prune_usage_once(store.as_ref(), clock.as_ref(), retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned workload usage past its retention"),
            Err(e) => tracing::warn!(error = %e, "cannot prune workload usage"),
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_USAGE_EVERY) => {}
            // A change (the only one is to `true`) or a dropped sender: the server stops.
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use sigil_spiffe::time::from_unix_secs;
    use sigil_store::{NewEntry, SqliteStore};
    use sigil_testkit::FakeClock;

    use super::*;

    const NOW: i64 = 1_800_000_000;
    const AGENT: &str = "spiffe://example.org/sigil/agent/join_token/a1";

    fn agent() -> SpiffeId {
        SpiffeId::parse(AGENT).unwrap()
    }

    fn row(entry_id: &str) -> pb::WorkloadUsage {
        pb::WorkloadUsage {
            entry_id: entry_id.into(),
            uid: 1000,
            binary_path: "/usr/bin/web".into(),
            binary_sha256: "ab".repeat(32),
            first_seen: NOW - 60,
            last_seen: NOW - 1,
            fetches: 3,
            svids_issued: 2,
        }
    }

    fn serves_only(entry: &'static str) -> impl FnMut(&str) -> EntryServed {
        move |id| {
            if id == entry {
                EntryServed::Yes
            } else {
                EntryServed::No
            }
        }
    }

    #[test]
    fn rows_are_stored_under_the_authenticated_agent_and_others_entries_dropped() {
        let accepted = accept_report(
            vec![row("mine"), row("theirs"), row("mine")],
            &agent(),
            NOW,
            serves_only("mine"),
        )
        .unwrap();
        assert_eq!(accepted.dropped, 1);
        assert_eq!(accepted.rows.len(), 2);
        let stored = accepted.rows.first().unwrap();
        assert_eq!(stored.entry_id, "mine");
        assert_eq!(stored.agent_id, agent());
        assert_eq!((stored.first_seen, stored.last_seen), (NOW - 60, NOW - 1));
        assert_eq!((stored.fetches, stored.svids_issued), (3, 2));
        assert_eq!(stored.binary_path, "/usr/bin/web");
    }

    #[test]
    fn each_entry_is_decided_once_per_report() {
        let mut asked = Vec::new();
        accept_report(
            vec![row("a"), row("b"), row("a"), row("a")],
            &agent(),
            NOW,
            |id: &str| {
                asked.push(id.to_owned());
                EntryServed::Yes
            },
        )
        .unwrap();
        assert_eq!(asked, ["a", "b"]);
    }

    #[test]
    fn times_past_the_servers_clock_or_the_entrys_expiry_are_brought_back() {
        let mut future = row("mine");
        future.first_seen = NOW + 100;
        future.last_seen = NOW + 3_600;
        let accepted = accept_report(vec![future.clone()], &agent(), NOW, |_: &str| {
            EntryServed::Yes
        })
        .unwrap();
        let stored = accepted.rows.first().unwrap();
        assert_eq!((stored.first_seen, stored.last_seen), (NOW, NOW));

        let accepted = accept_report(vec![row("mine")], &agent(), NOW, |_: &str| {
            EntryServed::ExpiredAt(NOW - 30)
        })
        .unwrap();
        let stored = accepted.rows.first().unwrap();
        assert_eq!(
            accepted.dropped, 0,
            "an expired entry was served until then"
        );
        assert_eq!((stored.first_seen, stored.last_seen), (NOW - 60, NOW - 30));
    }

    #[test]
    fn an_uppercase_hash_is_stored_lowercase_and_an_empty_one_is_accepted() {
        let mut upper = row("mine");
        upper.binary_sha256 = "AB".repeat(32);
        let mut none = row("mine");
        none.binary_sha256 = String::new();
        none.binary_path = String::new();
        let accepted =
            accept_report(vec![upper, none], &agent(), NOW, serves_only("mine")).unwrap();
        let hashes: Vec<&str> = accepted
            .rows
            .iter()
            .map(|r| r.binary_sha256.as_str())
            .collect();
        assert_eq!(hashes, ["ab".repeat(32).as_str(), ""]);
    }

    #[test]
    fn a_full_batch_is_accepted_and_one_row_more_is_refused() {
        let full = vec![row("mine"); MAX_USAGE_BATCH];
        assert_eq!(
            accept_report(full.clone(), &agent(), NOW, serves_only("mine"))
                .unwrap()
                .rows
                .len(),
            MAX_USAGE_BATCH
        );
        let mut over = full;
        over.push(row("mine"));
        assert_eq!(
            accept_report(over, &agent(), NOW, serves_only("mine")),
            Err(UsageReportError::TooManyRows(MAX_USAGE_BATCH + 1))
        );
    }

    #[test]
    fn a_malformed_row_refuses_the_whole_report() {
        // Each case differs from a valid row in exactly the way one check guards.
        let valid = row("mine");
        assert!(accept_report(vec![valid.clone()], &agent(), NOW, serves_only("mine")).is_ok());
        let with = |f: fn(&mut pb::WorkloadUsage)| {
            let mut r = valid.clone();
            f(&mut r);
            r
        };
        let cases = [
            (
                with(|r| r.binary_path = "p".repeat(MAX_BINARY_PATH_BYTES + 1)),
                UsageReportError::BinaryPathTooLong { row: 1 },
            ),
            (
                with(|r| r.binary_sha256 = "ab".repeat(31)),
                UsageReportError::BinarySha256 { row: 1 },
            ),
            (
                with(|r| r.binary_sha256 = "zz".repeat(32)),
                UsageReportError::BinarySha256 { row: 1 },
            ),
            (
                with(|r| r.first_seen = r.last_seen + 1),
                UsageReportError::Times { row: 1 },
            ),
            (
                with(|r| r.first_seen = -1),
                UsageReportError::Times { row: 1 },
            ),
            (
                with(|r| r.fetches = u64::MAX),
                UsageReportError::Counter { row: 1 },
            ),
            (
                with(|r| r.svids_issued = 1 << 63),
                UsageReportError::Counter { row: 1 },
            ),
            (
                with(|r| r.entry_id = String::new()),
                UsageReportError::EntryId { row: 1 },
            ),
            (
                with(|r| r.entry_id = "e".repeat(MAX_USAGE_ENTRY_ID_BYTES + 1)),
                UsageReportError::EntryId { row: 1 },
            ),
        ];
        let path_max = with(|r| r.binary_path = "p".repeat(MAX_BINARY_PATH_BYTES));
        assert!(
            accept_report(vec![path_max], &agent(), NOW, serves_only("mine")).is_ok(),
            "the bound itself is accepted"
        );
        for (bad, expected) in cases {
            let result =
                accept_report(vec![valid.clone(), bad], &agent(), NOW, serves_only("mine"));
            assert_eq!(result, Err(expected.clone()), "{expected}");
        }
    }

    /// A store holding one entry and, for each of `last_seen`, a usage row of it (a workload of
    /// its own uid) last seen then; with the entry's id.
    async fn store_with_usage(last_seen: &[i64]) -> (Arc<dyn Datastore>, String) {
        let store = SqliteStore::open_in_memory().unwrap();
        let entry = store
            .create_entry(
                NewEntry::new(
                    SpiffeId::parse("spiffe://example.org/web").unwrap(),
                    agent(),
                    vec![sigil_spiffe::Selector::parse("unix:uid:1000").unwrap()],
                    "team-test",
                ),
                NOW,
            )
            .await
            .unwrap();
        let rows = last_seen
            .iter()
            .enumerate()
            .map(|(uid, at)| WorkloadUsage {
                entry_id: entry.id.clone(),
                agent_id: agent(),
                uid: u32::try_from(uid).unwrap(),
                binary_path: String::new(),
                binary_sha256: String::new(),
                first_seen: *at,
                last_seen: *at,
                fetches: 1,
                svids_issued: 1,
            })
            .collect();
        store.record_workload_usage(rows).await.unwrap();
        (Arc::new(store), entry.id)
    }

    const DAY: i64 = 86_400;

    #[tokio::test]
    async fn pruning_deletes_rows_not_seen_within_the_retention_and_keeps_the_rest() {
        let (store, entry) = store_with_usage(&[NOW - 31 * DAY, NOW - 29 * DAY]).await;
        let clock = FakeClock::new(from_unix_secs(NOW));
        let pruned = prune_usage_once(store.as_ref(), &clock, DEFAULT_USAGE_RETENTION)
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        let left = store.list_workload_usage(&entry, 10).await.unwrap();
        assert_eq!(
            left.iter().map(|r| r.last_seen).collect::<Vec<_>>(),
            [NOW - 29 * DAY]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_prune_task_prunes_at_start_and_hourly_and_ends_only_at_shutdown() {
        let (store, entry) = store_with_usage(&[NOW - 31 * DAY, NOW - 30 * DAY + 1_800]).await;
        let clock = FakeClock::new(from_unix_secs(NOW));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(prune_usage_periodically(
            store.clone(),
            Arc::new(clock.clone()),
            DEFAULT_USAGE_RETENTION,
            stop_rx,
        ));
        let remaining = |store: Arc<dyn Datastore>, entry: String| async move {
            store.list_workload_usage(&entry, 10).await.unwrap().len()
        };
        // At start: the row 31 days old goes, the one 30 days minus half an hour old stays.
        let mut waited = 0;
        while remaining(store.clone(), entry.clone()).await != 1 {
            waited += 1;
            assert!(waited < 1_000, "the task did not prune at start");
            tokio::task::yield_now().await;
        }
        // An hour on (both clocks), the other one is past the retention too.
        clock.advance(PRUNE_USAGE_EVERY);
        tokio::time::advance(PRUNE_USAGE_EVERY).await;
        let mut waited = 0;
        while remaining(store.clone(), entry.clone()).await != 0 {
            waited += 1;
            assert!(waited < 1_000, "the task did not prune an hour later");
            // Virtual time: whenever the task reached its hourly sleep (before or after the
            // advance above), a minute at a time brings it round without racing it.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        assert!(!task.is_finished(), "the task runs until shutdown");
        stop.send(true).unwrap();
        task.await.unwrap();
    }
}
