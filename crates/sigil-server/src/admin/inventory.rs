//! The inventory routes: counts and owners (`/api/v1/inventory`), entries with their usage and
//! last review (`/inventory/entries`), one entry with its workloads, the credentials issued
//! under it and the database credentials served under it (`/inventory/entries/{id}`), owners (`/inventory/owners`) and the findings
//! (`/inventory/report`). Everything is read from the store at the time of the call through the
//! server's [`GovernanceContext`]; nothing here writes.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use sigil_api::inventory::{
    InventoryLease, MAX_CREDENTIALS_SHOWN, MAX_LEASES_SHOWN, MAX_WORKLOADS_SHOWN,
};
use sigil_api::{
    FindingCounts, FindingQuery, FindingReport, InventoryCredential, InventoryEntry,
    InventoryEntryDetail, InventoryEntryList, InventoryEntryQuery, InventorySummary, LastReview,
    OwnerList, OwnerQuery, OwnerSummary, UsageSummary,
};
use sigil_store::{EntryFilter, EntryReview, EntryUsage, Lease, LeaseFilter};

use super::AdminState;
use super::api_error::{ApiError, quote};
use super::entries::{parse_prefix, to_wire};
use super::paging::PageRequest;
use crate::governance::findings::is_missing_owner;
use crate::governance::{
    Finding, FindingKind, NhiCategory, Severity, Snapshot, findings, snapshot,
};
use crate::naming;

/// Seconds in a day: `agents_seen_last_day`.
const DAY: i64 = 86_400;
/// Store pages read for one page of `unused_for`-filtered entries before answering with what
/// was found (the next page token continues from there).
const MAX_SCAN_PAGES: usize = 64;

/// `GET /api/v1/inventory`.
pub(crate) async fn summary(
    State(state): State<AdminState>,
) -> Result<Json<InventorySummary>, ApiError> {
    let ctx = &state.governance;
    let now = ctx.clock.unix_secs();
    let snap = snapshot::load(ctx, now).await?;
    let found = findings(&snap, &ctx.config);
    let revocations = state.store.list_revocations().await?;
    let server_id = naming::server_id(&snap.trust_domain);
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let mut counts = FindingCounts::default();
    for finding in &found {
        match finding.severity() {
            Severity::High => counts.high += 1,
            Severity::Medium => counts.medium += 1,
            Severity::Low => counts.low += 1,
        }
    }
    Ok(Json(InventorySummary {
        generated_at: now,
        entries: count(snap.entries.len()),
        node_aliases: count(
            snap.entries
                .iter()
                .filter(|e| e.spec.parent_id == server_id)
                .count(),
        ),
        entries_with_usage: count(snap.usage.len()),
        workloads: snap.usage.iter().map(|u| u.workloads).sum(),
        fetches: snap.usage.iter().map(|u| u.fetches).sum(),
        svids_issued: snap.usage.iter().map(|u| u.svids_issued).sum(),
        agents: count(snap.agents.len()),
        agents_banned: count(snap.agents.iter().filter(|a| a.banned).count()),
        agents_seen_last_day: count(
            snap.agents
                .iter()
                .filter(|a| now.saturating_sub(a.last_seen) < DAY)
                .count(),
        ),
        join_tokens_pending: count(
            snap.join_tokens
                .iter()
                .filter(|t| t.used_at.is_none() && t.expires_at > now)
                .count(),
        ),
        revocations: count(revocations.iter().filter(|r| r.expires_at > now).count()),
        federations: count(snap.federations.len()),
        external_issuers: count(snap.issuers.len()),
        findings: counts,
        owners: owners(&snap, &found, None),
    }))
}

