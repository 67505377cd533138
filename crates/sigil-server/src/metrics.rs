//! The server's Prometheus metrics, served at `/metrics` on the public listener: what was issued
//! (and how long issuing took), how many agents hold a sync stream, how far the change feed is
//! behind, and the state of the CA. Counters are bumped where things happen (the issuer, the
//! agent API); the gauges that describe state are read when scraped.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The kind of credential a counter counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabel {
    pub kind: &'static str,
}

/// The result of an operation (a policy reload).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// A policy decision: its action and result.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub action: String,
    pub decision: &'static str,
}

/// A kind of governance finding.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabel {
    pub kind: &'static str,
}

/// A federation refresh outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabel {
    pub trust_domain: String,
    pub result: &'static str,
}

/// An external audit sink, by its name (`file /var/log/sigil/audit.jsonl`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Credentials issued, by kind (`x509_svid`, `jwt_svid`, `agent_x509_svid`).
    pub issued: Family<CredentialLabel, Counter>,
    /// Issuance requests refused (not authorized, banned agent, invalid CSR, ...).
    pub refused: Counter,
    /// Seconds one issuance call took, from decision to recorded inventory.
    pub issuance_seconds: Histogram,
    /// Agents holding an open sync stream.
    pub agent_streams: Gauge,
    /// Change-feed events the indexes have not applied yet (set when scraped).
    pub change_feed_lag: Gauge<i64, AtomicI64>,
    /// Registration entries in the index (set when scraped).
    pub entries: Gauge<i64, AtomicI64>,
    /// `spiffe_sequence` of the published trust bundle (set when scraped).
    pub bundle_sequence: Gauge<i64, AtomicI64>,
    /// Federation refreshes, by foreign trust domain and result (`ok`, `error`).
    pub federation_refreshes: Family<RefreshLabel, Counter>,
    /// Unix time of the last successful federation refresh, by foreign trust domain.
    pub federation_last_success: Family<RefreshLabel, Gauge<f64, AtomicU64>>,
    /// Policies in the set in force.
    pub policies: Gauge<i64, AtomicI64>,
    /// Policy reloads by result (`ok`, `error`).
    pub policy_reloads: Family<ResultLabel, Counter>,
    /// Policy decisions by action and result (`allow`, `deny`).
    pub policy_decisions: Family<DecisionLabel, Counter>,
    /// Registration entries in the store (set at scrape by [`crate::governance::update_gauges`]).
    pub inventory_entries: Gauge<i64, AtomicI64>,
    /// Attested agents in the store (set at scrape, as `inventory_entries`).
    pub inventory_agents: Gauge<i64, AtomicI64>,
    /// Governance findings by kind (set at scrape, as `inventory_entries`).
    pub inventory_findings: Family<FindingLabel, Gauge<i64, AtomicI64>>,
    /// What the inventory gauges are computed from, once attached.
    inventory_source: std::sync::OnceLock<std::sync::Arc<crate::governance::GovernanceContext>>,
    /// Records appended to the audit chain.
    pub audit_records: Counter,
    /// Failed appends to the audit chain (each retried).
    pub audit_append_failures: Counter,
    /// Audit events dropped: the writer was too far behind, or the store kept failing.
    pub audit_dropped: Counter,
    /// Audit checkpoints signed and stored.
    pub audit_checkpoints: Counter,
    /// Audit records delivered to an external sink, by sink.
    pub audit_sink_records: Family<SinkLabel, Counter>,
    /// Failed deliveries to an external audit sink (each retried), by sink.
    pub audit_sink_failures: Family<SinkLabel, Counter>,
    /// Audit records an external sink dropped because its spool was full, by sink.
    pub audit_sink_dropped: Family<SinkLabel, Counter>,
    /// Workload usage reports accepted from agents (their rows stored or dropped).
    pub usage_reports: Counter,
    /// Usage rows dropped because they named an entry the reporting agent may not serve.
    pub usage_rows_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered under the `sigil` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sigil");
        let issued = Family::<CredentialLabel, Counter>::default();
        registry.register(
            "credentials_issued",
            "Credentials issued, by kind",
            issued.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "issuance_refused",
            "Issuance requests refused",
            refused.clone(),
        );
        // 50 µs to about 0.8 s.
        let issuance_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        registry.register(
            "issuance_seconds",
            "Seconds one issuance call took, decision to recorded inventory",
            issuance_seconds.clone(),
        );
        let agent_streams = Gauge::default();
        registry.register(
            "agent_sync_streams",
            "Agents holding an open sync stream",
            agent_streams.clone(),
        );
        let change_feed_lag = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "change_feed_lag_events",
            "Change-feed events written but not yet applied by this server",
            change_feed_lag.clone(),
        );
        let entries = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "entries",
            "Registration entries in the index",
            entries.clone(),
        );
        let bundle_sequence = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "bundle_sequence",
            "spiffe_sequence of the published trust bundle",
            bundle_sequence.clone(),
        );
        let federation_refreshes = Family::<RefreshLabel, Counter>::default();
        registry.register(
            "federation_refreshes",
            "Federated bundle refreshes, by trust domain and result",
            federation_refreshes.clone(),
        );
        let federation_last_success = Family::<RefreshLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "federation_last_success_timestamp_seconds",
            "Unix time of the last successful federated bundle refresh",
            federation_last_success.clone(),
        );
        let policies = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "policies",
            "Cedar policies in the set in force",
            policies.clone(),
        );
        let policy_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy set reloads, by result",
            policy_reloads.clone(),
        );
        let policy_decisions = Family::<DecisionLabel, Counter>::default();
        registry.register(
            "policy_decisions",
            "Policy decisions, by action and result",
            policy_decisions.clone(),
        );
        let usage_reports = Counter::default();
        registry.register(
            "usage_reports",
            "Workload usage reports accepted from agents",
            usage_reports.clone(),
        );
        let usage_rows_dropped = Counter::default();
        registry.register(
            "usage_rows_dropped",
            "Usage rows dropped for naming an entry the reporting agent may not serve",
            usage_rows_dropped.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "audit_records",
            "Records appended to the audit chain",
            audit_records.clone(),
        );
        let audit_append_failures = Counter::default();
        registry.register(
            "audit_append_failures",
            "Failed appends to the audit chain",
            audit_append_failures.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_dropped",
            "Audit events dropped because the writer was behind or the datastore kept failing",
            audit_dropped.clone(),
        );
        let audit_checkpoints = Counter::default();
        registry.register(
            "audit_checkpoints",
            "Signed audit checkpoints stored",
            audit_checkpoints.clone(),
        );
        let audit_sink_records = Family::<SinkLabel, Counter>::default();
        registry.register(
            "audit_sink_records",
            "Audit records delivered to an external sink, by sink",
            audit_sink_records.clone(),
        );
        let audit_sink_failures = Family::<SinkLabel, Counter>::default();
        registry.register(
            "audit_sink_failures",
            "Failed deliveries to an external audit sink, by sink",
            audit_sink_failures.clone(),
        );
        let audit_sink_dropped = Family::<SinkLabel, Counter>::default();
        registry.register(
            "audit_sink_dropped",
            "Audit records dropped by an external sink whose spool was full, by sink",
            audit_sink_dropped.clone(),
        );
        let inventory_entries = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "inventory_entries",
            "Registration entries in the datastore (recomputed at most every 5 minutes)",
            inventory_entries.clone(),
        );
        let inventory_agents = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "inventory_agents",
            "Attested agents in the datastore (recomputed at most every 5 minutes)",
            inventory_agents.clone(),
        );
        let inventory_findings = Family::<FindingLabel, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "inventory_findings",
            "Governance findings, by kind (recomputed at most every 5 minutes)",
            inventory_findings.clone(),
        );
        Self {
            inventory_entries,
            inventory_agents,
            inventory_findings,
            inventory_source: std::sync::OnceLock::new(),
            audit_records,
            audit_append_failures,
            audit_dropped,
            audit_checkpoints,
            audit_sink_records,
            audit_sink_failures,
            audit_sink_dropped,
            usage_reports,
            usage_rows_dropped,
            policies,
            policy_reloads,
            policy_decisions,
            registry,
            issued,
            refused,
            issuance_seconds,
            agent_streams,
            change_feed_lag,
            entries,
            bundle_sequence,
            federation_refreshes,
            federation_last_success,
        }
    }

    /// Counts `count` credentials of `kind` issued in one call that took `took`.
    pub fn issued(&self, kind: &'static str, count: u64, took: Duration) {
        if count > 0 {
            self.issued
                .get_or_create(&CredentialLabel { kind })
                .inc_by(count);
        }
        self.issuance_seconds.observe(took.as_secs_f64());
    }

    /// Counts a policy reload with `result` (`ok` or `error`).
    pub fn policy_reload(&self, result: &'static str) {
        self.policy_reloads
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// Counts a policy decision on `action`.
    pub fn policy_decision(&self, action: &str, allowed: bool) {
        // Operator-defined action names are bounded by the schema; keep the label short anyway.
        let action: String = action.chars().take(64).collect();
        self.policy_decisions
            .get_or_create(&DecisionLabel {
                action,
                decision: if allowed { "allow" } else { "deny" },
            })
            .inc();
    }

    /// Makes the inventory gauges follow `ctx` from now on (the first context attached stays).
    pub fn attach_inventory(&self, ctx: std::sync::Arc<crate::governance::GovernanceContext>) {
        let _ = self.inventory_source.set(ctx);
    }

    /// The governance context the inventory gauges follow, if one is attached.
    pub fn inventory_source(&self) -> Option<&crate::governance::GovernanceContext> {
        self.inventory_source.get().map(std::sync::Arc::as_ref)
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Decrements a gauge when dropped: held for as long as something is open.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge` until the guard is dropped.
    pub fn hold(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_gauges_appear_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.issued("x509_svid", 3, Duration::from_millis(2));
        metrics.issued("jwt_svid", 1, Duration::from_millis(1));
        let guard = GaugeGuard::hold(&metrics.agent_streams);
        metrics.entries.set(42);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("sigil_credentials_issued_total{kind=\"x509_svid\"} 3"),
            "{text}"
        );
        assert!(text.contains("sigil_credentials_issued_total{kind=\"jwt_svid\"} 1"));
        assert!(text.contains("sigil_agent_sync_streams 1"), "{text}");
        assert!(text.contains("sigil_entries 42"));
        assert!(text.contains("sigil_issuance_seconds_count 2"), "{text}");
        drop(guard);
        assert!(
            metrics
                .encode()
                .unwrap()
                .contains("sigil_agent_sync_streams 0")
        );
    }
}
