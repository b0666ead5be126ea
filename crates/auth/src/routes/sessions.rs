//! `verify-session` and the caller's own sessions.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use hub_http::ApiError;

use super::api::{
    ErrorBody, Revoked, SessionInfo, SessionList, SessionUser, Verified as VerifiedBody,
};
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
#[utoipa::path(
    get,
    path = "/api/auth/verify-session",
    operation_id = "verifySession",
    tag = "sessions",
    summary = "Verify a session code (header form)",
    description = "Answers whom a verification code (VERIFIED-…) from the sign-in success page belongs to. Send it as X-Session-Token or Authorization: Bearer.",
    responses(
        (status = 200, description = "The code is live.", body = VerifiedBody),
        (status = 401, description = "The code is missing, invalid, expired or revoked.", body = ErrorBody),
        (status = 404, description = "The code's user no longer exists.", body = ErrorBody),
    ),
    security(("sessionToken" = []))
)]
pub async fn verify(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<VerifiedBody>, ApiError> {
    let (_, session) = session_of(&state, &headers).await?;
    answer_verified(&state, &session).await
}

/// The body of `POST /api/auth/verify-session`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    /// The code the user copied from the sign-in success page.
    #[schema(
        example = "VERIFIED-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        pattern = r"^VERIFIED-[A-Za-z0-9]{32}$"
    )]
    session_token: String,
}

/// `POST /api/auth/verify-session` `{ "session_token": "VERIFIED-…" }`: the same check, for a
/// GPT Action, which can fill declared body fields but cannot set per-user headers.
#[utoipa::path(
    post,
    path = "/api/auth/verify-session",
    operation_id = "verifySessionCode",
    tag = "sessions",
    summary = "Verify a session code the user pasted",
    description = "Answers whom a verification code (VERIFIED-…) from the sign-in success page belongs to. The code goes in the body, so a GPT Action can send the code the user pasted.",
    request_body = VerifyBody,
    responses(
        (status = 200, description = "The code is live.", body = VerifiedBody),
        (status = 401, description = "The code is invalid, expired or revoked.", body = ErrorBody),
        (status = 404, description = "The code's user no longer exists.", body = ErrorBody),
    ),
    security((), ("serviceKey" = []))
)]
pub async fn verify_posted(
    State(state): State<AppState>,
    hub_http::ApiJson(body): hub_http::ApiJson<VerifyBody>,
) -> Result<Json<VerifiedBody>, ApiError> {
    let session = match state.sessions.verify(body.session_token.trim()).await? {
        Verified::Live(record) => record,
        Verified::Invalid => return Err(invalid_session()),
    };
    answer_verified(&state, &session).await
}

async fn answer_verified(
    state: &AppState,
    session: &SessionRecord,
) -> Result<Json<VerifiedBody>, ApiError> {
    if !state.known_users.exists(state, session.user_id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            "The user of this session no longer exists.",
        ));
    }
    Ok(Json(VerifiedBody {
        user: SessionUser {
            id: session.user_id,
            email: session.email.clone(),
            name: session.name.clone(),
        },
    }))
}

fn describe(record: &SessionRecord, current: &SessionRecord) -> SessionInfo {
    SessionInfo {
        id: record.id.clone(),
        created_at: record.created_at,
        expires_at: record.expires_at,
        session: record.session_param.clone(),
        return_to: record.return_to.clone(),
        current: record.id == current.id,
    }
}

/// `GET /api/auth/sessions`: the caller's live sessions, without their tokens.
#[utoipa::path(
    get,
    path = "/api/auth/sessions",
    operation_id = "listSessions",
    tag = "sessions",
    summary = "List the caller's sessions",
    description = "The live sessions of the user whose code is sent, without their codes.",
    responses(
        (status = 200, description = "The sessions.", body = SessionList),
        (status = 401, description = "The code is missing, invalid, expired or revoked.", body = ErrorBody),
    ),
    security(("sessionToken" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SessionList>, ApiError> {
    let (_, current) = session_of(&state, &headers).await?;
    let sessions = state.sessions.list(current.user_id).await?;
    Ok(Json(SessionList {
        sessions: sessions.iter().map(|s| describe(s, &current)).collect(),
    }))
}

/// `DELETE /api/auth/sessions/current`: sign this code out.
#[utoipa::path(
    delete,
    path = "/api/auth/sessions/current",
    operation_id = "signOut",
    tag = "sessions",
    summary = "Sign this code out",
    description = "Revokes the session of the code sent.",
    responses(
        (status = 200, description = "Signed out.", body = Revoked),
        (status = 401, description = "The code is missing, invalid, expired or revoked.", body = ErrorBody),
    ),
    security(("sessionToken" = []))
)]
pub async fn revoke_current(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Revoked>, ApiError> {
    let (token, _) = session_of(&state, &headers).await?;
    let revoked = state.sessions.revoke(&token).await?;
    Ok(Json(Revoked {
        revoked: u64::from(revoked),
    }))
}

/// `DELETE /api/auth/sessions/{id}`: sign out one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/api/auth/sessions/{id}",
    operation_id = "revokeSession",
    tag = "sessions",
    summary = "Sign out one of the caller's sessions",
    description = "Revokes one of the caller's sessions by its public id (from listSessions).",
    params(("id" = String, Path, description = "The session's public id.")),
    responses(
        (status = 200, description = "Signed out.", body = Revoked),
        (status = 401, description = "The code is missing, invalid, expired or revoked.", body = ErrorBody),
        (status = 404, description = "The caller has no session with this id.", body = ErrorBody),
    ),
    security(("sessionToken" = []))
)]
pub async fn revoke_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
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
    Ok(Json(Revoked { revoked: 1 }))
}

/// `DELETE /api/auth/sessions`: sign out everywhere.
#[utoipa::path(
    delete,
    path = "/api/auth/sessions",
    operation_id = "signOutEverywhere",
    tag = "sessions",
    summary = "Sign out everywhere",
    description = "Revokes every session code, access token and refresh token of the user whose code is sent.",
    responses(
        (status = 200, description = "Signed out.", body = Revoked),
        (status = 401, description = "The code is missing, invalid, expired or revoked.", body = ErrorBody),
    ),
    security(("sessionToken" = []))
)]
pub async fn revoke_all(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Revoked>, ApiError> {
    let (_, current) = session_of(&state, &headers).await?;
    // Every session code, access token and refresh family of the user, not only the codes.
    let revoked = state.sessions.end_everything(current.user_id).await?;
    Ok(Json(Revoked { revoked }))
}
