//! The component schemas of the OpenAPI document: every request body states exactly what the
//! server accepts (formats as `pattern`, lengths, ranges, no `null` where a value is optional),
//! for the trust domain the server serves.

use serde_json::{Value, json};
use sigil_spiffe::id::MAX_SPIFFE_ID_BYTES;
use sigil_spiffe::{AuthorityKind, AuthorityState, MAX_AUTHORITY_ID_CHARS};

use crate::entries::{
    MAX_DESCRIPTION_CHARS, MAX_ENTRY_BATCH, MAX_ENTRY_DNS_NAMES, MAX_ENTRY_FEDERATES_WITH,
    MAX_ENTRY_LABELS, MAX_ENTRY_SELECTORS, MAX_HINT_CHARS, MAX_LABEL_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS, MAX_OWNER_CHARS,
};
use crate::join_tokens::{DEFAULT_JOIN_TOKEN_TTL_SECS, MAX_JOIN_TOKEN_TTL_SECS};
use crate::revocations::{MAX_JTI_CHARS, MAX_REVOCATION_REASON_CHARS, MAX_SERIAL_TEXT_CHARS};
use crate::{ErrorCode, patterns};

/// Longest bundle endpoint URL accepted, in bytes (the datastore's limit; the URL is ASCII, so
/// also in characters).
pub const MAX_BUNDLE_ENDPOINT_URL_BYTES: usize = 2048;

/// Longest DNS name, in bytes (RFC 1035 §2.3.4, without the trailing dot).
pub const MAX_DNS_NAME_BYTES: usize = 253;

