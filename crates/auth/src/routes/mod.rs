//! HTTP to session and sign-in calls and back.

pub(crate) mod accounts;
pub(crate) mod api;
mod email;
mod google;
mod password;
mod sessions;
mod token_pairs;

pub(crate) use google::cookie_value;
pub(crate) use token_pairs::keep_for;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hub_http::ApiError;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;

/// The public API: each route registered with its OpenAPI operation, so the two cannot differ.
fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(google::start))
        .routes(routes!(google::callback))
        .routes(routes!(sessions::verify, sessions::verify_posted))
        .routes(routes!(sessions::list, sessions::revoke_all))
        .routes(routes!(sessions::revoke_current))
        .routes(routes!(sessions::revoke_one))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(token_pairs::refresh))
        .routes(routes!(token_pairs::logout))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::jwks))
        .routes(routes!(email::verify_email))
        .routes(routes!(password::forgot))
        .routes(routes!(password::reset_password))
        .merge(crate::oauth::api())
        .merge(crate::admin::api())
}

/// Every route of the auth service; `GET /openapi.json` answers the paths and schemas of its public
/// API, which the gateway merges into the whole document.
pub fn router(state: AppState) -> Router {
    let (public, document) = api().split_for_parts();
    public
        .route(
            "/openapi.json",
            get(move || std::future::ready(axum::Json(document))),
        )
        .route(
            crate::links::Purpose::VerifyEmail.page(),
            get(email::page).post(email::page_posted),
        )
        .route(
            crate::links::Purpose::ResetPassword.page(),
            get(password::page).post(password::page_posted),
        )
        .merge(crate::oauth::router())
        .merge(crate::account::router())
        .merge(crate::console::router())
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
