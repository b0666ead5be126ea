//! Who is calling: the gateway decides before anything reaches a service, and tells the services
//! in headers they trust only beside the internal credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use hub_auth::sessions::{Verified, looks_like_token};
use hub_core::caller::{
    CALLER_HEADER, INTERNAL_HEADER, SCOPES_HEADER, SERVICE_KEY_HEADER, USER_ID_HEADER,
};
use hub_core::service_keys::{KEY_PREFIX, key_hash};
use hub_error::ApiError;
use uuid::Uuid;

use crate::AppState;

/// A caller the gateway recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An end user, by their session code or access token.
    User(Uuid),
    /// A service key.
    ServiceKey {
        /// The key's id.
        id: String,
        /// Its scopes.
        scopes: Vec<String>,
    },
}

fn unauthenticated() -> ApiError {
    ApiError::unauthenticated(
        "Authenticate with a session code (X-Session-Token), an access token (Authorization: Bearer eyJ…), or a service key (Authorization: Bearer hub_sk_… or X-API-Key).",
    )
}

fn store_unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %error, "a store the gateway needs is unavailable");
    let mut api = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Try again in a moment.",
    );
    api.retry_after = Some(1);
    api
}

/// Works out the caller from the request's credentials; `None` when it presented none.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let session = headers
        .get("x-session-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);

    if let Some(token) = session.or(bearer.filter(|b| b.starts_with("VERIFIED-"))) {
        if !looks_like_token(token) {
            return Err(unauthenticated());
        }
        return match state.sessions.verify(token).await {
            Ok(Verified::Live(record)) => Ok(Some(Caller::User(record.user_id))),
            Ok(Verified::Invalid) => Err(unauthenticated()),
            Err(e) => Err(store_unavailable(&e)),
        };
    }
    if let Some(key) = api_key.or(bearer.filter(|b| b.starts_with(KEY_PREFIX))) {
        let hash = key_hash(key);
        if let Some(caller) = state.key_cache.get(&hash) {
            return Ok(Some(caller));
        }
        return match state.store.find_service_key(&hash).await {
            Ok(Some(found)) => {
                let caller = Caller::ServiceKey {
                    id: found.id,
                    scopes: found.scopes,
                };
                state.key_cache.put(hash, caller.clone());
                Ok(Some(caller))
            }
            Ok(None) => Err(unauthenticated()),
            Err(e) if e.is_unavailable() => Err(store_unavailable(&e)),
            Err(e) => Err(ApiError::internal(&e)),
        };
    }
    if let Some(token) = bearer.filter(|b| crate::jwt::looks_like_jwt(b)) {
        return match state.jwt.verify(token).await {
            // A token issued before the user's last "sign out everywhere", password reset or
            // Google takeover of the address is over, however long it has left.
            Ok(access) => match state
                .sessions
                .epoch_is_current(access.user, &access.epoch)
                .await
            {
                Ok(true) => Ok(Some(Caller::User(access.user))),
                Ok(false) => Err(unauthenticated()),
                Err(e) => Err(store_unavailable(&e)),
            },
            Err(crate::jwt::Rejected::Invalid) => Err(unauthenticated()),
            Err(crate::jwt::Rejected::KeysUnavailable(e)) => Err(store_unavailable(&e)),
        };
    }
    if bearer.is_some() {
        return Err(unauthenticated());
    }
    Ok(None)
}

/// Live service keys the gateway has looked up, kept for a few seconds so that a busy key costs
/// one database read per interval instead of one per request. A revoked key stops working within
/// that interval; keys that do not exist are never cached.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    keys: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl KeyCache {
    /// Keys are kept for `ttl` (zero: no cache).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str) -> Option<Caller> {
        let keys = self.keys.lock().ok()?;
        let (caller, at) = keys.get(hash)?;
        (at.elapsed() < self.ttl).then(|| caller.clone())
    }

    fn put(&self, hash: String, caller: Caller) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= 10_000 {
                let ttl = self.ttl;
                keys.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            keys.insert(hash, (caller, Instant::now()));
        }
    }
}

/// Removes every identity or internal header a client sent.
pub fn strip_client_identity(headers: &mut HeaderMap) {
    let internal: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-hub-") || name.as_str() == USER_ID_HEADER)
        .cloned()
        .collect();
    for name in internal {
        headers.remove(name);
    }
}

/// For a credit or admin route: checks the `X-User-ID` rules and writes the identity headers the
/// services trust. `claimed_user` is the client's `X-User-ID`, read before it was stripped.
pub fn vouch(
    state: &AppState,
    caller: Option<&Caller>,
    claimed_user: Option<&str>,
    headers: &mut HeaderMap,
) -> Result<(), ApiError> {
    let caller = caller.ok_or_else(unauthenticated)?;
    let claimed =
        match claimed_user {
            None => None,
            Some(raw) => Some(Uuid::parse_str(raw.trim()).map_err(|_| {
                ApiError::bad_request("invalid_user_id", "X-User-ID must be a UUID.")
            })?),
        };
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| -> Result<(), ApiError> {
        let value = HeaderValue::from_str(value).map_err(|e| ApiError::internal(&e))?;
        headers.insert(name, value);
        Ok(())
    };
    set(headers, INTERNAL_HEADER, &state.internal_token)?;
    match caller {
        Caller::User(id) => {
            if claimed.is_some_and(|claimed| claimed != *id) {
                return Err(ApiError::forbidden("An end user acts only as themselves."));
            }
            set(headers, CALLER_HEADER, "user")?;
            set(headers, USER_ID_HEADER, &id.to_string())?;
        }
        Caller::ServiceKey { id, scopes } => {
            // One GPT key serves every ChatGPT user, and a user could talk the model into naming
            // someone else: a GPT key acts only through a user's own session code.
            if scopes.iter().any(|s| s == "gpt") {
                return Err(ApiError::forbidden(
                    "A GPT key acts only for the user whose session_token (or X-Session-Token) it sends.",
                ));
            }
            set(headers, CALLER_HEADER, "service")?;
            set(headers, SERVICE_KEY_HEADER, id)?;
            set(headers, SCOPES_HEADER, &scopes.join(" "))?;
            if let Some(user) = claimed {
                set(headers, USER_ID_HEADER, &user.to_string())?;
            }
        }
    }
    Ok(())
}
