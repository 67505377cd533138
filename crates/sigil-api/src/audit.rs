//! Wire types of the audit routes: the list query and page, the verification answer, the
//! registered audit keys, and an entry review. Records, checkpoints and keys are
//! `sigil-audit`'s own serde types, so the CLI verifies exactly what the server hashed.

use serde::{Deserialize, Serialize};
pub use sigil_audit::{AuditKey, AuditRecord, Checkpoint};

use crate::WireError;
use crate::query::{encode_pairs, for_each_pair, set_once, truncate};

/// Most records in one page of `GET /api/v1/audit`.
pub const MAX_AUDIT_PAGE: u32 = 1000;
// The `page_size` pattern of the document spells 1 to 1000 out.
const _: () = assert!(MAX_AUDIT_PAGE == 1000);
/// Records in a page when `page_size` is absent.
pub const DEFAULT_AUDIT_PAGE: u32 = 100;

/// Filters of `GET /api/v1/audit`, as query parameters; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// An action, or every action under a prefix ending in `.` (`entry.`).
    pub action: Option<String>,
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<String>,
    /// Unix milliseconds, exclusive.
    pub until: Option<String>,
    /// Only records after this sequence (the `next_after` of the previous page).
    pub after: Option<String>,
    pub page_size: Option<String>,
}

