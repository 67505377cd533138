//! The admin API's route paths, in the `{param}` template syntax shared by axum 0.8 and OpenAPI,
//! and builders for concrete request paths.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Prefix of every admin API route.
pub const API_PREFIX: &str = "/api/v1";
/// `GET`: the OpenAPI 3.1 document.
pub const OPENAPI: &str = "/api/v1/openapi.json";
/// `POST`: create an entry; `GET`: list entries.
pub const ENTRIES: &str = "/api/v1/entries";
/// `POST`: create up to `MAX_ENTRY_BATCH` entries, all or nothing (SPIRE's `BatchCreateEntry`,
/// without its partial success).
pub const ENTRIES_BATCH_CREATE: &str = "/api/v1/entries/batch-create";
/// `GET`, `PUT`, `DELETE`: one entry by id.
pub const ENTRY: &str = "/api/v1/entries/{id}";
/// `POST`: create a join token.
pub const JOIN_TOKENS: &str = "/api/v1/join-tokens";
/// `GET`: list attested agents.
pub const AGENTS: &str = "/api/v1/agents";
/// `GET`: one agent by SPIFFE ID (percent-encoded as a single path segment); `DELETE`: evict
/// it (its record is deleted; it must attest again).
pub const AGENT: &str = "/api/v1/agents/{spiffe_id}";
/// `POST`: ban the agent (its record is kept, marked banned; it is refused from then on).
pub const AGENT_BAN: &str = "/api/v1/agents/{spiffe_id}/ban";
/// `GET`: list the signing authorities.
pub const AUTHORITIES: &str = "/api/v1/authorities";
/// `POST`: prepare a new authority of a kind ahead of the schedule.
pub const AUTHORITIES_PREPARE: &str = "/api/v1/authorities/prepare";
/// `POST`: make a prepared authority the one that signs.
pub const AUTHORITY_ACTIVATE: &str = "/api/v1/authorities/{id}/activate";
/// `POST`: mark an old authority as compromised.
pub const AUTHORITY_TAINT: &str = "/api/v1/authorities/{id}/taint";
/// `POST`: remove a tainted authority from the trust bundle.
pub const AUTHORITY_REVOKE: &str = "/api/v1/authorities/{id}/revoke";
/// `POST`: revoke one issued X509-SVID (by serial) or JWT-SVID (by `jti`); `GET`: list the
/// revocations whose credential has not expired.
pub const REVOCATIONS: &str = "/api/v1/revocations";
/// `POST`: create a federation relationship; `GET`: list them.
pub const FEDERATIONS: &str = "/api/v1/federations";
/// `GET`, `PATCH`, `DELETE`: the federation relationship with one trust domain (its name).
pub const FEDERATION: &str = "/api/v1/federations/{trust_domain}";
/// `POST`: fetch the foreign bundle of one federation relationship now.
pub const FEDERATION_REFRESH: &str = "/api/v1/federations/{trust_domain}/refresh";
/// `GET`: the server's own trust bundle document.
pub const BUNDLE: &str = "/api/v1/bundle";
/// `GET`: the Cedar policy set in force (hash, policy ids, actions, directory).
pub const POLICY: &str = "/api/v1/policy";
/// `POST`: decide a request against the policy set in force (a dry-run: nothing changes).
pub const POLICY_DECIDE: &str = "/api/v1/policy/decide";
/// `POST`: read the policy directory again now (as `SIGHUP` does).
pub const POLICY_RELOAD: &str = "/api/v1/policy/reload";
/// `GET`: audit records in sequence order, filtered and paged by sequence.
pub const AUDIT: &str = "/api/v1/audit";
/// `GET`: the whole audit chain as JSON lines (header, keys, checkpoints, records, and a closing
/// checkpoint signed at export time), verifiable offline.
pub const AUDIT_EXPORT: &str = "/api/v1/audit/export";
/// `POST`: verify the audit chain in the datastore from its first record.
pub const AUDIT_VERIFY: &str = "/api/v1/audit/verify";
/// `GET`: the audit keys of every server replica.
pub const AUDIT_KEYS: &str = "/api/v1/audit/keys";
/// `POST`: record an owner's review of an entry.
pub const ENTRY_REVIEW: &str = "/api/v1/entries/{id}/review";
/// `GET`: the inventory's counts and owners.
pub const INVENTORY: &str = "/api/v1/inventory";
/// `GET`: entries with their usage summary and last review (paged, filtered).
pub const INVENTORY_ENTRIES: &str = "/api/v1/inventory/entries";
/// `GET`: one entry with its workloads' usage and its recent credentials.
pub const INVENTORY_ENTRY: &str = "/api/v1/inventory/entries/{id}";
/// `GET`: the owners and what each owns.
pub const INVENTORY_OWNERS: &str = "/api/v1/inventory/owners";
/// `GET`: the governance findings (filtered).
pub const INVENTORY_REPORT: &str = "/api/v1/inventory/report";
/// `GET`: liveness and trust domain.
pub const HEALTH: &str = "/api/v1/health";
/// `GET`: list the credential targets (configured and stored); `POST`: create one.
pub const CREDENTIAL_TARGETS: &str = "/api/v1/credential-targets";
/// `GET`, `PUT`, `DELETE`: one credential target by name.
pub const CREDENTIAL_TARGET: &str = "/api/v1/credential-targets/{name}";
/// `POST`: change a target's administrative password to a new one only Sigil knows.
pub const CREDENTIAL_TARGET_ROTATE_ROOT: &str = "/api/v1/credential-targets/{name}/rotate-root";
/// `GET`: list the leases of brokered database credentials (paged, filtered).
pub const LEASES: &str = "/api/v1/leases";
/// `POST`: revoke every active lease matching the fields given.
pub const LEASES_REVOKE: &str = "/api/v1/leases/revoke";
/// `GET`: one lease by id.
pub const LEASE: &str = "/api/v1/leases/{id}";
/// `POST`: renew one lease.
pub const ADMIN_LEASE_RENEW: &str = "/api/v1/leases/{id}/renew";
/// `POST`: revoke one lease.
pub const ADMIN_LEASE_REVOKE: &str = "/api/v1/leases/{id}/revoke";