/// Every component schema, for a server of trust domain `td`.
pub(crate) fn schemas(td: &str) -> Value {
    let string_array = json!({"type": "array", "items": {"type": "string"}});
    let mut all = json!({
        "SpiffeId": {
            "type": "string",
            "description": "A SPIFFE ID in any trust domain",
            "pattern": patterns::any_spiffe_id(),
            "maxLength": MAX_SPIFFE_ID_BYTES,
        },
        "Selector": selector(),
        "EntryTtl": {
            "description": "Whole seconds (0 = server default) or a duration such as `90s`, `15m`, `1h`, `2d`, at most 366 days",
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": sigil_spiffe::ttl::MAX_TTL_SECS},
                {"type": "string", "pattern": patterns::ttl_text(sigil_spiffe::ttl::MAX_TTL_SECS)},
            ],
        },
        "JoinTokenTtl": {
            "description": format!("Whole seconds or a duration such as `15m`, `1h`, `2d`; default {DEFAULT_JOIN_TOKEN_TTL_SECS} seconds, at most {MAX_JOIN_TOKEN_TTL_SECS}"),
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_JOIN_TOKEN_TTL_SECS},
                {"type": "string", "pattern": patterns::ttl_text(MAX_JOIN_TOKEN_TTL_SECS)},
            ],
        },
        "EntryCreateRequest": entry_request(td, false),
        "EntryReplaceRequest": entry_request(td, true),
        "EntryBatchCreateRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["entries"],
            "properties": {
                "entries": {
                    "type": "array",
                    "maxItems": MAX_ENTRY_BATCH,
                    "items": schema_ref("EntryCreateRequest"),
                    "description": "Stored all or nothing, in this order",
                },
            },
        },
        "EntryBatch": {
            "type": "object",
            "required": ["entries"],
            "properties": {
                "entries": {"type": "array", "items": schema_ref("Entry"), "description": "The stored entries, in the request's order"},
            },
        },
        "Entry": entry(),
        "EntryList": {
            "type": "object",
            "required": ["entries"],
            "properties": {
                "entries": {"type": "array", "items": schema_ref("Entry")},
                "next_page_token": {"type": "string", "description": "Reads the next page; absent on the last page"},
            },
        },
        "CreateJoinTokenRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {"ttl": schema_ref("JoinTokenTtl")},
        },
        "JoinTokenCreated": {
            "type": "object",
            "required": ["id", "token", "agent_id", "expires_at"],
            "properties": {
                "id": {"type": "string", "description": "Public id; the last segment of agent_id"},
                "token": {"type": "string", "description": "The secret (base64url); the server keeps only its SHA-256"},
                "agent_id": {"type": "string", "description": "SPIFFE ID an agent attesting with this token receives"},
                "expires_at": {"type": "integer", "description": "Unix seconds"},
            },
        },
        "Agent": {
            "type": "object",
            "required": ["spiffe_id", "attestation_type", "selectors", "serial", "expires_at",
                         "banned", "can_reattest", "created_at", "last_seen"],
            "properties": {
                "spiffe_id": {"type": "string"},
                "attestation_type": {"type": "string"},
                "selectors": string_array,
                "serial": {"type": "string", "description": "Hex serial of the current agent SVID"},
                "expires_at": {"type": "integer", "description": "Unix seconds"},
                "banned": {"type": "boolean"},
                "can_reattest": {"type": "boolean"},
                "created_at": {"type": "integer", "description": "Unix seconds"},
                "last_seen": {"type": "integer", "description": "Unix seconds"},
            },
        },
        "AgentList": {
            "type": "object",
            "required": ["agents"],
            "properties": {
                "agents": {"type": "array", "items": schema_ref("Agent")},
                "next_page_token": {"type": "string", "description": "Reads the next page; absent on the last page"},
            },
        },
        "AuthorityId": {
            "type": "string",
            "description": "Lowercase hex subject key id (X.509) or `kid` (JWT)",
            "pattern": patterns::authority_id(),
            "maxLength": MAX_AUTHORITY_ID_CHARS,
        },
        "AuthorityKind": {
            "type": "string",
            "enum": AuthorityKind::ALL.map(AuthorityKind::as_str),
        },
        "AuthorityState": {
            "type": "string",
            "description": "prepared (published, not signing) → active (signing) → old (replaced, trusted until it expires) → tainted (what it signed is replaced at once) → revoked (out of the bundle)",
            "enum": AuthorityState::ALL.map(AuthorityState::as_str),
        },
        "Authority": {
            "type": "object",
            "description": "A signing authority; never carries a private key",
            "required": ["id", "kind", "state", "not_before", "not_after"],
            "properties": {
                "id": {"type": "string"},
                "kind": schema_ref("AuthorityKind"),
                "state": schema_ref("AuthorityState"),
                "issuer_id": {"type": "string", "description": "The root that signed an intermediate; absent otherwise"},
                "not_before": {"type": "integer", "description": "Unix seconds"},
                "not_after": {"type": "integer", "description": "Unix seconds"},
                "certificate_pem": {"type": "string", "description": "The certificate as a PEM CERTIFICATE block (X.509 kinds); absent for JWT keys"},
            },
        },
        "AuthorityList": {
            "type": "object",
            "required": ["authorities"],
            "properties": {"authorities": {"type": "array", "items": schema_ref("Authority")}},
        },
        "PrepareAuthorityRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind"],
            "properties": {"kind": schema_ref("AuthorityKind")},
        },
        "RevokeRequest": {
            "type": "object",
            "description": "Exactly one of `serial` (an X509-SVID) and `jti` (a JWT-SVID) this server issued that has not expired",
            "additionalProperties": false,
            "oneOf": [{"required": ["serial"]}, {"required": ["jti"]}],
            "properties": {
                "serial": {
                    "type": "string",
                    "description": "The X509-SVID's serial number in hex, any case; `:` separators are ignored and leading zeros do not matter (`4A:1B:…` and `4a1b…` name the same serial)",
                    "pattern": patterns::serial_text(),
                    "maxLength": MAX_SERIAL_TEXT_CHARS,
                },
                "jti": {
                    "type": "string",
                    "description": "The JWT-SVID's `jti` claim",
                    "pattern": patterns::jti(),
                    "maxLength": MAX_JTI_CHARS,
                },
                "reason": {
                    "type": "string",
                    "description": "Why, for the record; absent = empty",
                    "maxLength": MAX_REVOCATION_REASON_CHARS,
                    "pattern": patterns::single_line(),
                },
            },
        },
        "Revocation": {
            "type": "object",
            "description": "A revoked credential; on the deny-list until the credential expires",
            "required": ["kind", "id", "spiffe_id", "authority_id", "reason", "revoked_at", "expires_at"],
            "properties": {
                "kind": {"type": "string", "enum": ["x509_svid", "jwt_svid"]},
                "id": {"type": "string", "description": "X509-SVID: the serial in lowercase hex without colons or leading zeros; JWT-SVID: the `jti`"},
                "spiffe_id": {"type": "string"},
                "authority_id": {"type": "string", "description": "The authority that signed it: hex subject key id (X.509) or `kid` (JWT)"},
                "reason": {"type": "string", "description": "Empty when none was given"},
                "revoked_at": {"type": "integer", "description": "Unix seconds"},
                "expires_at": {"type": "integer", "description": "Unix seconds when the revoked credential expires"},
            },
        },
        "RevocationList": {
            "type": "object",
            "required": ["revocations"],
            "properties": {"revocations": {"type": "array", "items": schema_ref("Revocation")}},
        },
        "Jwk": {
            "type": "object",
            "required": ["kty"],
            "properties": {
                "kty": {"type": "string"},
                "use": {"type": "string", "enum": ["x509-svid", "jwt-svid"]},
                "kid": {"type": "string"},
                "alg": {"type": "string"},
                "crv": {"type": "string"},
                "x": {"type": "string"},
                "y": {"type": "string"},
                "n": {"type": "string"},
                "e": {"type": "string"},
                "x5c": {"type": "array", "items": {"type": "string"}, "description": "Standard base64 DER certificates"},
            },
        },
        "BundleDocument": {
            "type": "object",
            "description": "SPIFFE bundle format: a JWK Set with spiffe_sequence and spiffe_refresh_hint",
            "required": ["keys"],
            "properties": {
                "keys": {"type": "array", "items": schema_ref("Jwk")},
                "spiffe_sequence": {"type": "integer", "minimum": 0},
                "spiffe_refresh_hint": {"type": "integer", "minimum": 0},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "trust_domain"],
            "properties": {
                "status": {"type": "string", "const": "ok"},
                "trust_domain": {"type": "string"},
            },
        },
        "ErrorBody": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ErrorCode::ALL.map(ErrorCode::as_str)},
                        "message": {"type": "string", "description": "One line for people"},
                    },
                },
            },
        },
    });
    if let (Some(all), Value::Object(federation)) = (all.as_object_mut(), federation_schemas(td)) {
        all.extend(federation);
    }
    if let (Some(all), Value::Object(policy)) = (all.as_object_mut(), crate::policy::schemas()) {
        all.extend(policy);
    }
    if let (Some(all), Value::Object(audit)) = (all.as_object_mut(), crate::audit::schemas()) {
        all.extend(audit);
    }
    if let (Some(all), Value::Object(inventory)) =
        (all.as_object_mut(), crate::inventory::schemas())
    {
        all.extend(inventory);
    }
    if let (Some(all), Value::Object(credentials)) =
        (all.as_object_mut(), crate::credentials::schemas())
    {
        all.extend(credentials);
    }
    all
}

