//! The inventory and its findings on the wire: `GET /api/v1/inventory` (counts and owners),
//! `GET /api/v1/inventory/entries` (paged, filtered by owner, SPIFFE ID prefix and idle time),
//! `GET /api/v1/inventory/entries/{id}` (usage rows, recent credentials and database-credential
//! leases),
//! `GET /api/v1/inventory/owners` and `GET /api/v1/inventory/report` (the findings), with their
//! query strings, the names a finding may carry, and their part of the OpenAPI document.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sigil_spiffe::id::MAX_SPIFFE_ID_BYTES;
use sigil_spiffe::ttl::MAX_TTL_SECS;

use crate::entries::MAX_OWNER_CHARS;
use crate::openapi::{error_ref, ok_json, page_size_param, page_token_param, query_param};
use crate::query::{encode_pairs, for_each_pair, set_once, truncate};
use crate::schemas::schema_ref;
use crate::{Entry, PageQuery, WireError, paths, patterns};

/// The stable names of the kinds of findings.
pub const FINDING_KINDS: [&str; 13] = [
    "entry_never_used",
    "entry_unused",
    "entry_orphaned",
    "missing_owner",
    "overbroad_selectors",
    "ttl_above_maximum",
    "privileged_entry",
    "entry_expired",
    "agent_stale",
    "join_token_unused",
    "issuer_without_condition",
    "federation_refresh_failing",
    "entry_not_reviewed",
];
/// Severities, lowest first.
pub const SEVERITIES: [&str; 3] = ["low", "medium", "high"];
/// The OWASP Non-Human Identities Top 10 (2025) risk ids.
pub const NHI_CATEGORIES: [&str; 10] = [
    "NHI1:2025",
    "NHI2:2025",
    "NHI3:2025",
    "NHI4:2025",
    "NHI5:2025",
    "NHI6:2025",
    "NHI7:2025",
    "NHI8:2025",
    "NHI9:2025",
    "NHI10:2025",
];
/// What a finding may be about.
pub const SUBJECT_KINDS: [&str; 5] = ["entry", "agent", "join_token", "federation", "issuer"];
/// Most usage rows `GET /api/v1/inventory/entries/{id}` answers.
pub const MAX_WORKLOADS_SHOWN: u32 = 500;
/// Most credentials `GET /api/v1/inventory/entries/{id}` answers, newest first.
pub const MAX_CREDENTIALS_SHOWN: u32 = 50;
/// Most database-credential leases `GET /api/v1/inventory/entries/{id}` answers, ordered by id
/// (the same bound as the credentials).
pub const MAX_LEASES_SHOWN: u32 = MAX_CREDENTIALS_SHOWN;

/// Answer of `GET /api/v1/inventory`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySummary {
    /// Unix seconds the counts were taken at.
    pub generated_at: i64,
    /// Registration entries, node aliases included.
    pub entries: u64,
    /// Entries parented by the server ID (they select agents, not workloads).
    pub node_aliases: u64,
    /// Entries with reported use within the usage retention.
    pub entries_with_usage: u64,
    /// Distinct (agent, uid, binary) rows that used an entry.
    pub workloads: u64,
    /// Workload API calls that returned an entry's identity.
    pub fetches: u64,
    /// SVIDs delivered to workloads, as the agents report them.
    pub svids_issued: u64,
    pub agents: u64,
    pub agents_banned: u64,
    /// Agents seen in the last 24 hours.
    pub agents_seen_last_day: u64,
    /// Join tokens neither used nor expired.
    pub join_tokens_pending: u64,
    /// Revocations whose credential has not expired.
    pub revocations: u64,
    pub federations: u64,
    pub external_issuers: u64,
    pub findings: FindingCounts,
    /// Every owner, ordered by name.
    pub owners: Vec<OwnerSummary>,
}

/// How many findings there are, by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCounts {
    pub high: u64,
    pub medium: u64,
    pub low: u64,
}