/// Bytes escaped in a path segment: everything but RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path of entry `id`, with `id` percent-encoded as one segment.
pub fn entry(id: &str) -> String {
    format!("{ENTRIES}/{}", encode_segment(id))
}

/// The review path of entry `id` (percent-encoded as one segment).
pub fn entry_review(id: &str) -> String {
    format!("{}/review", entry(id))
}

/// The path of the agent `spiffe_id`, percent-encoded as one segment (so its `/` become `%2F`).
pub fn agent(spiffe_id: &str) -> String {
    format!("{AGENTS}/{}", encode_segment(spiffe_id))
}

/// The ban path of the agent `spiffe_id` (its ID percent-encoded as one segment).
pub fn agent_ban(spiffe_id: &str) -> String {
    format!("{}/ban", agent(spiffe_id))
}

/// The path that activates authority `id` (percent-encoded as one segment).
pub fn authority_activate(id: &str) -> String {
    AUTHORITY_ACTIVATE.replace("{id}", &encode_segment(id))
}

/// The path that taints authority `id` (percent-encoded as one segment).
pub fn authority_taint(id: &str) -> String {
    AUTHORITY_TAINT.replace("{id}", &encode_segment(id))
}

/// The path that revokes authority `id` (percent-encoded as one segment).
pub fn authority_revoke(id: &str) -> String {
    AUTHORITY_REVOKE.replace("{id}", &encode_segment(id))
}

/// The path of the federation relationship with `trust_domain` (percent-encoded as one segment).
pub fn federation(trust_domain: &str) -> String {
    FEDERATION.replace("{trust_domain}", &encode_segment(trust_domain))
}

