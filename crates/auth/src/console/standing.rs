//! The account forms of a user's page: disable, enable, delete (for `users:manage`) and sign out
//! everywhere (for `sessions:revoke`), as the JSON admin API does them: the account's change and
//! its audit entry commit together, then the user's session codes and tokens end (repeating an
//! action ends them again). Each needs its confirmation box ticked.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use hub_ledger::users::Permission;

use super::actions::{ActionForm, answer, authorized, confirmed, refusal, request_id};
use crate::AppState;

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
        Ok(()) => {
            let request = request_id(&headers);
            let operator_id = Some(operator.session.user_id);
            crate::admin::carry_out(
                &state,
                operator_id,
                &operator.actor(),
                request.as_deref(),
                id,
                action,
            )
            .await
            .map(|_| ())
            .map_err(|e| refusal(e.status, e.message))
        }
        Err(refused) => Err(refused),
    };
    let done_word = action
        .strip_prefix("user.")
        .map_or("done", |a| if a == "sessions.end" { "sign-out" } else { a });
    answer(&operator, id, done_word, done)
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
