//! The findings: a pure function from a [`Snapshot`] of the store (and the configured issuers
//! and federation refresh status) and the thresholds to a sorted list of [`Finding`]s. No I/O
//! and no clock: `now` is part of the snapshot, so every rule is tested exhaustively.
//!
//! One finding per root cause: an expired entry is only `entry_expired` (nothing else about an
//! entry that is not served matters until it is deleted), and an orphaned entry is not also
//! reported unused (it cannot be used; deleting or re-parenting it is the one remedy).

use std::collections::{BTreeMap, HashMap};

use sigil_spiffe::{SpiffeId, TrustDomain};
use sigil_store::{
    AttestedAgent, Entry, EntryReview, EntryUsage, FederationRelationship, JoinToken,
};

use super::kinds::{FindingKind, NhiCategory, Severity, SubjectKind};
use super::{InventoryConfig, IssuerFacts};
use crate::federation::refresher::RefreshStatus;
use crate::naming;

/// Deepest parent chain followed to decide whether an entry is orphaned; a deeper chain is
/// taken as reachable (no finding rather than a false one).
const MAX_PARENT_DEPTH: usize = 256;
/// Longest refresh error quoted in a finding, in characters.
const MAX_QUOTED_ERROR_CHARS: usize = 200;

/// Owners that name nobody: a finding treats them as missing (compared trimmed, ignoring case).
const PLACEHOLDER_OWNERS: [&str; 11] = [
    "-", "?", "none", "unknown", "n/a", "tbd", "todo", "nobody", "changeme", "owner", "unowned",
];

/// Everything the findings are computed from, read at one time `now`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Unix seconds.
    pub now: i64,
    /// The server's trust domain (entries parented by its server ID are node aliases).
    pub trust_domain: TrustDomain,
    pub entries: Vec<Entry>,
    pub agents: Vec<AttestedAgent>,
    /// Usage per entry (entries without usage are absent).
    pub usage: Vec<EntryUsage>,
    /// The latest review of each reviewed entry.
    pub reviews: Vec<EntryReview>,
    pub join_tokens: Vec<JoinToken>,
    pub federations: Vec<FederationRelationship>,
    /// The refresher's status of each relationship it has tried.
    pub refresh: BTreeMap<TrustDomain, RefreshStatus>,
    pub issuers: Vec<IssuerFacts>,
}

/// One problem found: what kind, about what (and whose it is), why, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub subject_kind: SubjectKind,
    /// Entry id, agent SPIFFE ID, join token id, foreign trust domain or issuer `iss`.
    pub subject_id: String,
    /// The subject's owner; empty for agents and join tokens (which have none) or when missing.
    pub owner: String,
    /// One line: what is wrong with this subject.
    pub detail: String,
    /// One line: what to do about it.
    pub remediation: String,
}

impl Finding {
    /// The finding's severity (that of its kind).
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }

    /// The OWASP NHI Top 10 (2025) risk it is an instance of.
    pub fn category(&self) -> NhiCategory {
        self.kind.category()
    }
}

