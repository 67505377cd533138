//! `/api/v1/entries`, `/api/v1/entries/batch-create` and `/api/v1/entries/{id}`: create (one
//! or a batch), list, show, replace and delete registration entries.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use sigil_api::{
    EntryBatch, EntryBatchRequest, EntryList, EntryQuery, EntryRequest, MAX_ENTRY_BATCH,
};
use sigil_spiffe::id::MAX_SPIFFE_ID_BYTES;
use sigil_spiffe::{Selector, SpiffeId, TrustDomain};
use sigil_store::{Entry, EntryFilter};

use axum::response::IntoResponse as _;

use super::AdminState;
use super::api_error::ApiError;
use super::audit_layer::AuditNote;
use super::body::decode_json;
use super::entry_fields::{Mode, parse_entry_request};
use super::paging::PageRequest;

/// `POST /api/v1/entries` → 201 and the stored entry.
pub(crate) async fn create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let req: EntryRequest = decode_json(body, None)?;
    let now = state.clock.unix_secs();
    let valid = parse_entry_request(req, &state.trust_domain, now, Mode::Create)?;
    let entry = state.store.create_entry(valid.spec, now).await?;
    tracing::info!(entry_id = %entry.id, spiffe_id = %entry.spec.spiffe_id, "entry created");
    let note = AuditNote::target(&entry.id)
        .detail("spiffe_id", entry.spec.spiffe_id.to_string())
        .detail("owner", entry.spec.owner.clone());
    let mut response = (StatusCode::CREATED, Json(to_wire(&entry))).into_response();
    response.extensions_mut().insert(note);
    Ok(response)
}

// The API documents the store's bound; a build in which they differ does not compile.
const _: () = assert!(MAX_ENTRY_BATCH == sigil_store::MAX_ENTRY_BATCH);