impl AuditQuery {
    fn singles(&self) -> [(&'static str, &Option<String>); 8] {
        [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
            ("after", &self.after),
            ("page_size", &self.page_size),
        ]
    }

    /// The query string, without the leading `?` (empty when nothing is set).
    pub fn to_query_string(&self) -> String {
        encode_pairs(&self.singles(), &[])
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown or repeated
    /// parameters and bad percent-encoding; values are checked by the server.
    pub fn parse(query: &str) -> Result<Self, WireError> {
        let mut out = Self::default();
        for_each_pair(query, |key, value| {
            let slot = match key {
                "actor" => &mut out.actor,
                "action" => &mut out.action,
                "target" => &mut out.target,
                "outcome" => &mut out.outcome,
                "since" => &mut out.since,
                "until" => &mut out.until,
                "after" => &mut out.after,
                "page_size" => &mut out.page_size,
                _ => return Err(WireError::UnknownQueryParameter(truncate(key))),
            };
            set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

/// One page of audit records, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecordList {
    pub records: Vec<AuditRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// The answer of `POST /api/v1/audit/verify`: the chain in the store verified from its first
/// record, or where it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    pub verified: bool,
    /// Records verified (up to the break, if any).
    pub records: u64,
    pub last_seq: u64,
    /// The highest sequence a verified signed checkpoint covers.
    pub signed_through: u64,
    pub checkpoints: u64,
    /// The sequence where the chain breaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_at: Option<u64>,
    /// One line: what was verified, or what is wrong where.
    pub message: String,
}

/// The audit keys registered by the server replicas: pin them to verify an export offline.
impl AuditVerification {
    /// The answer for a chain that verifies; `what` names it in the message ("the audit chain",
    /// "the export").
    pub fn verified(summary: &sigil_audit::Summary, what: &str) -> Self {
        Self {
            verified: true,
            records: summary.records,
            last_seq: summary.last_seq,
            signed_through: summary.signed_through,
            checkpoints: summary.checkpoints,
            break_at: None,
            message: format!(
                "{what} verifies: {} records, signed through seq {} by {} checkpoints",
                summary.records, summary.signed_through, summary.checkpoints
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditKeyList {
    pub keys: Vec<AuditKey>,
}

/// Body of `POST /api/v1/entries/{id}/review`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryReviewRequest {
    /// Who reviewed: the entry's owner or someone speaking for them.
    pub reviewed_by: String,
    #[serde(default)]
    pub note: String,
}

/// An entry's latest review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryReview {
    pub entry_id: String,
    pub reviewed_by: String,
    /// Unix seconds.
    pub reviewed_at: i64,
    pub note: String,
}

/// The audit routes of the OpenAPI document, added to `items`.
pub(crate) fn path_items(items: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::json;
    let error = |name: &str| json!({"$ref": format!("#/components/responses/{name}")});
    let ok = |description: &str, schema: &str| json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let param = |name: &str, description: &str, schema: serde_json::Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    let string = json!({"type": "string"});
    let number = json!({"type": "string", "pattern": "^[0-9]{1,19}$"});
    items.insert(crate::paths::AUDIT.into(), json!({
        "get": {
            "operationId": "listAudit",
            "summary": "Audit records in sequence order, filtered (every filter combines with AND) and paged by sequence",
            "parameters": [
                param("actor", "Only records by this actor (`uid:<n>`, a SPIFFE ID, ...)", string.clone()),
                param("action", "Only this action, or every action under a prefix ending in `.` (`entry.`)", string.clone()),
                param("target", "Only records about this target", string.clone()),
                param("outcome", "Only this outcome", json!({"type": "string", "enum": ["success", "failure", "denied"]})),
                param("since", "Only records at or after this time, Unix milliseconds", number.clone()),
                param("until", "Only records before this time, Unix milliseconds", number.clone()),
                param("after", "Only records after this sequence (`next_after` of the previous page)", number.clone()),
                param("page_size", "Most records in the page", json!({"type": "string", "pattern": "^(?:[1-9][0-9]{0,2}|1000)$", "description": format!("1 to {MAX_AUDIT_PAGE}, default {DEFAULT_AUDIT_PAGE}")})),
            ],
            "responses": {
                "200": ok("One page of records", "AuditRecordList"),
                "400": error("InvalidArgument"),
                "500": error("Internal"),
            },
        },
    }));
    items.insert(crate::paths::AUDIT_EXPORT.into(), json!({
        "get": {
            "operationId": "exportAudit",
            "summary": "The whole audit chain as JSON lines: a header, the audit keys, the checkpoints, the records in sequence order, and a closing checkpoint this server signs over the last record, so the file verifies offline (`sigil audit verify --file`)",
            "responses": {
                "200": {"description": "The export", "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                "500": error("Internal"),
                "503": error("Unavailable"),
            },
        },
    }));
    items.insert(crate::paths::AUDIT_VERIFY.into(), json!({
        "post": {
            "operationId": "verifyAudit",
            "summary": "Verify the audit chain in the datastore from its first record: every hash, every link, every signed checkpoint (and this server's newest checkpoint, kept outside the datastore). The request has no body",
            "responses": {
                "200": ok("The verdict: verified, or the sequence where the chain breaks and what is wrong there", "AuditVerification"),
                "400": error("InvalidArgument"),
                "413": error("PayloadTooLarge"),
                "500": error("Internal"),
                "503": error("Unavailable"),
            },
        },
    }));
    items.insert(crate::paths::AUDIT_KEYS.into(), json!({
        "get": {
            "operationId": "listAuditKeys",
            "summary": "The audit keys of every server replica (public halves): pin them to verify an export offline",
            "responses": {
                "200": ok("The keys", "AuditKeyList"),
                "500": error("Internal"),
                "503": error("Unavailable"),
            },
        },
    }));
    items.insert(crate::paths::ENTRY_REVIEW.into(), json!({
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "post": {
            "operationId": "reviewEntry",
            "summary": "Record an owner's review of an entry (the latest review is kept; findings name entries not reviewed for a while)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EntryReviewRequest"}}}},
            "responses": {
                "200": ok("The review as stored", "EntryReview"),
                "400": error("InvalidArgument"),
                "404": error("NotFound"),
                "413": error("PayloadTooLarge"),
                "500": error("Internal"),
            },
        },
    }));
}

/// The component schemas of the audit routes.
pub(crate) fn schemas() -> serde_json::Value {
    use serde_json::json;
    let int = json!({"type": "integer"});
    let string = json!({"type": "string"});
    json!({
        "AuditRecord": {
            "type": "object",
            "required": ["seq", "time", "replica", "actor", "action", "target", "outcome", "details", "prev_hash", "hash"],
            "properties": {
                "seq": {"type": "integer", "minimum": 1, "description": "1, 2, 3, ... without gaps"},
                "time": {"type": "integer", "description": "Unix milliseconds"},
                "replica": {"type": "string", "description": "The server replica that appended it (empty for a single server)"},
                "actor": {"type": "string", "description": "A SPIFFE ID, `uid:<n>` for a local admin, `sigil-server` for the server itself"},
                "action": {"type": "string", "description": "`<noun>.<verb>`, e.g. `entry.create`"},
                "target": string,
                "outcome": {"type": "string", "enum": ["success", "failure", "denied"]},
                "details": {"type": "string", "description": "A JSON object as text (hashed byte for byte), or empty"},
                "prev_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "SHA-256 over the record's canonical encoding"},
            },
        },
        "AuditRecordList": {
            "type": "object",
            "required": ["records"],
            "properties": {
                "records": {"type": "array", "items": {"$ref": "#/components/schemas/AuditRecord"}},
                "next_after": {"type": "integer", "description": "Pass as `after` for the next page; absent on the last page"},
            },
        },
        "AuditVerification": {
            "type": "object",
            "required": ["verified", "records", "last_seq", "signed_through", "checkpoints", "message"],
            "properties": {
                "verified": {"type": "boolean"},
                "records": int,
                "last_seq": int,
                "signed_through": int,
                "checkpoints": int,
                "break_at": {"type": "integer", "description": "The sequence where the chain breaks"},
                "message": string,
            },
        },
        "AuditKey": {
            "type": "object",
            "required": ["key_id", "replica", "public_key", "created_at"],
            "properties": {
                "key_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "replica": string,
                "public_key": {"type": "string", "description": "Base64 DER SubjectPublicKeyInfo"},
                "created_at": {"type": "integer", "description": "Unix milliseconds"},
            },
        },
        "AuditKeyList": {
            "type": "object",
            "required": ["keys"],
            "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/AuditKey"}}},
        },
        "EntryReviewRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["reviewed_by"],
            "properties": {
                // The store keeps text without NUL characters and refuses one.
                "reviewed_by": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[^\\u0000]*$"},
                "note": {"type": "string", "maxLength": 1024, "pattern": "^[^\\u0000]*$"},
            },
        },
        "EntryReview": {
            "type": "object",
            "required": ["entry_id", "reviewed_by", "reviewed_at", "note"],
            "properties": {
                "entry_id": string,
                "reviewed_by": string,
                "reviewed_at": {"type": "integer", "description": "Unix seconds"},
                "note": string,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_round_trips_and_refuses_unknown_or_repeated_parameters() {
        let q = AuditQuery {
            actor: Some("uid:0".to_owned()),
            action: Some("entry.".to_owned()),
            after: Some("10".to_owned()),
            ..AuditQuery::default()
        };
        assert_eq!(AuditQuery::parse(&q.to_query_string()).unwrap(), q);
        assert!(AuditQuery::parse("nope=1").is_err());
        assert!(AuditQuery::parse("actor=a&actor=b").is_err());
    }
}
