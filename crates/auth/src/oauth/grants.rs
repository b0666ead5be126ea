//! A user's connected apps: `GET /api/auth/grants` lists them, `DELETE /api/auth/grants/{id}`
//! disconnects one, and its tokens stop at once (the gateway reads the grant's revocation marker
//! on every call; refreshing reads the grant itself).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use hub_http::ApiError;
use hub_sessions::{Verified, looks_like_token};
use serde::Serialize;
use uuid::Uuid;

use super::codes;
use crate::AppState;
use crate::routes::accounts::store_error;

/// The refresh tokens' lifetime bounds how long a revoked grant's marker must be kept.
const MARKER_KEPT: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

/// Ends a grant: in the database, and as a marker the gateway reads.
pub(crate) async fn end_grant(
    state: &AppState,
    user_id: Uuid,
    grant_id: &str,
) -> Result<bool, super::OAuthError> {
    let now = state.sessions.clock().now();
    state
        .sessions
        .store()
        .put_once(&codes::grant_revoked_key(grant_id), "1", MARKER_KEPT, now)
        .await?;
    Ok(state.users.revoke_grant(user_id, grant_id).await?)
}

/// The user of a session code or of the hub's own access token (not an app's).
async fn user_of(state: &AppState, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let invalid = || {
        ApiError::unauthenticated("Send your session code or access token.")
            .with_code("invalid_token")
    };
    let token = headers
        .get("x-session-token")
        .or_else(|| headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .ok_or_else(invalid)?;
    if looks_like_token(token) {
        return match state.sessions.verify(token).await? {
            Verified::Live(record) => Ok(record.user_id),
            Verified::Invalid => Err(invalid()),
        };
    }
    let claims = state
        .jwt
        .verify(token, state.sessions.clock().now())
        .ok_or_else(invalid)?;
    let id: Uuid = claims.sub.parse().map_err(|_| invalid())?;
    if !claims.client_id.is_empty() || !state.sessions.epoch_is_current(id, &claims.epoch).await? {
        return Err(invalid());
    }
    Ok(id)
}

/// One connected app.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectedApp {
    /// The grant's id, to disconnect it.
    id: String,
    /// The app's client id.
    client_id: String,
    /// The app's name.
    name: String,
    /// What it may do.
    scopes: Vec<String>,
    /// The most credits it may spend a UTC day, if capped.
    daily_cap: Option<i64>,
    /// When it was connected.
    connected_at: DateTime<Utc>,
    /// When it last got a token.
    last_used_at: Option<DateTime<Utc>>,
}

/// The apps a user connected.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectedApps {
    /// Newest first.
    apps: Vec<ConnectedApp>,
}

/// `GET /api/auth/grants`.
#[utoipa::path(
    get,
    path = "/api/auth/grants",
    operation_id = "listConnectedApps",
    tag = "sessions",
    summary = "The apps the caller connected",
    description = "The OAuth apps (GPT Actions, ChatGPT apps, Claude connectors) the caller gave access to: scopes, daily spending cap, when connected and last used. With the caller's session code or access token.",
    responses(
        (status = 200, description = "The apps, newest first.", body = ConnectedApps),
        (status = 401, description = "The code or token is missing, invalid, expired or revoked.", body = hub_http::ErrorBody),
        (status = 503, description = "A store is briefly unavailable.", body = hub_http::ErrorBody),
    ),
    security(("sessionToken" = []), ("bearerJwt" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ConnectedApps>, ApiError> {
    let user = user_of(&state, &headers).await?;
    let grants = state
        .users
        .list_grants(user)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Json(ConnectedApps {
        apps: grants
            .into_iter()
            .map(|g| ConnectedApp {
                id: g.id,
                client_id: g.client_id,
                name: g.client_name,
                scopes: g.scopes,
                daily_cap: g.daily_cap,
                connected_at: g.created_at,
                last_used_at: g.last_used_at,
            })
            .collect(),
    }))
}

/// `DELETE /api/auth/grants/{id}`.
#[utoipa::path(
    delete,
    path = "/api/auth/grants/{id}",
    operation_id = "disconnectApp",
    tag = "sessions",
    summary = "Disconnect an app",
    description = "Ends the caller's grant to an app: its access and refresh tokens stop working at once.",
    params(("id" = String, Path, description = "The grant's id (from listConnectedApps).")),
    responses(
        (status = 204, description = "Disconnected."),
        (status = 401, description = "The code or token is missing, invalid, expired or revoked.", body = hub_http::ErrorBody),
        (status = 404, description = "The caller has no connected app with this id.", body = hub_http::ErrorBody),
        (status = 503, description = "A store is briefly unavailable.", body = hub_http::ErrorBody),
    ),
    security(("sessionToken" = []), ("bearerJwt" = []))
)]
pub async fn disconnect(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = user_of(&state, &headers).await?;
    if id.len() > 64 {
        return Err(not_found());
    }
    let owned = state
        .users
        .find_grant(&id)
        .await
        .map_err(|e| store_error(&e))?
        .is_some_and(|g| g.user_id == user);
    if !owned {
        return Err(not_found());
    }
    match end_grant(&state, user, &id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(not_found()),
        Err(_) => Err(crate::routes::unavailable(&"the grant store")),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_grant",
        "You have no connected app with this id.",
    )
}