/// One owner and what it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerSummary {
    /// The owner as written (empty for relationships stored before owners existed).
    pub owner: String,
    pub entries: u64,
    pub federations: u64,
    pub issuers: u64,
    /// Findings about what it owns.
    pub findings: u64,
}

/// Answer of `GET /api/v1/inventory/owners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerList {
    pub owners: Vec<OwnerSummary>,
}

/// An entry's use, summed over its workloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSummary {
    pub workloads: u64,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    pub fetches: u64,
    pub svids_issued: u64,
}

/// The latest review of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReview {
    pub reviewed_by: String,
    /// Unix seconds.
    pub reviewed_at: i64,
    pub note: String,
}

/// One entry of `GET /api/v1/inventory/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub id: String,
    pub spiffe_id: String,
    pub parent_id: String,
    pub owner: String,
    pub admin: bool,
    pub downstream: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `null` = never.
    pub expires_at: Option<i64>,
    /// `null` when no use is recorded.
    pub usage: Option<UsageSummary>,
    /// `null` when never reviewed.
    pub last_review: Option<LastReview>,
}

/// Answer of `GET /api/v1/inventory/entries`: one page, ordered by entry id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntryList {
    pub entries: Vec<InventoryEntry>,
    /// Reads the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One workload's use of an entry through one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadUsage {
    /// The agent (node) that served it.
    pub agent_id: String,
    pub uid: u32,
    /// Empty when the agent could not read it.
    pub binary_path: String,
    /// Lowercase hex SHA-256 of the binary; empty when not computed.
    pub binary_sha256: String,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds.
    pub last_seen: i64,
    pub fetches: u64,
    pub svids_issued: u64,
}

/// A credential issued under an entry's SPIFFE ID (token-exchange results included, as
/// `jwt_svid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryCredential {
    /// `x509_svid` or `jwt_svid`.
    pub kind: String,
    /// The serial in lowercase hex, or the `jti`.
    pub id: String,
    /// The agent (or token-exchange client) it was issued to.
    pub issued_to: String,
    pub authority_id: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    pub revoked: bool,
    /// Unix seconds; `null` unless revoked.
    pub revoked_at: Option<i64>,
}

/// A database credential brokered for a workload served under an entry: its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryLease {
    /// `lease_` and 32 lowercase hex digits.
    pub id: String,
    /// The credential target's name.
    pub target: String,
    /// The role of the target the credential was created for.
    pub role: String,
    /// The database user name.
    pub username: String,
    /// `active`, `revoking` or `revoked`.
    pub state: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds: the credential stops working at this time.
    pub expires_at: i64,
    /// Unix seconds; absent unless revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Why it was revoked (`expired`, `entry deleted`, ...); absent until a revocation starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
}

/// Answer of `GET /api/v1/inventory/entries/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntryDetail {
    pub entry: Entry,
    pub usage: Option<UsageSummary>,
    pub last_review: Option<LastReview>,
    /// At most [`MAX_WORKLOADS_SHOWN`], ordered by agent, uid, path, hash.
    pub workloads: Vec<WorkloadUsage>,
    /// Whether there are more rows than shown.
    pub workloads_truncated: bool,
    /// At most [`MAX_CREDENTIALS_SHOWN`], newest first.
    pub credentials: Vec<InventoryCredential>,
    /// Whether there are more credentials than shown.
    pub credentials_truncated: bool,
    /// The database credentials served under the entry: at most [`MAX_LEASES_SHOWN`] leases,
    /// ordered by id.
    pub leases: Vec<InventoryLease>,
    /// Whether there are more leases than shown.
    pub leases_truncated: bool,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// One of [`FINDING_KINDS`].
    pub kind: String,
    /// One of [`SEVERITIES`].
    pub severity: String,
    /// One of [`NHI_CATEGORIES`].
    pub category: String,
    /// The risk's name (`Improper Offboarding`, ...).
    pub category_name: String,
    /// One of [`SUBJECT_KINDS`].
    pub subject_kind: String,
    /// Entry id, agent SPIFFE ID, join token id, trust domain or issuer URL.
    pub subject_id: String,
    /// Empty for agents and join tokens, and when the owner is missing.
    pub owner: String,
    pub detail: String,
    pub remediation: String,
}

