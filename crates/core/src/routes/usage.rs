//! Operators' usage report: `GET /api/admin/usage`, for callers with `usage:read`. Answered from
//! the rollups the ledger keeps in step with itself (`hub_ledger::usage`), never from the ledger.

use axum::Json;
use axum::extract::State;
use chrono::{Days, NaiveDate, Utc};
use hub_http::ApiQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::ErrorBody;
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::usage::{MAX_ROWS, UsageFigures, UsageGrouping, UsageQuery, UsageRow};

/// Rows of a report by service or user, unless `limit` says otherwise.
const DEFAULT_ROWS: u32 = 100;
/// Days in a report without `from`, `to` included.
const DEFAULT_DAYS: u64 = 30;

/// The report asked for.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// The first UTC day, inclusive (default: 29 days before `to`).
    from: Option<NaiveDate>,
    /// The last UTC day, inclusive (default: today). At most 366 days after `from`, counting both.
    to: Option<NaiveDate>,
    /// What a row stands for (default: `day`).
    #[param(inline)]
    group_by: Option<UsageGrouping>,
    /// The most rows by service or user, biggest spend first (default 100); days are never cut.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// Credits spent, refunded, granted and adjusted, and calls, over a range of days.
#[derive(Serialize, ToSchema)]
pub struct UsageReportBody {
    /// The first day.
    pub from: NaiveDate,
    /// The last day.
    pub to: NaiveDate,
    /// What a row stands for.
    pub group_by: UsageGrouping,
    /// By day: every day of the range, oldest first. By service (`""` holds grants and
    /// adjustments) or user: biggest spend first, at most `limit`.
    pub rows: Vec<UsageRow>,
    /// Over the whole range, whatever `limit` left out.
    pub totals: UsageFigures,
    /// Whether `limit` left rows out.
    pub truncated: bool,
}

/// `GET /api/admin/usage`.
#[utoipa::path(
    get,
    path = "/api/admin/usage",
    operation_id = "getUsage",
    tag = "admin",
    summary = "Usage report",
    description = "Credits spent, refunded, granted and adjusted, and calls (debits), between two UTC days inclusive (default: the last 30), by day, service or user, from rollups kept in step with the ledger. For usage:read (finance and admin roles, service keys).",
    params(UsageParams),
    responses(
        (status = 200, description = "The report.", body = UsageReportBody),
        (status = 403, description = "The caller lacks usage:read.", body = ErrorBody),
        (status = 422, description = "The dates, grouping or limit are not valid: from after to, more than 366 days, a limit outside 1 to 1000.", body = ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<UsageReportBody>, CoreError> {
    caller.authorize(&state, Scope::UsageRead).await?;
    let to = params.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = params.from.unwrap_or_else(|| {
        to.checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .unwrap_or(NaiveDate::MIN)
    });
    let group_by = params.group_by.unwrap_or(UsageGrouping::Day);
    let limit = params.limit.unwrap_or(DEFAULT_ROWS.min(MAX_ROWS));
    let query = UsageQuery::new(from, to, group_by, limit)?;
    let report = state.store.usage(&query).await?;
    Ok(Json(UsageReportBody {
        from,
        to,
        group_by,
        rows: report.rows,
        totals: report.totals,
        truncated: report.truncated,
    }))
}
