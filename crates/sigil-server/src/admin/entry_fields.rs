//! Turns an entry request from the wire into a [`NewEntry`]: every field is parsed into its
//! `sigil-spiffe` type, and the first problem is answered as a 400 naming the field, the value
//! and the reason. Nothing reaches the datastore unless the whole request is valid.

use std::collections::BTreeMap;

use sigil_api::ErrorCode;
use sigil_api::entries::{
    MAX_DESCRIPTION_CHARS, MAX_ENTRY_DNS_NAMES, MAX_ENTRY_FEDERATES_WITH, MAX_ENTRY_LABELS,
    MAX_ENTRY_SELECTORS, MAX_HINT_CHARS, MAX_OWNER_CHARS,
};
use sigil_api::schemas::MAX_DNS_NAME_BYTES;
use sigil_api::{EntryRequest, TtlValue};
use sigil_spiffe::{Selector, SpiffeId, TrustDomain, Ttl};
use sigil_store::NewEntry;

use super::api_error::{ApiError, quote};
use crate::naming;

/// Longest DNS label, in bytes.
const MAX_DNS_LABEL_BYTES: usize = 63;

/// Whether the request creates an entry or replaces one; the rules differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `POST`: `revision` is refused and `expires_at` must lie in the future (409 otherwise: the
    /// request is well formed, the server's clock makes it unacceptable).
    Create,
    /// `PUT`: `revision`, when given, guards the replacement.
    Replace,
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValidEntry {
    pub(crate) spec: NewEntry,
    /// `PUT` only: the revision the caller expects to replace.
    pub(crate) revision: Option<i64>,
}

/// Parses `req` for an entry of trust domain `td` at time `now` (Unix seconds).
pub(crate) fn parse_entry_request(
    req: EntryRequest,
    td: &TrustDomain,
    now: i64,
    mode: Mode,
) -> Result<ValidEntry, ApiError> {
    let spiffe_id = parse_member_id("spiffe_id", req.spiffe_id.as_deref(), td)?;
    if spiffe_id.path().is_empty() {
        return Err(ApiError::invalid_value(
            "spiffe_id",
            spiffe_id.as_str(),
            "a workload ID needs a path; the trust domain ID itself cannot be issued",
        ));
    }
    if naming::is_reserved(&spiffe_id) {
        return Err(ApiError::invalid_value(
            "spiffe_id",
            spiffe_id.as_str(),
            format!(
                "the `{}` path is reserved for agents and the server",
                naming::RESERVED_PATH_PREFIX
            ),
        ));
    }
    let parent_id = parse_member_id("parent_id", req.parent_id.as_deref(), td)?;
    check_parent(&parent_id, &spiffe_id, td)?;
    let selectors = parse_selectors(&req.selectors)?;
    let x509_svid_ttl = parse_ttl("x509_svid_ttl", req.x509_svid_ttl.as_ref())?;
    let jwt_svid_ttl = parse_ttl("jwt_svid_ttl", req.jwt_svid_ttl.as_ref())?;
    let dns_names = parse_dns_names(req.dns_names)?;
    let federates_with = parse_federates_with(&req.federates_with, td)?;
    let hint = parse_text("hint", req.hint, MAX_HINT_CHARS)?;
    let owner = parse_owner(req.owner)?;
    let description = parse_text("description", req.description, MAX_DESCRIPTION_CHARS)?;
    let labels = parse_labels(req.labels)?;
    let expires_at = parse_expires_at(req.expires_at, now, mode)?;
    let revision = match (mode, req.revision) {
        (Mode::Create, Some(_)) => {
            return Err(ApiError::invalid(
                "revision is only accepted when replacing an entry (PUT)",
            ));
        }
        (Mode::Replace, Some(r)) if r < 1 => {
            return Err(ApiError::invalid_value(
                "revision",
                &r.to_string(),
                "revisions start at 1",
            ));
        }
        (_, revision) => revision,
    };
    Ok(ValidEntry {
        spec: NewEntry {
            spiffe_id,
            parent_id,
            selectors,
            x509_svid_ttl,
            jwt_svid_ttl,
            dns_names,
            federates_with,
            admin: req.admin,
            downstream: req.downstream,
            hint,
            owner,
            description,
            expires_at,
            labels,
        },
        revision,
    })
}

