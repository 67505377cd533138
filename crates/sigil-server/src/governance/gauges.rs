//! The inventory gauges (`sigil_inventory_entries`, `sigil_inventory_agents`,
//! `sigil_inventory_findings{kind}`), set when `/metrics` is scraped.
//!
//! Why at scrape with a cache, not on every scrape and not on a timer: the findings need a
//! whole snapshot of the store (every entry, agent, usage row), too much to read every 15 s
//! scrape, and a timer would rescan the store even when nobody reads the gauges (the server
//! never rescans the store periodically). So a scrape recomputes them only when the last
//! computation is older than [`GAUGE_MAX_AGE_SECS`], one scrape at a time (a scrape arriving
//! meanwhile answers the previous values), within [`GAUGE_TIMEOUT`]; the gauges are at most
//! five minutes behind, which is plenty for thresholds counted in days.

use std::time::Duration;

use crate::metrics::{FindingLabel, Metrics};

use super::kinds::FindingKind;
use super::{findings, snapshot};

/// Longest the gauges are served without being computed again, in seconds.
pub const GAUGE_MAX_AGE_SECS: i64 = 300;
/// Longest one computation may take; past it the previous values stay.
pub const GAUGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sets the inventory gauges of `metrics` from the governance context attached to it
/// ([`Metrics::attach_inventory`]), unless they were computed less than
/// [`GAUGE_MAX_AGE_SECS`] ago or another scrape is computing them. Nothing happens without an
/// attached context. A store error or timeout is logged and the previous values stay.
pub async fn update_gauges(metrics: &Metrics) {
    let Some(ctx) = metrics.inventory_source() else {
        return;
    };
    let Ok(mut computed_at) = ctx.gauges_at.try_lock() else {
        return;
    };
    let now = ctx.clock.unix_secs();
    if computed_at.is_some_and(|at| now.saturating_sub(at) < GAUGE_MAX_AGE_SECS) {
        return;
    }
    *computed_at = Some(now);
    let snapshot = match tokio::time::timeout(GAUGE_TIMEOUT, snapshot::load(ctx, now)).await {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the inventory for the metrics; keeping the last values");
            return;
        }
        Err(_) => {
            tracing::warn!(
                "reading the inventory for the metrics took longer than {} s; keeping the last values",
                GAUGE_TIMEOUT.as_secs()
            );
            return;
        }
    };
    let found = findings(&snapshot, &ctx.config);
    metrics
        .inventory_entries
        .set(i64::try_from(snapshot.entries.len()).unwrap_or(i64::MAX));
    metrics
        .inventory_agents
        .set(i64::try_from(snapshot.agents.len()).unwrap_or(i64::MAX));
    for kind in FindingKind::ALL {
        let count = found.iter().filter(|f| f.kind == kind).count();
        metrics
            .inventory_findings
            .get_or_create(&FindingLabel {
                kind: kind.as_str(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use sigil_spiffe::{SpiffeId, TrustDomain};
    use sigil_store::{Datastore, NewEntry, SqliteStore};
    use sigil_testkit::FakeClock;

    use super::*;
    use crate::governance::{GovernanceContext, InventoryConfig};

    const START: i64 = 1_700_000_000;

    #[tokio::test]
    async fn gauges_count_entries_agents_and_findings_and_are_cached_for_five_minutes() {
        let store: Arc<dyn Datastore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(START.unsigned_abs()));
        let id = |s: &str| SpiffeId::parse(s).unwrap();
        let root_entry = NewEntry::new(
            id("spiffe://example.org/root-job"),
            id("spiffe://example.org/sigil/agent/join_token/gone"),
            vec![sigil_spiffe::Selector::parse("unix:uid:0").unwrap()],
            "team-ops",
        );
        store.create_entry(root_entry, START).await.unwrap();
        let metrics = Metrics::new();
        // Without an attached context nothing is set.
        update_gauges(&metrics).await;
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains("sigil_inventory_entries 0")
        );

        metrics.attach_inventory(Arc::new(GovernanceContext::new(
            store.clone(),
            Arc::new(clock.clone()),
            TrustDomain::parse("example.org").unwrap(),
            InventoryConfig::default(),
            Vec::new(),
            None,
        )));
        update_gauges(&metrics).await;
        let text = metrics.encode().unwrap();
        assert!(text.contains("sigil_inventory_entries 1"), "{text}");
        assert!(text.contains("sigil_inventory_agents 0"), "{text}");
        assert!(
            text.contains("sigil_inventory_findings{kind=\"entry_orphaned\"} 1"),
            "{text}"
        );
        assert!(text.contains("sigil_inventory_findings{kind=\"overbroad_selectors\"} 1"));
        assert!(text.contains("sigil_inventory_findings{kind=\"agent_stale\"} 0"));

        // A second entry is not counted until the cached values are five minutes old.
        let second = NewEntry::new(
            id("spiffe://example.org/web"),
            id("spiffe://example.org/sigil/agent/join_token/gone"),
            vec![sigil_spiffe::Selector::parse("unix:uid:1000").unwrap()],
            "team-web",
        );
        store.create_entry(second, START).await.unwrap();
        clock.advance(Duration::from_secs(299));
        update_gauges(&metrics).await;
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains("sigil_inventory_entries 1")
        );
        clock.advance(Duration::from_secs(1));
        update_gauges(&metrics).await;
        let text = metrics.encode().unwrap();
        assert!(text.contains("sigil_inventory_entries 2"), "{text}");
        assert!(text.contains("sigil_inventory_findings{kind=\"entry_orphaned\"} 2"));
    }
}
