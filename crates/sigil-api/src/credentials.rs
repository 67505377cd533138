//! Brokered database credentials: the definition of a credential target and its roles (admin API
//! bodies, and the `[[credentials.targets]]` tables of the server configuration), the leases the
//! admin API lists, renews and revokes, and the bodies of the workload-facing `/creds/v1`
//! endpoints on the public listener (and of the agent's credentials service).
//!
//! A target never carries its administrative password: it names the file or environment variable
//! the server reads it from.

use serde::{Deserialize, Serialize};

use crate::TtlValue;

/// Path of the workload endpoint that creates a credential (public listener).
pub const CREDENTIALS_PATH: &str = "/creds/v1/credentials";
/// Path of the workload endpoint that renews one of the caller's leases (public listener).
pub const LEASE_RENEW_PATH: &str = "/creds/v1/leases/{id}/renew";
/// Path of the workload endpoint that revokes one of the caller's leases (public listener).
pub const LEASE_REVOKE_PATH: &str = "/creds/v1/leases/{id}/revoke";

/// A credential target: a database Sigil creates short-lived users in, through an
/// administrative account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// Unique name: 1 to 64 of `a-z 0-9 - _`, starting with a letter.
    pub name: String,
    /// `postgresql` or `mariadb`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The administrative account's connection URL without a password, e.g.
    /// `postgres://sigil_admin@db.internal:5432/orders` or `mysql://sigil@db:3306/orders`.
    pub url: String,
    /// File holding the administrative password (read at start and after a root rotation,
    /// which rewrites it). Exactly one of `password_file` and `password_env`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub password_file: Option<String>,
    /// Environment variable of the server holding the administrative password.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub password_env: Option<String>,
    /// Who answers for the target and the credentials it hands out (team or contact).
    pub owner: String,
    /// Lifetime of a credential when the request names none (default 1 h).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub default_ttl: Option<TtlValue>,
    /// Longest lifetime, renewals included, counted from creation (default 24 h).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub max_ttl: Option<TtlValue>,
    /// The roles workloads may ask for (who may ask is a Cedar policy on action
    /// `RequestCredential`).
    pub roles: Vec<RoleSpec>,
}

/// One role of a target: how its users are created, renewed and revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Unique within the target: 1 to 64 of `a-z 0-9 - _`, starting with a letter.
    pub name: String,
    /// SQL run in order to create the user; placeholders `{{name}}`, `{{password}}`,
    /// `{{expiration}}`.
    pub creation_statements: Vec<String>,
    /// SQL run to drop the user after its sessions are ended; default `DROP ROLE IF EXISTS` /
    /// `DROP USER IF EXISTS`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub revocation_statements: Option<Vec<String>>,
    /// SQL run when a lease is renewed; default (PostgreSQL) moves `VALID UNTIL`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub renewal_statements: Option<Vec<String>>,
    /// Overrides the target's `default_ttl`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub default_ttl: Option<TtlValue>,
    /// Overrides (and may only lower) the target's `max_ttl`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub max_ttl: Option<TtlValue>,
}

/// A target as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialTarget {
    #[serde(flatten)]
    pub spec: TargetSpec,
    /// `config` (from the server's configuration file; read-only through the API) or `api`.
    pub source: String,
    /// Revision of a stored target (0 for `config`).
    pub revision: i64,
}

/// `GET /api/v1/credential-targets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialTargetList {
    pub targets: Vec<CredentialTarget>,
}

/// `PUT /api/v1/credential-targets/{name}`: the new definition under a revision check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetUpdateRequest {
    pub spec: TargetSpec,
    /// The revision the update is based on.
    #[serde(deserialize_with = "integer")]
    pub revision: i64,
}

/// `POST /api/v1/credential-targets/{name}/rotate-root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotated {
    pub target: String,
    /// Unix seconds.
    pub rotated_at: i64,
}

/// A lease as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub target: String,
    pub role: String,
    pub spiffe_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The database user name.
    pub username: String,
    /// The owner of the target.
    pub owner: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_at: Option<i64>,
    /// `active`, `revoking` or `revoked`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
}

/// `GET /api/v1/leases`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseList {
    pub leases: Vec<Lease>,
    /// Present when there are more: pass it as `page_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `POST /api/v1/leases/{id}/renew` (and the workload's `/creds/v1/leases/{id}/renew`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewLeaseRequest {
    /// How long from now the credential should last (capped at the lease's maximum); default:
    /// the role's default TTL.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub increment: Option<TtlValue>,
}

