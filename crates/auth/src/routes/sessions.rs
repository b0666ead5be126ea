//! `verify-session` and the caller's own sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use hub_error::ApiError;
use serde_json::{Value, json};

use crate::AppState;
use crate::sessions::{SessionRecord, Verified};

/// The token from `X-Session-Token`, or from `Authorization: Bearer VERIFIED-…`.
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = headers.get("x-session-token").and_then(|v| v.to_str().ok()) {
        return Some(token.trim());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn invalid_session() -> ApiError {
    ApiError::unauthenticated("The session token is missing, invalid, expired or revoked.")
        .with_code("invalid_session")
}

/// The live session behind the request's token, or the one 401 for every way it can fail.
async fn session_of(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(String, SessionRecord), ApiError> {
    let token = presented_token(headers).ok_or_else(invalid_session)?;
    match state.sessions.verify(token).await? {
        Verified::Live(record) => Ok((token.to_owned(), record)),
        Verified::Invalid => Err(invalid_session()),
    }
}

/// `GET /api/auth/verify-session`: who this verification code belongs to.
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (_, session) = session_of(&state, &headers).await?;
    answer_verified(&state, &session).await
}

/// The body of `POST /api/auth/verify-session`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    session_token: String,
}

/// `POST /api/auth/verify-session` `{ "session_token": "VERIFIED-…" }`: the same check, for a
/// GPT Action, which can fill declared body fields but cannot set per-user headers.
pub async fn verify_posted(
    State(state): State<AppState>,
    hub_error::ApiJson(body): hub_error::ApiJson<VerifyBody>,
) -> Result<Json<Value>, ApiError> {
    let session = match state.sessions.verify(body.session_token.trim()).await? {
        Verified::Live(record) => record,
        Verified::Invalid => return Err(invalid_session()),
    };
    answer_verified(&state, &session).await
}

async fn answer_verified(
    state: &AppState,
    session: &SessionRecord,
) -> Result<Json<Value>, ApiError> {
    if !state.known_users.exists(state, session.user_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            "The user of this session no longer exists.",
        ));
    }
    Ok(Json(json!({
        "user": { "id": session.user_id, "email": session.email, "name": session.name }
    })))
}

fn describe(record: &SessionRecord, current: &SessionRecord) -> Value {
    json!({
        "id": record.id,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "session": record.session_param,
        "return_to": record.return_to,
        "current": record.id == current.id,
    })
}

/// `GET /api/auth/sessions`: the caller's live sessions, without their tokens.
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (_, current) = session_of(&state, &headers).await?;
    let sessions = state.sessions.list(current.user_id).await?;
    Ok(Json(
        json!({ "sessions": sessions.iter().map(|s| describe(s, &current)).collect::<Vec<_>>() }),
    ))
}

/// `DELETE /api/auth/sessions/current`: sign this code out.
pub async fn revoke_current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (token, _) = session_of(&state, &headers).await?;
    let revoked = state.sessions.revoke(&token).await?;
    Ok(Json(json!({ "revoked": u8::from(revoked) })))
}

/// `DELETE /api/auth/sessions/{id}`: sign out one of the caller's sessions.
pub async fn revoke_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (_, current) = session_of(&state, &headers).await?;
    if !state
        .sessions
        .store()
        .revoke_by_id(current.user_id, &id)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "You have no session with this id.",
        ));
    }
    Ok(Json(json!({ "revoked": 1 })))
}

/// `DELETE /api/auth/sessions`: sign out everywhere.
pub async fn revoke_all(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (_, current) = session_of(&state, &headers).await?;
    let revoked = state.sessions.revoke_all(current.user_id).await?;
    Ok(Json(json!({ "revoked": revoked })))
}
