//! `/api/v1/federations`: the federation relationships with foreign trust domains (create, list
//! filtered by owner, show, update, delete) and refreshing one foreign bundle on demand.
//!
//! The datastore holds the relationships and checks what every backend relies on (an `https://`
//! URL, the profile rule, an owner); this module parses the request into SPIFFE types, requires
//! an owner, refuses the server's own trust domain, reads an optional bootstrap bundle (a SPIFFE
//! bundle document or PEM certificates), and asks the running refresher for a refresh.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use sigil_api::entries::MAX_OWNER_CHARS;
use sigil_api::{
    ErrorCode, Federation, FederationList, FederationQuery, FederationRefreshed, FederationRequest,
    FederationUpdateRequest,
};
use sigil_spiffe::{BundleDocument, SpiffeId, TrustBundle, TrustDomain};
use sigil_store::{
    BundleEndpointProfile, FederationRelationship, FederationUpdate, NewFederationRelationship,
    StoreError, StoredBundle,
};

use super::AdminState;
use super::api_error::ApiError;
use super::body::{decode_json, require_empty};
use crate::federation::refresher::Refreshed;

/// How a PEM bootstrap bundle begins; anything else is read as a SPIFFE bundle document.
const PEM_BEGIN: &str = "-----BEGIN";

/// `POST /api/v1/federations` → 201 and the relationship. 400 for a malformed field, a missing
/// or blank owner, the server's own trust domain or a bootstrap bundle that cannot be read; 409
/// when a relationship
/// with that trust domain exists. The bootstrap bundle is stored only when no bundle of that
/// trust domain is held.
pub(crate) async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Federation>), ApiError> {
    let req: FederationRequest = decode_json(body, None)?;
    let trust_domain = parse_trust_domain(&state, &req.trust_domain)?;
    let url = parse_url(req.bundle_endpoint_url)?;
    let profile = parse_profile(&req.profile)?;
    let endpoint_spiffe_id = req
        .endpoint_spiffe_id
        .as_deref()
        .map(parse_endpoint_id)
        .transpose()?;
    let owner = parse_owner(req.owner.ok_or_else(|| {
        ApiError::invalid(
            "owner is required: name the team or contact accountable for this federation \
             relationship",
        )
    })?)?;
    let new = NewFederationRelationship {
        trust_domain: trust_domain.clone(),
        bundle_endpoint_url: url,
        profile,
        endpoint_spiffe_id,
        owner,
    };
    new.validate()?;
    // Read before anything is stored, so a bad bundle leaves no relationship behind.
    let bootstrap = req
        .bootstrap_bundle
        .as_deref()
        .map(|text| parse_bootstrap(&trust_domain, text))
        .transpose()?;
    let now = state.clock.unix_secs();
    let created = state.store.create_federation(new, now).await?;
    if let Some(bundle) = bootstrap {
        store_bootstrap(&state, bundle, now).await?;
    }
    tracing::info!(trust_domain = %trust_domain, "federation relationship created");
    Ok((
        StatusCode::CREATED,
        Json(with_bundle(&state, &created).await?),
    ))
}