/// Every finding about `snapshot` under `config`, most severe first, then by kind, subject kind
/// and subject id, so the same snapshot always gives the same list. The rules (thresholds
/// count as reached at equality):
/// - entries: `entry_expired` (its `expires_at` has passed; no other rule applies to it);
///   `missing_owner` ([`is_missing_owner`]); `entry_orphaned` ([`orphan_reason`]); unless
///   orphaned and for workload entries only (node aliases are never fetched),
///   `entry_never_used` (no usage and created `unused_after` ago) or `entry_unused` (last seen
///   `unused_after` ago); `entry_not_reviewed` (last review, or creation, `review_every` ago);
///   `overbroad_selectors` ([`overbroad_reason`]); `ttl_above_maximum` (an explicit X509 or
///   JWT TTL above its maximum; 0, the server default, is the server's setting, not the
///   entry's); `privileged_entry` (admin or downstream);
/// - agents that are not banned: `agent_stale` (last seen `agent_stale_after` ago);
/// - join tokens: `join_token_unused` (unused, not expired, created `join_token_stale_after`
///   ago);
/// - federation relationships: `missing_owner`; `federation_refresh_failing` (the last refresh
///   failed);
/// - external issuers: `missing_owner`; `issuer_without_condition`.
pub fn findings(snapshot: &Snapshot, config: &InventoryConfig) -> Vec<Finding> {
    let mut out = Vec::new();
    let graph = Graph::new(snapshot);
    let usage: HashMap<&str, &EntryUsage> = snapshot
        .usage
        .iter()
        .map(|u| (u.entry_id.as_str(), u))
        .collect();
    let reviews: HashMap<&str, &EntryReview> = snapshot
        .reviews
        .iter()
        .map(|r| (r.entry_id.as_str(), r))
        .collect();
    let mut reachable = HashMap::new();
    for entry in &snapshot.entries {
        entry_findings(
            snapshot,
            config,
            &graph,
            &mut reachable,
            entry,
            usage.get(entry.id.as_str()).copied(),
            reviews.get(entry.id.as_str()).copied(),
            &mut out,
        );
    }
    for agent in snapshot.agents.iter().filter(|a| !a.banned) {
        let idle = elapsed(snapshot.now, agent.last_seen);
        if idle >= config.agent_stale_after {
            out.push(Finding {
                kind: FindingKind::AgentStale,
                subject_kind: SubjectKind::Agent,
                subject_id: agent.spiffe_id.to_string(),
                owner: String::new(),
                detail: format!("agent last seen {} ago", span(idle)),
                remediation: format!(
                    "evict it if its node is gone (`sigil agent evict --spiffe-id {}`)",
                    agent.spiffe_id
                ),
            });
        }
    }
    for token in &snapshot.join_tokens {
        let age = elapsed(snapshot.now, token.created_at);
        if token.used_at.is_none()
            && token.expires_at > snapshot.now
            && age >= config.join_token_stale_after
        {
            let left = elapsed(token.expires_at, snapshot.now);
            out.push(Finding {
                kind: FindingKind::JoinTokenUnused,
                subject_kind: SubjectKind::JoinToken,
                subject_id: token.id.clone(),
                owner: String::new(),
                detail: format!(
                    "join token created {} ago is unused and stays valid for {}",
                    span(age),
                    span(left)
                ),
                remediation: "attest its node now or let it expire; create join tokens with a \
                              short `--ttl` just before they are used"
                    .to_owned(),
            });
        }
    }
    for federation in &snapshot.federations {
        federation_findings(snapshot, federation, &mut out);
    }
    for issuer in &snapshot.issuers {
        if is_missing_owner(&issuer.owner) {
            out.push(Finding {
                kind: FindingKind::MissingOwner,
                subject_kind: SubjectKind::Issuer,
                subject_id: issuer.issuer.clone(),
                owner: issuer.owner.clone(),
                detail: owner_detail("external issuer", &issuer.owner),
                remediation: "set `owner` in its `[[oauth.issuer]]` table to the team \
                              accountable for trusting it"
                    .to_owned(),
            });
        }
        if !issuer.has_condition {
            out.push(Finding {
                kind: FindingKind::IssuerWithoutCondition,
                subject_kind: SubjectKind::Issuer,
                subject_id: issuer.issuer.clone(),
                owner: issuer.owner.clone(),
                detail: "the policies in force exchange a token of this issuer with a listed \
                         audience whatever its claims, whoever it was issued to"
                    .to_owned(),
                remediation: "restrict action Exchange on its mapped attributes (repository, \
                              branch, namespace…) with a Cedar policy, e.g. `forbid … unless { \
                              principal.attributes.contains(\"ref=refs/heads/main\") }` (see \
                              policies/examples/ci-exchange-main-branch)"
                    .to_owned(),
            });
        }
    }
    out.sort_by(|a, b| {
        b.severity()
            .cmp(&a.severity())
            .then(a.kind.cmp(&b.kind))
            .then(a.subject_kind.cmp(&b.subject_kind))
            .then_with(|| a.subject_id.cmp(&b.subject_id))
    });
    out
}