/// The schemas of the federation routes, for a server of trust domain `td`.
fn federation_schemas(td: &str) -> Value {
    let td_id = format!("spiffe://{td}");
    json!({
        "BundleEndpointUrl": {
            "type": "string",
            "description": "Where the foreign bundle is fetched: `https://` and a host, printable ASCII without spaces (percent-encode anything else). IPv6 literal hosts (`[…]`) are not accepted: use a DNS name",
            "pattern": patterns::bundle_endpoint_url(),
            "maxLength": MAX_BUNDLE_ENDPOINT_URL_BYTES,
        },
        "FederationOwner": {
            "type": "string",
            "maxLength": MAX_OWNER_CHARS,
            "pattern": patterns::single_line_not_blank(),
            "description": "Team or contact accountable for the relationship",
        },
        "BundleEndpointProfile": {
            "type": "string",
            "description": "How the bundle endpoint is authenticated: `https_web` (a Web PKI certificate) or `https_spiffe` (an X509-SVID with `endpoint_spiffe_id`, verified with the foreign bundle held)",
            "enum": ["https_web", "https_spiffe"],
        },
        "FederationCreateRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["trust_domain", "bundle_endpoint_url", "profile", "owner"],
            "properties": {
                "trust_domain": {
                    "type": "string",
                    "description": "The foreign trust domain, by name or ID; never the server's own",
                    "pattern": patterns::trust_domain(),
                    "not": {"enum": [td, td_id]},
                },
                "bundle_endpoint_url": schema_ref("BundleEndpointUrl"),
                "profile": schema_ref("BundleEndpointProfile"),
                "endpoint_spiffe_id": schema_ref("SpiffeId"),
                "owner": schema_ref("FederationOwner"),
                "bootstrap_bundle": {
                    "type": "string",
                    "description": "The foreign bundle to trust until the first refresh (needed for `https_spiffe`): a SPIFFE bundle document as JSON text, or PEM CERTIFICATE blocks. Stored only when no bundle of that trust domain is held. Certificates and keys that cannot be read answer 400",
                },
            },
            "oneOf": [
                {"properties": {"profile": {"const": "https_web"}}, "not": {"required": ["endpoint_spiffe_id"]}},
                {"properties": {"profile": {"const": "https_spiffe"}}, "required": ["endpoint_spiffe_id"]},
            ],
        },
        "FederationUpdateRequest": {
            "type": "object",
            "description": "Only the fields present change. When the relationship that results breaks the profile rule (`endpoint_spiffe_id` set exactly for `https_spiffe`) the answer is 409 and nothing changes",
            "additionalProperties": false,
            "properties": {
                "bundle_endpoint_url": schema_ref("BundleEndpointUrl"),
                "profile": schema_ref("BundleEndpointProfile"),
                "endpoint_spiffe_id": {
                    "description": "A SPIFFE ID sets it; null clears it",
                    "anyOf": [schema_ref("SpiffeId"), {"type": "null"}],
                },
                "owner": schema_ref("FederationOwner"),
            },
            "anyOf": [
                {"not": {"required": ["profile"]}},
                {"not": {"required": ["endpoint_spiffe_id"]}},
                {"properties": {"profile": {"const": "https_web"}, "endpoint_spiffe_id": {"type": "null"}}},
                {"properties": {"profile": {"const": "https_spiffe"}, "endpoint_spiffe_id": {"type": "string"}}},
            ],
        },
        "Federation": {
            "type": "object",
            "required": ["trust_domain", "bundle_endpoint_url", "profile", "endpoint_spiffe_id",
                         "owner", "created_at", "updated_at", "bundle_sequence", "bundle_updated_at"],
            "properties": {
                "trust_domain": {"type": "string"},
                "bundle_endpoint_url": {"type": "string"},
                "profile": schema_ref("BundleEndpointProfile"),
                "endpoint_spiffe_id": {"type": ["string", "null"], "description": "null for `https_web`"},
                "owner": {"type": "string", "description": "Team or contact accountable for the relationship; empty for one created before relationships had owners"},
                "created_at": {"type": "integer", "description": "Unix seconds"},
                "updated_at": {"type": "integer", "description": "Unix seconds"},
                "bundle_sequence": {"type": ["integer", "null"], "minimum": 0, "description": "Sequence of the foreign bundle held; null when none is held"},
                "bundle_updated_at": {"type": ["integer", "null"], "description": "Unix seconds the held bundle was stored; null when none is held"},
            },
        },
        "FederationList": {
            "type": "object",
            "required": ["federations"],
            "properties": {"federations": {"type": "array", "items": schema_ref("Federation")}},
        },
        "FederationRefreshed": {
            "type": "object",
            "required": ["trust_domain", "outcome", "sequence"],
            "properties": {
                "trust_domain": {"type": "string"},
                "outcome": {"type": "string", "enum": ["updated", "unchanged"], "description": "updated: a newer bundle was stored; unchanged: the endpoint served the bundle held"},
                "sequence": {"type": "integer", "minimum": 0, "description": "Sequence of the bundle held after the refresh"},
            },
        },
    })
}

