//! A user's promotional grants: `GET /api/mcp/v1/credits/grants`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::api::ErrorBody;
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::grants::CreditGrant;

/// A user's grants that can still be spent.
#[derive(Serialize, ToSchema)]
pub struct GrantsOk {
    /// The user.
    pub user_id: Uuid,
    /// In spending order: priority (lower first), then the earliest end date, then the oldest.
    /// Credits from plain grants and top-ups are not listed: they never expire.
    pub grants: Vec<CreditGrant>,
}

/// `GET /api/mcp/v1/credits/grants`.
#[utoipa::path(
    get,
    path = "/api/mcp/v1/credits/grants",
    operation_id = "listGrants",
    tag = "credits",
    summary = "List the user's promotional grants",
    description = "The user's grants with an end date or a priority that still hold credits, in the order they are spent, with what is left of each and when it expires.",
    params(("X-User-ID" = Option<Uuid>, Header, description = "The user a service key acts for. End users act only as themselves.")),
    responses(
        (status = 200, description = "The grants.", body = GrantsOk),
        (status = 403, description = "The account is disabled (account_disabled), or the caller lacks the permission.", body = ErrorBody),
        (status = 404, description = "No such user.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    // Refused for an unknown or disabled account, as the balance is.
    super::live_holdings(&state, user_id).await?;
    let grants = state
        .store
        .grants(user_id)
        .await?
        .ok_or(CoreError::UnknownUser)?;
    Ok(Json(GrantsOk { user_id, grants }).into_response())
}