#[expect(
    clippy::too_many_arguments,
    reason = "one entry's rules read the whole snapshot's indexes; a struct would only rename them"
)]
fn entry_findings<'a>(
    snapshot: &'a Snapshot,
    config: &InventoryConfig,
    graph: &Graph<'a>,
    reachable: &mut HashMap<&'a str, Reach>,
    entry: &'a Entry,
    usage: Option<&EntryUsage>,
    review: Option<&EntryReview>,
    out: &mut Vec<Finding>,
) {
    let now = snapshot.now;
    let spec = &entry.spec;
    let finding = |kind, detail: String, remediation: String| Finding {
        kind,
        subject_kind: SubjectKind::Entry,
        subject_id: entry.id.clone(),
        owner: spec.owner.clone(),
        detail: format!("{}: {detail}", spec.spiffe_id),
        remediation,
    };
    let delete = format!("`sigil entry delete --id {}`", entry.id);
    if let Some(expired_at) = spec.expires_at.filter(|at| *at <= now) {
        out.push(finding(
            FindingKind::EntryExpired,
            format!(
                "expired {} ago and is no longer served, but is still stored",
                span(elapsed(now, expired_at))
            ),
            format!("delete it ({delete})"),
        ));
        return;
    }
    let alias = spec.parent_id == graph.server_id;
    if is_missing_owner(&spec.owner) {
        out.push(finding(
            FindingKind::MissingOwner,
            owner_detail("entry", &spec.owner),
            format!(
                "set the accountable team as its owner (`sigil entry update --id {} --owner TEAM …`)",
                entry.id
            ),
        ));
    }
    let orphaned = orphan_reason(graph, reachable, entry);
    if let Some(reason) = &orphaned {
        out.push(finding(
            FindingKind::EntryOrphaned,
            format!("no live agent can be served this identity: {reason}"),
            format!("delete it ({delete}) or give it a live agent or node alias as parent"),
        ));
    }
    if orphaned.is_none() && !alias {
        match usage {
            None => {
                let age = elapsed(now, entry.created_at);
                if age >= config.unused_after {
                    out.push(finding(
                        FindingKind::EntryNeverUsed,
                        format!("no workload has fetched it since it was created {} ago", span(age)),
                        format!(
                            "delete it if nothing needs it ({delete}), or fix its parent and selectors"
                        ),
                    ));
                }
            }
            Some(usage) => {
                let idle = elapsed(now, usage.last_seen);
                if idle >= config.unused_after {
                    out.push(finding(
                        FindingKind::EntryUnused,
                        format!(
                            "last fetched {} ago ({} workload(s) seen before)",
                            span(idle),
                            usage.workloads
                        ),
                        format!("delete it if its workloads are gone ({delete})"),
                    ));
                }
            }
        }
    }
    let (since, what) = match review {
        Some(review) => (review.reviewed_at, "last reviewed"),
        None => (entry.created_at, "never reviewed since it was created"),
    };
    let unreviewed = elapsed(now, since);
    if unreviewed >= config.review_every {
        out.push(finding(
            FindingKind::EntryNotReviewed,
            format!("{what} {} ago", span(unreviewed)),
            format!(
                "have its owner confirm it is still needed (`sigil entry review --id {} --by OWNER`)",
                entry.id
            ),
        ));
    }
    if !alias && let Some(reason) = overbroad_reason(entry) {
        let fan_out = if graph.is_alias_id(&spec.parent_id) {
            " on every node of its node alias"
        } else {
            ""
        };
        out.push(finding(
            FindingKind::OverbroadSelectors,
            format!("{reason}{fan_out} gets this identity"),
            "add a selector that pins the workload: its own user (`unix:uid:N`, not 0) or its \
             binary (`unix:sha256:…`)"
                .to_owned(),
        ));
    }
    let mut long = Vec::new();
    if spec.x509_svid_ttl > config.max_x509_ttl {
        long.push(format!(
            "X509-SVID TTL {} is above the maximum {}",
            span(spec.x509_svid_ttl),
            span(config.max_x509_ttl)
        ));
    }
    if spec.jwt_svid_ttl > config.max_jwt_ttl {
        long.push(format!(
            "JWT-SVID TTL {} is above the maximum {}",
            span(spec.jwt_svid_ttl),
            span(config.max_jwt_ttl)
        ));
    }
    if !long.is_empty() {
        out.push(finding(
            FindingKind::TtlAboveMaximum,
            long.join("; "),
            format!(
                "lower its TTLs to at most {} (X509) and {} (JWT) with `sigil entry update --id {}`",
                span(config.max_x509_ttl),
                span(config.max_jwt_ttl),
                entry.id
            ),
        ));
    }
    let privileges: Vec<&str> = [(spec.admin, "admin"), (spec.downstream, "downstream")]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
    if !privileges.is_empty() {
        out.push(finding(
            FindingKind::PrivilegedEntry,
            format!(
                "{} entry: its SVID carries privilege beyond its own workload",
                privileges.join(" and ")
            ),
            format!(
                "confirm the workload needs it; otherwise clear {} with `sigil entry update --id {}`",
                privileges.join(" and "),
                entry.id
            ),
        ));
    }
}