/// Answer of `GET /api/v1/inventory/report`: the findings, most severe first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingReport {
    /// Unix seconds the findings were computed at.
    pub generated_at: i64,
    pub findings: Vec<Finding>,
}

/// Filters and page of `GET /api/v1/inventory/entries`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryEntryQuery {
    /// Exactly this owner.
    pub owner: Option<String>,
    /// SPIFFE IDs starting with this, compared literally.
    pub spiffe_id_prefix: Option<String>,
    /// A duration (`30d`): entries whose last use (or creation, when never used) is at least
    /// this long ago.
    pub unused_for: Option<String>,
    pub page: PageQuery,
}

/// Filter of `GET /api/v1/inventory/owners`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerQuery {
    pub owner: Option<String>,
}

/// Filters of `GET /api/v1/inventory/report`, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingQuery {
    /// The lowest severity shown (`medium` shows medium and high).
    pub severity: Option<String>,
    /// A risk id, with or without the year (`NHI1`, `NHI1:2025`).
    pub category: Option<String>,
    pub kind: Option<String>,
    pub owner: Option<String>,
}

impl InventoryEntryQuery {
    /// The query string, without the leading `?`.
    pub fn to_query_string(&self) -> String {
        let [size, token] = self.page.singles();
        encode_pairs(
            &[
                ("owner", &self.owner),
                ("spiffe_id_prefix", &self.spiffe_id_prefix),
                ("unused_for", &self.unused_for),
                size,
                token,
            ],
            &[],
        )
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown or repeated
    /// parameters and bad percent-encoding.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| {
            let slot = match key {
                "owner" => &mut out.owner,
                "spiffe_id_prefix" => &mut out.spiffe_id_prefix,
                "unused_for" => &mut out.unused_for,
                "page_size" => &mut out.page.page_size,
                "page_token" => &mut out.page.page_token,
                _ => return Err(WireError::UnknownQueryParameter(truncate(key))),
            };
            set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

impl OwnerQuery {
    /// The query string, without the leading `?`.
    pub fn to_query_string(&self) -> String {
        encode_pairs(&[("owner", &self.owner)], &[])
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown or repeated
    /// parameters and bad percent-encoding.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| match key {
            "owner" => set_once(&mut out.owner, key, value),
            _ => Err(WireError::UnknownQueryParameter(truncate(key))),
        })?;
        Ok(out)
    }
}