/// A `$ref` to component schema `name`.
pub(crate) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A selector: one of the `unix` shapes the attestor emits, or any other type's `type:value`.
fn selector() -> Value {
    let mut any_of: Vec<Value> = patterns::unix_selectors()
        .into_iter()
        .map(|p| json!({"pattern": p}))
        .collect();
    any_of.push(json!({
        "pattern": patterns::any_selector(),
        "not": {"pattern": patterns::unix_type()},
    }));
    json!({
        "type": "string",
        "description": "`type:value`, such as `unix:uid:1000`. Values of the `unix` type are those the unix workload attestor emits",
        "anyOf": any_of,
    })
}

/// An entry as the API answers it.
fn entry() -> Value {
    let string_array = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "required": ["id", "spiffe_id", "parent_id", "selectors", "x509_svid_ttl", "jwt_svid_ttl",
                     "dns_names", "federates_with", "admin", "downstream", "hint", "owner",
                     "description", "labels", "expires_at", "revision", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string"},
            "spiffe_id": {"type": "string"},
            "parent_id": {"type": "string"},
            "selectors": string_array,
            "x509_svid_ttl": {"type": "integer", "minimum": 0, "description": "Seconds; 0 = server default"},
            "jwt_svid_ttl": {"type": "integer", "minimum": 0, "description": "Seconds; 0 = server default"},
            "dns_names": string_array,
            "federates_with": string_array,
            "admin": {"type": "boolean"},
            "downstream": {"type": "boolean"},
            "hint": {"type": "string"},
            "owner": {"type": "string"},
            "description": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "expires_at": {"type": ["integer", "null"], "description": "Unix seconds; null = never"},
            "revision": {"type": "integer", "minimum": 1},
            "created_at": {"type": "integer", "description": "Unix seconds"},
            "updated_at": {"type": "integer", "description": "Unix seconds"},
        },
    })
}

