//! The OpenAPI 3.1 document of the admin API, served at `GET /api/v1/openapi.json`. Hand-written
//! as JSON; the tests below check it against the serde types of this crate, the server's tests
//! check that its paths and methods are exactly the router's, and an end-to-end test runs
//! schemathesis against a live server to check that it states exactly what the server accepts.

use serde_json::{Map, Value, json};
use sigil_spiffe::TrustDomain;
use sigil_spiffe::id::MAX_SPIFFE_ID_BYTES;

use crate::schemas::{schema_ref, schemas};
use crate::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_TOKEN_CHARS, MAX_REQUEST_BODY_BYTES, paths, patterns,
};

/// The OpenAPI 3.1 document describing every route, parameter, body and error of the admin API
/// of a server for trust domain `td` (the IDs it accepts are stated for that trust domain).
pub fn openapi_document(td: &TrustDomain) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Sigil admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Administration of a Sigil server: registration entries, join tokens, agents, the \
                 trust bundle, federation relationships, the Cedar policy set, forced rotation of the signing authorities and revocation of single \
                 SVIDs. Served on the server's local admin Unix socket. Request bodies are JSON, at most {MAX_REQUEST_BODY_BYTES} bytes. Every error answers an \
                 ErrorBody."
            ),
        },
        "paths": path_items(),
        "components": {
            "schemas": schemas(td.as_str()),
            "responses": error_responses(),
        },
    })
}