/// `POST /api/v1/entries/batch-create` → 201 and the stored entries, in the request's order.
/// All or nothing, like the store's batch: each entry is checked as `POST /api/v1/entries`
/// checks it, and the first one refused (the message names it by index, counting from 0) fails
/// the whole request with that entry's own error code; nothing is stored then. More than
/// [`MAX_ENTRY_BATCH`] entries is a 400 before any is read.
pub(crate) async fn batch_create(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let req: EntryBatchRequest = decode_json(body, None)?;
    if req.entries.len() > MAX_ENTRY_BATCH {
        return Err(ApiError::invalid(format!(
            "invalid entries: a batch holds at most {MAX_ENTRY_BATCH} entries, not {}",
            req.entries.len()
        )));
    }
    let now = state.clock.unix_secs();
    let specs = req
        .entries
        .into_iter()
        .enumerate()
        .map(|(index, req)| {
            parse_entry_request(req, &state.trust_domain, now, Mode::Create)
                .map(|valid| valid.spec)
                .map_err(|err| ApiError {
                    code: err.code,
                    message: format!("entry {index} of the batch: {}", err.message),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let entries = state.store.create_entries(specs, now).await?;
    tracing::info!(count = entries.len(), "entries created in one batch");
    let note = AuditNote::default().detail(
        "entry_ids",
        entries
            .iter()
            .map(|e| serde_json::Value::from(e.id.as_str()))
            .collect::<Vec<_>>(),
    );
    let mut response = (
        StatusCode::CREATED,
        Json(EntryBatch {
            entries: entries.iter().map(to_wire).collect(),
        }),
    )
        .into_response();
    response.extensions_mut().insert(note);
    Ok(response)
}

/// `GET /api/v1/entries?spiffe_id=&spiffe_id_prefix=&parent_id=&selector=&owner=
/// &federates_with=&page_size=&page_token=` → one page of the matching entries, ordered by id,
/// with the token of the next page unless it is the last. The filters run in the store, which
/// reads only one page (plus one row), however many entries there are.
pub(crate) async fn list(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<EntryList>, ApiError> {
    let query = EntryQuery::parse(query.as_deref().unwrap_or_default())?;
    let page = PageRequest::parse(&query.page)?;
    let spiffe_id_prefix = parse_prefix(query.spiffe_id_prefix)?;
    let federates_with = query
        .federates_with
        .map(|raw| {
            TrustDomain::parse(&raw)
                .map_err(|err| ApiError::invalid_value("federates_with", &raw, err))
        })
        .transpose()?;
    let filter = EntryFilter {
        spiffe_id: parse_filter_id("spiffe_id", query.spiffe_id.as_deref())?,
        spiffe_id_prefix,
        parent_id: parse_filter_id("parent_id", query.parent_id.as_deref())?,
        selectors: query
            .selectors
            .iter()
            .map(|s| Selector::parse(s).map_err(|err| ApiError::invalid_value("selector", s, err)))
            .collect::<Result<_, _>>()?,
        owner: query.owner,
        federates_with,
    };
    if filter
        .spiffe_id_prefix
        .as_deref()
        .is_some_and(|prefix| prefix.contains('\0'))
    {
        // No SPIFFE ID holds NUL (and PostgreSQL text cannot): nothing matches.
        return Ok(Json(EntryList {
            entries: Vec::new(),
            next_page_token: None,
        }));
    }
    let mut entries = state
        .store
        .list_entries_page(&filter, page.after.as_deref(), page.fetch_limit())
        .await?;
    let next_page_token = page.finish(&mut entries, |entry| entry.id.as_str());
    Ok(Json(EntryList {
        entries: entries.iter().map(to_wire).collect(),
        next_page_token,
    }))
}

/// A SPIFFE ID prefix filter: any text, as long as a SPIFFE ID could be.
pub(crate) fn parse_prefix(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(prefix) if prefix.chars().count() > MAX_SPIFFE_ID_BYTES => Err(ApiError::invalid(
            format!("invalid spiffe_id_prefix: longer than {MAX_SPIFFE_ID_BYTES} characters"),
        )),
        other => Ok(other),
    }
}

/// `GET /api/v1/entries/{id}` → the entry, or 404.
pub(crate) async fn show(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<sigil_api::Entry>, ApiError> {
    let id = entry_id(id)?;
    let entry = state.store.get_entry(&id).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "entry `{}` not found",
            super::api_error::quote(&id)
        ))
    })?;
    Ok(Json(to_wire(&entry)))
}

/// `PUT /api/v1/entries/{id}` → the entry after full replacement; 409 `conflict` when
/// `revision` is given and stale.
pub(crate) async fn replace(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<sigil_api::Entry>, ApiError> {
    let id = entry_id(id)?;
    let req: EntryRequest = decode_json(body, None)?;
    let now = state.clock.unix_secs();
    let valid = parse_entry_request(req, &state.trust_domain, now, Mode::Replace)?;
    let entry = state
        .store
        .update_entry(&id, valid.spec, valid.revision, now)
        .await?;
    tracing::info!(entry_id = %entry.id, revision = entry.revision, "entry updated");
    Ok(Json(to_wire(&entry)))
}

/// `DELETE /api/v1/entries/{id}` → the deleted entry, or 404.
pub(crate) async fn delete(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<sigil_api::Entry>, ApiError> {
    let id = entry_id(id)?;
    let entry = state.store.delete_entry(&id).await?;
    tracing::info!(entry_id = %entry.id, "entry deleted");
    // The database credentials its workloads hold go with it.
    if let Some(credentials) = &state.credentials {
        credentials.revoke_in_background(
            sigil_store::LeaseFilter {
                entry_id: Some(entry.id.clone()),
                ..sigil_store::LeaseFilter::default()
            },
            format!("entry {} deleted", entry.id),
        );
    }
    Ok(Json(to_wire(&entry)))
}

/// The entry as the API answers it.
pub(crate) fn to_wire(entry: &Entry) -> sigil_api::Entry {
    let spec = &entry.spec;
    sigil_api::Entry {
        id: entry.id.clone(),
        spiffe_id: spec.spiffe_id.to_string(),
        parent_id: spec.parent_id.to_string(),
        selectors: spec.selectors.iter().map(ToString::to_string).collect(),
        x509_svid_ttl: spec.x509_svid_ttl,
        jwt_svid_ttl: spec.jwt_svid_ttl,
        dns_names: spec.dns_names.clone(),
        federates_with: spec
            .federates_with
            .iter()
            .map(ToString::to_string)
            .collect(),
        admin: spec.admin,
        downstream: spec.downstream,
        hint: spec.hint.clone(),
        owner: spec.owner.clone(),
        description: spec.description.clone(),
        labels: spec.labels.clone(),
        expires_at: spec.expires_at,
        revision: entry.revision,
        created_at: entry.created_at,
        updated_at: entry.updated_at,
    }
}

fn entry_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|rejection| {
        ApiError::invalid(format!("invalid entry id: {}", rejection.body_text()))
    })
}

fn parse_filter_id(field: &str, raw: Option<&str>) -> Result<Option<SpiffeId>, ApiError> {
    raw.map(|s| SpiffeId::parse(s).map_err(|err| ApiError::invalid_value(field, s, err)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use crate::admin::test_support::{Harness, entry_body};

    #[tokio::test]
    async fn create_then_show_returns_the_stored_entry() {
        let h = Harness::new().await;
        let (status, created) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["spiffe_id"], "spiffe://example.org/web");
        assert_eq!(created["revision"], 1);
        assert_eq!(created["owner"], "team-web");
        assert_eq!(created["x509_svid_ttl"], 3600);
        assert_eq!(created["expires_at"], Value::Null);
        let id = created["id"].as_str().unwrap();
        let (status, shown) = h
            .call(Method::GET, &format!("/api/v1/entries/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(shown, created);
    }

    async fn stored_names(h: &Harness) -> Vec<String> {
        let (status, list) = h.call(Method::GET, "/api/v1/entries", None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let mut names: Vec<String> = list["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["spiffe_id"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn batch_create_stores_every_entry_in_order() {
        let h = Harness::new().await;
        let names = ["web", "db", "cache"];
        let body = json!({"entries": names.map(entry_body)});
        let (status, created) = h
            .call(Method::POST, "/api/v1/entries/batch-create", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let created = created["entries"].as_array().unwrap();
        let got: Vec<&str> = created
            .iter()
            .map(|e| e["spiffe_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            got,
            names.map(|n| format!("spiffe://example.org/{n}")),
            "answered in the request's order"
        );
        for entry in created {
            assert_eq!(entry["revision"], 1);
            let id = entry["id"].as_str().unwrap();
            let (status, shown) = h
                .call(Method::GET, &format!("/api/v1/entries/{id}"), None)
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(&shown, entry);
        }
    }

    #[tokio::test]
    async fn batch_create_refuses_the_whole_batch_naming_the_entry() {
        let h = Harness::new().await;
        let (status, _) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("stored")))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let mut bad_owner = entry_body("bad");
        bad_owner["owner"] = json!("");
        let cases = [
            // Refused by the request checks, before the store is called.
            (
                bad_owner,
                1,
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "owner is required",
            ),
            // Refused by the store: a duplicate of a stored entry, or of an earlier one.
            (
                entry_body("stored"),
                2,
                StatusCode::CONFLICT,
                "already_exists",
                "entry already exists",
            ),
            (
                entry_body("a"),
                3,
                StatusCode::CONFLICT,
                "already_exists",
                "entry already exists",
            ),
        ];
        for (bad, index, code, name, reason) in cases {
            let mut entries = vec![entry_body("a"), entry_body("b"), entry_body("c")];
            entries.insert(index, bad);
            let (status, err) = h
                .call(
                    Method::POST,
                    "/api/v1/entries/batch-create",
                    Some(json!({ "entries": entries })),
                )
                .await;
            assert_eq!(status, code, "{err}");
            assert_eq!(err["error"]["code"], name);
            let message = err["error"]["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("entry {index} of the batch: {reason}")),
                "{message}"
            );
            assert_eq!(stored_names(&h).await, ["spiffe://example.org/stored"]);
        }
        // The same batch without the bad entry is stored.
        let entries = [entry_body("a"), entry_body("b"), entry_body("c")];
        let (status, _) = h
            .call(
                Method::POST,
                "/api/v1/entries/batch-create",
                Some(json!({ "entries": entries })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(stored_names(&h).await.len(), 4);
    }

    #[tokio::test]
    async fn batch_create_refuses_more_than_the_bound() {
        let h = Harness::new().await;
        let batch = |n: usize| {
            let entries: Vec<_> = (0..n).map(|i| entry_body(&format!("w{i}"))).collect();
            json!({ "entries": entries })
        };
        let too_many = sigil_api::MAX_ENTRY_BATCH + 1;
        let (status, err) = h
            .call(
                Method::POST,
                "/api/v1/entries/batch-create",
                Some(batch(too_many)),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("at most {}", sigil_api::MAX_ENTRY_BATCH)),
            "{message}"
        );
        assert!(stored_names(&h).await.is_empty());
        let (status, created) = h
            .call(
                Method::POST,
                "/api/v1/entries/batch-create",
                Some(batch(sigil_api::MAX_ENTRY_BATCH)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(
            created["entries"].as_array().unwrap().len(),
            sigil_api::MAX_ENTRY_BATCH
        );
    }

    #[tokio::test]
    async fn invalid_requests_store_nothing_and_name_the_field() {
        let h = Harness::new().await;
        let cases = [
            (
                "spiffe_id",
                json!("spiffe://Bad/x"),
                "invalid spiffe_id `spiffe://Bad/x`: trust domain has the character `B`",
            ),
            ("selectors", json!(["unix"]), "invalid selector `unix`: "),
            ("x509_svid_ttl", json!("0"), "invalid x509_svid_ttl `0`: "),
            ("owner", json!(""), "owner is required"),
        ];
        for (field, value, expected) in cases {
            let mut body = entry_body("web");
            body[field] = value;
            let (status, err) = h.call(Method::POST, "/api/v1/entries", Some(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field}");
            assert_eq!(err["error"]["code"], "invalid_argument");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(expected), "{field}: {message}");
        }
        let mut body = entry_body("web");
        body.as_object_mut().unwrap().remove("owner");
        let (status, _) = h.call(Method::POST, "/api/v1/entries", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, list) = h.call(Method::GET, "/api/v1/entries", None).await;
        assert_eq!(list, json!({"entries": []}));
    }

    #[tokio::test]
    async fn top_level_values_other_than_objects_are_refused_on_create_and_replace() {
        let h = Harness::new().await;
        // The positive path first: the same entry as an object is created.
        let (status, created) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let positional = json!([
            "spiffe://example.org/api",
            "spiffe://example.org/sigil/agent/join_token/abc",
            ["unix:uid:1000"],
            null,
            null,
            [],
            [],
            false,
            false,
            "",
            "team-web",
            "",
            null,
            null
        ])
        .to_string();
        for raw in [
            positional.as_str(),
            "[1]",
            "[]",
            "1",
            "\"x\"",
            "null",
            "true",
            " \n[{}]",
        ] {
            for (method, uri) in [
                (Method::POST, "/api/v1/entries".to_owned()),
                (Method::PUT, format!("/api/v1/entries/{id}")),
            ] {
                let (status, err) = h.call_raw(method.clone(), &uri, raw).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {raw}");
                assert_eq!(err["error"]["code"], "invalid_argument");
                assert_eq!(
                    err["error"]["message"], "request body is not valid: expected a JSON object",
                    "{method} {raw}"
                );
            }
        }
        let (_, list) = h.call(Method::GET, "/api/v1/entries", None).await;
        assert_eq!(list["entries"].as_array().unwrap().len(), 1);
        assert_eq!(list["entries"][0], created, "the stored entry is unchanged");
    }

    #[tokio::test]
    async fn malformed_json_and_unknown_fields_are_400() {
        let h = Harness::new().await;
        let (status, err) = h
            .call_raw(Method::POST, "/api/v1/entries", "{not json")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("request body is not valid")
        );
        let mut body = entry_body("web");
        body["selector"] = json!(["unix:uid:1"]);
        let (status, err) = h.call(Method::POST, "/api/v1/entries", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("unknown field `selector`")
        );
        let (status, _) = h.call_raw(Method::POST, "/api/v1/entries", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn oversized_bodies_are_413() {
        let h = Harness::new().await;
        let mut body = entry_body("web");
        body["description"] = json!("d".repeat(sigil_api::MAX_REQUEST_BODY_BYTES));
        let (status, err) = h.call(Method::POST, "/api/v1/entries", Some(body)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err["error"]["code"], "payload_too_large");
    }

    #[tokio::test]
    async fn duplicate_entries_are_409_already_exists() {
        let h = Harness::new().await;
        let (status, _) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, err) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["error"]["code"], "already_exists");
    }

    #[tokio::test]
    async fn list_filters_by_every_parameter() {
        let h = Harness::new().await;
        h.call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        let mut db = entry_body("db");
        db["selectors"] = json!(["unix:uid:2000", "unix:gid:50"]);
        db["owner"] = json!("team db");
        h.call(Method::POST, "/api/v1/entries", Some(db)).await;

        let count = |v: &Value| v["entries"].as_array().unwrap().len();
        let (_, all) = h.call(Method::GET, "/api/v1/entries", None).await;
        assert_eq!(count(&all), 2);
        let (_, by_id) = h
            .call(
                Method::GET,
                "/api/v1/entries?spiffe_id=spiffe%3A%2F%2Fexample.org%2Fdb",
                None,
            )
            .await;
        assert_eq!(count(&by_id), 1);
        assert_eq!(by_id["entries"][0]["spiffe_id"], "spiffe://example.org/db");
        let (_, by_selectors) = h
            .call(
                Method::GET,
                "/api/v1/entries?selector=unix:uid:2000&selector=unix:gid:50",
                None,
            )
            .await;
        assert_eq!(count(&by_selectors), 1);
        let (_, by_owner) = h
            .call(Method::GET, "/api/v1/entries?owner=team+db", None)
            .await;
        assert_eq!(count(&by_owner), 1);
        let (_, by_parent) = h
            .call(
                Method::GET,
                "/api/v1/entries?parent_id=spiffe://example.org/sigil/agent/join_token/abc",
                None,
            )
            .await;
        assert_eq!(count(&by_parent), 2);
    }

    /// Follows `next_page_token` from `first` (a list URI) to the end; the pages' ids in order
    /// and the size of each page.
    async fn all_pages(h: &Harness, first: &str) -> (Vec<String>, Vec<usize>) {
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        let mut uri = first.to_owned();
        loop {
            let (status, page) = h.call(Method::GET, &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {page}");
            let entries = page["entries"].as_array().unwrap();
            sizes.push(entries.len());
            ids.extend(entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
            assert!(sizes.len() < 50, "paging does not end");
            match page.get("next_page_token") {
                None => return (ids, sizes),
                Some(token) => {
                    let token = token.as_str().unwrap();
                    assert!(!token.is_empty());
                    let sep = if first.contains('?') { '&' } else { '?' };
                    uri = format!("{first}{sep}page_token={token}");
                }
            }
        }
    }

    #[tokio::test]
    async fn list_pages_cover_every_entry_exactly_once() {
        let h = Harness::new().await;
        for n in 0..7 {
            let (status, _) = h
                .call(
                    Method::POST,
                    "/api/v1/entries",
                    Some(entry_body(&format!("w{n}"))),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (_, one_page) = h.call(Method::GET, "/api/v1/entries", None).await;
        assert!(one_page.get("next_page_token").is_none(), "{one_page}");
        let mut expected: Vec<String> = one_page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(expected.len(), 7);
        expected.sort();

        let (ids, sizes) = all_pages(&h, "/api/v1/entries?page_size=3").await;
        assert_eq!(ids, expected);
        assert_eq!(sizes, [3, 3, 1]);
        // A page size that divides the count exactly ends without an empty page.
        let (ids, sizes) = all_pages(&h, "/api/v1/entries?page_size=7").await;
        assert_eq!((ids, sizes), (expected.clone(), vec![7]));
        let (ids, sizes) = all_pages(&h, "/api/v1/entries?page_size=1").await;
        assert_eq!((ids, sizes.len()), (expected, 7));
    }

    /// The SPIFFE IDs of every entry `uri` lists, over all its pages, sorted.
    async fn names(h: &Harness, uri: String) -> Vec<String> {
        let (ids, _) = all_pages(h, &uri).await;
        let mut names = Vec::new();
        for id in ids {
            let (_, entry) = h
                .call(Method::GET, &format!("/api/v1/entries/{id}"), None)
                .await;
            names.push(entry["spiffe_id"].as_str().unwrap().to_owned());
        }
        names.sort();
        names
    }

    #[tokio::test]
    async fn list_filters_by_prefix_and_federation_across_pages() {
        let h = Harness::new().await;
        for (name, federates) in [
            ("team/a", json!(["partner.org"])),
            ("team/b", json!(["spiffe://partner.org", "other.org"])),
            ("team/c", json!([])),
            ("teams/d", json!(["partner.org"])),
            ("solo", json!(["partner.org"])),
        ] {
            let mut body = entry_body(name);
            body["federates_with"] = federates;
            let (status, created) = h.call(Method::POST, "/api/v1/entries", Some(body)).await;
            assert_eq!(status, StatusCode::CREATED, "{created}");
        }
        let prefix = "spiffe_id_prefix=spiffe%3A%2F%2Fexample.org%2Fteam%2F";
        assert_eq!(
            names(&h, format!("/api/v1/entries?page_size=1&{prefix}")).await,
            [
                "spiffe://example.org/team/a",
                "spiffe://example.org/team/b",
                "spiffe://example.org/team/c"
            ]
        );
        assert_eq!(
            names(
                &h,
                "/api/v1/entries?page_size=2&federates_with=partner.org".into()
            )
            .await,
            [
                "spiffe://example.org/solo",
                "spiffe://example.org/team/a",
                "spiffe://example.org/team/b",
                "spiffe://example.org/teams/d"
            ]
        );
        assert_eq!(
            names(
                &h,
                format!("/api/v1/entries?page_size=1&federates_with=spiffe://partner.org&{prefix}")
            )
            .await,
            ["spiffe://example.org/team/a", "spiffe://example.org/team/b"]
        );
        // `_` and `%` are literal characters of the prefix, not wildcards.
        assert!(
            names(
                &h,
                "/api/v1/entries?spiffe_id_prefix=spiffe://example.org/t_am".into()
            )
            .await
            .is_empty()
        );
        assert!(
            names(&h, "/api/v1/entries?spiffe_id_prefix=%25".into())
                .await
                .is_empty()
        );
        assert!(
            names(&h, "/api/v1/entries?spiffe_id_prefix=%00".into())
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn list_rejects_bad_page_parameters_naming_them() {
        let h = Harness::new().await;
        h.call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        // The positive path first: the largest page size and an empty token are accepted.
        let (status, _) = h
            .call(
                Method::GET,
                "/api/v1/entries?page_size=1000&page_token=",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        for (uri, expected) in [
            ("/api/v1/entries?page_size=0", "invalid page_size `0`"),
            ("/api/v1/entries?page_size=1001", "invalid page_size `1001`"),
            ("/api/v1/entries?page_size=many", "invalid page_size `many`"),
            (
                "/api/v1/entries?page_token=abcde",
                "invalid page_token `abcde`",
            ),
            (
                "/api/v1/entries?page_token=a%2Bb%2F",
                "invalid page_token `a+b/`",
            ),
            (
                "/api/v1/entries?federates_with=Bad!",
                "invalid federates_with `Bad!`",
            ),
            (
                "/api/v1/entries?page_size=1&page_size=2",
                "query parameter `page_size` is given more than once",
            ),
        ] {
            let (status, err) = h.call(Method::GET, uri, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {err}");
            assert_eq!(err["error"]["code"], "invalid_argument");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(expected), "{uri}: {message}");
        }
    }

    #[tokio::test]
    async fn list_rejects_bad_filters() {
        let h = Harness::new().await;
        for (uri, expected) in [
            (
                "/api/v1/entries?spiffe_id=spiffe://Bad",
                "invalid spiffe_id `spiffe://Bad`",
            ),
            ("/api/v1/entries?selector=unix", "invalid selector `unix`"),
            (
                "/api/v1/entries?colour=blue",
                "unknown query parameter `colour`",
            ),
        ] {
            let (status, err) = h.call(Method::GET, uri, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            let message = err["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(expected), "{uri}: {message}");
        }
    }

    #[tokio::test]
    async fn put_replaces_and_checks_the_revision() {
        let h = Harness::new().await;
        let (_, created) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        let uri = format!("/api/v1/entries/{}", created["id"].as_str().unwrap());

        let mut body = entry_body("web");
        body["description"] = json!("now described");
        body["revision"] = json!(1);
        let (status, updated) = h.call(Method::PUT, &uri, Some(body.clone())).await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["revision"], 2);
        assert_eq!(updated["description"], "now described");

        let (status, err) = h.call(Method::PUT, &uri, Some(body)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["error"]["code"], "conflict");

        let mut unguarded = entry_body("web");
        unguarded["hint"] = json!("h");
        let (status, updated) = h.call(Method::PUT, &uri, Some(unguarded)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(updated["revision"], 3);
        assert_eq!(updated["description"], "", "PUT replaces every field");
    }

    #[tokio::test]
    async fn put_with_invalid_body_changes_nothing() {
        let h = Harness::new().await;
        let (_, created) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        let uri = format!("/api/v1/entries/{}", created["id"].as_str().unwrap());
        let mut body = entry_body("web");
        body["selectors"] = json!([]);
        let (status, _) = h.call(Method::PUT, &uri, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, shown) = h.call(Method::GET, &uri, None).await;
        assert_eq!(shown, created);
    }

    #[tokio::test]
    async fn unknown_entries_are_404_for_every_method() {
        let h = Harness::new().await;
        for method in [Method::GET, Method::DELETE] {
            let (status, err) = h.call(method.clone(), "/api/v1/entries/nope", None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
            assert_eq!(err["error"]["code"], "not_found");
            assert_eq!(err["error"]["message"], "entry `nope` not found");
        }
        let (status, _) = h
            .call(Method::PUT, "/api/v1/entries/nope", Some(entry_body("web")))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn delete_returns_the_entry_and_removes_it() {
        let h = Harness::new().await;
        let (_, created) = h
            .call(Method::POST, "/api/v1/entries", Some(entry_body("web")))
            .await;
        let uri = format!("/api/v1/entries/{}", created["id"].as_str().unwrap());
        let (status, deleted) = h.call(Method::DELETE, &uri, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(deleted["id"], created["id"]);
        let (status, _) = h.call(Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