/// The labels of an entry request: an object of at most `MAX_ENTRY_LABELS` string values
/// under keys the datastore accepts.
fn entry_labels() -> Value {
    json!({
        "type": "object",
        "description": "Labels by key, which policy reads as the workload's `labels` (`\"key=value\"`); a replacement replaces them whole",
        "maxProperties": MAX_ENTRY_LABELS,
        "propertyNames": {"pattern": patterns::label_key(), "maxLength": MAX_LABEL_KEY_CHARS},
        "additionalProperties": {
            "type": "string",
            "pattern": patterns::label_value(),
            "maxLength": MAX_LABEL_VALUE_CHARS,
        },
    })
}

/// The body of `POST` (`replace` false) or `PUT` (`replace` true) on entries, for trust domain
/// `td`.
fn entry_request(td: &str, replace: bool) -> Value {
    let server_id = format!("spiffe://{td}/sigil/server");
    let td_id = format!("spiffe://{td}");
    let mut properties = json!({
        "spiffe_id": {
            "type": "string",
            "description": "SPIFFE ID in the server's trust domain, with a path outside the reserved `/sigil` path",
            "maxLength": MAX_SPIFFE_ID_BYTES,
            "pattern": patterns::member_id(td),
            "not": {"pattern": patterns::reserved_id(td)},
        },
        "parent_id": {
            "type": "string",
            "description": "An agent ID (`/sigil/agent/<attestor>/<id>`), the server ID (node aliases) or another workload ID, in the server's trust domain; never the entry's own spiffe_id (409)",
            "maxLength": MAX_SPIFFE_ID_BYTES,
            "anyOf": [
                {"pattern": patterns::member_id(td), "not": {"pattern": patterns::reserved_id(td)}},
                {"pattern": patterns::agent_id(td)},
                {"const": server_id},
            ],
        },
        "selectors": {"type": "array", "items": schema_ref("Selector"), "minItems": 1, "maxItems": MAX_ENTRY_SELECTORS},
        "x509_svid_ttl": schema_ref("EntryTtl"),
        "jwt_svid_ttl": schema_ref("EntryTtl"),
        "dns_names": {
            "type": "array",
            "maxItems": MAX_ENTRY_DNS_NAMES,
            "items": {"type": "string", "pattern": patterns::dns_name(), "maxLength": MAX_DNS_NAME_BYTES},
        },
        "federates_with": {
            "type": "array",
            "maxItems": MAX_ENTRY_FEDERATES_WITH,
            "description": "Other trust domains, by name or ID",
            "items": {
                "type": "string",
                "pattern": patterns::trust_domain(),
                "not": {"enum": [td, td_id]},
            },
        },
        "admin": {"type": "boolean", "default": false},
        "downstream": {"type": "boolean", "default": false},
        "hint": {"type": "string", "maxLength": MAX_HINT_CHARS, "pattern": patterns::single_line()},
        "owner": {
            "type": "string",
            "maxLength": MAX_OWNER_CHARS,
            "pattern": patterns::single_line_not_blank(),
            "description": "Team or contact accountable for this identity",
        },
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS, "pattern": patterns::single_line()},
        "labels": entry_labels(),
        "expires_at": {
            "type": "integer",
            "minimum": 1,
            "maximum": i64::MAX,
            "description": if replace {
                "Unix seconds after which the entry is no longer served; absent = never"
            } else {
                "Unix seconds after which the entry is no longer served; absent = never. A time not after the server's clock answers 409 conflict"
            },
        },
    });
    if let (true, Some(map)) = (replace, properties.as_object_mut()) {
        map.insert(
            "revision".into(),
            json!({"type": "integer", "minimum": 1, "maximum": i64::MAX, "description": "The revision last read; a mismatch answers 409 conflict"}),
        );
    }
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["spiffe_id", "parent_id", "selectors", "owner"],
        "properties": properties,
    })
}
