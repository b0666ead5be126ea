//! `GET /api/admin/audit`: every admin action (who, what, to what, before and after, the request,
//! when), newest first, filterable, as JSON pages or as CSV.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hub_http::ApiQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::ErrorBody;
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::InvalidInput;
use crate::ledger::admin::{AuditFilter, AuditRecord, MAX_AUDIT_PAGE};

/// A page of the audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditRecord>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<i64>,
}

/// Which entries.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this actor: `user:<id>`, `key:<id>` or `cli`.
    #[param(max_length = 100)]
    actor: Option<String>,
    /// Only this action, e.g. `user.disable`, `credits.grant`.
    #[param(max_length = 100)]
    action: Option<String>,
    /// Only this target, e.g. `user:<id>`.
    #[param(max_length = 100)]
    target: Option<String>,
    /// The `seq` of the last entry of the previous page.
    #[param(minimum = 1)]
    cursor: Option<i64>,
    /// Entries a page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `json` (default) or `csv` (the same entries, one a line, for a spreadsheet).
    #[param(inline)]
    format: Option<Format>,
}

/// How to answer.
#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON pages.
    Json,
    /// CSV.
    Csv,
}

fn filter_text(name: &str, value: Option<String>) -> Result<Option<String>, CoreError> {
    match value {
        Some(v) if v.chars().count() > 100 || v.chars().any(char::is_control) => {
            Err(InvalidInput {
                code: "invalid_query",
                message: format!("{name} is at most 100 characters, without control characters"),
                too_large: false,
            }
            .into())
        }
        other => Ok(other.filter(|v| !v.is_empty())),
    }
}

/// `GET /api/admin/audit`.
#[utoipa::path(
    get,
    path = "/api/admin/audit",
    operation_id = "listAuditLog",
    tag = "admin",
    summary = "The audit log",
    description = "Every admin action (who, what, target, before and after, request id, when), newest first, written with the change it records; filter by actor, action and target; format=csv for CSV. For operators with audit:read (admin) and service keys with audit:read.",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries (JSON), or the entries as CSV with format=csv.", content(
            (AuditPage = "application/json"),
            (String = "text/csv")
        )),
        (status = 403, description = "The caller lacks audit:read.", body = ErrorBody),
        (status = 422, description = "A filter is not valid.", body = ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, CoreError> {
    caller.authorize(&state, Scope::AuditRead).await?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) || query.cursor.is_some_and(|c| c < 1) {
        return Err(InvalidInput {
            code: "invalid_query",
            message: format!("limit is 1 to {MAX_AUDIT_PAGE}; cursor is a positive seq"),
            too_large: false,
        }
        .into());
    }
    let filter = AuditFilter {
        actor: filter_text("actor", query.actor)?,
        action: filter_text("action", query.action)?,
        target: filter_text("target", query.target)?,
        cursor: query.cursor,
        limit: limit + 1,
    };
    let mut entries = state.store.audit_log(&filter).await?;
    let next_cursor = crate::ledger::paging::cut_page(&mut entries, limit, |e| e.seq);
    if query.format == Some(Format::Csv) {
        return Ok(csv(&entries).into_response());
    }
    Ok(Json(AuditPage {
        entries,
        next_cursor,
    })
    .into_response())
}

/// The entries as CSV ([`crate::ledger::admin::audit_csv`]), as a download.
fn csv(entries: &[AuditRecord]) -> impl IntoResponse {
    let out = crate::ledger::admin::audit_csv(entries);
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hub-audit.csv\"",
            ),
        ],
        out,
    )
}