/// `GET /api/v1/inventory/owners`.
pub(crate) async fn list_owners(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<OwnerList>, ApiError> {
    let query = OwnerQuery::parse(query.as_deref().unwrap_or_default())?;
    let only = owner_filter(query.owner)?;
    let ctx = &state.governance;
    let snap = snapshot::load(ctx, ctx.clock.unix_secs()).await?;
    let found = findings(&snap, &ctx.config);
    Ok(Json(OwnerList {
        owners: owners(&snap, &found, only.as_deref()),
    }))
}

/// Every owner of an entry, federation relationship or external issuer (or only `only`), with
/// what it owns and how many findings are about its things, ordered by name.
fn owners(snap: &Snapshot, found: &[Finding], only: Option<&str>) -> Vec<OwnerSummary> {
    let mut tally: BTreeMap<String, OwnerSummary> = BTreeMap::new();
    let mut add = |owner: &str, f: &dyn Fn(&mut OwnerSummary)| {
        if only.is_some_and(|o| o != owner) {
            return;
        }
        let summary = tally
            .entry(owner.to_owned())
            .or_insert_with(|| OwnerSummary {
                owner: owner.to_owned(),
                entries: 0,
                federations: 0,
                issuers: 0,
                findings: 0,
            });
        f(summary);
    };
    for entry in &snap.entries {
        add(&entry.spec.owner, &|s| s.entries += 1);
    }
    for federation in &snap.federations {
        add(&federation.owner, &|s| s.federations += 1);
    }
    for issuer in &snap.issuers {
        add(&issuer.owner, &|s| s.issuers += 1);
    }
    for finding in found.iter().filter(|f| !f.owner.is_empty()) {
        if let Some(summary) = tally.get_mut(&finding.owner) {
            summary.findings += 1;
        }
    }
    tally.into_values().collect()
}

/// `GET /api/v1/inventory/entries`.
pub(crate) async fn list_entries(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<InventoryEntryList>, ApiError> {
    let query = InventoryEntryQuery::parse(query.as_deref().unwrap_or_default())?;
    let page = PageRequest::parse(&query.page)?;
    let unused_for = query
        .unused_for
        .as_deref()
        .map(|raw| {
            sigil_spiffe::Ttl::parse(raw)
                .map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
                .map_err(|e| ApiError::invalid_value("unused_for", raw, e))
        })
        .transpose()?;
    let filter = EntryFilter {
        owner: owner_filter(query.owner.clone())?,
        spiffe_id_prefix: parse_prefix(query.spiffe_id_prefix.clone())?,
        ..EntryFilter::default()
    };
    let now = state.clock.unix_secs();
    let usage = usage_map(state.store.usage_by_entry().await?);
    let reviews = review_map(state.store.list_entry_reviews().await?);
    let wanted = usize::try_from(page.fetch_limit()).unwrap_or(usize::MAX);
    let mut matched = Vec::new();
    let mut after = page.after.clone();
    for _ in 0..MAX_SCAN_PAGES {
        let batch = state
            .store
            .list_entries_page(&filter, after.as_deref(), page.fetch_limit())
            .await?;
        let done = batch.len() < wanted;
        after = batch.last().map(|e| e.id.clone());
        matched.extend(batch.into_iter().filter(|entry| {
            unused_for.is_none_or(|idle| {
                let since = usage
                    .get(entry.id.as_str())
                    .map_or(entry.created_at, |u| u.last_seen);
                now.saturating_sub(since) >= idle
            })
        }));
        if done || matched.len() >= wanted {
            break;
        }
    }
    let next_page_token = page.finish(&mut matched, |e| e.id.as_str());
    let entries = matched
        .iter()
        .map(|entry| InventoryEntry {
            id: entry.id.clone(),
            spiffe_id: entry.spec.spiffe_id.to_string(),
            parent_id: entry.spec.parent_id.to_string(),
            owner: entry.spec.owner.clone(),
            admin: entry.spec.admin,
            downstream: entry.spec.downstream,
            created_at: entry.created_at,
            expires_at: entry.spec.expires_at,
            usage: usage.get(entry.id.as_str()).map(usage_summary),
            last_review: reviews.get(entry.id.as_str()).map(last_review),
        })
        .collect();
    Ok(Json(InventoryEntryList {
        entries,
        next_page_token,
    }))
}

/// `GET /api/v1/inventory/entries/{id}`.
pub(crate) async fn show_entry(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<InventoryEntryDetail>, ApiError> {
    let store = state.store.as_ref();
    let entry = store
        .get_entry(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no entry with id `{}`", quote(&id))))?;
    let mut workloads = store
        .list_workload_usage(&id, MAX_WORKLOADS_SHOWN + 1)
        .await?;
    let workloads_truncated = workloads.len() > MAX_WORKLOADS_SHOWN as usize;
    workloads.truncate(MAX_WORKLOADS_SHOWN as usize);
    let mut credentials = store
        .list_issued_for(&entry.spec.spiffe_id, MAX_CREDENTIALS_SHOWN + 1)
        .await?;
    let credentials_truncated = credentials.len() > MAX_CREDENTIALS_SHOWN as usize;
    credentials.truncate(MAX_CREDENTIALS_SHOWN as usize);
    let revoked: HashMap<(sigil_store::CredentialKind, String), i64> = store
        .list_revocations()
        .await?
        .into_iter()
        .filter(|r| r.spiffe_id == entry.spec.spiffe_id)
        .map(|r| ((r.kind, r.id), r.revoked_at))
        .collect();
    let mut leases = store
        .list_leases(&LeaseFilter {
            entry_id: Some(id.clone()),
            limit: MAX_LEASES_SHOWN + 1,
            ..LeaseFilter::default()
        })
        .await?;
    let leases_truncated = leases.len() > MAX_LEASES_SHOWN as usize;
    leases.truncate(MAX_LEASES_SHOWN as usize);
    let usage = store
        .usage_by_entry()
        .await?
        .into_iter()
        .find(|u| u.entry_id == id);
    let review = store
        .list_entry_reviews()
        .await?
        .into_iter()
        .find(|r| r.entry_id == id);
    Ok(Json(InventoryEntryDetail {
        entry: to_wire(&entry),
        usage: usage.as_ref().map(usage_summary),
        last_review: review.as_ref().map(last_review),
        workloads: workloads
            .into_iter()
            .map(|w| sigil_api::WorkloadUsage {
                agent_id: w.agent_id.to_string(),
                uid: w.uid,
                binary_path: w.binary_path,
                binary_sha256: w.binary_sha256,
                first_seen: w.first_seen,
                last_seen: w.last_seen,
                fetches: w.fetches,
                svids_issued: w.svids_issued,
            })
            .collect(),
        workloads_truncated,
        credentials: credentials
            .into_iter()
            .map(|c| {
                let revoked_at = revoked.get(&(c.kind, c.id.clone())).copied();
                InventoryCredential {
                    kind: c.kind.as_str().to_owned(),
                    id: c.id,
                    issued_to: c.issued_to.to_string(),
                    authority_id: c.authority_id,
                    issued_at: c.issued_at,
                    expires_at: c.expires_at,
                    revoked: revoked_at.is_some(),
                    revoked_at,
                }
            })
            .collect(),
        credentials_truncated,
        leases: leases.into_iter().map(inventory_lease).collect(),
        leases_truncated,
    }))
}

/// The inventory's view of a lease: what it is and where it is in its life, without the
/// holder (the entry's SPIFFE ID) or the agent.
fn inventory_lease(lease: Lease) -> InventoryLease {
    InventoryLease {
        id: lease.id,
        target: lease.target,
        role: lease.role,
        username: lease.username,
        state: lease.state.as_str().to_owned(),
        created_at: lease.created_at,
        expires_at: lease.expires_at,
        revoked_at: lease.revoked_at,
        revoke_reason: lease.revoke_reason,
    }
}

/// `GET /api/v1/inventory/report`.
pub(crate) async fn report(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<FindingReport>, ApiError> {
    let query = FindingQuery::parse(query.as_deref().unwrap_or_default())?;
    let owner = owner_filter(query.owner.clone())?;
    let severity = query
        .severity
        .as_deref()
        .map(|raw| {
            Severity::parse(raw).ok_or_else(|| {
                ApiError::invalid_value("severity", raw, "expected low, medium or high")
            })
        })
        .transpose()?;
    let category = query
        .category
        .as_deref()
        .map(|raw| {
            NhiCategory::parse(raw).ok_or_else(|| {
                ApiError::invalid_value(
                    "category",
                    raw,
                    "expected an OWASP NHI risk id, NHI1 to NHI10",
                )
            })
        })
        .transpose()?;
    let kind = query
        .kind
        .as_deref()
        .map(|raw| {
            FindingKind::parse(raw).ok_or_else(|| {
                ApiError::invalid_value(
                    "kind",
                    raw,
                    format!(
                        "expected one of {}",
                        sigil_api::inventory::FINDING_KINDS.join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let ctx = &state.governance;
    let now = ctx.clock.unix_secs();
    let snap = snapshot::load(ctx, now).await?;
    let found = findings(&snap, &ctx.config)
        .into_iter()
        .filter(|f| severity.is_none_or(|s| f.severity() >= s))
        .filter(|f| category.is_none_or(|c| f.category() == c))
        .filter(|f| kind.is_none_or(|k| f.kind == k))
        .filter(|f| owner.as_deref().is_none_or(|o| f.owner == o))
        .map(|f| to_wire_finding(&f))
        .collect();
    Ok(Json(FindingReport {
        generated_at: now,
        findings: found,
    }))
}

/// The wire form of a finding.
pub(crate) fn to_wire_finding(finding: &Finding) -> sigil_api::Finding {
    sigil_api::Finding {
        kind: finding.kind.as_str().to_owned(),
        severity: finding.severity().as_str().to_owned(),
        category: finding.category().id().to_owned(),
        category_name: finding.category().name().to_owned(),
        subject_kind: finding.subject_kind.as_str().to_owned(),
        subject_id: finding.subject_id.clone(),
        owner: if is_missing_owner(&finding.owner) {
            String::new()
        } else {
            finding.owner.clone()
        },
        detail: finding.detail.clone(),
        remediation: finding.remediation.clone(),
    }
}

/// An `owner` filter: at most as long as an owner can be (the document's `maxLength`).
fn owner_filter(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(owner) if owner.chars().count() > sigil_api::entries::MAX_OWNER_CHARS => {
            Err(ApiError::invalid(format!(
                "invalid owner: longer than {} characters",
                sigil_api::entries::MAX_OWNER_CHARS
            )))
        }
        other => Ok(other),
    }
}

fn usage_map(rows: Vec<EntryUsage>) -> HashMap<String, EntryUsage> {
    rows.into_iter().map(|u| (u.entry_id.clone(), u)).collect()
}

fn review_map(rows: Vec<EntryReview>) -> HashMap<String, EntryReview> {
    rows.into_iter().map(|r| (r.entry_id.clone(), r)).collect()
}

fn usage_summary(usage: &EntryUsage) -> UsageSummary {
    UsageSummary {
        workloads: usage.workloads,
        first_seen: usage.first_seen,
        last_seen: usage.last_seen,
        fetches: usage.fetches,
        svids_issued: usage.svids_issued,
    }
}

fn last_review(review: &EntryReview) -> LastReview {
    LastReview {
        reviewed_by: review.reviewed_by.clone(),
        reviewed_at: review.reviewed_at,
        note: review.note.clone(),
    }
}

#[cfg(test)]
mod tests;
