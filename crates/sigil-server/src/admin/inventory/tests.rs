//! The report over a seeded store: one case of each finding, and exactly those findings; the
//! other inventory routes over the same store; an entry's database-credential leases in its
//! detail; bad filters refused.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::Value;
use sigil_spiffe::{Selector, SpiffeId, TrustDomain};
use sigil_store::{
    AttestedAgent, BundleEndpointProfile, EntryReview, JoinToken, Lease, LeaseState, NewEntry,
    NewFederationRelationship, WorkloadUsage,
};

use crate::admin::test_support::{Harness, START, state_and_clock};
use crate::federation::refresher::RefreshStatuses;
use crate::governance::{GovernanceContext, InventoryConfig, IssuerFacts};

const DAY: i64 = 86_400;
const LIVE_AGENT: &str = "spiffe://example.org/sigil/agent/join_token/live";
const STALE_AGENT: &str = "spiffe://example.org/sigil/agent/join_token/stale";

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

fn agent(spiffe_id: &str, last_seen: i64) -> AttestedAgent {
    AttestedAgent {
        spiffe_id: id(spiffe_id),
        attestation_type: "join_token".to_owned(),
        selectors: Vec::new(),
        serial: format!("{:x}", last_seen),
        new_serial: None,
        expires_at: START + 30 * DAY,
        banned: false,
        can_reattest: false,
        created_at: START - 200 * DAY,
        last_seen,
    }
}

/// A workload entry that, as seeded by [`Seeded`], has no finding: a live parent agent, a
/// non-root uid, an owner, short TTLs, recent use and review.
fn good(path: &str) -> NewEntry {
    let mut entry = NewEntry::new(
        id(&format!("spiffe://example.org/{path}")),
        id(LIVE_AGENT),
        vec![Selector::parse("unix:uid:1000").unwrap()],
        "team-web",
    );
    entry.x509_svid_ttl = 3600;
    entry.jwt_svid_ttl = 300;
    entry
}