/// Parses a required SPIFFE ID that must belong to `td`.
fn parse_member_id(field: &str, raw: Option<&str>, td: &TrustDomain) -> Result<SpiffeId, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::invalid(format!("{field} is required")))?;
    let id = SpiffeId::parse(raw).map_err(|err| ApiError::invalid_value(field, raw, err))?;
    if !id.is_member_of(td) {
        return Err(ApiError::invalid_value(
            field,
            raw,
            format!("not in the server's trust domain `{td}`"),
        ));
    }
    Ok(id)
}

/// A parent that can hold the entry: not the entry itself (409), and inside the reserved
/// `/sigil/` path only an agent (`/sigil/agent/<attestor>/<id>`) or the server (node aliases).
fn check_parent(parent: &SpiffeId, spiffe_id: &SpiffeId, td: &TrustDomain) -> Result<(), ApiError> {
    if parent == spiffe_id {
        // 409, not 400: each field is valid on its own, and no schema can state that two fields
        // differ; the entry graph would hold a cycle.
        return Err(ApiError {
            code: ErrorCode::Conflict,
            message: format!("invalid parent_id `{parent}`: an entry cannot be its own parent"),
        });
    }
    if naming::is_reserved(parent) && !is_agent_shaped(parent) && *parent != naming::server_id(td) {
        return Err(ApiError::invalid_value(
            "parent_id",
            parent.as_str(),
            format!(
                "inside the reserved `{}` path only agents (`/sigil/agent/<attestor>/<id>`) \
                 and the server (`/sigil/server`) can be parents",
                naming::RESERVED_PATH_PREFIX.trim_end_matches('/')
            ),
        ));
    }
    Ok(())
}

/// An agent ID with at least the attestor and the agent's own id after `/sigil/agent/`.
fn is_agent_shaped(id: &SpiffeId) -> bool {
    naming::is_agent_id(id)
        && id
            .path()
            .strip_prefix(AGENT_PATH_PREFIX)
            .is_some_and(|rest| rest.split('/').count() >= 2)
}

/// The path prefix of agent IDs; [`naming::is_agent_id`] checks the same.
const AGENT_PATH_PREFIX: &str = "/sigil/agent/";

fn parse_selectors(raw: &[String]) -> Result<Vec<Selector>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(
            "selectors is required: give at least one `type:value` selector",
        ));
    }
    if raw.len() > MAX_ENTRY_SELECTORS {
        return Err(ApiError::invalid(format!(
            "too many selectors: {}, at most {MAX_ENTRY_SELECTORS}",
            raw.len()
        )));
    }
    raw.iter()
        .map(|s| Selector::parse(s).map_err(|err| ApiError::invalid_value("selector", s, err)))
        .collect()
}

/// Absent and `0` mean "server default" (stored as 0); anything else must be a valid [`Ttl`].
fn parse_ttl(field: &str, raw: Option<&TtlValue>) -> Result<u64, ApiError> {
    match raw {
        None | Some(TtlValue::Seconds(0)) => Ok(0),
        Some(raw) => parse_wire_ttl(field, raw).map(Ttl::as_secs),
    }
}

/// A TTL from a request body: seconds, or text in its canonical form (`90`, `90s`, `15m`, `1h`,
/// `2d`: no space, sign or leading zero, which the OpenAPI document's pattern states), within
/// [`Ttl`]'s bounds.
pub(crate) fn parse_wire_ttl(field: &str, raw: &TtlValue) -> Result<Ttl, ApiError> {
    let parsed = match raw {
        TtlValue::Seconds(n) => Ttl::from_secs(*n),
        TtlValue::Text(t)
            if t.starts_with(|c: char| matches!(c, '1'..='9'))
                && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            Ttl::parse(t)
        }
        TtlValue::Text(t) => Err(sigil_spiffe::TtlError::Malformed(
            t.chars().take(40).collect(),
        )),
    };
    parsed.map_err(|err| ApiError::invalid_value(field, &raw.to_string(), err))
}

fn parse_dns_names(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_ENTRY_DNS_NAMES {
        return Err(ApiError::invalid(format!(
            "too many dns_names: {}, at most {MAX_ENTRY_DNS_NAMES}",
            raw.len()
        )));
    }
    for name in &raw {
        check_dns_name(name).map_err(|reason| ApiError::invalid_value("dns_name", name, reason))?;
    }
    Ok(raw)
}