impl FindingQuery {
    /// The query string, without the leading `?`.
    pub fn to_query_string(&self) -> String {
        encode_pairs(
            &[
                ("severity", &self.severity),
                ("category", &self.category),
                ("kind", &self.kind),
                ("owner", &self.owner),
            ],
            &[],
        )
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown or repeated
    /// parameters and bad percent-encoding.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| {
            let slot = match key {
                "severity" => &mut out.severity,
                "category" => &mut out.category,
                "kind" => &mut out.kind,
                "owner" => &mut out.owner,
                _ => return Err(WireError::UnknownQueryParameter(truncate(key))),
            };
            set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

/// The pattern of the `category` filter: `NHI1` to `NHI10`, optionally `:2025`, in any case.
pub(crate) fn category_pattern() -> &'static str {
    "^[Nn][Hh][Ii](?:[1-9]|10)(?::2025)?$"
}

fn owner_param(description: &str) -> Value {
    query_param(
        "owner",
        description,
        json!({"type": "string", "maxLength": MAX_OWNER_CHARS}),
    )
}

/// The inventory routes of the OpenAPI document, added to `items`.
pub(crate) fn path_items(items: &mut Map<String, Value>) {
    items.insert(paths::INVENTORY.into(), json!({
        "get": {
            "operationId": "getInventory",
            "summary": "The inventory's counts (entries, usage, agents, join tokens, revocations, federations, issuers, findings by severity) and every owner with what it owns",
            "responses": {
                "200": ok_json("The counts and owners", schema_ref("InventorySummary")),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::INVENTORY_ENTRIES.into(), json!({
        "get": {
            "operationId": "listInventoryEntries",
            "summary": "Entries with their usage summary, owner and last review, ordered by id, optionally filtered",
            "parameters": [
                owner_param("Only entries with exactly this owner"),
                query_param(
                    "spiffe_id_prefix",
                    "Only entries whose SPIFFE ID starts with this string (compared literally)",
                    json!({"type": "string", "maxLength": MAX_SPIFFE_ID_BYTES}),
                ),
                query_param(
                    "unused_for",
                    "Only entries whose last use (or creation, when never used) is at least this long ago: a duration such as `30d`, `12h`",
                    json!({"type": "string", "pattern": patterns::ttl_text(MAX_TTL_SECS)}),
                ),
                page_size_param(),
                page_token_param(),
            ],
            "responses": {
                "200": ok_json("One page of the matching entries", schema_ref("InventoryEntryList")),
                "400": error_ref("InvalidArgument"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::INVENTORY_ENTRY.into(), json!({
        "parameters": [{
            "name": "id", "in": "path", "required": true,
            "description": "Entry id", "schema": {"type": "string"},
        }],
        "get": {
            "operationId": "getInventoryEntry",
            "summary": format!("One entry with its workloads' usage (at most {MAX_WORKLOADS_SHOWN} rows), the credentials recently issued under its SPIFFE ID (at most {MAX_CREDENTIALS_SHOWN}, newest first, token-exchange results included) and the database credentials served under it (at most {MAX_LEASES_SHOWN} leases, ordered by id)"),
            "responses": {
                "200": ok_json("The entry's inventory", schema_ref("InventoryEntryDetail")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::INVENTORY_OWNERS.into(), json!({
        "get": {
            "operationId": "listInventoryOwners",
            "summary": "Every owner of entries, federation relationships and external issuers, with how many of each and the findings about them, ordered by name",
            "parameters": [owner_param("Only this owner")],
            "responses": {
                "200": ok_json("The owners", schema_ref("OwnerList")),
                "400": error_ref("InvalidArgument"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::INVENTORY_REPORT.into(), json!({
        "get": {
            "operationId": "getInventoryReport",
            "summary": "The governance findings, most severe first, each with its OWASP Non-Human Identities Top 10 (2025) risk and a one-line remediation",
            "parameters": [
                query_param("severity", "Only findings at least this severe", json!({"type": "string", "enum": SEVERITIES})),
                query_param("category", "Only findings of this OWASP NHI risk (`NHI1` or `NHI1:2025`, any case)", json!({"type": "string", "pattern": category_pattern()})),
                query_param("kind", "Only findings of this kind", json!({"type": "string", "enum": FINDING_KINDS})),
                owner_param("Only findings about what this owner owns"),
            ],
            "responses": {
                "200": ok_json("The findings", schema_ref("FindingReport")),
                "400": error_ref("InvalidArgument"),
                "500": error_ref("Internal"),
            },
        },
    }));
}

/// The component schemas of the inventory routes.
pub(crate) fn schemas() -> Value {
    let count = json!({"type": "integer", "minimum": 0});
    let time = json!({"type": "integer", "description": "Unix seconds"});
    let nullable = |name: &str| json!({"anyOf": [schema_ref(name), {"type": "null"}]});
    json!({
        "InventorySummary": {
            "type": "object",
            "required": ["generated_at", "entries", "node_aliases", "entries_with_usage", "workloads",
                         "fetches", "svids_issued", "agents", "agents_banned", "agents_seen_last_day",
                         "join_tokens_pending", "revocations", "federations", "external_issuers",
                         "findings", "owners"],
            "properties": {
                "generated_at": time,
                "entries": count,
                "node_aliases": count,
                "entries_with_usage": count,
                "workloads": count,
                "fetches": count,
                "svids_issued": count,
                "agents": count,
                "agents_banned": count,
                "agents_seen_last_day": count,
                "join_tokens_pending": count,
                "revocations": count,
                "federations": count,
                "external_issuers": count,
                "findings": schema_ref("FindingCounts"),
                "owners": {"type": "array", "items": schema_ref("OwnerSummary")},
            },
        },
        "FindingCounts": {
            "type": "object",
            "required": ["high", "medium", "low"],
            "properties": {"high": count, "medium": count, "low": count},
        },
        "OwnerSummary": {
            "type": "object",
            "required": ["owner", "entries", "federations", "issuers", "findings"],
            "properties": {
                "owner": {"type": "string"},
                "entries": count,
                "federations": count,
                "issuers": count,
                "findings": count,
            },
        },
        "OwnerList": {
            "type": "object",
            "required": ["owners"],
            "properties": {"owners": {"type": "array", "items": schema_ref("OwnerSummary")}},
        },
        "UsageSummary": {
            "type": "object",
            "required": ["workloads", "first_seen", "last_seen", "fetches", "svids_issued"],
            "properties": {
                "workloads": count,
                "first_seen": time,
                "last_seen": time,
                "fetches": count,
                "svids_issued": count,
            },
        },
        "LastReview": {
            "type": "object",
            "required": ["reviewed_by", "reviewed_at", "note"],
            "properties": {
                "reviewed_by": {"type": "string"},
                "reviewed_at": time,
                "note": {"type": "string"},
            },
        },
        "InventoryEntry": {
            "type": "object",
            "required": ["id", "spiffe_id", "parent_id", "owner", "admin", "downstream", "created_at",
                         "expires_at", "usage", "last_review"],
            "properties": {
                "id": {"type": "string"},
                "spiffe_id": {"type": "string"},
                "parent_id": {"type": "string"},
                "owner": {"type": "string"},
                "admin": {"type": "boolean"},
                "downstream": {"type": "boolean"},
                "created_at": time,
                "expires_at": {"type": ["integer", "null"], "description": "Unix seconds; null = never"},
                "usage": nullable("UsageSummary"),
                "last_review": nullable("LastReview"),
            },
        },
        "InventoryEntryList": {
            "type": "object",
            "required": ["entries"],
            "properties": {
                "entries": {"type": "array", "items": schema_ref("InventoryEntry")},
                "next_page_token": {"type": "string", "description": "Reads the next page; absent on the last page"},
            },
        },
        "WorkloadUsage": {
            "type": "object",
            "required": ["agent_id", "uid", "binary_path", "binary_sha256", "first_seen", "last_seen",
                         "fetches", "svids_issued"],
            "properties": {
                "agent_id": {"type": "string", "description": "The agent (node) that served the workload"},
                "uid": {"type": "integer", "minimum": 0},
                "binary_path": {"type": "string", "description": "Empty when the agent could not read it"},
                "binary_sha256": {"type": "string", "description": "Lowercase hex; empty when not computed"},
                "first_seen": time,
                "last_seen": time,
                "fetches": count,
                "svids_issued": count,
            },
        },
        "InventoryCredential": {
            "type": "object",
            "required": ["kind", "id", "issued_to", "authority_id", "issued_at", "expires_at", "revoked",
                         "revoked_at"],
            "properties": {
                "kind": {"type": "string", "enum": ["x509_svid", "jwt_svid"]},
                "id": {"type": "string", "description": "Serial in lowercase hex, or the `jti`"},
                "issued_to": {"type": "string", "description": "The agent or token-exchange client it was issued to"},
                "authority_id": {"type": "string"},
                "issued_at": time,
                "expires_at": time,
                "revoked": {"type": "boolean"},
                "revoked_at": {"type": ["integer", "null"], "description": "Unix seconds; null unless revoked"},
            },
        },
        "InventoryLease": {
            "type": "object",
            "description": "A database credential brokered for a workload served under the entry: its lease",
            "required": ["id", "target", "role", "username", "state", "created_at", "expires_at"],
            "properties": {
                "id": {"type": "string"},
                "target": {"type": "string", "description": "The credential target's name"},
                "role": {"type": "string", "description": "The target's role the credential was created for"},
                "username": {"type": "string", "description": "The database user"},
                "state": schema_ref("LeaseState"),
                "created_at": time,
                "expires_at": {"type": "integer", "description": "Unix seconds: the credential stops working at this time"},
                "revoked_at": {"type": "integer", "description": "Unix seconds; absent unless revoked"},
                "revoke_reason": {"type": "string", "description": "Why it was revoked; absent until a revocation starts"},
            },
        },
        "InventoryEntryDetail": {
            "type": "object",
            "required": ["entry", "usage", "last_review", "workloads", "workloads_truncated",
                         "credentials", "credentials_truncated", "leases", "leases_truncated"],
            "properties": {
                "entry": schema_ref("Entry"),
                "usage": nullable("UsageSummary"),
                "last_review": nullable("LastReview"),
                "workloads": {"type": "array", "maxItems": MAX_WORKLOADS_SHOWN, "items": schema_ref("WorkloadUsage")},
                "workloads_truncated": {"type": "boolean"},
                "credentials": {"type": "array", "maxItems": MAX_CREDENTIALS_SHOWN, "items": schema_ref("InventoryCredential")},
                "credentials_truncated": {"type": "boolean"},
                "leases": {"type": "array", "maxItems": MAX_LEASES_SHOWN, "items": schema_ref("InventoryLease")},
                "leases_truncated": {"type": "boolean"},
            },
        },
        "Finding": {
            "type": "object",
            "required": ["kind", "severity", "category", "category_name", "subject_kind", "subject_id",
                         "owner", "detail", "remediation"],
            "properties": {
                "kind": {"type": "string", "enum": FINDING_KINDS},
                "severity": {"type": "string", "enum": SEVERITIES},
                "category": {"type": "string", "enum": NHI_CATEGORIES, "description": "OWASP Non-Human Identities Top 10 (2025) risk id"},
                "category_name": {"type": "string"},
                "subject_kind": {"type": "string", "enum": SUBJECT_KINDS},
                "subject_id": {"type": "string"},
                "owner": {"type": "string", "description": "Empty for agents and join tokens, and when missing"},
                "detail": {"type": "string", "description": "One line"},
                "remediation": {"type": "string", "description": "One line"},
            },
        },
        "FindingReport": {
            "type": "object",
            "required": ["generated_at", "findings"],
            "properties": {
                "generated_at": time,
                "findings": {"type": "array", "items": schema_ref("Finding")},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn assert_schema_matches<T: Serialize>(name: &str, sample: &T) {
        let all = schemas();
        let schema = &all[name];
        let properties = keys(&schema["properties"]);
        assert_eq!(
            properties,
            keys(&serde_json::to_value(sample).unwrap()),
            "schema {name} vs its Rust type"
        );
        for required in schema["required"].as_array().unwrap() {
            assert!(properties.contains(required.as_str().unwrap()), "{name}");
        }
    }

    fn usage() -> UsageSummary {
        UsageSummary {
            workloads: 1,
            first_seen: 1,
            last_seen: 2,
            fetches: 3,
            svids_issued: 4,
        }
    }

    fn review() -> LastReview {
        LastReview {
            reviewed_by: "alice".into(),
            reviewed_at: 5,
            note: "ok".into(),
        }
    }

    #[test]
    fn schemas_list_exactly_the_fields_of_the_wire_types() {
        let owner = OwnerSummary {
            owner: "team".into(),
            entries: 1,
            federations: 0,
            issuers: 0,
            findings: 2,
        };
        assert_schema_matches(
            "InventorySummary",
            &InventorySummary {
                generated_at: 1,
                entries: 1,
                node_aliases: 0,
                entries_with_usage: 1,
                workloads: 1,
                fetches: 1,
                svids_issued: 1,
                agents: 1,
                agents_banned: 0,
                agents_seen_last_day: 1,
                join_tokens_pending: 0,
                revocations: 0,
                federations: 0,
                external_issuers: 0,
                findings: FindingCounts::default(),
                owners: vec![owner.clone()],
            },
        );
        assert_schema_matches("FindingCounts", &FindingCounts::default());
        assert_schema_matches("OwnerSummary", &owner);
        assert_schema_matches(
            "OwnerList",
            &OwnerList {
                owners: vec![owner],
            },
        );
        assert_schema_matches("UsageSummary", &usage());
        assert_schema_matches("LastReview", &review());
        let entry = InventoryEntry {
            id: "e".into(),
            spiffe_id: "spiffe://td/a".into(),
            parent_id: "spiffe://td/p".into(),
            owner: "team".into(),
            admin: false,
            downstream: false,
            created_at: 1,
            expires_at: None,
            usage: Some(usage()),
            last_review: None,
        };
        assert_schema_matches("InventoryEntry", &entry);
        assert_schema_matches(
            "InventoryEntryList",
            &InventoryEntryList {
                entries: vec![entry],
                next_page_token: Some("t".into()),
            },
        );
        let workload = WorkloadUsage {
            agent_id: "spiffe://td/sigil/agent/join_token/a".into(),
            uid: 1000,
            binary_path: "/bin/x".into(),
            binary_sha256: String::new(),
            first_seen: 1,
            last_seen: 2,
            fetches: 3,
            svids_issued: 1,
        };
        assert_schema_matches("WorkloadUsage", &workload);
        let credential = InventoryCredential {
            kind: "jwt_svid".into(),
            id: "j".into(),
            issued_to: "spiffe://td/client".into(),
            authority_id: "k".into(),
            issued_at: 1,
            expires_at: 2,
            revoked: true,
            revoked_at: Some(2),
        };
        assert_schema_matches("InventoryCredential", &credential);
        let lease = InventoryLease {
            id: format!("lease_{}", "0".repeat(32)),
            target: "pg".into(),
            role: "ro".into(),
            username: "v_ro_1".into(),
            state: "revoked".into(),
            created_at: 1,
            expires_at: 2,
            revoked_at: Some(2),
            revoke_reason: Some("expired".into()),
        };
        assert_schema_matches("InventoryLease", &lease);
        // The optional fields are absent, never null.
        let active = serde_json::to_value(InventoryLease {
            state: "active".into(),
            revoked_at: None,
            revoke_reason: None,
            ..lease.clone()
        })
        .unwrap();
        assert!(active.get("revoked_at").is_none(), "{active}");
        assert!(active.get("revoke_reason").is_none(), "{active}");
        let lease_schema = &schemas()["InventoryLease"];
        for required in lease_schema["required"].as_array().unwrap() {
            assert!(
                active.get(required.as_str().unwrap()).is_some(),
                "{required}"
            );
        }
        let sample_entry: Entry = serde_json::from_value(json!({
            "id": "e", "spiffe_id": "spiffe://td/a", "parent_id": "spiffe://td/p",
            "selectors": ["unix:uid:1"], "x509_svid_ttl": 0, "jwt_svid_ttl": 0, "dns_names": [],
            "federates_with": [], "admin": false, "downstream": false, "hint": "", "owner": "t",
            "description": "", "expires_at": null, "revision": 1, "created_at": 1, "updated_at": 1,
        }))
        .unwrap();
        assert_schema_matches(
            "InventoryEntryDetail",
            &InventoryEntryDetail {
                entry: sample_entry,
                usage: None,
                last_review: Some(review()),
                workloads: vec![workload],
                workloads_truncated: false,
                credentials: vec![credential],
                credentials_truncated: true,
                leases: vec![lease],
                leases_truncated: false,
            },
        );
        let finding = Finding {
            kind: "entry_unused".into(),
            severity: "medium".into(),
            category: "NHI1:2025".into(),
            category_name: "Improper Offboarding".into(),
            subject_kind: "entry".into(),
            subject_id: "e".into(),
            owner: "team".into(),
            detail: "d".into(),
            remediation: "r".into(),
        };
        assert_schema_matches("Finding", &finding);
        assert_schema_matches(
            "FindingReport",
            &FindingReport {
                generated_at: 1,
                findings: vec![finding],
            },
        );
    }

    #[test]
    fn queries_round_trip_and_refuse_unknown_or_repeated_parameters() {
        let entries = InventoryEntryQuery {
            owner: Some("team a&b".into()),
            spiffe_id_prefix: Some("spiffe://td/x%".into()),
            unused_for: Some("30d".into()),
            page: PageQuery {
                page_size: Some("2".into()),
                page_token: Some("abc".into()),
            },
        };
        assert_eq!(
            InventoryEntryQuery::parse(&entries.to_query_string()).unwrap(),
            entries
        );
        let owners = OwnerQuery {
            owner: Some("o w".into()),
        };
        assert_eq!(
            OwnerQuery::parse(&owners.to_query_string()).unwrap(),
            owners
        );
        let report = FindingQuery {
            severity: Some("high".into()),
            category: Some("NHI1".into()),
            kind: Some("entry_unused".into()),
            owner: Some("t".into()),
        };
        assert_eq!(
            FindingQuery::parse(&report.to_query_string()).unwrap(),
            report
        );
        assert_eq!(FindingQuery::default().to_query_string(), "");
        assert_eq!(
            FindingQuery::parse("kinds=x"),
            Err(WireError::UnknownQueryParameter("kinds".into()))
        );
        assert_eq!(
            InventoryEntryQuery::parse("unused_for=1d&unused_for=2d"),
            Err(WireError::RepeatedQueryParameter("unused_for".into()))
        );
        assert_eq!(
            OwnerQuery::parse("page_size=1"),
            Err(WireError::UnknownQueryParameter("page_size".into()))
        );
    }

    #[test]
    fn documented_parameters_are_those_the_queries_encode() {
        let mut items = Map::new();
        path_items(&mut items);
        let documented = |path: &str| -> BTreeSet<String> {
            items[path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let encoded = |query: String| -> BTreeSet<String> {
            query
                .split('&')
                .map(|p| p.split_once('=').unwrap().0.to_owned())
                .collect()
        };
        let all = Some("x".to_owned());
        let entries = InventoryEntryQuery {
            owner: all.clone(),
            spiffe_id_prefix: all.clone(),
            unused_for: all.clone(),
            page: PageQuery {
                page_size: all.clone(),
                page_token: all.clone(),
            },
        };
        assert_eq!(
            documented(paths::INVENTORY_ENTRIES),
            encoded(entries.to_query_string())
        );
        let report = FindingQuery {
            severity: all.clone(),
            category: all.clone(),
            kind: all.clone(),
            owner: all.clone(),
        };
        assert_eq!(
            documented(paths::INVENTORY_REPORT),
            encoded(report.to_query_string())
        );
        let owners = OwnerQuery { owner: all };
        assert_eq!(
            documented(paths::INVENTORY_OWNERS),
            encoded(owners.to_query_string())
        );
    }

    #[test]
    fn category_pattern_accepts_the_ten_ids_with_or_without_the_year() {
        let re = regex::Regex::new(category_pattern()).unwrap();
        for id in NHI_CATEGORIES {
            assert!(re.is_match(id), "{id}");
            assert!(re.is_match(&id.replace(":2025", "").to_lowercase()), "{id}");
        }
        for bad in ["NHI0", "NHI11", "NHI1:2024", "NHI", "nhi01", " NHI1"] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn inventory_entry_path_keeps_the_id_in_one_segment() {
        assert_eq!(
            paths::inventory_entry("a/b"),
            "/api/v1/inventory/entries/a%2Fb"
        );
        assert_eq!(
            paths::INVENTORY_ENTRY.replace("{id}", "x"),
            paths::inventory_entry("x")
        );
    }
}
