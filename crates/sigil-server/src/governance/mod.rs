//! NHI governance: the inventory of what the server has issued and to whom, and the findings
//! about it (unused, orphaned, unowned, over-broad, long-lived, privileged, stale identities),
//! each mapped to an OWASP Non-Human Identities Top 10 (2025) risk with a one-line remediation.
//!
//! The decision is a pure function ([`findings::findings`]) of a [`findings::Snapshot`] read
//! from the store ([`snapshot::load`]) and the configured thresholds ([`InventoryConfig`]); the
//! admin API (`/api/v1/inventory…`) and the Prometheus gauges (`sigil_inventory_*`, refreshed
//! at scrape at most every [`gauges::GAUGE_MAX_AGE_SECS`]) both read it through a
//! [`GovernanceContext`].

pub mod findings;
pub mod gauges;
pub mod kinds;
pub mod snapshot;

use std::sync::Arc;

use sigil_spiffe::{Clock, TrustDomain};
use sigil_store::Datastore;

use crate::federation::refresher::RefreshStatuses;
use crate::oauth::ExternalIssuerConfig;

pub use findings::{Finding, Snapshot, findings};
pub use gauges::update_gauges;
pub use kinds::{FindingKind, NhiCategory, Severity, SubjectKind};

const DAY: u64 = 86_400;
const HOUR: u64 = 3600;

/// The thresholds of the findings and the usage retention, in seconds (the `[inventory]` table
/// of the server configuration). Every value is at least one second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryConfig {
    /// An entry without reported use for this long is `entry_unused` (or `entry_never_used`,
    /// counted from its creation). Default 30 days.
    pub unused_after: u64,
    /// An agent not seen for this long is `agent_stale`. Default 7 days.
    pub agent_stale_after: u64,
    /// An entry not reviewed for this long (counted from its creation until its first review)
    /// is `entry_not_reviewed`. Default 90 days.
    pub review_every: u64,
    /// Longest X509-SVID TTL an entry may ask for before `ttl_above_maximum`. Default 24 hours.
    pub max_x509_ttl: u64,
    /// Longest JWT-SVID TTL an entry may ask for before `ttl_above_maximum`. Default 1 hour.
    pub max_jwt_ttl: u64,
    /// A join token unused for this long after its creation (and not expired) is
    /// `join_token_unused`. Default 24 hours.
    pub join_token_stale_after: u64,
    /// How long usage rows are kept after they were last seen (the prune task's cut-off); at
    /// least `unused_after`, so "unused" is never an artefact of pruning. Default 30 days.
    pub usage_retention: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            unused_after: 30 * DAY,
            agent_stale_after: 7 * DAY,
            review_every: 90 * DAY,
            max_x509_ttl: 24 * HOUR,
            max_jwt_ttl: HOUR,
            join_token_stale_after: 24 * HOUR,
            usage_retention: 30 * DAY,
        }
    }
}

/// What the findings need to know of one configured external token issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerFacts {
    /// Its `iss`.
    pub issuer: String,
    /// The team or contact accountable for trusting it.
    pub owner: String,
    /// Whether the policies in force restrict which of its tokens are exchanged: a token of this
    /// issuer that carries none of its mapped attributes is denied `Exchange`. The configuration
    /// cannot tell (Cedar policies replaced its `condition`), so it starts `false` and each
    /// snapshot asks the policies ([`GovernanceContext::with_policies`]).
    pub has_condition: bool,
}

impl From<&ExternalIssuerConfig> for IssuerFacts {
    fn from(config: &ExternalIssuerConfig) -> Self {
        Self {
            issuer: config.issuer.clone(),
            owner: config.owner.clone(),
            has_condition: false,
        }
    }
}