fn path_items() -> Value {
    let mut items = Map::new();
    items.insert(
        paths::OPENAPI.into(),
        json!({
            "get": {
                "operationId": "getOpenApiDocument",
                "summary": "This OpenAPI document",
                "responses": {"200": ok_json("The document", json!({"type": "object"}))},
            },
        }),
    );
    items.insert(
        paths::HEALTH.into(),
        json!({
            "get": {
                "operationId": "getHealth",
                "summary": "Liveness and trust domain",
                "responses": {"200": ok_json("The server is up", schema_ref("Health"))},
            },
        }),
    );
    items.insert(paths::ENTRIES.into(), json!({
        "post": {
            "operationId": "createEntry",
            "summary": "Create a registration entry",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("EntryCreateRequest")}}},
            "responses": {
                "201": ok_json("The created entry", schema_ref("Entry")),
                "400": error_ref("InvalidArgument"),
                "409": error_ref("CreateConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
        "get": {
            "operationId": "listEntries",
            "summary": "List registration entries, optionally filtered",
            "parameters": [
                query_param("spiffe_id", "Only entries with this SPIFFE ID", schema_ref("SpiffeId")),
                query_param("parent_id", "Only entries with this parent ID", schema_ref("SpiffeId")),
                {
                    "name": "selector", "in": "query", "required": false,
                    "description": "Only entries having this selector; repeat for several (all must match)",
                    "schema": {"type": "array", "items": schema_ref("Selector")},
                    "style": "form", "explode": true,
                },
                query_param("owner", "Only entries with this owner", json!({"type": "string"})),
                query_param(
                    "spiffe_id_prefix",
                    "Only entries whose SPIFFE ID starts with this string (compared literally)",
                    json!({"type": "string", "maxLength": MAX_SPIFFE_ID_BYTES}),
                ),
                query_param(
                    "federates_with",
                    "Only entries that federate with this trust domain (by name or ID)",
                    json!({"type": "string", "pattern": patterns::trust_domain()}),
                ),
                page_size_param(),
                page_token_param(),
            ],
            "responses": {
                "200": ok_json("One page of the matching entries, ordered by id", schema_ref("EntryList")),
                "400": error_ref("InvalidArgument"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::ENTRIES_BATCH_CREATE.into(), json!({
        "post": {
            "operationId": "batchCreateEntries",
            "summary": "Create several registration entries at once, all or nothing: each is checked as by createEntry; when one is refused (the message names it by its index, counting from 0) none is stored",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("EntryBatchCreateRequest")}}},
            "responses": {
                "201": ok_json("The created entries, in the request's order", schema_ref("EntryBatch")),
                "400": error_ref("InvalidArgument"),
                "409": error_ref("CreateConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::ENTRY.into(), json!({
        "parameters": [{
            "name": "id", "in": "path", "required": true,
            "description": "Entry id", "schema": {"type": "string"},
        }],
        "get": {
            "operationId": "getEntry",
            "summary": "One registration entry",
            "responses": {
                "200": ok_json("The entry", schema_ref("Entry")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
        "put": {
            "operationId": "replaceEntry",
            "summary": "Replace a registration entry; `revision` guards against lost updates",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("EntryReplaceRequest")}}},
            "responses": {
                "200": ok_json("The entry after the update", schema_ref("Entry")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("Conflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
        "delete": {
            "operationId": "deleteEntry",
            "summary": "Delete a registration entry",
            "responses": {
                "200": ok_json("The deleted entry", schema_ref("Entry")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::JOIN_TOKENS.into(), json!({
        "post": {
            "operationId": "createJoinToken",
            "summary": "Create a one-time join token for attesting an agent",
            "requestBody": {"required": false, "content": {"application/json": {"schema": schema_ref("CreateJoinTokenRequest")}}},
            "responses": {
                "201": ok_json("The token; its secret is shown only this once", schema_ref("JoinTokenCreated")),
                "400": error_ref("InvalidArgument"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(
        paths::AGENTS.into(),
        json!({
            "get": {
                "operationId": "listAgents",
                "summary": "List attested agents, ordered by SPIFFE ID",
                "parameters": [page_size_param(), page_token_param()],
                "responses": {
                    "200": ok_json("One page of agents, ordered by SPIFFE ID", schema_ref("AgentList")),
                    "400": error_ref("InvalidArgument"),
                    "500": error_ref("Internal"),
                },
            },
        }),
    );
    items.insert(paths::AGENT.into(), json!({
        "parameters": [agent_id_parameter()],
        "get": {
            "operationId": "getAgent",
            "summary": "One attested agent",
            "responses": {
                "200": ok_json("The agent", schema_ref("Agent")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
        "delete": {
            "operationId": "evictAgent",
            "summary": "Evict an agent: delete its record, so its SVID is refused from then on and its open sync stream ends; it must attest again (a join-token agent needs a new token)",
            "responses": {
                "200": ok_json("The agent as it was before eviction", schema_ref("Agent")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::AGENT_BAN.into(), json!({
        "parameters": [agent_id_parameter()],
        "post": {
            "operationId": "banAgent",
            "summary": "Ban an agent: its record is kept and marked banned, its SVID is refused from then on and its open sync stream ends. Banning a banned agent changes nothing. The request has no body",
            "responses": {
                "200": ok_json("The banned agent", schema_ref("Agent")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(
        paths::AUTHORITIES.into(),
        json!({
            "get": {
                "operationId": "listAuthorities",
                "summary": "List the signing authorities (X.509 roots and intermediates, JWT keys) in every state",
                "responses": {
                    "200": ok_json("Every authority", schema_ref("AuthorityList")),
                    "500": error_ref("Internal"),
                },
            },
        }),
    );
    items.insert(paths::AUTHORITIES_PREPARE.into(), json!({
        "post": {
            "operationId": "prepareAuthority",
            "summary": "Prepare a successor authority of a kind now, ahead of the schedule: published in the bundle, not yet signing",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("PrepareAuthorityRequest")}}},
            "responses": {
                "201": ok_json("The prepared authority", schema_ref("Authority")),
                "400": error_ref("InvalidArgument"),
                "409": error_ref("CommandRefused"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
    }));
    for (path, operation_id, summary, answer) in [
        (
            paths::AUTHORITY_ACTIVATE,
            "activateAuthority",
            "Make a prepared authority the one that signs; the active one of its kind becomes old. Refused in the second it was prepared",
            "The activated authority",
        ),
        (
            paths::AUTHORITY_TAINT,
            "taintAuthority",
            "Mark an old authority as compromised: agents replace at once what it signed (and an intermediate under a tainted root is replaced); it stays trusted until revoked",
            "The tainted authority",
        ),
        (
            paths::AUTHORITY_REVOKE,
            "revokeAuthority",
            "Remove a tainted authority from the trust bundle: nothing it signed verifies any more for those holding the new bundle",
            "The revoked authority",
        ),
    ] {
        items.insert(
            path.into(),
            json!({
                "parameters": [{
                    "name": "id", "in": "path", "required": true,
                    "description": "The authority id", "schema": schema_ref("AuthorityId"),
                }],
                "post": {
                    "operationId": operation_id,
                    "summary": format!("{summary}. The request has no body"),
                    "responses": {
                        "200": ok_json(answer, schema_ref("Authority")),
                        "400": error_ref("InvalidArgument"),
                        "404": error_ref("NotFound"),
                        "409": error_ref("CommandRefused"),
                        "413": error_ref("PayloadTooLarge"),
                        "500": error_ref("Internal"),
                    },
                },
            }),
        );
    }
    items.insert(paths::REVOCATIONS.into(), json!({
        "post": {
            "operationId": "revokeCredential",
            "summary": "Revoke one credential this server issued, an X509-SVID by serial or a JWT-SVID by `jti`, until it expires: agents replace or drop it at once",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("RevokeRequest")}}},
            "responses": {
                "201": ok_json("The revocation", schema_ref("Revocation")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("UnknownCredential"),
                "409": error_ref("RevokeConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
        "get": {
            "operationId": "listRevocations",
            "summary": "List the revocations whose credential has not expired yet, oldest first",
            "responses": {
                "200": ok_json("Every revocation in force", schema_ref("RevocationList")),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::FEDERATIONS.into(), json!({
        "post": {
            "operationId": "createFederation",
            "summary": "Federate with a foreign trust domain: its bundle is fetched from its bundle endpoint (from now on, and whenever its refresh hint says) and sent to agents, so workloads trust it. A bootstrap bundle is stored when none is held",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("FederationCreateRequest")}}},
            "responses": {
                "201": ok_json("The created relationship", schema_ref("Federation")),
                "400": error_ref("InvalidArgument"),
                "409": error_ref("AlreadyExists"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
        "get": {
            "operationId": "listFederations",
            "summary": "List the federation relationships, ordered by trust domain, optionally filtered",
            "parameters": [
                query_param("owner", "Only relationships with this owner", json!({"type": "string"})),
            ],
            "responses": {
                "200": ok_json("Every matching relationship", schema_ref("FederationList")),
                "400": error_ref("InvalidArgument"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::FEDERATION.into(), json!({
        "parameters": [federation_parameter()],
        "get": {
            "operationId": "getFederation",
            "summary": "One federation relationship",
            "responses": {
                "200": ok_json("The relationship", schema_ref("Federation")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
        "patch": {
            "operationId": "updateFederation",
            "summary": "Change the fields given of a federation relationship (each written on its own, so concurrent changes of other fields are kept)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("FederationUpdateRequest")}}},
            "responses": {
                "200": ok_json("The relationship after the update", schema_ref("Federation")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("ProfileConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
            },
        },
        "delete": {
            "operationId": "deleteFederation",
            "summary": "Stop federating with a trust domain: the relationship and its bundle are deleted, and agents stop trusting it",
            "responses": {
                "200": ok_json("The relationship as it was before deletion", schema_ref("Federation")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
            },
        },
    }));
    items.insert(paths::FEDERATION_REFRESH.into(), json!({
        "parameters": [federation_parameter()],
        "post": {
            "operationId": "refreshFederation",
            "summary": "Fetch the foreign bundle from its endpoint now and store it if newer; a failure keeps the bundle held. The request has no body",
            "responses": {
                "200": ok_json("What the refresh did", schema_ref("FederationRefreshed")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "502": error_ref("UpstreamFailed"),
                "503": error_ref("Unavailable"),
            },
        },
    }));
    items.insert(
        paths::POLICY.into(),
        json!({
            "get": {
                "operationId": "getPolicy",
                "summary": "The Cedar policy set in force: its hash, policy ids, the actions requests may name, and the directory it is reloaded from",
                "responses": {
                    "200": ok_json("The policy set in force", schema_ref("PolicyStatus")),
                    "503": error_ref("PolicyUnavailable"),
                },
            },
        }),
    );
    items.insert(paths::POLICY_DECIDE.into(), json!({
        "post": {
            "operationId": "decidePolicy",
            "summary": "Decide a request against the policy set in force, with the entities it gives, at the server's current time: a dry-run, nothing changes. A request the policies cannot evaluate (over a bound, an unknown action, not matching the schema) is a denial with the reason in `errors`",
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref("DecisionRequest")}}},
            "responses": {
                "200": ok_json("The decision", schema_ref("PolicyDecision")),
                "400": error_ref("InvalidArgument"),
                "413": error_ref("PayloadTooLarge"),
                "503": error_ref("PolicyUnavailable"),
            },
        },
    }));
    items.insert(paths::POLICY_RELOAD.into(), json!({
        "post": {
            "operationId": "reloadPolicy",
            "summary": "Read the policy directory again now, as SIGHUP does: a valid set is put in force atomically; an invalid one is refused (409, the message has its `file:line:column` and the hash kept) and the set in force stays. Without a directory the built-in default stays. The request has no body",
            "responses": {
                "200": ok_json("The set in force after the reload", schema_ref("PolicyReloaded")),
                "400": error_ref("InvalidArgument"),
                "409": error_ref("ReloadRefused"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "503": error_ref("PolicyUnavailable"),
            },
        },
    }));
    items.insert(
        paths::BUNDLE.into(),
        json!({
            "get": {
                "operationId": "getBundle",
                "summary": "The server's own trust bundle (SPIFFE bundle format)",
                "responses": {
                    "200": ok_json("The bundle document", schema_ref("BundleDocument")),
                    "404": error_ref("NotFound"),
                    "500": error_ref("Internal"),
                },
            },
        }),
    );
    crate::audit::path_items(&mut items);
    crate::inventory::path_items(&mut items);
    crate::credentials::path_items(&mut items);
    Value::Object(items)
}

fn error_responses() -> Value {
    let mut out = Map::new();
    for (name, description) in [
        (
            "InvalidArgument",
            "invalid_argument: a field or parameter is missing or invalid",
        ),
        ("NotFound", "not_found: no such record"),
        ("AlreadyExists", "already_exists: an equal record exists"),
        (
            "CreateConflict",
            "already_exists: an equal entry exists; or conflict: expires_at is not after the server's current time, or parent_id is the entry's own spiffe_id",
        ),
        (
            "Conflict",
            "conflict: revision mismatch, or parent_id is the entry's own spiffe_id; or already_exists",
        ),
        (
            "CommandRefused",
            "conflict: the authorities' states do not allow this step (the message says why and what to do first); nothing changed. Also when another writer changed the authority first",
        ),
        (
            "UnknownCredential",
            "not_found: this server issued no credential with that serial or jti (or it expired and was forgotten); nothing changed",
        ),
        (
            "RevokeConflict",
            "already_exists: the credential is already revoked; or conflict: it has already expired, so there is nothing to revoke; nothing changed",
        ),
        (
            "ProfileConflict",
            "conflict: the relationship that would result breaks the profile rule (`endpoint_spiffe_id` is set exactly for `https_spiffe`); nothing changed",
        ),
        (
            "UpstreamFailed",
            "upstream_failed: the bundle endpoint could not be reached or served no acceptable bundle (the message says why); the bundle held is kept",
        ),
        (
            "Unavailable",
            "unavailable: this server runs no federation refresher",
        ),
        (
            "ReloadRefused",
            "conflict: the policy directory does not hold a valid set (the message gives the first error as `file:line:column: message` and the hash kept); the set in force stays",
        ),
        (
            "PolicyUnavailable",
            "unavailable: this server holds no policy set",
        ),
        (
            "TargetConflict",
            "already_exists: a target with that name exists (in the configuration file or stored); or conflict: the target is defined in the configuration file, the revision does not match, it still has active leases, or its password comes from an environment variable (a root rotation needs `password_file`); nothing changed",
        ),
        (
            "LeaseConflict",
            "conflict: the lease is not active (revoked, being revoked, or expired); nothing changed",
        ),
        (
            "DatabaseFailed",
            "upstream_failed: the target database refused the statements (the message says why)",
        ),
        (
            "CredentialsUnavailable",
            "unavailable: this server brokers no database credentials, the target's administrative password cannot be read, its database cannot be reached, or the audit log cannot record the change",
        ),
        (
            "PayloadTooLarge",
            "payload_too_large: the body is over the limit",
        ),
        (
            "Internal",
            "internal: the server failed; details are in its log",
        ),
    ] {
        out.insert(
            name.into(),
            json!({"description": description, "content": {"application/json": {"schema": schema_ref("ErrorBody")}}}),
        );
    }
    Value::Object(out)
}

/// The `{spiffe_id}` path parameter of the agent routes.
fn agent_id_parameter() -> Value {
    json!({
        "name": "spiffe_id", "in": "path", "required": true,
        "description": "The agent's SPIFFE ID, percent-encoded as one segment (`/` as `%2F`)",
        "schema": schema_ref("SpiffeId"),
    })
}

/// The `{trust_domain}` path parameter of the federation routes.
fn federation_parameter() -> Value {
    json!({
        "name": "trust_domain", "in": "path", "required": true,
        "description": "The foreign trust domain, by name (or its ID percent-encoded as one segment)",
        "schema": {"type": "string", "pattern": patterns::trust_domain()},
    })
}

pub(crate) fn error_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

pub(crate) fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

pub(crate) fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

pub(crate) fn page_size_param() -> Value {
    query_param(
        "page_size",
        "Most records in the page",
        json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE}),
    )
}

pub(crate) fn page_token_param() -> Value {
    query_param(
        "page_token",
        "`next_page_token` of the previous page (opaque); absent or empty for the first page",
        json!({"type": "string", "pattern": patterns::page_token(), "maxLength": MAX_PAGE_TOKEN_CHARS}),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::Serialize;

    use super::*;
    use crate::{
        Agent, AgentList, Authority, AuthorityList, CreateJoinTokenRequest, Entry, EntryBatch,
        EntryBatchRequest, EntryList, EntryQuery, EntryRequest, ErrorBody, ErrorCode, Federation,
        FederationList, FederationRefreshed, FederationRequest, FederationUpdateRequest, Health,
        JoinTokenCreated, PageQuery, PrepareAuthorityRequest, Revocation, RevocationList,
        RevokeRequest, TtlValue,
    };

    fn td() -> sigil_spiffe::TrustDomain {
        sigil_spiffe::TrustDomain::parse("example.org").unwrap()
    }

    fn sample_entry() -> Entry {
        Entry {
            id: "e1".into(),
            spiffe_id: "spiffe://td/a".into(),
            parent_id: "spiffe://td/p".into(),
            selectors: vec!["unix:uid:1".into()],
            x509_svid_ttl: 0,
            jwt_svid_ttl: 0,
            dns_names: vec!["a.example".into()],
            federates_with: vec!["other.org".into()],
            admin: false,
            downstream: false,
            hint: "h".into(),
            owner: "team".into(),
            description: "d".into(),
            labels: [("tier".to_owned(), "web".to_owned())].into(),
            expires_at: Some(5),
            revision: 1,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn sample_agent() -> Agent {
        Agent {
            spiffe_id: "spiffe://td/sigil/agent/join_token/x".into(),
            attestation_type: "join_token".into(),
            selectors: vec![],
            serial: "01".into(),
            expires_at: 1,
            banned: false,
            can_reattest: false,
            created_at: 1,
            last_seen: 1,
        }
    }

    fn full_entry_request() -> EntryRequest {
        EntryRequest {
            spiffe_id: Some("s".into()),
            parent_id: Some("p".into()),
            selectors: vec!["a:b".into()],
            x509_svid_ttl: Some(TtlValue::Seconds(1)),
            jwt_svid_ttl: Some(TtlValue::Text("1h".into())),
            dns_names: vec!["d".into()],
            federates_with: vec!["f".into()],
            admin: true,
            downstream: true,
            hint: "h".into(),
            owner: Some("o".into()),
            description: "d".into(),
            labels: [("tier".to_owned(), "web".to_owned())].into(),
            expires_at: Some(1),
            revision: Some(1),
        }
    }

    fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
        &doc["components"]["schemas"][name]
    }

    fn keys_of(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn assert_schema_matches<T: Serialize>(doc: &Value, name: &str, sample: &T) {
        let schema = schema(doc, name);
        let properties = keys_of(&schema["properties"]);
        let serialized = keys_of(&serde_json::to_value(sample).unwrap());
        assert_eq!(properties, serialized, "schema {name} vs its Rust type");
        for required in schema["required"].as_array().into_iter().flatten() {
            assert!(
                properties.contains(required.as_str().unwrap()),
                "{name}: required {required} is not a property"
            );
        }
    }

    fn collect_refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        collect_refs(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_path_template_parameter_is_declared() {
        let doc = openapi_document(&td());
        for (path, item) in doc["paths"].as_object().unwrap() {
            let templated: BTreeSet<String> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .map(str::to_owned)
                .collect();
            let declared: BTreeSet<String> = item["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(templated, declared, "{path}");
        }
        assert!(
            doc["paths"][paths::AGENT_BAN]["post"]
                .get("requestBody")
                .is_none(),
            "a ban takes no body"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = openapi_document(&td());
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    #[test]
    fn schemas_list_exactly_the_fields_of_the_wire_types() {
        let doc = openapi_document(&td());
        assert_schema_matches(&doc, "Entry", &sample_entry());
        assert_schema_matches(&doc, "EntryReplaceRequest", &full_entry_request());
        let create = EntryRequest {
            revision: None,
            ..full_entry_request()
        };
        assert_schema_matches(&doc, "EntryCreateRequest", &create);
        assert_schema_matches(
            &doc,
            "EntryBatchCreateRequest",
            &EntryBatchRequest {
                entries: vec![create.clone()],
            },
        );
        assert_schema_matches(
            &doc,
            "EntryBatch",
            &EntryBatch {
                entries: vec![sample_entry()],
            },
        );
        assert_schema_matches(
            &doc,
            "EntryList",
            &EntryList {
                entries: vec![],
                next_page_token: Some("x".into()),
            },
        );
        assert_schema_matches(&doc, "Agent", &sample_agent());
        assert_schema_matches(
            &doc,
            "AgentList",
            &AgentList {
                agents: vec![],
                next_page_token: Some("x".into()),
            },
        );
        let authority = Authority {
            id: "ab".into(),
            kind: "x509_intermediate".into(),
            state: "active".into(),
            issuer_id: Some("cd".into()),
            not_before: 1,
            not_after: 2,
            certificate_pem: Some("-----BEGIN CERTIFICATE-----".into()),
        };
        assert_schema_matches(&doc, "Authority", &authority);
        assert_schema_matches(
            &doc,
            "AuthorityList",
            &AuthorityList {
                authorities: vec![],
            },
        );
        assert_schema_matches(
            &doc,
            "PrepareAuthorityRequest",
            &PrepareAuthorityRequest { kind: "jwt".into() },
        );
        assert_schema_matches(
            &doc,
            "CreateJoinTokenRequest",
            &CreateJoinTokenRequest {
                ttl: Some(TtlValue::Seconds(5)),
            },
        );
        assert_schema_matches(
            &doc,
            "JoinTokenCreated",
            &JoinTokenCreated {
                id: "i".into(),
                token: "t".into(),
                agent_id: "a".into(),
                expires_at: 1,
            },
        );
        assert_schema_matches(
            &doc,
            "Health",
            &Health {
                status: "ok".into(),
                trust_domain: "td".into(),
            },
        );
        assert_schema_matches(
            &doc,
            "RevokeRequest",
            &RevokeRequest {
                serial: Some("4a".into()),
                jti: Some("j".into()),
                reason: Some("r".into()),
            },
        );
        let revocation = Revocation {
            kind: "x509_svid".into(),
            id: "4a".into(),
            spiffe_id: "spiffe://td/a".into(),
            authority_id: "ab".into(),
            reason: String::new(),
            revoked_at: 1,
            expires_at: 2,
        };
        assert_schema_matches(&doc, "Revocation", &revocation);
        assert_schema_matches(
            &doc,
            "RevocationList",
            &RevocationList {
                revocations: vec![revocation],
            },
        );
        assert_schema_matches(
            &doc,
            "FederationCreateRequest",
            &FederationRequest {
                trust_domain: "p".into(),
                bundle_endpoint_url: "https://p".into(),
                profile: "https_spiffe".into(),
                endpoint_spiffe_id: Some("spiffe://p/s".into()),
                owner: Some("team".into()),
                bootstrap_bundle: Some("{}".into()),
            },
        );
        assert_schema_matches(
            &doc,
            "FederationUpdateRequest",
            &FederationUpdateRequest {
                bundle_endpoint_url: Some("https://p".into()),
                profile: Some("https_web".into()),
                endpoint_spiffe_id: Some(None),
                owner: Some("team".into()),
            },
        );
        let federation = Federation {
            trust_domain: "p".into(),
            bundle_endpoint_url: "https://p".into(),
            profile: "https_web".into(),
            endpoint_spiffe_id: None,
            owner: "team".into(),
            created_at: 1,
            updated_at: 1,
            bundle_sequence: None,
            bundle_updated_at: None,
        };
        assert_schema_matches(&doc, "Federation", &federation);
        assert_schema_matches(
            &doc,
            "FederationList",
            &FederationList {
                federations: vec![federation],
            },
        );
        assert_schema_matches(
            &doc,
            "FederationRefreshed",
            &FederationRefreshed {
                trust_domain: "p".into(),
                outcome: "updated".into(),
                sequence: 1,
            },
        );
        assert_schema_matches(&doc, "ErrorBody", &ErrorBody::new(ErrorCode::Internal, "x"));
        let jwk = sigil_spiffe::Jwk {
            kty: "EC".into(),
            key_use: Some("x509-svid".into()),
            kid: Some("k".into()),
            alg: Some("ES256".into()),
            crv: Some("P-256".into()),
            x: Some("x".into()),
            y: Some("y".into()),
            n: Some("n".into()),
            e: Some("e".into()),
            x5c: Some(vec!["AA".into()]),
        };
        assert_schema_matches(&doc, "Jwk", &jwk);
        let bundle = sigil_spiffe::BundleDocument {
            keys: vec![jwk],
            spiffe_sequence: Some(1),
            spiffe_refresh_hint: Some(1),
        };
        assert_schema_matches(&doc, "BundleDocument", &bundle);
        assert_schema_matches(
            &doc,
            "PolicyStatus",
            &crate::PolicyStatus {
                hash: "h".into(),
                policies: 1,
                ids: vec!["p".into()],
                actions: vec!["Exchange".into()],
                dir: None,
            },
        );
        assert_schema_matches(
            &doc,
            "PolicyDecision",
            &crate::PolicyDecision::new(true, vec![], vec![], "h".into()),
        );
        assert_schema_matches(
            &doc,
            "PolicyReloaded",
            &crate::PolicyReloaded { hash: "h".into() },
        );
    }

    #[test]
    fn credential_schemas_list_exactly_the_fields_of_the_wire_types() {
        use crate::credentials::{
            CredentialTarget, CredentialTargetList, Lease, LeaseFailure, LeaseList, LeasesRevoked,
            RenewLeaseRequest, RevokeLeasesRequest, RoleSpec, RootRotated, TargetSpec,
            TargetUpdateRequest,
        };
        let doc = openapi_document(&td());
        let role = RoleSpec {
            name: "ro".into(),
            creation_statements: vec!["CREATE".into()],
            revocation_statements: Some(vec![]),
            renewal_statements: Some(vec![]),
            default_ttl: Some(TtlValue::Seconds(1)),
            max_ttl: Some(TtlValue::Text("1h".into())),
        };
        assert_schema_matches(&doc, "RoleSpec", &role);
        let spec = TargetSpec {
            name: "pg".into(),
            kind: "postgresql".into(),
            url: "postgres://a@h/d".into(),
            password_file: Some("/f".into()),
            password_env: Some("E".into()),
            owner: "team".into(),
            default_ttl: Some(TtlValue::Seconds(1)),
            max_ttl: Some(TtlValue::Seconds(2)),
            roles: vec![role],
        };
        assert_schema_matches(&doc, "TargetSpec", &spec);
        assert_schema_matches(
            &doc,
            "TargetUpdateRequest",
            &TargetUpdateRequest {
                spec: spec.clone(),
                revision: 1,
            },
        );
        let target = CredentialTarget {
            spec,
            source: "api".into(),
            revision: 1,
        };
        assert_schema_matches(&doc, "CredentialTarget", &target);
        assert_schema_matches(
            &doc,
            "CredentialTargetList",
            &CredentialTargetList {
                targets: vec![target],
            },
        );
        assert_schema_matches(
            &doc,
            "RootRotated",
            &RootRotated {
                target: "pg".into(),
                rotated_at: 1,
            },
        );
        let lease = Lease {
            id: "lease_0".into(),
            target: "pg".into(),
            role: "ro".into(),
            spiffe_id: "spiffe://td/a".into(),
            entry_id: Some("e".into()),
            agent_id: Some("spiffe://td/sigil/agent/x".into()),
            username: "u".into(),
            owner: "team".into(),
            created_at: 1,
            expires_at: 2,
            max_expires_at: 3,
            renewed_at: Some(2),
            state: "revoked".into(),
            revoked_at: Some(3),
            revoke_reason: Some("r".into()),
        };
        assert_schema_matches(&doc, "Lease", &lease);
        assert_schema_matches(
            &doc,
            "LeaseList",
            &LeaseList {
                leases: vec![lease],
                next_page_token: Some("x".into()),
            },
        );
        assert_schema_matches(
            &doc,
            "RenewLeaseRequest",
            &RenewLeaseRequest {
                increment: Some(TtlValue::Seconds(5)),
            },
        );
        assert_schema_matches(
            &doc,
            "RevokeLeasesRequest",
            &RevokeLeasesRequest {
                spiffe_id: Some("s".into()),
                entry_id: Some("e".into()),
                target: Some("t".into()),
                agent_id: Some("a".into()),
            },
        );
        let failure = LeaseFailure {
            lease_id: "l".into(),
            error: "e".into(),
        };
        assert_schema_matches(&doc, "LeaseFailure", &failure);
        assert_schema_matches(
            &doc,
            "LeasesRevoked",
            &LeasesRevoked {
                revoked: vec!["l".into()],
                failed: vec![failure],
            },
        );
    }

    #[test]
    fn lease_list_parameters_match_the_query_encoding() {
        let doc = openapi_document(&td());
        let documented: BTreeSet<String> = doc["paths"][paths::LEASES]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let query = crate::credentials::LeaseQuery {
            target: Some("a".into()),
            role: Some("b".into()),
            spiffe_id: Some("c".into()),
            entry_id: Some("d".into()),
            agent_id: Some("e".into()),
            state: Some("f".into()),
            page: PageQuery {
                page_size: Some("1".into()),
                page_token: Some("h".into()),
            },
        }
        .to_query_string();
        let encoded: BTreeSet<String> = query
            .split('&')
            .map(|p| p.split_once('=').unwrap().0.to_owned())
            .collect();
        assert_eq!(documented, encoded);
    }

    #[test]
    fn entry_list_parameters_match_the_query_encoding() {
        let doc = openapi_document(&td());
        let documented: BTreeSet<String> = doc["paths"][paths::ENTRIES]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        let query = EntryQuery {
            spiffe_id: Some("a".into()),
            parent_id: Some("b".into()),
            selectors: vec!["c:d".into()],
            owner: Some("e".into()),
            spiffe_id_prefix: Some("f".into()),
            federates_with: Some("g".into()),
            page: PageQuery {
                page_size: Some("1".into()),
                page_token: Some("h".into()),
            },
        }
        .to_query_string();
        let encoded: BTreeSet<String> = query
            .split('&')
            .map(|p| p.split_once('=').unwrap().0.to_owned())
            .collect();
        assert_eq!(documented, encoded);
    }

    #[test]
    fn authority_enums_list_every_stable_name() {
        let doc = openapi_document(&td());
        let names = |schema_name: &str| -> Vec<String> {
            schema(&doc, schema_name)["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            names("AuthorityKind"),
            ["x509_root", "x509_intermediate", "jwt"]
        );
        assert_eq!(
            names("AuthorityState"),
            ["prepared", "active", "old", "tainted", "revoked"]
        );
    }

    #[test]
    fn revoke_request_names_exactly_one_existing_field() {
        let doc = openapi_document(&td());
        let request = schema(&doc, "RevokeRequest");
        let properties = keys_of(&request["properties"]);
        let alternatives: Vec<&str> = request["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|branch| {
                let required = branch["required"].as_array().unwrap();
                assert_eq!(required.len(), 1, "{branch}");
                required[0].as_str().unwrap()
            })
            .collect();
        assert_eq!(alternatives, ["serial", "jti"]);
        assert!(alternatives.iter().all(|f| properties.contains(*f)));
        assert_eq!(request["additionalProperties"], false);
    }

    #[test]
    fn every_operation_documents_its_success_and_has_an_id() {
        let doc = openapi_document(&td());
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(path.starts_with(paths::API_PREFIX), "{path}");
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
                let codes = keys_of(&op["responses"]);
                assert!(codes.iter().any(|c| c.starts_with('2')), "{method} {path}");
            }
        }
    }
}