/// `POST /api/v1/leases/revoke`: revokes every active lease matching all given fields (at least
/// one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeLeasesRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub spiffe_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub entry_id: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub target: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    pub agent_id: Option<String>,
}

/// What a revocation of several leases did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasesRevoked {
    /// Ids of the leases revoked now.
    pub revoked: Vec<String>,
    /// Leases whose revocation failed (they stay due and are retried).
    pub failed: Vec<LeaseFailure>,
}

/// One lease whose revocation failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseFailure {
    pub lease_id: String,
    pub error: String,
}

/// `POST /creds/v1/credentials`: what a workload asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRequest {
    pub target: String,
    pub role: String,
    /// Lifetime wanted; default the role's; more than its maximum is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<TtlValue>,
}

/// Where to connect with a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseAddress {
    /// `postgresql` or `mariadb`.
    #[serde(rename = "type")]
    pub kind: String,
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// A created credential: the only place its password ever appears.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    pub lease_id: String,
    pub target: String,
    pub role: String,
    pub username: String,
    pub password: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds: renewals never go past it.
    pub max_expires_at: i64,
    /// Seconds from now to `expires_at`.
    pub lease_duration: u64,
    pub renewable: bool,
    pub database: DatabaseAddress,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("lease_id", &self.lease_id)
            .field("target", &self.target)
            .field("role", &self.role)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A renewed lease, as the workload sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewed {
    pub lease_id: String,
    pub expires_at: i64,
    pub max_expires_at: i64,
    pub lease_duration: u64,
}

/// The pattern of a credential target or role name: 1 to 64 of `a-z 0-9 - _`, starting with a
/// letter.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9_-]{0,63}$";
/// The pattern of a lease id: `lease_` and 32 lowercase hex digits.
pub const LEASE_ID_PATTERN: &str = "^lease_[0-9a-f]{32}$";
/// Longest target owner accepted through the admin API, in characters (as entries' owners).
pub const MAX_TARGET_OWNER_CHARS: usize = crate::entries::MAX_OWNER_CHARS;
/// Longest `entry_id` filter of the lease calls, in characters.
pub const MAX_ENTRY_ID_FILTER_CHARS: usize = 256;
/// Most roles of one target, and most statements in one list (the server's limits).
pub const MAX_TARGET_ROLES: usize = 64;
/// Most statements in one list of a role.
pub const MAX_ROLE_STATEMENTS: usize = 32;

/// Whether `name` is a valid target or role name ([`NAME_PATTERN`]).
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Whether `id` is a lease id ([`LEASE_ID_PATTERN`]).
pub fn is_valid_lease_id(id: &str) -> bool {
    id.strip_prefix("lease_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// `deserialize_with` for a required integer: a number written with an integral fraction (`5.0`)
/// is that integer, as JSON Schema's `integer` type counts it.
fn integer<'de, D>(deserializer: D) -> Result<i64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    crate::present_integer(deserializer)?
        .ok_or_else(|| serde::de::Error::custom("expected an integer"))
}

/// Filters and page of `GET /api/v1/leases`, as query parameters; all optional, combined with
/// AND. Values stay strings: the server parses them and names the one that is wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseQuery {
    pub target: Option<String>,
    pub role: Option<String>,
    pub spiffe_id: Option<String>,
    pub entry_id: Option<String>,
    pub agent_id: Option<String>,
    /// `active`, `revoking` or `revoked`.
    pub state: Option<String>,
    pub page: crate::PageQuery,
}

impl LeaseQuery {
    /// The query string, without the leading `?` (empty when nothing is set).
    pub fn to_query_string(&self) -> String {
        let [size, token] = self.page.singles();
        crate::query::encode_pairs(
            &[
                ("target", &self.target),
                ("role", &self.role),
                ("spiffe_id", &self.spiffe_id),
                ("entry_id", &self.entry_id),
                ("agent_id", &self.agent_id),
                ("state", &self.state),
                size,
                token,
            ],
            &[],
        )
    }