struct Seeded {
    harness: Harness,
    /// Entry id by the name of the one finding it is seeded for ("" for the clean one).
    entries: Vec<(&'static str, String)>,
}

/// A store with one case of each finding, at `START` on the clock.
async fn seeded() -> Seeded {
    let (mut state, clock) = state_and_clock().await;
    let store = state.store.clone();
    let refresh = RefreshStatuses::default();
    state.governance = Arc::new(GovernanceContext::new(
        store.clone(),
        Arc::new(clock.clone()),
        TrustDomain::parse("example.org").unwrap(),
        InventoryConfig::default(),
        vec![
            IssuerFacts {
                issuer: "https://ci.example.com".to_owned(),
                owner: "team-ci".to_owned(),
                has_condition: false,
            },
            IssuerFacts {
                issuer: "https://idp.example.com".to_owned(),
                owner: "team-id".to_owned(),
                has_condition: true,
            },
        ],
        Some(refresh.clone()),
    ));
    store
        .create_agent(agent(LIVE_AGENT, START - 60))
        .await
        .unwrap();
    store
        .create_agent(agent(STALE_AGENT, START - 8 * DAY))
        .await
        .unwrap();

    let mut cases: Vec<(&'static str, NewEntry, i64)> = Vec::new();
    cases.push(("", good("clean"), START - 10 * DAY));
    cases.push(("entry_never_used", good("never-used"), START - 31 * DAY));
    cases.push(("entry_unused", good("unused"), START - 40 * DAY));
    let mut orphan = good("orphan");
    orphan.parent_id = id("spiffe://example.org/sigil/agent/join_token/gone");
    cases.push(("entry_orphaned", orphan, START - DAY));
    let mut unowned = good("unowned");
    unowned.owner = "TBD".to_owned();
    cases.push(("missing_owner", unowned, START - DAY));
    let mut broad = good("broad");
    broad.selectors = vec![Selector::parse("unix:uid:0").unwrap()];
    cases.push(("overbroad_selectors", broad, START - DAY));
    let mut long = good("long");
    long.x509_svid_ttl = 7 * DAY as u64;
    cases.push(("ttl_above_maximum", long, START - DAY));
    let mut admin = good("admin");
    admin.admin = true;
    cases.push(("privileged_entry", admin, START - DAY));
    let mut expired = good("expired");
    expired.expires_at = Some(START - 60);
    cases.push(("entry_expired", expired, START - DAY));
    cases.push(("entry_not_reviewed", good("unreviewed"), START - 100 * DAY));

    let mut entries = Vec::new();
    for (finding, entry, created) in cases {
        let stored = store.create_entry(entry, created).await.unwrap();
        entries.push((finding, stored.id));
    }
    let entry_id = |name: &str| {
        entries
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, id)| id.clone())
            .unwrap()
    };
    // Use: recent for every entry but the never-used and the unused one (used 31 days ago).
    let mut usage = Vec::new();
    for (finding, entry) in &entries {
        let last_seen = match *finding {
            "entry_never_used" => continue,
            "entry_unused" => START - 31 * DAY,
            _ => START - 3600,
        };
        usage.push(WorkloadUsage {
            entry_id: entry.clone(),
            agent_id: id(LIVE_AGENT),
            uid: 1000,
            binary_path: "/usr/bin/web".to_owned(),
            binary_sha256: "ab".repeat(32),
            first_seen: last_seen - 60,
            last_seen,
            fetches: 3,
            svids_issued: 2,
        });
    }
    store.record_workload_usage(usage).await.unwrap();
    // Reviews: the old entries were reviewed lately, except the one seeded as never reviewed.
    for name in ["entry_never_used", "entry_unused"] {
        store
            .review_entry(EntryReview {
                entry_id: entry_id(name),
                reviewed_by: "team-web".to_owned(),
                reviewed_at: START - DAY,
                note: String::new(),
            })
            .await
            .unwrap();
    }
    // Join tokens: one stale and unused, one fresh, one used, one expired.
    for (n, (name, created, expires, used)) in [
        ("stale", START - 2 * DAY, START + DAY, None),
        ("fresh", START - 3600, START + DAY, None),
        ("used", START - 2 * DAY, START + DAY, Some(START - DAY)),
        ("expired", START - 3 * DAY, START - DAY, None),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .create_join_token(JoinToken {
                id: name.to_owned(),
                token_hash: format!("{n:0>64}"),
                expires_at: expires,
                used_at: used,
                created_at: created,
            })
            .await
            .unwrap();
    }
    // Federations: one failing to refresh, one healthy.
    for (td, ok) in [("failing.example", false), ("healthy.example", true)] {
        let trust_domain = TrustDomain::parse(td).unwrap();
        store
            .create_federation(
                NewFederationRelationship {
                    trust_domain: trust_domain.clone(),
                    bundle_endpoint_url: format!("https://{td}/bundle"),
                    profile: BundleEndpointProfile::HttpsWeb,
                    endpoint_spiffe_id: None,
                    owner: "team-fed".to_owned(),
                },
                START - DAY,
            )
            .await
            .unwrap();
        refresh.record(
            &trust_domain,
            START - 60,
            if ok {
                Ok(())
            } else {
                Err("connection refused")
            },
        );
    }
    Seeded {
        harness: Harness::with_state(state, clock),
        entries,
    }
}

