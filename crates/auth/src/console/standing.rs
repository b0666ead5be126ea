//! The account forms of a user's page: disable, enable, delete (for `users:manage`) and sign out
//! everywhere (for `sessions:revoke`), as the JSON admin API does them: the account's change and
//! its audit entry commit together, then the user's session codes and tokens end (repeating an
//! action ends them again). Each needs its confirmation box ticked.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hub_ledger::admin::{AccountChange, AuditEntry};
use hub_ledger::users::Permission;
use uuid::Uuid;

use super::actions::{ActionForm, Refusal, answer, authorized, confirmed, refusal, request_id};
use super::operator::Operator;
use crate::AppState;

/// Refuses an operator's action on their own account: it would lock them out of the console.
fn not_oneself(operator: &Operator, id: Uuid) -> Result<(), Refusal> {
    if operator.session.user_id == id {
        return Err(refusal(
            StatusCode::CONFLICT,
            "Operators cannot disable or delete their own account.",
        ));
    }
    Ok(())
}

async fn change(
    state: &AppState,
    headers: &HeaderMap,
    operator: &Operator,
    id: Uuid,
    action: &'static str,
) -> Result<(), Refusal> {
    if action != "user.enable" {
        not_oneself(operator, id)?;
    }
    let audit = AuditEntry::on_user(&operator.actor(), action, id)
        .in_request(request_id(headers).as_deref());
    let change = match action {
        "user.disable" => state.users.set_disabled(id, true, &audit).await?,
        "user.enable" => state.users.set_disabled(id, false, &audit).await?,
        _ => state.users.delete_user(id, &audit).await?,
    };
    match change {
        AccountChange::Changed | AccountChange::Unchanged => {}
        AccountChange::UnknownUser => {
            return Err(refusal(StatusCode::NOT_FOUND, "No user has this id."));
        }
        AccountChange::Deleted => {
            return Err(refusal(
                StatusCode::CONFLICT,
                "A deleted account cannot be enabled.",
            ));
        }
    }
    // Enabling ends nothing: the sessions ended when the account was disabled stay ended.
    if action != "user.enable" {
        end_everything(state, id).await?;
    }
    Ok(())
}

async fn end_everything(state: &AppState, id: Uuid) -> Result<u64, Refusal> {
    state.sessions.end_everything(id).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot end a user's sessions from the console");
        refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "The account changed, but its sessions could not be ended yet: send the form again.",
        )
    })
}

async fn account_form(
    state: AppState,
    headers: HeaderMap,
    id: String,
    form: ActionForm,
    permission: Permission,
    action: &'static str,
) -> Response {
    let (operator, id) = match authorized(&state, &headers, &form, &id, permission).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let done = match confirmed(&form) {
        Ok(()) if action == "user.sessions.end" => {
            sessions_ended(&state, &headers, &operator, id).await
        }
        Ok(()) => change(&state, &headers, &operator, id, action).await,
        Err(refused) => Err(refused),
    };
    let done_word = action
        .strip_prefix("user.")
        .map_or("done", |a| if a == "sessions.end" { "sign-out" } else { a });
    answer(&operator, id, done_word, done)
}

async fn sessions_ended(
    state: &AppState,
    headers: &HeaderMap,
    operator: &Operator,
    id: Uuid,
) -> Result<(), Refusal> {
    if state.users.find_user(id).await?.is_none() {
        return Err(refusal(StatusCode::NOT_FOUND, "No user has this id."));
    }
    let ended = end_everything(state, id).await?;
    let mut audit = AuditEntry::on_user(&operator.actor(), "user.sessions.end", id)
        .in_request(request_id(headers).as_deref());
    audit.after = Some(serde_json::json!({ "sessions_ended": ended }));
    state.users.record_audit(&audit).await?;
    Ok(())
}

/// `POST /console/users/{id}/disable`.
pub(crate) async fn disable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    account_form(
        state,
        headers,
        id,
        form,
        Permission::UsersManage,
        "user.disable",
    )
    .await
}

/// `POST /console/users/{id}/enable`.
pub(crate) async fn enable(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    account_form(
        state,
        headers,
        id,
        form,
        Permission::UsersManage,
        "user.enable",
    )
    .await
}

/// `POST /console/users/{id}/delete`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    account_form(
        state,
        headers,
        id,
        form,
        Permission::UsersManage,
        "user.delete",
    )
    .await
}

/// `POST /console/users/{id}/sign-out`: ends every session code and token of the user.
pub(crate) async fn end_sessions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ActionForm>,
) -> Response {
    account_form(
        state,
        headers,
        id,
        form,
        Permission::SessionsRevoke,
        "user.sessions.end",
    )
    .await
}
