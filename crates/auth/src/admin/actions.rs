//! Operators' actions on a user: disable, enable, delete, end their sessions. The database change
//! and its audit entry commit together; the user's sessions and tokens end right after, in the
//! session store (repeating an action ends them again, so a retry after a failure completes it).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hub_http::ApiError;
use hub_ledger::admin::{AccountChange, AuditEntry};
use hub_ledger::users::Permission;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Vouched, unknown_user};
use crate::AppState;
use crate::routes::accounts::store_error;
use crate::routes::api::ErrorBody;

/// What an operator's action did to an account.
#[derive(Serialize, ToSchema)]
pub struct AccountAction {
    /// The user.
    pub user_id: Uuid,
    /// `user.disable`, `user.enable`, `user.delete` or `user.sessions.end`.
    pub action: &'static str,
    /// Whether the account changed (false: it was so already; the sessions were ended again).
    pub changed: bool,
    /// How many session codes ended.
    pub sessions_ended: u64,
}

fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(hub_http::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
}

/// Carries out one of the account actions (`user.disable`, `user.enable`, `user.delete`,
/// `user.sessions.end`) for the JSON API and the console alike. `operator` is the acting user, if
/// a user acts: nobody disables or deletes their own account (it would lock them out). The
/// account's change and its audit entry commit together; the user's sessions and tokens end
/// right after (enabling ends nothing: the sessions ended when the account was disabled stay
/// ended).
pub(crate) async fn carry_out(
    state: &AppState,
    operator: Option<Uuid>,
    actor: &str,
    request_id: Option<&str>,
    id: Uuid,
    action: &'static str,
) -> Result<AccountAction, ApiError> {
    let audit = AuditEntry::on_user(actor, action, id).in_request(request_id);
    if action == "user.sessions.end" {
        return end_all(state, audit, id).await;
    }
    if action != "user.enable" && operator == Some(id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "own_account",
            "Operators cannot disable or delete their own account.",
        ));
    }
    let change = match action {
        "user.disable" => state.users.set_disabled(id, true, &audit).await,
        "user.enable" => state.users.set_disabled(id, false, &audit).await,
        _ => state.users.delete_user(id, &audit).await,
    }
    .map_err(|e| store_error(&e))?;
    let changed = match change {
        AccountChange::Changed => true,
        AccountChange::Unchanged => false,
        AccountChange::UnknownUser => return Err(unknown_user()),
        AccountChange::Deleted => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "account_deleted",
                "A deleted account cannot be enabled.",
            ));
        }
    };
    let sessions_ended = if action == "user.enable" {
        0
    } else {
        state.sessions.end_everything(id).await?
    };
    Ok(AccountAction {
        user_id: id,
        action,
        changed,
        sessions_ended,
    })
}

/// Signs a user out everywhere, and records it (the sessions live in the session store, so the
/// entry follows the change rather than sharing its transaction).
async fn end_all(
    state: &AppState,
    mut audit: AuditEntry,
    id: Uuid,
) -> Result<AccountAction, ApiError> {
    let exists = state
        .users
        .find_user(id)
        .await
        .map_err(|e| store_error(&e))?;
    if exists.is_none() {
        return Err(unknown_user());
    }
    let sessions_ended = state.sessions.end_everything(id).await?;
    audit.after = Some(serde_json::json!({ "sessions_ended": sessions_ended }));
    state
        .users
        .record_audit(&audit)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(AccountAction {
        user_id: id,
        action: "user.sessions.end",
        changed: true,
        sessions_ended,
    })
}

/// An API caller's account action.
async fn act(
    state: &AppState,
    caller: &Vouched,
    headers: &HeaderMap,
    id: Uuid,
    action: &'static str,
) -> Result<Json<AccountAction>, ApiError> {
    let operator = match caller.0.principal {
        hub_http::caller::Principal::User(me) => Some(me),
        _ => None,
    };
    let actor = caller.0.actor();
    carry_out(state, operator, &actor, request_id(headers), id, action)
        .await
        .map(Json)
}

/// `POST /api/admin/users/{id}/disable`.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/disable",
    operation_id = "disableUser",
    tag = "admin",
    summary = "Disable a user",
    description = "Freezes the account (a service key naming the user, or one of their holds, spends nothing: account_disabled), refuses their sign-ins (account_disabled) and ends their session codes and tokens at once. Recorded in the audit log. For operators with users:manage.",
    params(("id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "Disabled (changed is false if it was already).", body = AccountAction),
        (status = 403, description = "The caller lacks users:manage.", body = ErrorBody),
        (status = 404, description = "No user has this id.", body = ErrorBody),
        (status = 409, description = "An operator's own account.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn disable(
    State(state): State<AppState>,
    caller: Vouched,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<AccountAction>, ApiError> {
    caller.authorize(&state, Permission::UsersManage).await?;
    act(&state, &caller, &headers, id, "user.disable").await
}

/// `POST /api/admin/users/{id}/enable`.
#[utoipa::path(
    post,
    path = "/api/admin/users/{id}/enable",
    operation_id = "enableUser",
    tag = "admin",
    summary = "Enable a disabled user",
    description = "Unfreezes the account and lets the user sign in again (their old sessions stay ended). Recorded in the audit log. For operators with users:manage.",
    params(("id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "Enabled (changed is false if it was not disabled).", body = AccountAction),
        (status = 403, description = "The caller lacks users:manage.", body = ErrorBody),
        (status = 404, description = "No user has this id.", body = ErrorBody),
        (status = 409, description = "The account was deleted.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn enable(
    State(state): State<AppState>,
    caller: Vouched,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<AccountAction>, ApiError> {
    caller.authorize(&state, Permission::UsersManage).await?;
    act(&state, &caller, &headers, id, "user.enable").await
}

/// `DELETE /api/admin/users/{id}`.
#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}",
    operation_id = "deleteUser",
    tag = "admin",
    summary = "Delete a user",
    description = "Replaces the user's e-mail address, name, Google account and password, removes roles and app connections, freezes the account and ends sessions; the id and ledger rows stay, so balances still add up. Recorded in the audit log. For operators with users:manage.",
    params(("id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "Deleted (changed is false if it was already).", body = AccountAction),
        (status = 403, description = "The caller lacks users:manage.", body = ErrorBody),
        (status = 404, description = "No user has this id.", body = ErrorBody),
        (status = 409, description = "An operator's own account.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Vouched,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<AccountAction>, ApiError> {
    caller.authorize(&state, Permission::UsersManage).await?;
    act(&state, &caller, &headers, id, "user.delete").await
}

/// `DELETE /api/admin/users/{id}/sessions`.
#[utoipa::path(
    delete,
    path = "/api/admin/users/{id}/sessions",
    operation_id = "endUserSessions",
    tag = "admin",
    summary = "Sign a user out everywhere",
    description = "Ends every session code, access token and refresh token of the user. Recorded in the audit log. For operators with sessions:revoke (support and admin).",
    params(("id" = Uuid, Path, description = "The user's id.")),
    responses(
        (status = 200, description = "Ended.", body = AccountAction),
        (status = 403, description = "The caller lacks sessions:revoke.", body = ErrorBody),
        (status = 404, description = "No user has this id.", body = ErrorBody),
    ),
    security(("bearerJwt" = []), ("serviceKey" = []))
)]
pub async fn end_sessions(
    State(state): State<AppState>,
    caller: Vouched,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Json<AccountAction>, ApiError> {
    caller.authorize(&state, Permission::SessionsRevoke).await?;
    act(&state, &caller, &headers, id, "user.sessions.end").await
}