/// The refresh path of the federation relationship with `trust_domain`.
pub fn federation_refresh(trust_domain: &str) -> String {
    FEDERATION_REFRESH.replace("{trust_domain}", &encode_segment(trust_domain))
}

/// The inventory path of entry `id`, with `id` percent-encoded as one segment.
pub fn inventory_entry(id: &str) -> String {
    format!("{INVENTORY_ENTRIES}/{}", encode_segment(id))
}

/// The path of credential target `name` (percent-encoded as one segment).
pub fn credential_target(name: &str) -> String {
    CREDENTIAL_TARGET.replace("{name}", &encode_segment(name))
}

/// The root rotation path of credential target `name`.
pub fn credential_target_rotate_root(name: &str) -> String {
    CREDENTIAL_TARGET_ROTATE_ROOT.replace("{name}", &encode_segment(name))
}

/// The path of lease `id` (percent-encoded as one segment).
pub fn lease(id: &str) -> String {
    LEASE.replace("{id}", &encode_segment(id))
}

/// The renewal path of lease `id`.
pub fn lease_renew(id: &str) -> String {
    ADMIN_LEASE_RENEW.replace("{id}", &encode_segment(id))
}

/// The revocation path of lease `id`.
pub fn lease_revoke(id: &str) -> String {
    ADMIN_LEASE_REVOKE.replace("{id}", &encode_segment(id))
}

/// `value` percent-encoded so that it is exactly one path segment.
pub fn encode_segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_path_keeps_the_spiffe_id_in_one_segment() {
        assert_eq!(
            agent("spiffe://example.org/sigil/agent/join_token/ab"),
            "/api/v1/agents/spiffe%3A%2F%2Fexample.org%2Fsigil%2Fagent%2Fjoin_token%2Fab"
        );
    }

    #[test]
    fn ban_path_is_the_agent_path_and_one_more_segment() {
        assert_eq!(
            agent_ban("spiffe://example.org/sigil/agent/join_token/ab"),
            "/api/v1/agents/spiffe%3A%2F%2Fexample.org%2Fsigil%2Fagent%2Fjoin_token%2Fab/ban"
        );
        assert_eq!(
            AGENT_BAN.replace("{spiffe_id}", "x"),
            agent_ban("x"),
            "the builder and the route template agree"
        );
    }

    #[test]
    fn authority_paths_keep_the_id_in_one_segment() {
        assert_eq!(authority_activate("k1"), "/api/v1/authorities/k1/activate");
        assert_eq!(authority_taint("a/b"), "/api/v1/authorities/a%2Fb/taint");
        assert_eq!(authority_revoke("k_-1"), "/api/v1/authorities/k_-1/revoke");
    }

    #[test]
    fn federation_paths_keep_the_trust_domain_in_one_segment() {
        assert_eq!(federation("partner.org"), "/api/v1/federations/partner.org");
        assert_eq!(
            federation_refresh("spiffe://p.org"),
            "/api/v1/federations/spiffe%3A%2F%2Fp.org/refresh"
        );
    }

    #[test]
    fn credential_paths_keep_their_parameter_in_one_segment() {
        assert_eq!(credential_target("pg"), "/api/v1/credential-targets/pg");
        assert_eq!(
            credential_target_rotate_root("a/b"),
            "/api/v1/credential-targets/a%2Fb/rotate-root"
        );
        assert_eq!(lease("lease_0a"), "/api/v1/leases/lease_0a");
        assert_eq!(lease_renew("x"), "/api/v1/leases/x/renew");
        assert_eq!(lease_revoke("x"), "/api/v1/leases/x/revoke");
    }

    #[test]
    fn entry_path_escapes_reserved_characters() {
        assert_eq!(entry("a/b?c"), "/api/v1/entries/a%2Fb%3Fc");
        assert_eq!(entry("abc-_.~"), "/api/v1/entries/abc-_.~");
    }
}