impl IssuerFacts {
    /// Whether `policies` deny `Exchange` (for audience `""`, at `now`) to a subject of this
    /// issuer without mapped attributes, subject or SPIFFE ID: then some claim must be present
    /// for its tokens to be exchanged. A policy that limits only the audiences does not count.
    pub fn restricted_by(&self, policies: &crate::policy::Policies, now: i64) -> bool {
        let probe = sigil_policy::DecisionRequest {
            principal: sigil_policy::Principal::External {
                issuer: self.issuer.clone(),
                subject: String::new(),
                spiffe_id: None,
                attributes: Vec::new(),
            },
            action: "Exchange".to_owned(),
            resource: sigil_policy::ResourceRef {
                id: String::new(),
                kind: "audience".to_owned(),
            },
            context: sigil_policy::ContextInput::default(),
        };
        // The set itself, not `Policies::decide`: a probe is no decision to audit or count.
        !policies.current().decide(&probe, now).allowed
    }
}

/// What the inventory routes and gauges read besides the admin state: the store, clock and
/// trust domain, the thresholds, the configured external issuers, and the federation
/// refresher's status. Built once at start; shared.
pub struct GovernanceContext {
    pub store: Arc<dyn Datastore>,
    pub clock: Arc<dyn Clock>,
    pub trust_domain: TrustDomain,
    pub config: InventoryConfig,
    pub issuers: Vec<IssuerFacts>,
    /// The federation refresher's view of each relationship's refreshes; `None` when no
    /// refresher runs (then no `federation_refresh_failing` finding is made).
    pub federation: Option<RefreshStatuses>,
    /// The policies in force, which decide whether an issuer's exchanges are restricted; `None`:
    /// the issuers' facts are taken as given.
    pub policies: Option<Arc<crate::policy::Policies>>,
    /// Unix seconds the gauges were last computed, held while computing them.
    gauges_at: tokio::sync::Mutex<Option<i64>>,
}

impl GovernanceContext {
    /// A context over `store` for a server of `trust_domain`.
    pub fn new(
        store: Arc<dyn Datastore>,
        clock: Arc<dyn Clock>,
        trust_domain: TrustDomain,
        config: InventoryConfig,
        issuers: Vec<IssuerFacts>,
        federation: Option<RefreshStatuses>,
    ) -> Self {
        Self {
            store,
            clock,
            trust_domain,
            config,
            issuers,
            federation,
            policies: None,
            gauges_at: tokio::sync::Mutex::new(None),
        }
    }

    /// This context, asking `policies` at each snapshot whether each issuer is restricted.
    pub fn with_policies(mut self, policies: Arc<crate::policy::Policies>) -> Self {
        self.policies = Some(policies);
        self
    }
}

impl std::fmt::Debug for GovernanceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GovernanceContext")
            .field("trust_domain", &self.trust_domain)
            .field("config", &self.config)
            .field("issuers", &self.issuers)
            .field("federation", &self.federation.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::policy::Policies;

    fn policies(cedar: Option<&str>) -> (Policies, Option<tempfile::TempDir>) {
        let dir = cedar.map(|text| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("exchange.cedar"), text).unwrap();
            dir
        });
        let loaded =
            Policies::load(dir.as_ref().map(|d| d.path()), Arc::new(Metrics::new())).unwrap();
        (loaded, dir)
    }

    fn facts(issuer: &str) -> IssuerFacts {
        IssuerFacts {
            issuer: issuer.to_owned(),
            owner: "team-ci".to_owned(),
            has_condition: false,
        }
    }

    #[test]
    fn an_issuer_is_restricted_only_when_the_policies_look_at_its_tokens_claims() {
        let ci = facts("https://ci.example");
        let other = facts("https://other.example");
        // The built-in default and a blanket permit exchange every token.
        let (default, _) = policies(None);
        assert!(!ci.restricted_by(&default, 0));
        let (open, _dir) = policies(Some("permit (principal, action, resource);"));
        assert!(!ci.restricted_by(&open, 0));
        // A forbid unless a mapped attribute is present restricts the issuer it names only.
        let (main_only, _dir) = policies(Some(
            r#"permit (principal, action, resource);
forbid (principal is Sigil::ExternalSubject, action == Sigil::Action::"Exchange", resource)
unless { principal.issuer != "https://ci.example" ||
         principal.attributes.contains("git_ref=refs/heads/main") };"#,
        ));
        assert!(ci.restricted_by(&main_only, 0));
        assert!(!other.restricted_by(&main_only, 0));
    }
}