fn findings_of(report: &Value) -> BTreeSet<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["subject_kind"].as_str().unwrap().to_owned(),
                f["subject_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_seeded_store_with_one_case_of_each_finding_reports_exactly_those() {
    let seeded = seeded().await;
    let (status, report) = seeded
        .harness
        .call(Method::GET, "/api/v1/inventory/report", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let mut expected: BTreeSet<(String, String, String)> = seeded
        .entries
        .iter()
        .filter(|(finding, _)| !finding.is_empty())
        .map(|(finding, id)| ((*finding).to_owned(), "entry".to_owned(), id.clone()))
        .collect();
    for (kind, subject_kind, subject) in [
        ("agent_stale", "agent", STALE_AGENT),
        ("join_token_unused", "join_token", "stale"),
        (
            "issuer_without_condition",
            "issuer",
            "https://ci.example.com",
        ),
        (
            "federation_refresh_failing",
            "federation",
            "failing.example",
        ),
    ] {
        expected.insert((kind.to_owned(), subject_kind.to_owned(), subject.to_owned()));
    }
    assert_eq!(findings_of(&report), expected, "{report:#}");
    // Every kind there is, once.
    let kinds: BTreeSet<&str> = expected.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kinds.len(), sigil_api::inventory::FINDING_KINDS.len());
    // Each names its OWASP risk and a remediation.
    for finding in report["findings"].as_array().unwrap() {
        assert!(
            finding["category"].as_str().unwrap().starts_with("NHI"),
            "{finding}"
        );
        assert!(!finding["remediation"].as_str().unwrap().is_empty());
        assert!(!finding["category_name"].as_str().unwrap().is_empty());
    }
    // Most severe first.
    let order = ["high", "medium", "low"];
    let ranks: Vec<usize> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            order
                .iter()
                .position(|s| *s == f["severity"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{ranks:?}");
}

#[tokio::test]
async fn report_filters_narrow_the_findings_and_bad_filters_are_refused() {
    let seeded = seeded().await;
    let h = &seeded.harness;
    let (_, report) = h
        .call(
            Method::GET,
            "/api/v1/inventory/report?kind=agent_stale",
            None,
        )
        .await;
    assert_eq!(
        findings_of(&report),
        BTreeSet::from([(
            "agent_stale".to_owned(),
            "agent".to_owned(),
            STALE_AGENT.to_owned()
        )])
    );
    let (_, report) = h
        .call(Method::GET, "/api/v1/inventory/report?owner=team-fed", None)
        .await;
    assert_eq!(findings_of(&report).len(), 1, "{report}");
    let (_, report) = h
        .call(Method::GET, "/api/v1/inventory/report?category=nhi7", None)
        .await;
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["category"] == "NHI7:2025"),
        "{report}"
    );
    for (query, names) in [
        ("severity=urgent", "severity"),
        ("category=NHI11", "category"),
        ("kind=entry_unloved", "kind"),
        ("colour=red", "colour"),
        ("kind=a&kind=b", "kind"),
        (&format!("owner={}", "o".repeat(65)), "owner"),
    ] {
        let (status, body) = h
            .call(
                Method::GET,
                &format!("/api/v1/inventory/report?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_argument", "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(names),
            "{query}: {body}"
        );
    }
    let long_owner = format!("owner={}", "o".repeat(65));
    let long_prefix = format!("spiffe_id_prefix={}", "p".repeat(2049));
    for query in [
        "unused_for=forever",
        "page_size=0",
        &long_owner,
        &long_prefix,
    ] {
        let (status, body) = h
            .call(
                Method::GET,
                &format!("/api/v1/inventory/entries?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
}

#[tokio::test]
async fn summary_entries_owners_and_one_entry_read_the_same_store() {
    let seeded = seeded().await;
    let h = &seeded.harness;
    let (status, summary) = h.call(Method::GET, "/api/v1/inventory", None).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["entries"], 10);
    assert_eq!(summary["agents"], 2);
    assert_eq!(summary["agents_seen_last_day"], 1);
    assert_eq!(summary["join_tokens_pending"], 2);
    assert_eq!(summary["federations"], 2);
    assert_eq!(summary["external_issuers"], 2);
    assert_eq!(summary["entries_with_usage"], 9);
    let total = summary["findings"]["high"].as_u64().unwrap()
        + summary["findings"]["medium"].as_u64().unwrap()
        + summary["findings"]["low"].as_u64().unwrap();
    assert_eq!(total, 13);

    let (_, owners) = h.call(Method::GET, "/api/v1/inventory/owners", None).await;
    let names: Vec<&str> = owners["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["owner"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["TBD", "team-ci", "team-fed", "team-id", "team-web"]);
    let (_, fed) = h
        .call(Method::GET, "/api/v1/inventory/owners?owner=team-fed", None)
        .await;
    assert_eq!(fed["owners"][0]["federations"], 2, "{fed}");
    assert_eq!(fed["owners"][0]["findings"], 1, "{fed}");

    // Unused for 30 days: the never-used entry (created 31 days ago) and the unused one.
    let (_, unused) = h
        .call(
            Method::GET,
            "/api/v1/inventory/entries?unused_for=30d",
            None,
        )
        .await;
    let mut ids: Vec<&str> = unused["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = seeded
        .entries
        .iter()
        .filter(|(f, _)| matches!(*f, "entry_never_used" | "entry_unused"))
        .map(|(_, id)| id.as_str())
        .collect();
    want.sort_unstable();
    assert_eq!(ids, want, "{unused}");
    // Paged: one at a time, all ten.
    let mut seen = 0;
    let mut token = String::new();
    loop {
        let (_, page) = h
            .call(
                Method::GET,
                &format!("/api/v1/inventory/entries?page_size=1&page_token={token}"),
                None,
            )
            .await;
        seen += page["entries"].as_array().unwrap().len();
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 10);

    let clean = &seeded.entries[0].1;
    let (status, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/inventory/entries/{clean}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["workloads"][0]["binary_path"], "/usr/bin/web");
    assert_eq!(detail["workloads"][0]["agent_id"], LIVE_AGENT);
    assert_eq!(detail["usage"]["fetches"], 3);
    let (status, missing) = h
        .call(Method::GET, "/api/v1/inventory/entries/nope", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}

/// An active lease `n` of `target`/`role` served under entry `entry_id` to `spiffe_id`, created
/// an hour before `START`.
fn lease(n: u32, entry_id: &str, spiffe_id: &str) -> Lease {
    Lease {
        id: format!("lease_{n:032x}"),
        target: "orders-db".to_owned(),
        role: "readonly".to_owned(),
        spiffe_id: spiffe_id.to_owned(),
        entry_id: Some(entry_id.to_owned()),
        agent_id: Some(LIVE_AGENT.to_owned()),
        username: format!("v_readonly_{n}"),
        created_at: START - 3600,
        expires_at: START + 3600,
        max_expires_at: START + DAY,
        renewed_at: None,
        state: LeaseState::Active,
        claim_until: None,
        revoked_at: None,
        revoke_reason: None,
        replica: "r1".to_owned(),
    }
}

#[tokio::test]
async fn entry_detail_lists_the_leases_served_under_the_entry_and_no_others() {
    let seeded = seeded().await;
    let h = &seeded.harness;
    let clean = &seeded.entries[0].1;
    let other = &seeded.entries[1].1;
    let clean_id = "spiffe://example.org/clean";
    let mut revoked = lease(2, clean, clean_id);
    revoked.state = LeaseState::Revoked;
    revoked.expires_at = START - 60;
    revoked.revoked_at = Some(START - 60);
    revoked.revoke_reason = Some("expired".to_owned());
    for l in [
        lease(1, clean, clean_id),
        revoked,
        lease(3, other, "spiffe://example.org/never-used"),
    ] {
        h.store.create_lease(l).await.unwrap();
    }

    let (status, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/inventory/entries/{clean}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["leases_truncated"], false, "{detail}");
    let leases = detail["leases"].as_array().unwrap();
    let ids: Vec<&str> = leases.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [format!("lease_{:032x}", 1), format!("lease_{:032x}", 2)]
    );
    let active = &leases[0];
    assert_eq!(active["target"], "orders-db");
    assert_eq!(active["role"], "readonly");
    assert_eq!(active["username"], "v_readonly_1");
    assert_eq!(active["state"], "active");
    assert_eq!(active["created_at"], START - 3600);
    assert_eq!(active["expires_at"], START + 3600);
    // Absent, never null, until revoked.
    assert!(active.get("revoked_at").is_none(), "{active}");
    assert!(active.get("revoke_reason").is_none(), "{active}");
    let gone = &leases[1];
    assert_eq!(gone["state"], "revoked");
    assert_eq!(gone["revoked_at"], START - 60);
    assert_eq!(gone["revoke_reason"], "expired");
    // The served detail reads back into the wire type the CLI uses.
    let wire: sigil_api::InventoryEntryDetail = serde_json::from_value(detail.clone()).unwrap();
    assert_eq!(wire.leases.len(), 2);

    // The other entry has its own one; an entry without leases has none.
    let (_, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/inventory/entries/{other}"),
            None,
        )
        .await;
    assert_eq!(detail["leases"].as_array().unwrap().len(), 1, "{detail}");
    let third = &seeded.entries[2].1;
    let (_, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/inventory/entries/{third}"),
            None,
        )
        .await;
    assert_eq!(detail["leases"], serde_json::json!([]), "{detail}");
    assert_eq!(detail["leases_truncated"], false);
}

#[tokio::test]
async fn entry_detail_bounds_its_leases_and_says_so() {
    let seeded = seeded().await;
    let h = &seeded.harness;
    let clean = &seeded.entries[0].1;
    let shown = sigil_api::inventory::MAX_LEASES_SHOWN;
    for n in 0..=shown {
        h.store
            .create_lease(lease(n, clean, "spiffe://example.org/clean"))
            .await
            .unwrap();
    }
    let (status, detail) = h
        .call(
            Method::GET,
            &format!("/api/v1/inventory/entries/{clean}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(
        detail["leases"].as_array().unwrap().len(),
        shown as usize,
        "{detail}"
    );
    assert_eq!(detail["leases_truncated"], true);
}
