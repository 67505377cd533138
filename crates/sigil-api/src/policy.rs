//! The Cedar policy set on the wire: `GET /api/v1/policy` (what is in force),
//! `POST /api/v1/policy/decide` (a dry-run decision) and `POST /api/v1/policy/reload`, with the
//! component schemas of their bodies.
//!
//! The decision request itself is not mirrored here: the server reads it straight into
//! `sigil_policy::DecisionRequest`, the one definition of what a request is; the `DecisionRequest`
//! schema below states the same shape for the OpenAPI document.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::schemas::schema_ref;

/// The answer of `GET /api/v1/policy`: the policy set in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    /// SHA-256 hex over the directory's files, or `default` for the built-in default set.
    pub hash: String,
    /// How many policies the set holds.
    pub policies: u64,
    /// The policy ids, in file order.
    pub ids: Vec<String>,
    /// The actions requests may name (built-in and operator-defined), sorted.
    pub actions: Vec<String>,
    /// The directory reloads read; `null` when the built-in default is in force without one.
    pub dir: Option<String>,
}

/// Whether a decision allows, as a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyVerdict {
    /// Some permit applies and no forbid does.
    Allow,
    /// Anything else.
    Deny,
}

impl PolicyVerdict {
    /// `Allow` when `allowed`.
    pub fn of(allowed: bool) -> Self {
        if allowed { Self::Allow } else { Self::Deny }
    }

    /// `allow` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The answer of `POST /api/v1/policy/decide`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The same as a word: `allow` or `deny`.
    pub decision: PolicyVerdict,
    /// The ids of the policies that decided (the permits of an allow, the forbids of a denial;
    /// empty for a default deny), sorted.
    pub policies: Vec<String>,
    /// Errors met while deciding (a request over a bound, an unknown action, a request not
    /// matching the schema, a policy that failed to evaluate), sorted.
    pub errors: Vec<String>,
    /// The hash of the policy set that decided.
    pub policy_hash: String,
}

impl PolicyDecision {
    /// A decision answer; `decision` follows `allowed`.
    pub fn new(
        allowed: bool,
        policies: Vec<String>,
        errors: Vec<String>,
        policy_hash: String,
    ) -> Self {
        Self {
            allowed,
            decision: PolicyVerdict::of(allowed),
            policies,
            errors,
            policy_hash,
        }
    }
}

/// The answer of a successful `POST /api/v1/policy/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReloaded {
    /// The hash of the set in force after the reload (unchanged when the files are).
    pub hash: String,
}

/// The component schemas of the policy routes.
pub(crate) fn schemas() -> Value {
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let nullable_id = json!({"anyOf": [schema_ref("SpiffeId"), {"type": "null"}]});
    let nullable_string = json!({"type": ["string", "null"]});
    json!({
        "PolicyStatus": {
            "type": "object",
            "required": ["hash", "policies", "ids", "actions", "dir"],
            "properties": {
                "hash": {"type": "string", "description": "SHA-256 hex over the policy directory's files, or `default` for the built-in default"},
                "policies": {"type": "integer", "minimum": 0},
                "ids": {"type": "array", "items": {"type": "string"}, "description": "Policy ids, in file order"},
                "actions": {"type": "array", "items": {"type": "string"}, "description": "The actions a request may name, sorted"},
                "dir": {"type": ["string", "null"], "description": "The policy directory; null without one"},
            },
        },
        "PolicyAgent": {
            "type": "object",
            "additionalProperties": false,
            "required": ["spiffe_id"],
            "properties": {
                "spiffe_id": schema_ref("SpiffeId"),
                "attestation_type": {"type": "string"},
                "node_selectors": strings,
            },
        },
        "PolicyPrincipal": {
            "description": "Who asks: a workload, a node agent, or the subject of an external token",
            "oneOf": [
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "spiffe_id"],
                    "properties": {
                        "type": {"const": "workload"},
                        "spiffe_id": schema_ref("SpiffeId"),
                        "selectors": strings,
                        "owner": {"type": "string"},
                        "labels": strings,
                        "agent": {"anyOf": [schema_ref("PolicyAgent"), {"type": "null"}]},
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "spiffe_id"],
                    "properties": {
                        "type": {"const": "agent"},
                        "spiffe_id": schema_ref("SpiffeId"),
                        "attestation_type": {"type": "string"},
                        "node_selectors": strings,
                    },
                },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "issuer", "subject"],
                    "properties": {
                        "type": {"const": "external"},
                        "issuer": {"type": "string"},
                        "subject": {"type": "string"},
                        "spiffe_id": nullable_id,
                        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            ],
        },
        "PolicyContext": {
            "type": "object",
            "additionalProperties": false,
            "description": "Request-time facts; the clock facts (`now`, `hour_utc`, `weekday_utc`) come from the server",
            "properties": {
                "audience": strings,
                "scopes": strings,
                "source_address": nullable_string,
                "intent": nullable_string,
                "actors": strings,
                "claims": {"type": "object", "description": "Token claims; values that are not strings are ignored"},
            },
        },
        "DecisionRequest": {
            "type": "object",
            "additionalProperties": false,
            "description": "May `principal` do `action` on `resource` in `context`? A request over a bound (lists of 256 items, strings of 4 KiB, a context of 64 KiB), naming an unknown action or not matching the schema is answered as a denial with the reason in `errors`",
            "required": ["principal", "action", "resource"],
            "properties": {
                "principal": schema_ref("PolicyPrincipal"),
                "action": {"type": "string", "description": "`IssueX509Svid`, `IssueJwtSvid`, `Exchange` or an operator-defined action"},
                "resource": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["id", "kind"],
                    "properties": {"id": {"type": "string"}, "kind": {"type": "string"}},
                },
                "context": schema_ref("PolicyContext"),
            },
        },
        "PolicyDecision": {
            "type": "object",
            "required": ["allowed", "decision", "policies", "errors", "policy_hash"],
            "properties": {
                "allowed": {"type": "boolean"},
                "decision": {"type": "string", "enum": ["allow", "deny"]},
                "policies": {"type": "array", "items": {"type": "string"}, "description": "Ids of the policies that decided, sorted; empty for a default deny"},
                "errors": {"type": "array", "items": {"type": "string"}, "description": "Why the request could not be evaluated, or policies that failed to evaluate"},
                "policy_hash": {"type": "string"},
            },
        },
        "PolicyReloaded": {
            "type": "object",
            "required": ["hash"],
            "properties": {"hash": {"type": "string", "description": "The hash of the set in force after the reload"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_word_follows_allowed() {
        let allow = PolicyDecision::new(true, vec!["p".into()], vec![], "h".into());
        assert_eq!(
            serde_json::to_value(&allow).unwrap(),
            json!({"allowed": true, "decision": "allow", "policies": ["p"], "errors": [], "policy_hash": "h"})
        );
        let deny = PolicyDecision::new(false, vec![], vec!["e".into()], "h".into());
        assert_eq!(deny.decision, PolicyVerdict::Deny);
        assert_eq!(deny.decision.as_str(), "deny");
    }

    #[test]
    fn status_without_a_directory_has_a_null_dir() {
        let status = PolicyStatus {
            hash: "default".into(),
            policies: 2,
            ids: vec!["default:issue".into(), "default:exchange".into()],
            actions: vec!["Exchange".into()],
            dir: None,
        };
        assert_eq!(serde_json::to_value(&status).unwrap()["dir"], Value::Null);
    }
}
