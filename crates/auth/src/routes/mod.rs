//! HTTP to session and sign-in calls and back.

mod accounts;
mod google;
mod sessions;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use hub_error::ApiError;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::sessions::SessionError;

/// Every route of the auth service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/auth/google", get(google::start))
        .route("/auth/google/callback", get(google::callback))
        .route(
            "/api/auth/verify-session",
            get(sessions::verify).post(sessions::verify_posted),
        )
        .route(
            "/api/auth/sessions",
            get(sessions::list).delete(sessions::revoke_all),
        )
        .route(
            "/api/auth/sessions/current",
            delete(sessions::revoke_current),
        )
        .route("/api/auth/sessions/{id}", delete(sessions::revoke_one))
        .route("/api/auth/register", post(accounts::register))
        .route("/api/auth/login", post(accounts::login))
        .route("/api/auth/refresh", post(accounts::refresh))
        .route("/api/auth/logout", post(accounts::logout))
        .route("/api/auth/me", get(accounts::me))
        .route("/.well-known/jwks.json", get(accounts::jwks))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "service": "auth" }))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = state.sessions.store().get("readiness-probe").await;
    let database = state.users.ping().await;
    match (store, database) {
        (Ok(_), Ok(())) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        (store, database) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "sessions": if store.is_ok() { "ok" } else { "unreachable" },
                "database": if database.is_ok() { "ok" } else { "unreachable" },
            })),
        ),
    }
}

/// The session store or the database did not answer: a 503 worth retrying, never a 500.
pub(crate) fn unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %error, "a store is unavailable");
    let mut api = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Sign-in is briefly unavailable; try again in a moment.",
    );
    api.retry_after = Some(1);
    api
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Unavailable(_) => unavailable(&error),
            SessionError::Corrupt(_) => ApiError::internal(&error),
        }
    }
}

/// Users known to exist, for a few seconds: verifying a session then costs the session lookup
/// alone, and a deleted user is noticed within [`KnownUsers::FRESH_FOR`].
#[derive(Debug, Default)]
pub struct KnownUsers(RwLock<HashMap<Uuid, Instant>>);

impl KnownUsers {
    /// How long a user's existence is trusted without asking the database.
    pub const FRESH_FOR: Duration = Duration::from_secs(5);
    const CAPACITY: usize = 100_000;

    /// Whether the user exists.
    pub async fn exists(&self, state: &AppState, id: Uuid) -> Result<bool, ApiError> {
        let fresh = self
            .0
            .read()
            .ok()
            .and_then(|known| known.get(&id).copied())
            .is_some_and(|seen| seen.elapsed() < Self::FRESH_FOR);
        if fresh {
            return Ok(true);
        }
        let exists = state
            .users
            .find_user(id)
            .await
            .map_err(|e| {
                if e.is_unavailable() {
                    unavailable(&e)
                } else {
                    ApiError::internal(&e)
                }
            })?
            .is_some();
        if let Ok(mut known) = self.0.write() {
            if known.len() >= Self::CAPACITY {
                known.clear();
            }
            if exists {
                known.insert(id, Instant::now());
            } else {
                known.remove(&id);
            }
        }
        Ok(exists)
    }
}
