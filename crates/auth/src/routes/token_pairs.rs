//! Token pairs: an access token (a JWT) with a rotating refresh token, issued at sign-in;
//! `POST /api/auth/refresh` spends a refresh token for a new pair, `POST /api/auth/logout` ends
//! its family.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use hub_http::{ApiError, ApiJson};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::accounts::store_error;
use super::api::{Account, ErrorBody, StatusOk, Tokens};
use crate::AppState;
use crate::sessions::token_hash;
use crate::tokens::{ACCESS_TTL, REFRESH_PREFIX, REFRESH_TTL, new_refresh_token};

/// A refresh token as kept, under its hash.
#[derive(Serialize, Deserialize)]
struct RefreshRecord {
    family: String,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    /// The user's token epoch when it was issued: good only while it is still theirs.
    #[serde(default)]
    epoch: String,
}

/// How long the store keeps a token's record.
pub(crate) fn keep_for(ttl: chrono::Duration) -> Duration {
    ttl.to_std().unwrap_or(Duration::from_secs(30 * 24 * 3600))
}

// The token's hash is the key's hash tag (between braces): on a Redis Cluster the refresh token
// and its spent marker share a slot, so spending one and remembering it stay one atomic step.
fn refresh_key(hash: &str) -> String {
    format!("refresh:{{{hash}}}")
}

/// Where a spent refresh token is remembered, to tell a replay from a mistake.
fn spent_refresh_key(hash: &str) -> String {
    format!("refresh-used:{{{hash}}}")
}

/// Issues an access token and a refresh token in `family`.
pub(super) async fn issue(
    state: &AppState,
    user: &hub_ledger::users::User,
    family: &str,
) -> Result<Tokens, ApiError> {
    let now = state.sessions.clock().now();
    let roles = state
        .users
        .roles(user.id)
        .await
        .map_err(|e| store_error(&e))?;
    let epoch = state.sessions.token_epoch(user.id).await?;
    let access = state
        .jwt
        .issue(user.id, &user.email, roles.clone(), &epoch, now)
        .map_err(|e| ApiError::internal(&e))?;
    let refresh = new_refresh_token().map_err(|e| ApiError::internal(&e))?;
    let record = RefreshRecord {
        family: family.to_owned(),
        user_id: user.id,
        expires_at: now + REFRESH_TTL,
        epoch,
    };
    let record = serde_json::to_string(&record).map_err(|e| ApiError::internal(&e))?;
    state
        .sessions
        .store()
        .put_once(
            &refresh_key(&token_hash(&refresh)),
            &record,
            keep_for(REFRESH_TTL),
            now,
        )
        .await?;
    Ok(Tokens {
        access_token: access,
        token_type: "Bearer",
        expires_in: ACCESS_TTL.num_seconds(),
        refresh_token: refresh,
        user: Account {
            id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
            roles,
        },
    })
}

/// A new family of refresh tokens: one sign-in, and every refresh that follows from it.
pub(super) fn new_family() -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(&e))?;
    Ok(hex::encode(bytes))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
/// A refresh token, to spend or to sign out.
pub struct RefreshBody {
    /// The refresh token (`hub_rt_…`).
    refresh_token: String,
}

/// The one answer to every refresh token that is not good.
fn invalid_refresh() -> ApiError {
    ApiError::unauthenticated("The refresh token is invalid, expired or revoked.")
        .with_code("invalid_refresh_token")
}

/// `POST /api/auth/refresh`: a new pair for a refresh token, which is spent. Presenting a spent
/// token again means it was stolen or replayed: its whole family is revoked.
#[utoipa::path(
    post,
    path = "/api/auth/refresh",
    operation_id = "refreshTokens",
    tag = "accounts",
    summary = "Trade a refresh token for a new pair",
    description = "Spends a refresh token for a new access token and refresh token. A spent token presented again revokes its whole family.",
    request_body = RefreshBody,
    responses(
        (status = 200, description = "A new pair.", body = Tokens),
        (status = 401, description = "The refresh token is invalid, expired or revoked.", body = ErrorBody),
    ),
    security(())
)]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<Tokens>, ApiError> {
    if !body.refresh_token.starts_with(REFRESH_PREFIX) || body.refresh_token.len() > 128 {
        return Err(invalid_refresh());
    }
    let store = state.sessions.store();
    let now = state.sessions.clock().now();
    let hash = token_hash(&body.refresh_token);
    let spent = spent_refresh_key(&hash);
    let taken = store
        .take_and_keep(&refresh_key(&hash), &spent, keep_for(REFRESH_TTL), now)
        .await?;
    let Some(record) = taken else {
        let reused = store.peek_once(&spent, now).await?;
        if let Some(family) = reused
            .and_then(|r| serde_json::from_str::<RefreshRecord>(&r).ok())
            .map(|r| r.family)
        {
            tracing::warn!(family = %family, "a spent refresh token came back: revoking its family");
            store
                .put_once(
                    &format!("family-revoked:{family}"),
                    "1",
                    keep_for(REFRESH_TTL),
                    now,
                )
                .await?;
        }
        return Err(invalid_refresh());
    };
    let record: RefreshRecord =
        serde_json::from_str(&record).map_err(|e| ApiError::internal(&e))?;
    if record.expires_at <= now
        || store
            .peek_once(&format!("family-revoked:{}", record.family), now)
            .await?
            .is_some()
    {
        return Err(invalid_refresh());
    }
    if !state
        .sessions
        .epoch_is_current(record.user_id, &record.epoch)
        .await?
    {
        // Everything of an earlier epoch is over: end the family for good.
        store
            .put_once(
                &format!("family-revoked:{}", record.family),
                "1",
                keep_for(REFRESH_TTL),
                now,
            )
            .await?;
        return Err(invalid_refresh());
    }
    let user = state
        .users
        .find_user(record.user_id)
        .await
        .map_err(|e| store_error(&e))?
        .ok_or_else(invalid_refresh)?;
    Ok(Json(issue(&state, &user, &record.family).await?))
}

/// `POST /api/auth/logout`: revokes the refresh token's whole family.
#[utoipa::path(
    post,
    path = "/api/auth/logout",
    operation_id = "logout",
    tag = "accounts",
    summary = "Sign out a refresh token's family",
    description = "Revokes the refresh token and every token refreshed from it.",
    request_body = RefreshBody,
    responses((status = 200, description = "Signed out (also when the token was already spent).", body = StatusOk)),
    security(())
)]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<StatusOk>, ApiError> {
    let store = state.sessions.store();
    let now = state.sessions.clock().now();
    let hash = token_hash(&body.refresh_token);
    let taken = store.take_once(&refresh_key(&hash), now).await?;
    if let Some(record) = taken.and_then(|r| serde_json::from_str::<RefreshRecord>(&r).ok()) {
        let family = format!("family-revoked:{}", record.family);
        store
            .put_once(&family, "1", keep_for(REFRESH_TTL), now)
            .await?;
    }
    Ok(Json(StatusOk { status: "ok" }))
}
