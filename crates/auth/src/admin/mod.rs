//! Operators' endpoints for users (`/api/admin/users…`): find them, read them, disable, enable
//! and delete them, end their sessions. Users and their sessions are this service's; the gateway
//! says who calls (beside the internal credential), and every operation checks that caller's
//! named permission itself.

mod actions;

pub(crate) use actions::carry_out;
mod users;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use hub_http::ApiError;
use hub_http::caller::{Caller, Principal};
use hub_ledger::users::Permission;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::routes::accounts::store_error;

/// The operators' API, each route with its OpenAPI operation.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users::search))
        .routes(routes!(users::detail, actions::delete))
        .routes(routes!(actions::disable))
        .routes(routes!(actions::enable))
        .routes(routes!(actions::end_sessions))
}

/// A caller the gateway vouched for.
pub(crate) struct Vouched(pub Caller);

impl FromRequestParts<AppState> for Vouched {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let credential = state.credential.as_ref().ok_or_else(|| {
            ApiError::unauthenticated(
                "The operators' endpoints are off: this auth service has no HUB_INTERNAL_TOKEN.",
            )
        })?;
        Caller::from_headers(&parts.headers, credential).map(Self)
    }
}

impl Vouched {
    /// Checks a permission: service keys by their scopes, users by their roles' permissions.
    pub(crate) async fn authorize(
        &self,
        state: &AppState,
        permission: Permission,
    ) -> Result<(), ApiError> {
        let allowed = match &self.0.principal {
            Principal::System => true,
            Principal::ServiceKey { scopes, .. } => scopes.iter().any(|s| s == permission.as_str()),
            Principal::User(id) => state
                .users
                .permissions(*id)
                .await
                .map_err(|e| store_error(&e))?
                .iter()
                .any(|p| p == permission.as_str()),
        };
        if allowed {
            Ok(())
        } else {
            Err(missing(permission))
        }
    }
}

/// 403 naming the permission the caller lacks.
pub(crate) fn missing(permission: Permission) -> ApiError {
    ApiError::forbidden(format!(
        "This caller lacks the permission {}.",
        permission.as_str()
    ))
    .with_field("permission", permission.as_str())
}

/// Whether an operator disabled (or deleted) the user's account: no sign-in, no token for them.
pub(crate) async fn is_disabled(
    state: &AppState,
    user_id: uuid::Uuid,
) -> Result<bool, hub_ledger::StoreError> {
    Ok(state
        .users
        .account_state(user_id)
        .await?
        .is_some_and(|s| s.disabled_at.is_some()))
}

/// 403 `account_disabled` for a disabled account's sign-in.
pub(crate) async fn refuse_disabled(state: &AppState, user_id: uuid::Uuid) -> Result<(), ApiError> {
    if is_disabled(state, user_id)
        .await
        .map_err(|e| store_error(&e))?
    {
        return Err(ApiError::account_disabled());
    }
    Ok(())
}

/// 404 `unknown_user`.
pub(crate) fn unknown_user() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "unknown_user",
        "No user has this id.",
    )
}