fn federation_findings(
    snapshot: &Snapshot,
    federation: &FederationRelationship,
    out: &mut Vec<Finding>,
) {
    let td = federation.trust_domain.as_str();
    if is_missing_owner(&federation.owner) {
        out.push(Finding {
            kind: FindingKind::MissingOwner,
            subject_kind: SubjectKind::Federation,
            subject_id: td.to_owned(),
            owner: federation.owner.clone(),
            detail: owner_detail("federation relationship", &federation.owner),
            remediation: format!(
                "set the accountable team (`sigil federation update --trust-domain {td} --owner TEAM`)"
            ),
        });
    }
    let Some(status) = snapshot
        .refresh
        .get(&federation.trust_domain)
        .filter(|s| s.consecutive_failures > 0)
    else {
        return;
    };
    let since = match status.last_success {
        Some(at) => format!("last success {} ago", span(elapsed(snapshot.now, at))),
        None => "never succeeded".to_owned(),
    };
    let error = one_line(status.last_error.as_deref().unwrap_or("unknown error"));
    out.push(Finding {
        kind: FindingKind::FederationRefreshFailing,
        subject_kind: SubjectKind::Federation,
        subject_id: td.to_owned(),
        owner: federation.owner.clone(),
        detail: format!(
            "{} refresh(es) in a row failed, {since}: {error}",
            status.consecutive_failures
        ),
        remediation: format!(
            "check that `{}` is reachable and serves the bundle (`sigil federation refresh --trust-domain {td}`)",
            one_line(&federation.bundle_endpoint_url)
        ),
    });
}

/// Whether `owner` names nobody: blank, or a placeholder such as `unknown`, `tbd`, `n/a` or `-`
/// (ignoring case and surrounding space).
pub fn is_missing_owner(owner: &str) -> bool {
    let owner = owner.trim();
    owner.is_empty()
        || PLACEHOLDER_OWNERS
            .iter()
            .any(|p| owner.eq_ignore_ascii_case(p))
}

fn owner_detail(what: &str, owner: &str) -> String {
    if owner.trim().is_empty() {
        format!("{what} has no owner")
    } else {
        format!("{what} has the placeholder owner `{}`", one_line(owner))
    }
}

/// Why a workload entry's selectors are over-broad, or `None` when they are narrow enough.
///
/// The rule, for Sigil's `unix` workload attestor: a workload entry is over-broad unless one of
/// its selectors pins one non-root user (`unix:uid:N` with N ≠ 0, `unix:user:NAME` with NAME ≠
/// `root`) or one binary (`unix:sha256:…`, `unix:path:…`). So `unix:uid:0` or `unix:user:root`
/// alone (every root process on the node), and group selectors alone (`unix:gid`,
/// `unix:group`, `unix:supplementary_gid`, `unix:supplementary_group`: every member of the
/// group) are over-broad. Under a node alias the same selectors match on every node of the
/// alias, which the finding says. An entry with a selector of another type is not judged: the
/// unix attestor never emits one, so such an entry matches no workload (it is reported unused
/// instead), and Sigil cannot tell how narrow another attestor's selectors are. Node aliases
/// themselves (parented by the server ID) select agents, not workloads, and are not judged.
pub fn overbroad_reason(entry: &Entry) -> Option<String> {
    let selectors = &entry.spec.selectors;
    if selectors.is_empty() || selectors.iter().any(|s| s.kind() != "unix") {
        return None;
    }
    let pins = selectors.iter().any(|s| {
        let (key, value) = s.value().split_once(':').unwrap_or((s.value(), ""));
        match key {
            "uid" => value != "0",
            "user" => value != "root",
            "sha256" | "path" => true,
            _ => false,
        }
    });
    if pins {
        return None;
    }
    let root = selectors
        .iter()
        .any(|s| matches!(s.value(), "uid:0" | "user:root"));
    Some(if root {
        "every root process".to_owned()
    } else {
        "every process of the group".to_owned()
    })
}

