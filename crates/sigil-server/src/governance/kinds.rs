//! The vocabulary of governance findings: what kind of problem (a stable name), how severe, which
//! OWASP Non-Human Identities Top 10 (2025) risk it is, and what it is about. Every name here is
//! part of the admin API and the `sigil_inventory_findings{kind}` metric, so it never changes.

use std::fmt;

/// What a finding says is wrong. The names ([`FindingKind::as_str`]) are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// An entry no workload has fetched since it was created, older than `unused_after`.
    EntryNeverUsed,
    /// An entry whose last reported use is older than `unused_after`.
    EntryUnused,
    /// An entry no live agent can be served: its parent agent is gone or banned, its node alias
    /// matches no live agent, or its parent entry is missing, expired or itself orphaned.
    EntryOrphaned,
    /// An entry, federation relationship or external issuer without a real owner (blank, or a
    /// placeholder such as `unknown` or `tbd`).
    MissingOwner,
    /// A workload entry whose selectors do not narrow it to one non-root user or one binary
    /// (see [`crate::governance::findings::overbroad_reason`]).
    OverbroadSelectors,
    /// An entry whose X509-SVID or JWT-SVID TTL is above the configured maximum.
    TtlAboveMaximum,
    /// An admin or downstream entry: its SVID carries privilege beyond its own workload.
    PrivilegedEntry,
    /// An entry whose `expires_at` has passed but which is still stored.
    EntryExpired,
    /// An agent (not banned) not seen for `agent_stale_after`.
    AgentStale,
    /// A join token neither used nor expired, created more than `join_token_stale_after` ago.
    JoinTokenUnused,
    /// An external token issuer trusted without a condition on its tokens' claims.
    IssuerWithoutCondition,
    /// A federation relationship whose last bundle refresh failed.
    FederationRefreshFailing,
    /// An entry not reviewed by its owner for `review_every` (counted from its creation when it
    /// was never reviewed).
    EntryNotReviewed,
}