    /// Decodes a query string (without the leading `?`). Fails on unknown or repeated
    /// parameters and bad percent-encoding.
    pub fn parse(query: &str) -> Result<Self, crate::WireError> {
        let mut out = Self::default();
        crate::query::for_each_pair(query, |key, value| {
            let slot = match key {
                "target" => &mut out.target,
                "role" => &mut out.role,
                "spiffe_id" => &mut out.spiffe_id,
                "entry_id" => &mut out.entry_id,
                "agent_id" => &mut out.agent_id,
                "state" => &mut out.state,
                "page_size" => &mut out.page.page_size,
                "page_token" => &mut out.page.page_token,
                _ => {
                    return Err(crate::WireError::UnknownQueryParameter(
                        crate::query::truncate(key),
                    ));
                }
            };
            crate::query::set_once(slot, key, value)
        })?;
        Ok(out)
    }
}

/// The credential target and lease routes of the OpenAPI document, added to `items`.
pub(crate) fn path_items(items: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::json;

    use crate::openapi::{error_ref, ok_json, page_size_param, page_token_param, query_param};
    use crate::paths;
    use crate::schemas::schema_ref;

    let name_param = json!({
        "name": "name", "in": "path", "required": true,
        "description": "The target's name", "schema": schema_ref("CredentialName"),
    });
    let lease_param = json!({
        "name": "id", "in": "path", "required": true,
        "description": "The lease id", "schema": schema_ref("LeaseId"),
    });
    let body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": schema_ref(schema)}}});
    items.insert(paths::CREDENTIAL_TARGETS.into(), json!({
        "get": {
            "operationId": "listCredentialTargets",
            "summary": "List the credential targets: those of the configuration file (source `config`, read-only here), then those created through this API (source `api`), each by name",
            "responses": {
                "200": ok_json("Every target", schema_ref("CredentialTargetList")),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
        "post": {
            "operationId": "createCredentialTarget",
            "summary": "Create a credential target. The definition is checked (statements, TTLs, URL) and its administrative password must be readable from its file or environment variable; the database is not contacted",
            "requestBody": body("TargetSpec"),
            "responses": {
                "201": ok_json("The created target", schema_ref("CredentialTarget")),
                "400": error_ref("InvalidArgument"),
                "409": error_ref("TargetConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
    items.insert(paths::CREDENTIAL_TARGET.into(), json!({
        "parameters": [name_param.clone()],
        "get": {
            "operationId": "getCredentialTarget",
            "summary": "One credential target",
            "responses": {
                "200": ok_json("The target", schema_ref("CredentialTarget")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
        "put": {
            "operationId": "updateCredentialTarget",
            "summary": "Replace a stored target's definition; `revision` guards against lost updates and `spec.name` must be the path's name. Targets of the configuration file cannot be changed here",
            "requestBody": body("TargetUpdateRequest"),
            "responses": {
                "200": ok_json("The target after the update", schema_ref("CredentialTarget")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("TargetConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
        "delete": {
            "operationId": "deleteCredentialTarget",
            "summary": "Delete a stored target; refused while it has active leases (revoke them first). Targets of the configuration file cannot be deleted here",
            "responses": {
                "200": ok_json("The target as it was before deletion", schema_ref("CredentialTarget")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("TargetConflict"),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
    items.insert(paths::CREDENTIAL_TARGET_ROTATE_ROOT.into(), json!({
        "parameters": [name_param],
        "post": {
            "operationId": "rotateCredentialTargetRoot",
            "summary": "Change the target's administrative password to a new random one only Sigil knows, and write it to the target's password file. The request has no body",
            "responses": {
                "200": ok_json("When the password was changed", schema_ref("RootRotated")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("TargetConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "502": error_ref("DatabaseFailed"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
    items.insert(paths::LEASES.into(), json!({
        "get": {
            "operationId": "listLeases",
            "summary": "List the leases of brokered database credentials, ordered by id, optionally filtered (every filter combines with AND)",
            "parameters": [
                query_param("target", "Only leases of this target", schema_ref("CredentialName")),
                query_param("role", "Only leases of this role", schema_ref("CredentialName")),
                query_param("spiffe_id", "Only leases held by this SPIFFE ID", schema_ref("SpiffeId")),
                query_param("entry_id", "Only leases served under this registration entry", schema_ref("EntryIdFilter")),
                query_param("agent_id", "Only leases requested through this agent", schema_ref("SpiffeId")),
                query_param("state", "Only leases in this state", schema_ref("LeaseState")),
                page_size_param(),
                page_token_param(),
            ],
            "responses": {
                "200": ok_json("One page of the matching leases", schema_ref("LeaseList")),
                "400": error_ref("InvalidArgument"),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
    items.insert(paths::LEASES_REVOKE.into(), json!({
        "post": {
            "operationId": "revokeLeases",
            "summary": "Revoke every active lease matching all the fields given (at least one): their users are dropped from the target databases",
            "requestBody": body("RevokeLeasesRequest"),
            "responses": {
                "200": ok_json("The leases revoked, and those whose revocation failed (they stay due and are retried)", schema_ref("LeasesRevoked")),
                "400": error_ref("InvalidArgument"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
    items.insert(
        paths::LEASE.into(),
        json!({
            "parameters": [lease_param.clone()],
            "get": {
                "operationId": "getLease",
                "summary": "One lease",
                "responses": {
                    "200": ok_json("The lease", schema_ref("Lease")),
                    "400": error_ref("InvalidArgument"),
                    "404": error_ref("NotFound"),
                    "500": error_ref("Internal"),
                    "503": error_ref("CredentialsUnavailable"),
                },
            },
        }),
    );
    items.insert(paths::ADMIN_LEASE_RENEW.into(), json!({
        "parameters": [lease_param.clone()],
        "post": {
            "operationId": "renewLease",
            "summary": "Extend an active lease to `increment` from now (default: the role's default TTL), never past its maximum",
            "requestBody": {"required": false, "content": {"application/json": {"schema": schema_ref("RenewLeaseRequest")}}},
            "responses": {
                "200": ok_json("The lease after the renewal", schema_ref("Lease")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("LeaseConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "502": error_ref("DatabaseFailed"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
    items.insert(paths::ADMIN_LEASE_REVOKE.into(), json!({
        "parameters": [lease_param],
        "post": {
            "operationId": "revokeLease",
            "summary": "Revoke a lease now: its user is dropped from the target database. Revoking a revoked lease changes nothing. The request has no body",
            "responses": {
                "200": ok_json("The lease after the revocation", schema_ref("Lease")),
                "400": error_ref("InvalidArgument"),
                "404": error_ref("NotFound"),
                "409": error_ref("LeaseConflict"),
                "413": error_ref("PayloadTooLarge"),
                "500": error_ref("Internal"),
                "502": error_ref("DatabaseFailed"),
                "503": error_ref("CredentialsUnavailable"),
            },
        },
    }));
}

/// The component schemas of the credential target and lease routes.
pub(crate) fn schemas() -> serde_json::Value {
    use serde_json::json;

    use crate::schemas::schema_ref;

    let max_ttl = sigil_spiffe::ttl::MAX_TTL_SECS;
    let ttl_text = crate::patterns::ttl_text(max_ttl);
    let string = json!({"type": "string"});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let statements = |min: usize, description: &str| {
        json!({
            "type": "array", "minItems": min, "maxItems": MAX_ROLE_STATEMENTS,
            "items": {"type": "string"}, "description": description,
        })
    };
    let any_ttl = json!({"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "Seconds, or a duration such as `1h`"});
    let role_view = json!({
        "type": "object",
        "required": ["name", "creation_statements"],
        "properties": {
            "name": string,
            "creation_statements": strings,
            "revocation_statements": strings,
            "renewal_statements": strings,
            "default_ttl": any_ttl,
            "max_ttl": any_ttl,
        },
    });
    json!({
        "CredentialName": {
            "type": "string",
            "description": "A target or role name: 1 to 64 of `a-z 0-9 - _`, starting with a letter",
            "pattern": NAME_PATTERN,
        },
        "LeaseId": {
            "type": "string",
            "description": "`lease_` and 32 lowercase hex digits",
            "pattern": LEASE_ID_PATTERN,
        },
        "LeaseState": {
            "type": "string",
            "description": "active (the user exists until expires_at) → revoking (a replica is dropping the user) → revoked (the user is gone)",
            "enum": ["active", "revoking", "revoked"],
        },
        "EntryIdFilter": {
            "type": "string",
            "description": "A registration entry id",
            "minLength": 1,
            "maxLength": MAX_ENTRY_ID_FILTER_CHARS,
            "pattern": crate::patterns::single_line(),
        },
        "CredentialTtl": {
            "description": format!("Whole seconds or a duration such as `90s`, `15m`, `1h`, `2d`, from 1 second to {max_ttl} seconds (366 days)"),
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": max_ttl},
                {"type": "string", "pattern": ttl_text},
            ],
        },
        "RoleSpec": {
            "type": "object",
            "description": "A role of a target: how its users are created, renewed and revoked. Statements are checked as templates (placeholders `{{name}}`, `{{password}}`, `{{expiration}}`); a role's TTLs may not exceed the target's (400 otherwise)",
            "additionalProperties": false,
            "required": ["name", "creation_statements"],
            "properties": {
                "name": schema_ref("CredentialName"),
                "creation_statements": statements(1, "SQL run in order to create the user"),
                "revocation_statements": statements(0, "SQL run to drop the user; empty or absent: the default for the database type"),
                "renewal_statements": statements(0, "SQL run when a lease is renewed; absent: the default for the database type"),
                "default_ttl": schema_ref("CredentialTtl"),
                "max_ttl": schema_ref("CredentialTtl"),
            },
        },
        "TargetSpec": {
            "type": "object",
            "description": "A credential target: a database Sigil creates short-lived users in through an administrative account. Exactly one of `password_file` and `password_env` names where its password is read (it must be readable by the server); the URL holds no password. Role names are unique, default_ttl is at most max_ttl (400 otherwise)",
            "additionalProperties": false,
            "required": ["name", "type", "url", "owner", "roles"],
            "properties": {
                "name": schema_ref("CredentialName"),
                "type": {"type": "string", "enum": ["postgresql", "mariadb"]},
                "url": {"type": "string", "minLength": 1, "description": "`scheme://user@host[:port][/database]`, without a password"},
                "password_file": {"type": "string", "minLength": 1, "description": "File on the server holding the administrative password"},
                "password_env": {"type": "string", "minLength": 1, "description": "Environment variable of the server holding the administrative password"},
                "owner": {
                    "type": "string",
                    "maxLength": MAX_TARGET_OWNER_CHARS,
                    "pattern": crate::patterns::single_line_not_blank(),
                    "description": "Team or contact accountable for the target",
                },
                "default_ttl": schema_ref("CredentialTtl"),
                "max_ttl": schema_ref("CredentialTtl"),
                "roles": {"type": "array", "minItems": 1, "maxItems": MAX_TARGET_ROLES, "items": schema_ref("RoleSpec")},
            },
            "oneOf": [
                {"required": ["password_file"], "not": {"required": ["password_env"]}},
                {"required": ["password_env"], "not": {"required": ["password_file"]}},
            ],
        },
        "TargetUpdateRequest": {
            "type": "object",
            "additionalProperties": false,
            "required": ["spec", "revision"],
            "properties": {
                "spec": schema_ref("TargetSpec"),
                "revision": {"type": "integer", "minimum": 1, "maximum": i64::MAX, "description": "The revision last read; a mismatch answers 409 conflict"},
            },
        },
        "CredentialTarget": {
            "type": "object",
            "required": ["name", "type", "url", "owner", "roles", "source", "revision"],
            "properties": {
                "name": string,
                "type": string,
                "url": string,
                "password_file": string,
                "password_env": string,
                "owner": string,
                "default_ttl": any_ttl,
                "max_ttl": any_ttl,
                "roles": {"type": "array", "items": role_view},
                "source": {"type": "string", "enum": ["config", "api"], "description": "config: from the server's configuration file (read-only here); api: created through this API"},
                "revision": {"type": "integer", "minimum": 0, "description": "0 for config"},
            },
        },
        "CredentialTargetList": {
            "type": "object",
            "required": ["targets"],
            "properties": {"targets": {"type": "array", "items": schema_ref("CredentialTarget")}},
        },
        "RootRotated": {
            "type": "object",
            "required": ["target", "rotated_at"],
            "properties": {
                "target": string,
                "rotated_at": {"type": "integer", "description": "Unix seconds"},
            },
        },
        "Lease": {
            "type": "object",
            "required": ["id", "target", "role", "spiffe_id", "username", "owner", "created_at", "expires_at", "max_expires_at", "state"],
            "properties": {
                "id": string,
                "target": string,
                "role": string,
                "spiffe_id": string,
                "entry_id": string,
                "agent_id": string,
                "username": {"type": "string", "description": "The database user"},
                "owner": {"type": "string", "description": "The target's owner; empty when the target is gone"},
                "created_at": {"type": "integer", "description": "Unix seconds"},
                "expires_at": {"type": "integer", "description": "Unix seconds"},
                "max_expires_at": {"type": "integer", "description": "Unix seconds: renewals never go past it"},
                "renewed_at": {"type": "integer", "description": "Unix seconds of the last renewal"},
                "state": schema_ref("LeaseState"),
                "revoked_at": {"type": "integer", "description": "Unix seconds"},
                "revoke_reason": string,
            },
        },
        "LeaseList": {
            "type": "object",
            "required": ["leases"],
            "properties": {
                "leases": {"type": "array", "items": schema_ref("Lease")},
                "next_page_token": {"type": "string", "description": "Reads the next page; absent on the last page"},
            },
        },
        "RenewLeaseRequest": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "increment": {
                    "description": "How long from now the credential should last (capped at the lease's maximum): whole seconds (0 = the role's default) or a duration such as `15m`, `1h`",
                    "oneOf": [
                        {"type": "integer", "minimum": 0, "maximum": max_ttl},
                        {"type": "string", "pattern": crate::patterns::ttl_text(max_ttl)},
                    ],
                },
            },
        },
        "RevokeLeasesRequest": {
            "type": "object",
            "description": "Revokes every active lease matching all the fields given; at least one",
            "additionalProperties": false,
            "minProperties": 1,
            "properties": {
                "spiffe_id": schema_ref("SpiffeId"),
                "entry_id": schema_ref("EntryIdFilter"),
                "target": schema_ref("CredentialName"),
                "agent_id": schema_ref("SpiffeId"),
            },
        },
        "LeaseFailure": {
            "type": "object",
            "required": ["lease_id", "error"],
            "properties": {"lease_id": string, "error": string},
        },
        "LeasesRevoked": {
            "type": "object",
            "required": ["revoked", "failed"],
            "properties": {
                "revoked": {"type": "array", "items": {"type": "string"}, "description": "Ids of the leases revoked now"},
                "failed": {"type": "array", "items": schema_ref("LeaseFailure")},
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    #[test]
    fn lease_query_round_trips_and_refuses_unknown_or_repeated_parameters() {
        let q = LeaseQuery {
            target: Some("pg".into()),
            role: Some("ro".into()),
            spiffe_id: Some("spiffe://td/a b".into()),
            entry_id: Some("e&1".into()),
            agent_id: Some("spiffe://td/sigil/agent/x".into()),
            state: Some("active".into()),
            page: crate::PageQuery {
                page_size: Some("5".into()),
                page_token: Some("YWJj".into()),
            },
        };
        assert_eq!(LeaseQuery::parse(&q.to_query_string()).unwrap(), q);
        assert_eq!(LeaseQuery::default().to_query_string(), "");
        assert_eq!(
            LeaseQuery::parse("owner=a"),
            Err(crate::WireError::UnknownQueryParameter("owner".into()))
        );
        assert_eq!(
            LeaseQuery::parse("state=active&state=revoked"),
            Err(crate::WireError::RepeatedQueryParameter("state".into()))
        );
    }

    #[test]
    fn optional_fields_refuse_null() {
        // The positive path first: absent is fine.
        assert!(serde_json::from_str::<RenewLeaseRequest>("{}").is_ok());
        assert!(serde_json::from_str::<RenewLeaseRequest>(r#"{"increment": null}"#).is_err());
        assert!(serde_json::from_str::<RevokeLeasesRequest>(r#"{"target": null}"#).is_err());
    }

    #[test]
    fn update_revision_takes_integral_numbers() {
        let spec = r#"{"name":"pg","type":"postgresql","url":"postgres://a@h/d","password_env":"P","owner":"o","roles":[]}"#;
        let parsed: TargetUpdateRequest =
            serde_json::from_str(&format!(r#"{{"spec":{spec},"revision":3.0}}"#)).unwrap();
        assert_eq!(parsed.revision, 3);
        assert!(
            serde_json::from_str::<TargetUpdateRequest>(&format!(
                r#"{{"spec":{spec},"revision":3.5}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn lease_ids_are_recognised() {
        assert!(is_valid_lease_id(&format!("lease_{}", "0a".repeat(16))));
        assert!(!is_valid_lease_id(&format!("lease_{}", "0A".repeat(16))));
        assert!(!is_valid_lease_id("lease_"));
        assert!(!is_valid_lease_id(&format!("lease_{}", "0".repeat(33))));
    }

    proptest! {
        #[test]
        fn name_check_agrees_with_its_pattern(s in "[a-z0-9_A-Z\\-é]{0,70}") {
            let re = Regex::new(NAME_PATTERN).unwrap();
            prop_assert_eq!(is_valid_name(&s), re.is_match(&s), "{}", s);
        }

        #[test]
        fn lease_id_check_agrees_with_its_pattern(s in "(lease_)?[0-9a-fA-F]{30,34}") {
            let re = Regex::new(LEASE_ID_PATTERN).unwrap();
            prop_assert_eq!(is_valid_lease_id(&s), re.is_match(&s), "{}", s);
        }
    }
}
