//! What a user has: `GET /api/mcp/v1/credits/balance` and the history of their transactions,
//! a page at a time.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hub_http::ApiQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::api::ErrorBody;
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::{InvalidInput, MAX_PAGE, validate_transaction_id};

/// A user's balance.
#[derive(Serialize, ToSchema)]
pub struct BalanceOk {
    /// The user.
    pub user_id: Uuid,
    /// Their balance in credits.
    pub balance: i64,
    /// Credits held for calls in progress.
    pub held: i64,
    /// What they may spend now: `balance - held`.
    pub available_balance: i64,
}

/// `GET /api/mcp/v1/credits/balance`.
#[utoipa::path(
    get,
    path = "/api/mcp/v1/credits/balance",
    operation_id = "getBalance",
    tag = "credits",
    summary = "Read the user's balance",
    description = "The user's credit balance.",
    params(("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves.")),
    responses(
        (status = 200, description = "The balance.", body = BalanceOk),
        (status = 403, description = "The account is disabled (account_disabled), or the caller lacks the permission.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn balance(State(state): State<AppState>, caller: Caller) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    let holdings = super::live_holdings(&state, user_id).await?;
    Ok(Json(BalanceOk {
        user_id,
        balance: holdings.balance,
        held: holdings.held,
        available_balance: holdings.available(),
    })
    .into_response())
}

/// A page of history.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Transactions per page, 1 to 200 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (empty: the first page).
    #[serde(default)]
    #[param(max_length = 64, pattern = r"^[A-Za-z0-9_-]{0,64}$")]
    cursor: Option<String>,
}

/// `GET /api/mcp/v1/credits/transactions?limit=&cursor=`: newest first.
#[utoipa::path(
    get,
    path = "/api/mcp/v1/credits/transactions",
    operation_id = "listTransactions",
    tag = "credits",
    summary = "List the user's transactions",
    description = "The user's credit history, newest first, a page at a time.",
    params(
        HistoryQuery,
        ("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves."),
    ),
    responses(
        (status = 200, description = "A page of transactions.", body = crate::ledger::TransactionPage),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn transactions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(CoreError::Invalid(InvalidInput {
            code: "invalid_limit",
            message: format!("limit must be 1 to {MAX_PAGE}"),
            too_large: false,
        }));
    }
    let cursor = query.cursor.filter(|c| !c.is_empty());
    if let Some(cursor) = &cursor {
        validate_transaction_id(cursor)?;
    }
    let page = state
        .store
        .transactions(user_id, limit, cursor.as_deref())
        .await?
        .ok_or(CoreError::UnknownUser)?;
    Ok((StatusCode::OK, Json(page)).into_response())
}