impl FindingKind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [Self; 13] = [
        Self::EntryNeverUsed,
        Self::EntryUnused,
        Self::EntryOrphaned,
        Self::MissingOwner,
        Self::OverbroadSelectors,
        Self::TtlAboveMaximum,
        Self::PrivilegedEntry,
        Self::EntryExpired,
        Self::AgentStale,
        Self::JoinTokenUnused,
        Self::IssuerWithoutCondition,
        Self::FederationRefreshFailing,
        Self::EntryNotReviewed,
    ];

    /// The stable name (`entry_never_used`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EntryNeverUsed => "entry_never_used",
            Self::EntryUnused => "entry_unused",
            Self::EntryOrphaned => "entry_orphaned",
            Self::MissingOwner => "missing_owner",
            Self::OverbroadSelectors => "overbroad_selectors",
            Self::TtlAboveMaximum => "ttl_above_maximum",
            Self::PrivilegedEntry => "privileged_entry",
            Self::EntryExpired => "entry_expired",
            Self::AgentStale => "agent_stale",
            Self::JoinTokenUnused => "join_token_unused",
            Self::IssuerWithoutCondition => "issuer_without_condition",
            Self::FederationRefreshFailing => "federation_refresh_failing",
            Self::EntryNotReviewed => "entry_not_reviewed",
        }
    }

    /// The kind named `name`, or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The OWASP NHI Top 10 (2025) risk this kind is an instance of.
    pub fn category(self) -> NhiCategory {
        match self {
            // Identities nobody uses, owns, reviews or can reach any more are offboarding
            // failures: they stay valid after their need ended.
            Self::EntryNeverUsed
            | Self::EntryUnused
            | Self::EntryOrphaned
            | Self::MissingOwner
            | Self::EntryExpired
            | Self::AgentStale
            | Self::EntryNotReviewed => NhiCategory::ImproperOffboarding,
            // One identity handed to every process matching a broad selector is shared by
            // workloads that should each have their own.
            Self::OverbroadSelectors => NhiCategory::NhiReuse,
            Self::TtlAboveMaximum | Self::JoinTokenUnused => NhiCategory::LongLivedSecrets,
            Self::PrivilegedEntry => NhiCategory::OverprivilegedNhi,
            // A CI/cloud OIDC trust that does not constrain the token's claims.
            Self::IssuerWithoutCondition => NhiCategory::InsecureCloudDeploymentConfigurations,
            // Trust in a third party's keys that is no longer kept current.
            Self::FederationRefreshFailing => NhiCategory::VulnerableThirdPartyNhi,
        }
    }

    /// How severe a finding of this kind is.
    pub fn severity(self) -> Severity {
        match self {
            Self::EntryOrphaned
            | Self::OverbroadSelectors
            | Self::PrivilegedEntry
            | Self::IssuerWithoutCondition => Severity::High,
            Self::EntryNeverUsed
            | Self::EntryUnused
            | Self::MissingOwner
            | Self::TtlAboveMaximum
            | Self::AgentStale
            | Self::JoinTokenUnused
            | Self::FederationRefreshFailing => Severity::Medium,
            Self::EntryExpired | Self::EntryNotReviewed => Severity::Low,
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgently a finding should be handled; ordered, `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    /// Every severity, lowest first.
    pub const ALL: [Self; 3] = [Self::Low, Self::Medium, Self::High];

    /// `low`, `medium` or `high`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The severity named `name`, or `None`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ten risks of the OWASP Non-Human Identities Top 10 (2025), `NHI1:2025` to `NHI10:2025`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NhiCategory {
    ImproperOffboarding,
    SecretLeakage,
    VulnerableThirdPartyNhi,
    InsecureAuthentication,
    OverprivilegedNhi,
    InsecureCloudDeploymentConfigurations,
    LongLivedSecrets,
    EnvironmentIsolation,
    NhiReuse,
    HumanUseOfNhi,
}

impl NhiCategory {
    /// Every risk, in the list's order.
    pub const ALL: [Self; 10] = [
        Self::ImproperOffboarding,
        Self::SecretLeakage,
        Self::VulnerableThirdPartyNhi,
        Self::InsecureAuthentication,
        Self::OverprivilegedNhi,
        Self::InsecureCloudDeploymentConfigurations,
        Self::LongLivedSecrets,
        Self::EnvironmentIsolation,
        Self::NhiReuse,
        Self::HumanUseOfNhi,
    ];

    /// The risk's id as OWASP writes it: `NHI1:2025` ... `NHI10:2025`.
    pub fn id(self) -> &'static str {
        match self {
            Self::ImproperOffboarding => "NHI1:2025",
            Self::SecretLeakage => "NHI2:2025",
            Self::VulnerableThirdPartyNhi => "NHI3:2025",
            Self::InsecureAuthentication => "NHI4:2025",
            Self::OverprivilegedNhi => "NHI5:2025",
            Self::InsecureCloudDeploymentConfigurations => "NHI6:2025",
            Self::LongLivedSecrets => "NHI7:2025",
            Self::EnvironmentIsolation => "NHI8:2025",
            Self::NhiReuse => "NHI9:2025",
            Self::HumanUseOfNhi => "NHI10:2025",
        }
    }

    /// The risk's name as OWASP writes it (`Improper Offboarding`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::ImproperOffboarding => "Improper Offboarding",
            Self::SecretLeakage => "Secret Leakage",
            Self::VulnerableThirdPartyNhi => "Vulnerable Third-Party NHI",
            Self::InsecureAuthentication => "Insecure Authentication",
            Self::OverprivilegedNhi => "Overprivileged NHI",
            Self::InsecureCloudDeploymentConfigurations => {
                "Insecure Cloud Deployment Configurations"
            }
            Self::LongLivedSecrets => "Long-Lived Secrets",
            Self::EnvironmentIsolation => "Environment Isolation",
            Self::NhiReuse => "NHI Reuse",
            Self::HumanUseOfNhi => "Human Use of NHI",
        }
    }

    /// The risk named `text`: its id with or without the year (`NHI1:2025`, `NHI1`), in any
    /// case; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.to_ascii_uppercase();
        Self::ALL.into_iter().find(|c| {
            let id = c.id();
            upper == id || id.strip_suffix(":2025") == Some(upper.as_str())
        })
    }
}

impl fmt::Display for NhiCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id(), self.name())
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    /// A registration entry, named by its id.
    Entry,
    /// An agent, named by its SPIFFE ID.
    Agent,
    /// A join token, named by its public id.
    JoinToken,
    /// A federation relationship, named by its foreign trust domain.
    Federation,
    /// An external token issuer, named by its `iss`.
    Issuer,
}

impl SubjectKind {
    /// Every subject kind.
    pub const ALL: [Self; 5] = [
        Self::Entry,
        Self::Agent,
        Self::JoinToken,
        Self::Federation,
        Self::Issuer,
    ];

    /// `entry`, `agent`, `join_token`, `federation` or `issuer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "entry",
            Self::Agent => "agent",
            Self::JoinToken => "join_token",
            Self::Federation => "federation",
            Self::Issuer => "issuer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for kind in FindingKind::ALL {
            assert_eq!(FindingKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(FindingKind::parse("EntryUnused"), None);
        for severity in Severity::ALL {
            assert_eq!(Severity::parse(severity.as_str()), Some(severity));
        }
        assert_eq!(Severity::parse("critical"), None);
        assert!(Severity::Low < Severity::Medium && Severity::Medium < Severity::High);
    }

    #[test]
    fn categories_are_the_owasp_ids_and_parse_with_or_without_the_year() {
        let ids: Vec<&str> = NhiCategory::ALL.iter().map(|c| c.id()).collect();
        let expected: Vec<String> = (1..=10).map(|n| format!("NHI{n}:2025")).collect();
        assert_eq!(ids, expected);
        for category in NhiCategory::ALL {
            assert_eq!(NhiCategory::parse(category.id()), Some(category));
            let short = category.id().trim_end_matches(":2025").to_ascii_lowercase();
            assert_eq!(NhiCategory::parse(&short), Some(category));
        }
        for bad in [
            "NHI0",
            "NHI11",
            "NHI1:2024",
            "nhi",
            "",
            "Improper Offboarding",
        ] {
            assert_eq!(NhiCategory::parse(bad), None, "{bad}");
        }
        assert_eq!(
            NhiCategory::ImproperOffboarding.to_string(),
            "NHI1:2025 Improper Offboarding"
        );
    }

    #[test]
    fn the_api_lists_the_same_names() {
        let kinds: Vec<&str> = FindingKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(kinds, sigil_api::inventory::FINDING_KINDS);
        let severities: Vec<&str> = Severity::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(severities, sigil_api::inventory::SEVERITIES);
        let categories: Vec<&str> = NhiCategory::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(categories, sigil_api::inventory::NHI_CATEGORIES);
        let subjects: Vec<&str> = SubjectKind::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(subjects, sigil_api::inventory::SUBJECT_KINDS);
    }
}