/// Why no live agent can be served `entry`, or `None` when one can. Follows the server's
/// authorization rule upwards: an agent serves the entries parented by its SPIFFE ID, the
/// entries parented by a node alias whose selectors are all among its node selectors, and the
/// entries parented by the SPIFFE ID of an entry it may be served. An agent that is missing or
/// banned serves nothing; an expired entry serves no children. A parent chain that loops
/// reaches nothing; one deeper than 256 entries is taken as reachable.
fn orphan_reason<'a>(
    graph: &Graph<'a>,
    memo: &mut HashMap<&'a str, Reach>,
    entry: &'a Entry,
) -> Option<String> {
    let parent = &entry.spec.parent_id;
    if *parent == graph.server_id {
        return (!graph.alias_matches_live_agent(entry))
            .then(|| "it is a node alias whose selectors match no live agent".to_owned());
    }
    if naming::is_agent_id(parent) {
        return match graph.agents.get(parent.as_str()) {
            None => Some(format!(
                "its parent agent `{parent}` does not exist (evicted, or never attested)"
            )),
            Some(agent) if agent.banned => Some(format!("its parent agent `{parent}` is banned")),
            Some(_) => None,
        };
    }
    match graph.parent_entries(parent) {
        [] => Some(format!("no agent or entry has its parent ID `{parent}`")),
        candidates => {
            let any = candidates
                .iter()
                .any(|p| graph.reaches(memo, p, 0) != Reach::Unreachable);
            (!any).then(|| {
                format!("every entry with its parent ID `{parent}` is expired or orphaned")
            })
        }
    }
}

/// Whether an entry can be served to some live agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Being decided (a parent chain that comes back here loops).
    Visiting,
    Reachable,
    Unreachable,
}

/// The snapshot's entries and agents indexed for [`orphan_reason`].
#[derive(Debug)]
struct Graph<'a> {
    now: i64,
    server_id: SpiffeId,
    agents: HashMap<&'a str, &'a AttestedAgent>,
    by_spiffe_id: HashMap<&'a str, Vec<&'a Entry>>,
}

impl<'a> Graph<'a> {
    /// The indexes of `snapshot`.
    fn new(snapshot: &'a Snapshot) -> Self {
        let mut by_spiffe_id: HashMap<&str, Vec<&Entry>> = HashMap::new();
        for entry in &snapshot.entries {
            by_spiffe_id
                .entry(entry.spec.spiffe_id.as_str())
                .or_default()
                .push(entry);
        }
        Self {
            now: snapshot.now,
            server_id: naming::server_id(&snapshot.trust_domain),
            agents: snapshot
                .agents
                .iter()
                .map(|a| (a.spiffe_id.as_str(), a))
                .collect(),
            by_spiffe_id,
        }
    }

    fn parent_entries(&self, parent: &SpiffeId) -> &[&'a Entry] {
        self.by_spiffe_id
            .get(parent.as_str())
            .map_or(&[], Vec::as_slice)
    }

    /// Whether `id` is the SPIFFE ID of a node alias.
    fn is_alias_id(&self, id: &SpiffeId) -> bool {
        self.parent_entries(id)
            .iter()
            .any(|e| e.spec.parent_id == self.server_id)
    }

    fn alias_matches_live_agent(&self, alias: &Entry) -> bool {
        self.agents.values().any(|agent| {
            !agent.banned
                && alias
                    .spec
                    .selectors
                    .iter()
                    .all(|s| agent.selectors.contains(s))
        })
    }

    fn reaches(&self, memo: &mut HashMap<&'a str, Reach>, entry: &'a Entry, depth: usize) -> Reach {
        if depth > MAX_PARENT_DEPTH {
            return Reach::Reachable;
        }
        if let Some(known) = memo.get(entry.id.as_str()) {
            return match known {
                Reach::Visiting => Reach::Unreachable,
                other => *other,
            };
        }
        if entry.spec.expires_at.is_some_and(|at| at <= self.now) {
            memo.insert(&entry.id, Reach::Unreachable);
            return Reach::Unreachable;
        }
        memo.insert(&entry.id, Reach::Visiting);
        let parent = &entry.spec.parent_id;
        let reach = if *parent == self.server_id {
            self.alias_matches_live_agent(entry)
        } else if naming::is_agent_id(parent) {
            self.agents
                .get(parent.as_str())
                .is_some_and(|agent| !agent.banned)
        } else {
            self.parent_entries(parent)
                .iter()
                .any(|p| self.reaches(memo, p, depth + 1) == Reach::Reachable)
        };
        let reach = if reach {
            Reach::Reachable
        } else {
            Reach::Unreachable
        };
        memo.insert(&entry.id, reach);
        reach
    }
}

/// Seconds from `since` to `now`, 0 when `since` is later.
fn elapsed(now: i64, since: i64) -> u64 {
    u64::try_from(now.saturating_sub(since)).unwrap_or(0)
}

/// A span of seconds in its largest whole unit at or below it: `45d`, `3h`, `12m`, `30s`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `text` on one line and cut to a bounded length, safe to quote in a finding.
fn one_line(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_QUOTED_ERROR_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_QUOTED_ERROR_CHARS).is_some() {
        out.push('…');
    }
    out
}