/// A DNS name as X.509 SANs carry it: dot-separated labels of letters, digits and `-` (not at
/// either end), 1 to 63 bytes each, at most 253 bytes in all; the first label may be `*`.
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.len() > MAX_DNS_NAME_BYTES {
        return Err(format!("is longer than {MAX_DNS_NAME_BYTES} bytes"));
    }
    for (i, label) in name.split('.').enumerate() {
        if i == 0 && label == "*" {
            if name == "*" {
                return Err("a wildcard needs a domain after `*.`".to_owned());
            }
            continue;
        }
        if label.is_empty() {
            return Err("has an empty label".to_owned());
        }
        if label.len() > MAX_DNS_LABEL_BYTES {
            return Err(format!(
                "has a label longer than {MAX_DNS_LABEL_BYTES} bytes"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!(
                "has the character `{}`: only letters, digits, `-` and `.` are allowed (and `*` as the whole first label)",
                quote(&c.to_string())
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label starting or ending with `-`".to_owned());
        }
    }
    Ok(())
}

fn parse_federates_with(raw: &[String], td: &TrustDomain) -> Result<Vec<TrustDomain>, ApiError> {
    if raw.len() > MAX_ENTRY_FEDERATES_WITH {
        return Err(ApiError::invalid(format!(
            "too many federates_with: {}, at most {MAX_ENTRY_FEDERATES_WITH}",
            raw.len()
        )));
    }
    raw.iter()
        .map(|s| {
            let other = TrustDomain::parse(s)
                .map_err(|err| ApiError::invalid_value("federates_with", s, err))?;
            if &other == td {
                return Err(ApiError::invalid_value(
                    "federates_with",
                    s,
                    "that is the server's own trust domain",
                ));
            }
            Ok(other)
        })
        .collect()
}

fn parse_owner(raw: Option<String>) -> Result<String, ApiError> {
    let owner = raw.unwrap_or_default();
    if owner.trim().is_empty() {
        return Err(ApiError::invalid(
            "owner is required: name the team or contact accountable for this identity",
        ));
    }
    parse_text("owner", owner, MAX_OWNER_CHARS)
}

/// Free text: bounded in characters, no control characters (so it always prints on one line).
fn parse_text(field: &str, value: String, max_chars: usize) -> Result<String, ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid(format!(
            "invalid {field}: longer than {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_value(
            field,
            &value,
            "has a control character",
        ));
    }
    Ok(value)
}

/// At most [`MAX_ENTRY_LABELS`] labels, each key and value as the datastore accepts them
/// ([`sigil_store::label_key_problem`], [`sigil_store::label_value_problem`]); a bad one is named
/// by its key.
fn parse_labels(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if raw.len() > MAX_ENTRY_LABELS {
        return Err(ApiError::invalid(format!(
            "too many labels: {}, at most {MAX_ENTRY_LABELS}",
            raw.len()
        )));
    }
    for (key, value) in &raw {
        if let Some(problem) = sigil_store::label_key_problem(key) {
            return Err(ApiError::invalid_value("labels", key, problem));
        }
        if let Some(problem) = sigil_store::label_value_problem(value) {
            return Err(ApiError::invalid_value("labels", key, problem));
        }
    }
    Ok(raw)
}

