//! The audit routes: list records (filtered, paged by sequence), export the whole chain as JSON
//! lines that verify offline, verify the chain in the store, list the replicas' audit keys;
//! and the entry review an owner records.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use sigil_api::{
    AuditKeyList, AuditQuery, AuditRecordList, AuditVerification, EntryReview, EntryReviewRequest,
    audit::{DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE},
};
use sigil_audit::export::ExportLine;
use sigil_store::{AuditFilter, Outcome};

use super::AdminState;
use super::api_error::ApiError;
use super::audit_layer::AuditNote;
use super::body::{decode_json, require_empty};

/// Records read per store call while exporting.
const EXPORT_PAGE: u32 = 1000;

/// `GET /api/v1/audit`.
pub(crate) async fn list(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<AuditRecordList>, ApiError> {
    let query = AuditQuery::parse(query.as_deref().unwrap_or_default())?;
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        target: query.target,
        outcome: query
            .outcome
            .map(|raw| {
                Outcome::parse(&raw).ok_or_else(|| {
                    ApiError::invalid_value("outcome", &raw, "expected success, failure or denied")
                })
            })
            .transpose()?,
        since: parse_number("since", query.since.as_deref())?,
        until: parse_number("until", query.until.as_deref())?,
    };
    let after = parse_number("after", query.after.as_deref())?.unwrap_or(0);
    let size = match parse_number::<u32>("page_size", query.page_size.as_deref())? {
        None => DEFAULT_AUDIT_PAGE,
        Some(n) if (1..=MAX_AUDIT_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid_value(
                "page_size",
                &n.to_string(),
                format!("must be 1 to {MAX_AUDIT_PAGE}"),
            ));
        }
    };
    let mut records = state
        .store
        .list_audit(&filter, after, size.saturating_add(1))
        .await?;
    let next_after = if records.len() > size as usize {
        records.truncate(size as usize);
        records.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(Json(AuditRecordList {
        records,
        next_after,
    }))
}

/// A number query parameter, with a 400 naming it when it does not parse.
fn parse_number<T: std::str::FromStr>(name: &str, raw: Option<&str>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.map(|raw| {
        raw.parse::<T>()
            .map_err(|e| ApiError::invalid_value(name, raw, e))
    })
    .transpose()
}

/// `GET /api/v1/audit/export`: the chain up to the head when the export starts, streamed as
/// JSON lines, closed by a checkpoint this replica signs over the last record exported.
pub(crate) async fn export(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let audit = state.audit.clone();
    let (keys, _) = audit.trusted_keys().await.map_err(unavailable)?;
    let checkpoints = state.store.list_audit_checkpoints().await?;
    let head = state.store.audit_head().await?;
    let (last_seq, last_hash) = head.unwrap_or((0, sigil_audit::GENESIS_HASH.to_owned()));
    let end = audit
        .sign_checkpoint(last_seq, &last_hash)
        .map_err(unavailable)?;
    let mut preamble = vec![ExportLine::header()];
    preamble.extend(keys.into_iter().map(ExportLine::Key));
    preamble.extend(
        checkpoints
            .into_iter()
            .filter(|c| c.seq <= last_seq)
            .map(ExportLine::Checkpoint),
    );
    let store = state.store.clone();
    let head_lines = futures::stream::iter(preamble.into_iter().map(Ok::<_, std::io::Error>));
    let records = futures::stream::unfold(Some(0u64), move |after| {
        let store = store.clone();
        async move {
            let after = after?;
            if after >= last_seq {
                return None;
            }
            match store
                .list_audit(&AuditFilter::default(), after, EXPORT_PAGE)
                .await
            {
                Ok(page) => {
                    let page: Vec<_> = page.into_iter().filter(|r| r.seq <= last_seq).collect();
                    let next = page.last().map(|r| r.seq);
                    let lines: Vec<Result<ExportLine, std::io::Error>> = page
                        .into_iter()
                        .map(|r| Ok(ExportLine::Record(r)))
                        .collect();
                    Some((futures::stream::iter(lines), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export: cannot read records");
                    Some((
                        futures::stream::iter(vec![Err(std::io::Error::other(
                            "cannot read the audit records",
                        ))]),
                        None,
                    ))
                }
            }
        }
    })
    .flatten();
    let tail = futures::stream::iter([Ok(ExportLine::End(end))]);
    let body = head_lines.chain(records).chain(tail).map(|line| {
        line.and_then(|line| {
            let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            Ok::<_, std::io::Error>(bytes)
        })
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(response)
}

/// `POST /api/v1/audit/verify` (no body).
pub(crate) async fn verify(
    State(state): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AuditVerification>, ApiError> {
    require_empty(body)?;
    let verdict = state.audit.verify().await.map_err(unavailable)?;
    Ok(Json(match verdict {
        Ok(summary) => AuditVerification::verified(&summary, "the audit chain"),
        Err(broken) => AuditVerification {
            verified: false,
            records: broken.position.saturating_sub(1),
            last_seq: broken.position.saturating_sub(1),
            signed_through: 0,
            checkpoints: 0,
            break_at: Some(broken.position),
            message: broken.to_string(),
        },
    }))
}

/// `GET /api/v1/audit/keys`.
pub(crate) async fn keys(State(state): State<AdminState>) -> Result<Json<AuditKeyList>, ApiError> {
    let (keys, _) = state.audit.trusted_keys().await.map_err(unavailable)?;
    Ok(Json(AuditKeyList { keys }))
}

/// `POST /api/v1/entries/{id}/review`.
pub(crate) async fn review(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: EntryReviewRequest = decode_json(body, None)?;
    if request.reviewed_by.trim().is_empty() {
        return Err(ApiError::invalid("invalid reviewed_by: must not be empty"));
    }
    let stored = state
        .store
        .review_entry(sigil_store::EntryReview {
            entry_id: id,
            reviewed_by: request.reviewed_by,
            reviewed_at: state.clock.unix_secs(),
            note: request.note,
        })
        .await?;
    let note =
        AuditNote::target(&stored.entry_id).detail("reviewed_by", stored.reviewed_by.clone());
    let mut response = (
        StatusCode::OK,
        Json(EntryReview {
            entry_id: stored.entry_id,
            reviewed_by: stored.reviewed_by,
            reviewed_at: stored.reviewed_at,
            note: stored.note,
        }),
    )
        .into_response();
    response.extensions_mut().insert(note);
    Ok(response)
}

fn unavailable(e: crate::audit::AuditFailure) -> ApiError {
    ApiError {
        code: sigil_api::ErrorCode::Unavailable,
        message: e.to_string(),
    }
}