/// `GET /api/v1/federations?owner=` → every relationship (with exactly that owner, when given),
/// ordered by trust domain. An empty `owner` lists the relationships that have none (created
/// before relationships had owners). 400 for an unknown or repeated query parameter.
pub(crate) async fn list(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<FederationList>, ApiError> {
    let query = FederationQuery::parse(query.as_deref().unwrap_or_default())?;
    let relationships = state.store.list_federations().await?;
    let bundles = state.store.list_bundles().await?;
    let federations = relationships
        .iter()
        .filter(|r| query.owner.as_ref().is_none_or(|owner| r.owner == *owner))
        .map(|r| {
            let bundle = bundles.iter().find(|b| b.trust_domain == r.trust_domain);
            to_wire(r, bundle)
        })
        .collect();
    Ok(Json(FederationList { federations }))
}

/// `GET /api/v1/federations/{trust_domain}` → the relationship; 400 for a malformed trust
/// domain, 404 when there is none.
pub(crate) async fn show(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Federation>, ApiError> {
    let trust_domain = path_trust_domain(raw)?;
    let relationship = stored(&state, &trust_domain).await?;
    Ok(Json(with_bundle(&state, &relationship).await?))
}

/// `PATCH /api/v1/federations/{trust_domain}` → the relationship after writing only the fields
/// given; 400 for a malformed field, 404 when there is none, 409 when the relationship that
/// would result breaks the profile rule (nothing changes then).
pub(crate) async fn update(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Federation>, ApiError> {
    let trust_domain = path_trust_domain(raw)?;
    let req: FederationUpdateRequest = decode_json(body, None)?;
    let update = FederationUpdate {
        bundle_endpoint_url: req.bundle_endpoint_url.map(parse_url).transpose()?,
        profile: req.profile.as_deref().map(parse_profile).transpose()?,
        endpoint_spiffe_id: match req.endpoint_spiffe_id {
            None => None,
            Some(None) => Some(None),
            Some(Some(id)) => Some(Some(parse_endpoint_id(&id)?)),
        },
        owner: req.owner.map(parse_owner).transpose()?,
    };
    // A request that contradicts itself is the caller's mistake (400); one that fits the
    // request but not the stored row is a conflict with the row (409).
    update.validate()?;
    let now = state.clock.unix_secs();
    let updated = state
        .store
        .update_federation(trust_domain.as_str(), update, now)
        .await
        .map_err(|err| match err {
            StoreError::Invalid { .. } => ApiError {
                code: ErrorCode::Conflict,
                message: format!(
                    "cannot update the relationship with `{trust_domain}`: {err} (set profile and \
                     endpoint_spiffe_id together)"
                ),
            },
            other => ApiError::from(other),
        })?;
    tracing::info!(trust_domain = %trust_domain, "federation relationship updated");
    Ok(Json(with_bundle(&state, &updated).await?))
}

/// `DELETE /api/v1/federations/{trust_domain}` → the relationship as it was; its bundle is
/// deleted with it. 400 for a malformed trust domain, 404 when there is none.
pub(crate) async fn delete(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Json<Federation>, ApiError> {
    let trust_domain = path_trust_domain(raw)?;
    let relationship = stored(&state, &trust_domain).await?;
    let answer = with_bundle(&state, &relationship).await?;
    state.store.delete_federation(trust_domain.as_str()).await?;
    tracing::info!(trust_domain = %trust_domain, "federation relationship deleted");
    Ok(Json(answer))
}

/// `POST /api/v1/federations/{trust_domain}/refresh` (no body) → what the refresh did. 400 for
/// a malformed trust domain or a body, 404 when there is no relationship, 502 when the endpoint
/// fails (the bundle held is kept), 503 when this server runs no refresher.
pub(crate) async fn refresh(
    State(state): State<AdminState>,
    raw: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<FederationRefreshed>, ApiError> {
    let trust_domain = path_trust_domain(raw)?;
    require_empty(body)?;
    stored(&state, &trust_domain).await?;
    let Some(refresher) = &state.federation else {
        return Err(ApiError {
            code: ErrorCode::Unavailable,
            message: "this server runs no federation refresher".to_owned(),
        });
    };
    let outcome = refresher
        .refresh_now(trust_domain.clone())
        .await
        .map_err(|err| ApiError {
            code: ErrorCode::UpstreamFailed,
            message: format!("cannot refresh the bundle of `{trust_domain}`: {err}"),
        })?;
    let (outcome, sequence) = match outcome {
        Refreshed::Updated { sequence } => ("updated", sequence),
        Refreshed::Unchanged { sequence } => ("unchanged", sequence),
    };
    tracing::info!(trust_domain = %trust_domain, outcome, sequence, "federated bundle refreshed");
    Ok(Json(FederationRefreshed {
        trust_domain: trust_domain.to_string(),
        outcome: outcome.to_owned(),
        sequence,
    }))
}

/// The relationship as the API answers it, with the bundle held (if any).
fn to_wire(relationship: &FederationRelationship, bundle: Option<&StoredBundle>) -> Federation {
    Federation {
        trust_domain: relationship.trust_domain.to_string(),
        bundle_endpoint_url: relationship.bundle_endpoint_url.clone(),
        profile: relationship.profile.as_str().to_owned(),
        endpoint_spiffe_id: relationship
            .endpoint_spiffe_id
            .as_ref()
            .map(ToString::to_string),
        owner: relationship.owner.clone(),
        created_at: relationship.created_at,
        updated_at: relationship.updated_at,
        bundle_sequence: bundle.map(|b| b.sequence),
        bundle_updated_at: bundle.map(|b| b.updated_at),
    }
}

/// [`to_wire`] after reading the bundle of the relationship's trust domain.
async fn with_bundle(
    state: &AdminState,
    relationship: &FederationRelationship,
) -> Result<Federation, ApiError> {
    let bundle = state
        .store
        .get_bundle(relationship.trust_domain.as_str())
        .await?;
    Ok(to_wire(relationship, bundle.as_ref()))
}

/// The stored relationship with `trust_domain`, or 404.
async fn stored(
    state: &AdminState,
    trust_domain: &TrustDomain,
) -> Result<FederationRelationship, ApiError> {
    state
        .store
        .get_federation(trust_domain.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no federation relationship with `{trust_domain}`"))
        })
}

/// The `{trust_domain}` path parameter, parsed; a 400 naming `trust_domain` otherwise.
fn path_trust_domain(raw: Result<Path<String>, PathRejection>) -> Result<TrustDomain, ApiError> {
    let Path(raw) = raw.map_err(|rejection| {
        ApiError::invalid(format!("invalid trust domain: {}", rejection.body_text()))
    })?;
    TrustDomain::parse(&raw).map_err(|err| ApiError::invalid_value("trust_domain", &raw, err))
}

/// A foreign trust domain: parsed, and not the server's own.
fn parse_trust_domain(state: &AdminState, raw: &str) -> Result<TrustDomain, ApiError> {
    let trust_domain =
        TrustDomain::parse(raw).map_err(|err| ApiError::invalid_value("trust_domain", raw, err))?;
    if trust_domain == state.trust_domain {
        return Err(ApiError::invalid(format!(
            "invalid trust_domain `{trust_domain}`: it is this server's own trust domain; \
             federate with other trust domains"
        )));
    }
    Ok(trust_domain)
}

/// A bundle endpoint URL: ASCII (URLs are; other characters are percent-encoded) without `[`
/// or `]`; the rest is checked by the datastore's rules.
fn parse_url(raw: String) -> Result<String, ApiError> {
    if !raw.is_ascii() {
        return Err(ApiError::invalid_value(
            "bundle_endpoint_url",
            &raw,
            "holds a non-ASCII character (percent-encode it)",
        ));
    }
    // URL parsers (Python's among them) refuse a bracket that does not enclose an IPv6 address,
    // so such URLs are not handed to clients of this API.
    if raw.contains(['[', ']']) {
        return Err(ApiError::invalid_value(
            "bundle_endpoint_url",
            &raw,
            "holds `[` or `]`: IPv6 literal hosts are not accepted here, use a DNS name",
        ));
    }
    Ok(raw)
}

/// An owner as entries' owners are held: not blank, at most [`MAX_OWNER_CHARS`] characters, no
/// control character (so it prints on one line). A 400 naming `owner` otherwise.
fn parse_owner(raw: String) -> Result<String, ApiError> {
    if raw.trim().is_empty() {
        return Err(ApiError::invalid(
            "invalid owner: must not be blank; name the team or contact accountable for this \
             federation relationship",
        ));
    }
    if raw.chars().count() > MAX_OWNER_CHARS {
        return Err(ApiError::invalid(format!(
            "invalid owner: longer than {MAX_OWNER_CHARS} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::invalid_value(
            "owner",
            &raw,
            "has a control character",
        ));
    }
    Ok(raw)
}

fn parse_profile(raw: &str) -> Result<BundleEndpointProfile, ApiError> {
    BundleEndpointProfile::parse(raw).ok_or_else(|| {
        ApiError::invalid_value("profile", raw, "expected `https_web` or `https_spiffe`")
    })
}

fn parse_endpoint_id(raw: &str) -> Result<SpiffeId, ApiError> {
    SpiffeId::parse(raw).map_err(|err| ApiError::invalid_value("endpoint_spiffe_id", raw, err))
}

/// The bootstrap bundle of `trust_domain`: PEM `CERTIFICATE` blocks when `text` starts with
/// `-----BEGIN`, otherwise a SPIFFE bundle document. A 400 naming `bootstrap_bundle` when it
/// cannot be read or holds no authority.
fn parse_bootstrap(trust_domain: &TrustDomain, text: &str) -> Result<TrustBundle, ApiError> {
    let invalid = |reason: String| ApiError::invalid(format!("invalid bootstrap_bundle: {reason}"));
    let bundle = if text.trim_start().starts_with(PEM_BEGIN) {
        let certificates = sigil_keys::pem::decode_all("CERTIFICATE", text)
            .map_err(|err| invalid(err.to_string()))?;
        TrustBundle {
            trust_domain: trust_domain.clone(),
            x509_authorities: certificates,
            jwt_authorities: Vec::new(),
            sequence: 0,
            refresh_hint: 0,
        }
    } else {
        let document = BundleDocument::parse(text.as_bytes()).map_err(|err| {
            invalid(format!(
                "{err} (expected a SPIFFE bundle document or PEM certificates)"
            ))
        })?;
        sigil_keys::bundle_json::from_document(trust_domain.clone(), &document)
            .map_err(|err| invalid(err.to_string()))?
    };
    if bundle.x509_authorities.is_empty() && bundle.jwt_authorities.is_empty() {
        return Err(invalid("holds no X.509 or JWT authority".to_owned()));
    }
    // Encoding reads every certificate, so a block that is not one is refused here.
    sigil_keys::bundle_json::to_document(&bundle).map_err(|err| invalid(err.to_string()))?;
    Ok(bundle)
}

/// Stores `bundle` as the foreign bundle when none of its trust domain is held. The write is a
/// compare-and-set on the sequence, so a bundle the refresher fetched meanwhile is kept.
async fn store_bootstrap(
    state: &AdminState,
    bundle: TrustBundle,
    now: i64,
) -> Result<(), ApiError> {
    let td = bundle.trust_domain.clone();
    if state.store.get_bundle(td.as_str()).await?.is_some() {
        tracing::info!(trust_domain = %td, "a bundle is held; the bootstrap bundle is not stored");
        return Ok(());
    }
    let document = sigil_keys::bundle_json::to_document(&bundle)
        .map_err(|err| ApiError::invalid(format!("invalid bootstrap_bundle: {err}")))?;
    state
        .store
        .put_bundle_if_newer(StoredBundle {
            trust_domain: td,
            document: document.to_json(),
            sequence: bundle.sequence,
            updated_at: now,
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};
    use sigil_spiffe::SystemClock;
    use tokio::sync::{Notify, watch};

    use super::*;
    use crate::admin::test_support::{Harness, state_and_clock};
    use crate::federation::ForeignBundles;
    use crate::federation::refresher::Refresher;
    use crate::metrics::Metrics;

    fn web_body(td: &str) -> Value {
        json!({
            "trust_domain": td,
            "bundle_endpoint_url": format!("https://{td}/bundle"),
            "profile": "https_web",
            "owner": "team-federation",
        })
    }

    /// The server's own bundle document, usable as another trust domain's bootstrap bundle.
    async fn own_bundle_json(h: &Harness) -> String {
        let own = h.store.get_bundle("example.org").await.unwrap().unwrap();
        String::from_utf8(own.document).unwrap()
    }

    async fn own_bundle_pem(h: &Harness) -> String {
        let json = own_bundle_json(h).await;
        let doc = BundleDocument::parse(json.as_bytes()).unwrap();
        let bundle = sigil_keys::bundle_json::from_document(
            TrustDomain::parse("example.org").unwrap(),
            &doc,
        )
        .unwrap();
        sigil_keys::pem::encode_many(
            "CERTIFICATE",
            bundle.x509_authorities.iter().map(Vec::as_slice),
        )
    }

    fn assert_error(status: StatusCode, body: &Value, want: StatusCode, needle: &str) {
        assert_eq!(status, want, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }

    #[test]
    fn the_api_url_limit_is_the_datastores() {
        assert_eq!(
            sigil_api::schemas::MAX_BUNDLE_ENDPOINT_URL_BYTES,
            sigil_store::MAX_BUNDLE_ENDPOINT_URL_BYTES
        );
    }

    #[tokio::test]
    async fn create_list_show_update_delete_round_trip() {
        let h = Harness::new().await;
        let mut body = web_body("partner.org");
        body["bootstrap_bundle"] = json!(own_bundle_pem(&h).await);
        let (status, created) = h
            .call(Method::POST, "/api/v1/federations", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(
            created,
            json!({
                "trust_domain": "partner.org",
                "bundle_endpoint_url": "https://partner.org/bundle",
                "profile": "https_web",
                "endpoint_spiffe_id": null,
                "owner": "team-federation",
                "created_at": crate::admin::test_support::START,
                "updated_at": crate::admin::test_support::START,
                "bundle_sequence": 0,
                "bundle_updated_at": crate::admin::test_support::START,
            })
        );
        let held = h.store.get_bundle("partner.org").await.unwrap().unwrap();
        let doc = BundleDocument::parse(&held.document).unwrap();
        assert!(!doc.keys.is_empty());

        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/federations",
                Some(web_body("other.org")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, list) = h.call(Method::GET, "/api/v1/federations", None).await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<&str> = list["federations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["trust_domain"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["other.org", "partner.org"]);
        assert_eq!(list["federations"][0]["bundle_sequence"], Value::Null);
        assert_eq!(list["federations"][1]["bundle_sequence"], 0);

        // By name or by ID.
        for path in [
            "/api/v1/federations/partner.org",
            "/api/v1/federations/spiffe%3A%2F%2Fpartner.org",
        ] {
            let (status, shown) = h.call(Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(shown, created);
        }

        h.clock.advance(Duration::from_secs(10));
        let (status, updated) = h
            .call(
                Method::PATCH,
                "/api/v1/federations/partner.org",
                Some(json!({
                    "profile": "https_spiffe",
                    "endpoint_spiffe_id": "spiffe://partner.org/sigil/server",
                })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["profile"], "https_spiffe");
        assert_eq!(
            updated["endpoint_spiffe_id"],
            "spiffe://partner.org/sigil/server"
        );
        assert_eq!(updated["bundle_endpoint_url"], "https://partner.org/bundle");
        assert_eq!(
            updated["updated_at"],
            crate::admin::test_support::START + 10
        );
        let (status, updated) = h
            .call(
                Method::PATCH,
                "/api/v1/federations/partner.org",
                Some(json!({"profile": "https_web", "endpoint_spiffe_id": null, "bundle_endpoint_url": "https://b.partner.org"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["endpoint_spiffe_id"], Value::Null);
        assert_eq!(updated["bundle_endpoint_url"], "https://b.partner.org");

        let (status, deleted) = h
            .call(Method::DELETE, "/api/v1/federations/partner.org", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(deleted, updated);
        assert!(
            h.store
                .get_federation("partner.org")
                .await
                .unwrap()
                .is_none()
        );
        assert!(h.store.get_bundle("partner.org").await.unwrap().is_none());
        let (status, body) = h
            .call(Method::GET, "/api/v1/federations/partner.org", None)
            .await;
        assert_error(
            status,
            &body,
            StatusCode::NOT_FOUND,
            "no federation relationship with `partner.org`",
        );
    }

    #[tokio::test]
    async fn create_without_an_owner_is_400_naming_owner_and_stores_nothing() {
        let h = Harness::new().await;
        // The positive path: the same body with its owner is accepted.
        let (status, created) = h
            .call(
                Method::POST,
                "/api/v1/federations",
                Some(web_body("first.org")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["owner"], "team-federation");

        let mut unowned = web_body("partner.org");
        unowned.as_object_mut().unwrap().remove("owner");
        let (status, body) = h
            .call(Method::POST, "/api/v1/federations", Some(unowned))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "owner is required");
        assert_eq!(body["error"]["code"], "invalid_argument");
        for (owner, needle) in [
            (json!(""), "invalid owner: must not be blank"),
            (json!("  "), "invalid owner: must not be blank"),
            (
                json!("o".repeat(MAX_OWNER_CHARS + 1)),
                "invalid owner: longer than 64 characters",
            ),
            (json!("team\nother"), "invalid owner `"),
            (json!(null), "request body is not valid"),
        ] {
            let mut body = web_body("partner.org");
            body["owner"] = owner;
            let (status, answer) = h
                .call(Method::POST, "/api/v1/federations", Some(body))
                .await;
            assert_error(status, &answer, StatusCode::BAD_REQUEST, needle);
        }
        let stored: Vec<String> = h
            .store
            .list_federations()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.trust_domain.to_string())
            .collect();
        assert_eq!(stored, ["first.org"]);
    }

    #[tokio::test]
    async fn list_filters_by_owner_and_patch_changes_only_the_owner() {
        let h = Harness::new().await;
        for (td, owner) in [
            ("a.org", "team-a"),
            ("b.org", "team b"),
            ("c.org", "team-a"),
        ] {
            let mut body = web_body(td);
            body["owner"] = json!(owner);
            let (status, created) = h
                .call(Method::POST, "/api/v1/federations", Some(body))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
        }
        let listed = |list: &Value| -> Vec<String> {
            list["federations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["trust_domain"].as_str().unwrap().to_owned())
                .collect()
        };
        let (status, all) = h.call(Method::GET, "/api/v1/federations", None).await;
        assert_eq!(status, StatusCode::OK, "{all}");
        assert_eq!(listed(&all), ["a.org", "b.org", "c.org"]);
        let (status, team_a) = h
            .call(Method::GET, "/api/v1/federations?owner=team-a", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{team_a}");
        assert_eq!(listed(&team_a), ["a.org", "c.org"]);
        let (_, team_b) = h
            .call(Method::GET, "/api/v1/federations?owner=team%20b", None)
            .await;
        assert_eq!(listed(&team_b), ["b.org"]);
        assert_eq!(team_b["federations"][0]["owner"], "team b");
        let (_, nobody) = h
            .call(Method::GET, "/api/v1/federations?owner=team", None)
            .await;
        assert!(listed(&nobody).is_empty(), "the owner is matched exactly");
        let (status, body) = h
            .call(Method::GET, "/api/v1/federations?owners=team-a", None)
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "owners");

        h.clock.advance(Duration::from_secs(5));
        let (status, updated) = h
            .call(
                Method::PATCH,
                "/api/v1/federations/b.org",
                Some(json!({"owner": "team-a"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        let mut expected = team_b["federations"][0].clone();
        expected["owner"] = json!("team-a");
        expected["updated_at"] = json!(crate::admin::test_support::START + 5);
        assert_eq!(updated, expected, "only the owner and updated_at change");
        let (_, team_a) = h
            .call(Method::GET, "/api/v1/federations?owner=team-a", None)
            .await;
        assert_eq!(listed(&team_a), ["a.org", "b.org", "c.org"]);
        let (status, body) = h
            .call(
                Method::PATCH,
                "/api/v1/federations/b.org",
                Some(json!({"owner": " "})),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid owner");
    }

    #[tokio::test]
    async fn a_bundle_document_bootstrap_keeps_its_sequence_and_a_held_bundle_is_kept() {
        let h = Harness::new().await;
        let own = own_bundle_json(&h).await;
        let mut doc: Value = serde_json::from_str(&own).unwrap();
        doc["spiffe_sequence"] = json!(7);
        let mut body = web_body("partner.org");
        body["bootstrap_bundle"] = json!(doc.to_string());
        let (status, created) = h
            .call(Method::POST, "/api/v1/federations", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["bundle_sequence"], 7);

        // A bundle already held (say, from an earlier relationship) is not replaced.
        let held = StoredBundle {
            trust_domain: TrustDomain::parse("third.org").unwrap(),
            document: own.clone().into_bytes(),
            sequence: 3,
            updated_at: 5,
        };
        h.store.put_bundle(held).await.unwrap();
        let mut body = web_body("third.org");
        body["bootstrap_bundle"] = json!(own_bundle_pem(&h).await);
        let (status, created) = h
            .call(Method::POST, "/api/v1/federations", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["bundle_sequence"], 3);
        assert_eq!(created["bundle_updated_at"], 5);
    }

    #[tokio::test]
    async fn invalid_fields_are_400_naming_the_field_and_store_nothing() {
        let h = Harness::new().await;
        let cases = [
            (
                json!({"bundle_endpoint_url": "http://partner.org/b"}),
                "bundle_endpoint_url",
            ),
            (
                json!({"bundle_endpoint_url": "https://partner.org/é"}),
                "non-ASCII",
            ),
            (
                json!({"bundle_endpoint_url": "https://[::1]/b"}),
                "IPv6 literal",
            ),
            (json!({"profile": "https"}), "invalid profile `https`"),
            (
                json!({"trust_domain": "Partner.org"}),
                "invalid trust_domain",
            ),
            (
                json!({"trust_domain": "example.org"}),
                "this server's own trust domain",
            ),
            (
                json!({"trust_domain": "spiffe://example.org"}),
                "this server's own trust domain",
            ),
            (
                json!({"endpoint_spiffe_id": "spiffe://partner.org/s"}),
                "endpoint_spiffe_id",
            ),
            (json!({"profile": "https_spiffe"}), "endpoint_spiffe_id"),
            (
                json!({"endpoint_spiffe_id": "partner.org/s"}),
                "invalid endpoint_spiffe_id",
            ),
            (
                json!({"bootstrap_bundle": "not a bundle"}),
                "invalid bootstrap_bundle",
            ),
            (
                json!({"bootstrap_bundle": "{\"keys\": []}"}),
                "holds no X.509 or JWT authority",
            ),
            (
                json!({"bootstrap_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}),
                "invalid bootstrap_bundle",
            ),
            (json!({"extra": 1}), "unknown field"),
        ];
        for (change, needle) in cases {
            let mut body = web_body("partner.org");
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, answer) = h
                .call(Method::POST, "/api/v1/federations", Some(body))
                .await;
            assert_error(status, &answer, StatusCode::BAD_REQUEST, needle);
            assert_eq!(answer["error"]["code"], "invalid_argument");
        }
        assert!(h.store.list_federations().await.unwrap().is_empty());
        assert!(h.store.get_bundle("partner.org").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn duplicates_are_409_and_unknown_relationships_404() {
        let h = Harness::new().await;
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/federations",
                Some(web_body("partner.org")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = h
            .call(
                Method::POST,
                "/api/v1/federations",
                Some(web_body("partner.org")),
            )
            .await;
        assert_error(status, &body, StatusCode::CONFLICT, "already exists");
        assert_eq!(body["error"]["code"], "already_exists");

        for (method, path, body) in [
            (Method::GET, "/api/v1/federations/nobody.org", None),
            (
                Method::PATCH,
                "/api/v1/federations/nobody.org",
                Some(json!({"profile": "https_web"})),
            ),
            (Method::DELETE, "/api/v1/federations/nobody.org", None),
            (Method::POST, "/api/v1/federations/nobody.org/refresh", None),
        ] {
            let (status, answer) = h.call(method.clone(), path, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "not_found");
        }
        let (status, body) = h.call(Method::GET, "/api/v1/federations/Bad..", None).await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid trust_domain",
        );
    }

    #[tokio::test]
    async fn updates_that_break_the_profile_rule_are_400_in_the_request_and_409_against_the_row() {
        let h = Harness::new().await;
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/federations",
                Some(web_body("partner.org")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let path = "/api/v1/federations/partner.org";
        let (status, body) = h
            .call(
                Method::PATCH,
                path,
                Some(json!({"profile": "https_spiffe"})),
            )
            .await;
        assert_error(status, &body, StatusCode::CONFLICT, "endpoint_spiffe_id");
        assert_eq!(body["error"]["code"], "conflict");
        let (status, body) = h
            .call(
                Method::PATCH,
                path,
                Some(json!({"profile": "https_spiffe", "endpoint_spiffe_id": null})),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "endpoint_spiffe_id");
        for (bad, needle) in [
            (
                json!({"bundle_endpoint_url": "https://"}),
                "bundle_endpoint_url",
            ),
            (json!({"profile": null}), "request body is not valid"),
            (json!({"profile": "web"}), "invalid profile"),
        ] {
            let (status, body) = h.call(Method::PATCH, path, Some(bad)).await;
            assert_error(status, &body, StatusCode::BAD_REQUEST, needle);
        }
        let stored = h
            .store
            .get_federation("partner.org")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.profile, BundleEndpointProfile::HttpsWeb);
        assert_eq!(stored.bundle_endpoint_url, "https://partner.org/bundle");
        // An empty update changes nothing and answers the relationship.
        let (status, body) = h.call(Method::PATCH, path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["profile"], "https_web");
    }

    #[tokio::test]
    async fn refresh_without_a_refresher_is_503() {
        let h = Harness::new().await;
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/federations",
                Some(web_body("partner.org")),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = h
            .call(
                Method::POST,
                "/api/v1/federations/partner.org/refresh",
                None,
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::SERVICE_UNAVAILABLE,
            "no federation refresher",
        );
        assert_eq!(body["error"]["code"], "unavailable");
        let (status, body) = h
            .call(
                Method::POST,
                "/api/v1/federations/partner.org/refresh",
                Some(json!({})),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "takes no body");
    }

    #[tokio::test]
    async fn a_failed_refresh_is_502_with_the_reason_and_keeps_the_bundle() {
        let (mut state, clock) = state_and_clock().await;
        let foreign = Arc::new(
            ForeignBundles::load(state.store.as_ref(), state.trust_domain.clone())
                .await
                .unwrap(),
        );
        let (_stop, stop_rx) = watch::channel(false);
        let (handle, run) = Refresher {
            store: state.store.clone(),
            foreign,
            metrics: Arc::new(Metrics::new()),
            clock: Arc::new(SystemClock),
            policy: sigil_tls::TlsPolicy::default(),
            web_roots: Arc::new(Vec::new()),
            fetch_timeout: Duration::from_secs(2),
            audit: crate::audit::AuditLog::disabled(),
        }
        .start(Arc::new(Notify::new()), stop_rx);
        tokio::spawn(run);
        state.federation = Some(handle);
        let h = Harness::with_state(state, clock);
        // A port nothing listens on.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut body = web_body("partner.org");
        body["bundle_endpoint_url"] = json!(format!("https://127.0.0.1:{port}/bundle"));
        body["bootstrap_bundle"] = json!(own_bundle_pem(&h).await);
        let (status, _) = h
            .call(Method::POST, "/api/v1/federations", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = h
            .call(
                Method::POST,
                "/api/v1/federations/partner.org/refresh",
                None,
            )
            .await;
        assert_error(
            status,
            &body,
            StatusCode::BAD_GATEWAY,
            "cannot refresh the bundle of `partner.org`: ",
        );
        assert_eq!(body["error"]["code"], "upstream_failed");
        let held = h.store.get_bundle("partner.org").await.unwrap().unwrap();
        assert_eq!(held.sequence, 0, "the bootstrap bundle is kept");
    }
}