fn parse_expires_at(raw: Option<i64>, now: i64, mode: Mode) -> Result<Option<i64>, ApiError> {
    match raw {
        Some(t) if t <= 0 => Err(ApiError::invalid_value(
            "expires_at",
            &t.to_string(),
            "must be a positive number of Unix seconds",
        )),
        Some(t) if mode == Mode::Create && t <= now => Err(ApiError {
            code: ErrorCode::Conflict,
            message: format!("invalid expires_at `{t}`: is not in the future (now is {now})"),
        }),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    fn request() -> EntryRequest {
        EntryRequest {
            spiffe_id: Some("spiffe://example.org/web".into()),
            parent_id: Some("spiffe://example.org/sigil/agent/join_token/abc".into()),
            selectors: vec!["unix:uid:1000".into()],
            owner: Some("team-web".into()),
            ..EntryRequest::default()
        }
    }

    fn error_of(req: EntryRequest, mode: Mode) -> String {
        parse_entry_request(req, &td(), NOW, mode)
            .unwrap_err()
            .message
    }

    #[test]
    fn accepts_a_minimal_request_with_server_default_ttls() {
        let valid = parse_entry_request(request(), &td(), NOW, Mode::Create).unwrap();
        assert_eq!(valid.spec.spiffe_id.as_str(), "spiffe://example.org/web");
        assert_eq!(valid.spec.x509_svid_ttl, 0);
        assert_eq!(valid.spec.jwt_svid_ttl, 0);
        assert_eq!(valid.revision, None);
    }

    #[test]
    fn ttls_accept_seconds_and_durations() {
        let mut req = request();
        req.x509_svid_ttl = Some(TtlValue::Text("1h".into()));
        req.jwt_svid_ttl = Some(TtlValue::Seconds(300));
        let valid = parse_entry_request(req, &td(), NOW, Mode::Create).unwrap();
        assert_eq!(valid.spec.x509_svid_ttl, 3600);
        assert_eq!(valid.spec.jwt_svid_ttl, 300);
    }

    #[test]
    fn bad_spiffe_id_names_the_field_the_value_and_the_reason() {
        let mut req = request();
        req.spiffe_id = Some("spiffe://Bad/x".into());
        let msg = error_of(req, Mode::Create);
        assert!(
            msg.starts_with(
                "invalid spiffe_id `spiffe://Bad/x`: trust domain has the character `B`"
            ),
            "{msg}"
        );
    }

    #[test]
    fn ids_outside_the_trust_domain_are_refused() {
        let mut req = request();
        req.spiffe_id = Some("spiffe://other.org/web".into());
        assert!(
            error_of(req, Mode::Create).contains("not in the server's trust domain `example.org`")
        );
        let mut req = request();
        req.parent_id = Some("spiffe://other.org/agent".into());
        assert!(error_of(req, Mode::Create).starts_with("invalid parent_id"));
    }

    #[test]
    fn reserved_and_bare_trust_domain_ids_are_refused() {
        let mut req = request();
        req.spiffe_id = Some("spiffe://example.org/sigil/agent/join_token/x".into());
        assert!(error_of(req, Mode::Create).contains("reserved"));
        let mut req = request();
        req.spiffe_id = Some("spiffe://example.org".into());
        assert!(error_of(req, Mode::Create).contains("needs a path"));
    }

    #[test]
    fn missing_required_fields_are_named() {
        let mut req = request();
        req.owner = None;
        assert!(error_of(req, Mode::Create).starts_with("owner is required"));
        let mut req = request();
        req.owner = Some("   ".into());
        assert!(error_of(req, Mode::Create).starts_with("owner is required"));
        let mut req = request();
        req.spiffe_id = None;
        assert_eq!(error_of(req, Mode::Create), "spiffe_id is required");
        let mut req = request();
        req.parent_id = None;
        assert_eq!(error_of(req, Mode::Create), "parent_id is required");
        let mut req = request();
        req.selectors.clear();
        assert!(error_of(req, Mode::Create).starts_with("selectors is required"));
    }

    #[test]
    fn parents_inside_the_reserved_path_must_be_agents_or_the_server() {
        for ok in [
            "spiffe://example.org/sigil/agent/join_token/abc",
            "spiffe://example.org/sigil/agent/k8s_psat/cluster/node",
            "spiffe://example.org/sigil/server",
            "spiffe://example.org/node-group",
            "spiffe://example.org/sigilx/a",
        ] {
            let mut req = request();
            req.parent_id = Some(ok.into());
            assert!(
                parse_entry_request(req, &td(), NOW, Mode::Create).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "spiffe://example.org/sigil/bogus",
            "spiffe://example.org/sigil/agents/join_token/abc",
            "spiffe://example.org/sigil/agent/join_token",
            "spiffe://example.org/sigil/agent",
            "spiffe://example.org/sigil",
            "spiffe://example.org/sigil/server/x",
        ] {
            let mut req = request();
            req.parent_id = Some(bad.into());
            let msg = error_of(req, Mode::Create);
            assert_eq!(
                msg,
                format!(
                    "invalid parent_id `{bad}`: inside the reserved `/sigil` path only agents \
                     (`/sigil/agent/<attestor>/<id>`) and the server (`/sigil/server`) can be parents"
                )
            );
        }
    }

    #[test]
    fn an_entry_cannot_be_its_own_parent() {
        let mut req = request();
        req.parent_id = Some("spiffe://example.org/web/child".into());
        assert!(parse_entry_request(req, &td(), NOW, Mode::Create).is_ok());
        let mut req = request();
        req.parent_id = req.spiffe_id.clone();
        let err = parse_entry_request(req, &td(), NOW, Mode::Replace).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        assert_eq!(
            err.message,
            "invalid parent_id `spiffe://example.org/web`: an entry cannot be its own parent"
        );
    }

    #[test]
    fn impossible_unix_selectors_are_refused() {
        for (bad, reason) in [
            ("unix:uid:abc", "unix selector `uid` takes a decimal number"),
            ("unix:uid:-1", "unix selector `uid` takes a decimal number"),
            (
                "unix:sha256:xyz",
                "unix selector `sha256` takes 64 lowercase hex digits",
            ),
            (
                "unix:path:bin/sh",
                "unix selector `path` takes an absolute path",
            ),
            ("unix:pid:1", "unknown unix selector `pid`"),
        ] {
            let mut req = request();
            req.selectors = vec![bad.into()];
            let msg = error_of(req, Mode::Create);
            assert!(
                msg.starts_with(&format!("invalid selector `{bad}`: {reason}")),
                "{msg}"
            );
        }
    }

    #[test]
    fn bad_selector_is_quoted() {
        let mut req = request();
        req.selectors.push("unix".into());
        let msg = error_of(req, Mode::Create);
        assert!(msg.starts_with("invalid selector `unix`: "), "{msg}");
    }

    #[test]
    fn bad_ttls_are_refused_with_the_field_name() {
        let mut req = request();
        req.x509_svid_ttl = Some(TtlValue::Text("0".into()));
        assert!(error_of(req, Mode::Create).starts_with("invalid x509_svid_ttl `0`: "));
        let mut req = request();
        req.jwt_svid_ttl = Some(TtlValue::Text("soon".into()));
        assert!(error_of(req, Mode::Create).starts_with("invalid jwt_svid_ttl `soon`: "));
        let mut req = request();
        req.jwt_svid_ttl = Some(TtlValue::Seconds(400 * 86_400));
        assert!(error_of(req, Mode::Create).starts_with("invalid jwt_svid_ttl `34560000`: "));
    }

    #[test]
    fn dns_names_follow_hostname_rules() {
        for ok in ["a.example", "*.example.org", "x-1.y", "localhost"] {
            assert_eq!(check_dns_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "*",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a.*.c",
            "a b",
            &"a".repeat(64),
            &"a.".repeat(127),
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad}");
        }
        let mut req = request();
        req.dns_names = vec!["ok.example".into(), "bad name".into()];
        assert!(error_of(req, Mode::Create).starts_with("invalid dns_name `bad name`: "));
    }

    #[test]
    fn federates_with_takes_other_trust_domains_only() {
        let mut req = request();
        req.federates_with = vec!["partner.org".into()];
        let valid = parse_entry_request(req, &td(), NOW, Mode::Create).unwrap();
        assert_eq!(valid.spec.federates_with[0].as_str(), "partner.org");
        let mut req = request();
        req.federates_with = vec!["example.org".into()];
        assert!(error_of(req, Mode::Create).contains("own trust domain"));
        let mut req = request();
        req.federates_with = vec!["Partner.org".into()];
        assert!(error_of(req, Mode::Create).starts_with("invalid federates_with `Partner.org`: "));
    }

    #[test]
    fn revision_is_for_replacement_only() {
        let mut req = request();
        req.revision = Some(3);
        assert!(error_of(req.clone(), Mode::Create).starts_with("revision is only accepted"));
        let valid = parse_entry_request(req, &td(), NOW, Mode::Replace).unwrap();
        assert_eq!(valid.revision, Some(3));
        let mut req = request();
        req.revision = Some(0);
        assert!(error_of(req, Mode::Replace).starts_with("invalid revision `0`"));
    }

    #[test]
    fn expires_at_must_be_in_the_future_on_create() {
        let mut req = request();
        req.expires_at = Some(NOW - 1);
        let err = parse_entry_request(req.clone(), &td(), NOW, Mode::Create).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        assert!(err.message.contains("not in the future"), "{}", err.message);
        assert!(parse_entry_request(req, &td(), NOW, Mode::Replace).is_ok());
        let mut req = request();
        req.expires_at = Some(-5);
        assert!(error_of(req, Mode::Replace).starts_with("invalid expires_at `-5`"));
    }

    #[test]
    fn text_fields_are_bounded_and_single_line() {
        let mut req = request();
        req.owner = Some("o".repeat(MAX_OWNER_CHARS + 1));
        assert!(error_of(req, Mode::Create).starts_with("invalid owner: longer than"));
        let mut req = request();
        req.description = "line\nbreak".into();
        assert!(error_of(req, Mode::Create).contains("control character"));
        let mut req = request();
        req.hint = "h".repeat(MAX_HINT_CHARS + 1);
        assert!(error_of(req, Mode::Create).starts_with("invalid hint"));
    }

    #[test]
    fn any_text_within_the_api_limits_fits_the_datastore() {
        // A character is at most 4 bytes of UTF-8.
        assert_eq!(MAX_OWNER_CHARS * 4, sigil_store::MAX_OWNER_BYTES);
        assert_eq!(
            MAX_DESCRIPTION_CHARS * 4,
            sigil_store::MAX_DESCRIPTION_BYTES
        );
        let mut req = request();
        req.owner = Some("🦀".repeat(MAX_OWNER_CHARS));
        req.description = "🦀".repeat(MAX_DESCRIPTION_CHARS);
        let valid = parse_entry_request(req, &td(), NOW, Mode::Create).unwrap();
        assert!(valid.spec.normalized().is_ok());
    }

    #[test]
    fn ttl_text_must_be_canonical() {
        for bad in [" 1h", "1h ", "01h", "0", "+5m", "007"] {
            let mut req = request();
            req.x509_svid_ttl = Some(TtlValue::Text(bad.into()));
            let msg = error_of(req, Mode::Create);
            assert!(
                msg.starts_with(&format!("invalid x509_svid_ttl `{bad}`: ")),
                "{msg}"
            );
        }
        let mut req = request();
        req.x509_svid_ttl = Some(TtlValue::Text("10m".into()));
        assert!(parse_entry_request(req, &td(), NOW, Mode::Create).is_ok());
    }

    #[test]
    fn labels_are_kept_and_bad_ones_are_named_by_key() {
        let mut req = request();
        req.labels = [("tier", "web"), ("app.kubernetes.io/name", "a=b c")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let valid = parse_entry_request(req.clone(), &td(), NOW, Mode::Create).unwrap();
        assert_eq!(valid.spec.labels, req.labels);
        assert!(valid.spec.normalized().is_ok());

        let mut bad_key = req.clone();
        bad_key.labels.insert("Tier".to_owned(), "web".to_owned());
        let msg = error_of(bad_key, Mode::Create);
        assert!(
            msg.starts_with("invalid labels `Tier`: a label key"),
            "{msg}"
        );
        let mut bad_value = req.clone();
        bad_value.labels.insert(
            "tier".to_owned(),
            "v".repeat(sigil_store::MAX_LABEL_VALUE_BYTES + 1),
        );
        let msg = error_of(bad_value, Mode::Replace);
        assert!(
            msg.starts_with("invalid labels `tier`: a label value"),
            "{msg}"
        );
        let mut many = req;
        many.labels = (0..=MAX_ENTRY_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(error_of(many, Mode::Create).starts_with("too many labels: 33, at most 32"));
    }

    #[test]
    fn label_limits_of_the_api_are_the_datastores() {
        // Labels are ASCII, so characters and bytes agree.
        assert_eq!(MAX_ENTRY_LABELS, sigil_store::MAX_ENTRY_LABELS);
        assert_eq!(
            sigil_api::entries::MAX_LABEL_KEY_CHARS,
            sigil_store::MAX_LABEL_KEY_BYTES
        );
        assert_eq!(
            sigil_api::entries::MAX_LABEL_VALUE_CHARS,
            sigil_store::MAX_LABEL_VALUE_BYTES
        );
    }

    #[test]
    fn list_sizes_are_bounded() {
        let mut req = request();
        req.selectors = (0..=MAX_ENTRY_SELECTORS)
            .map(|i| format!("unix:uid:{i}"))
            .collect();
        assert!(error_of(req, Mode::Create).starts_with("too many selectors"));
    }
}
