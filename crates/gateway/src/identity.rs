//! Who is calling: the gateway decides before anything reaches a service, and tells the services
//! in headers they trust only beside the internal credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use hub_http::ApiError;
use hub_http::caller::{
    CALLER_HEADER, INTERNAL_HEADER, SCOPES_HEADER, SERVICE_KEY_HEADER, USER_ID_HEADER,
};
use hub_ledger::service_keys::{KEY_PREFIX, key_hash};
use hub_sessions::{Verified, looks_like_token};
use uuid::Uuid;

use crate::AppState;

/// The header a session code comes in.
pub(crate) const X_SESSION_TOKEN: HeaderName = HeaderName::from_static("x-session-token");
/// The header a service key comes in (or `Authorization: Bearer hub_sk_…`).
pub(crate) const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// Every header a credential comes in: names made once, not parsed again at every look.
pub(crate) const CREDENTIAL_HEADERS: [HeaderName; 3] =
    [X_SESSION_TOKEN, X_API_KEY, header::AUTHORIZATION];

/// A caller the gateway recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recognised {
    /// An end user, by their session code or access token.
    User(Uuid),
    /// An OAuth app acting for a user, within its grant.
    App {
        /// The user.
        user: Uuid,
        /// What the app's token allows.
        access: crate::jwt::AppAccess,
    },
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

/// Why a request's credentials were not accepted, and whether that counts as a failed
/// credential (an expired access token does not: it was once really issued).
#[derive(Debug)]
pub struct Refused {
    /// The answer.
    pub error: ApiError,
    /// Whether it spends from the failed-credential budget.
    pub counts: bool,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        let counts = error.status == StatusCode::UNAUTHORIZED;
        Self { error, counts }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Whether the request presents a credential in a header (a session code, a service key, an
/// access token, or anything else in `Authorization`).
pub fn presents_credential(headers: &HeaderMap) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|name| headers.contains_key(name))
}

/// Whether the request presents a credential besides a service key (a session code, or an
/// `Authorization` that is not the key): one the gateway or a service would look up.
pub fn presents_more_than_a_key(headers: &HeaderMap) -> bool {
    headers.contains_key(&X_SESSION_TOKEN)
        || (headers.contains_key(header::AUTHORIZATION)
            && !bearer(headers).is_some_and(|b| b.starts_with(KEY_PREFIX)))
}

/// The service key a request presents: `X-API-Key`, or `Authorization: Bearer hub_sk_…`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    text(headers, &X_API_KEY).or_else(|| bearer(headers).filter(|b| b.starts_with(KEY_PREFIX)))
}

/// What the gateway knows of a presented service key without reading the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownKey {
    /// A live key, looked up within `SERVICE_KEY_CACHE_SECONDS`.
    Live(Recognised),
    /// A key that was live when last looked up, longer ago than that: worth reading again.
    WasLive,
    /// A key looked up recently and not found.
    Unknown,
    /// A key not seen lately.
    NotSeen,
}

/// What the cache knows of `key`.
pub fn known_key(state: &AppState, key: &str) -> KnownKey {
    state.key_cache.known(&key_hash(key))
}

/// Looks `key` up, through the cache (the database at most once per cache interval, for live
/// keys and for keys that do not exist alike).
pub async fn look_up_key(state: &AppState, key: &str) -> Result<Option<Recognised>, ApiError> {
    let hash = key_hash(key);
    match state.key_cache.known(&hash) {
        KnownKey::Live(caller) => return Ok(Some(caller)),
        KnownKey::Unknown => return Ok(None),
        KnownKey::WasLive | KnownKey::NotSeen => {}
    }
    state.metrics.credential_lookup("service_key");
    match state.store.find_service_key(&hash).await {
        Ok(Some(found)) => {
            // Its last use, for operators; off the request's path.
            let (store, id) = (state.store.clone(), found.id.clone());
            tokio::spawn(async move {
                if let Err(e) = store.touch_service_key(&id).await {
                    tracing::debug!(error = %e, "could not note a service key's use");
                }
            });
            let caller = Recognised::ServiceKey {
                id: found.id,
                scopes: found.scopes,
            };
            state.key_cache.put(hash, Some(caller.clone()));
            Ok(Some(caller))
        }
        Ok(None) => {
            state.key_cache.put(hash, None);
            Ok(None)
        }
        Err(e) if e.is_unavailable() => Err(store_unavailable(&e)),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// Works out the caller from the request's credentials; `None` when it presented none.
pub async fn resolve(state: &AppState, headers: &HeaderMap) -> Result<Option<Recognised>, Refused> {
    let bearer = bearer(headers);
    let session = text(headers, &X_SESSION_TOKEN);

    if let Some(token) = session.or(bearer.filter(|b| b.starts_with("VERIFIED-"))) {
        if !looks_like_token(token) {
            return Err(unauthenticated().into());
        }
        state.metrics.credential_lookup("session");
        return match state.sessions.verify(token).await {
            Ok(Verified::Live(record)) => Ok(Some(Recognised::User(record.user_id))),
            Ok(Verified::Invalid) => Err(unauthenticated().into()),
            Err(e) => Err(store_unavailable(&e).into()),
        };
    }
    if let Some(key) = presented_key(headers) {
        return match look_up_key(state, key).await? {
            Some(caller) => Ok(Some(caller)),
            None => Err(unauthenticated().into()),
        };
    }
    if let Some(token) = bearer.filter(|b| crate::jwt::looks_like_jwt(b)) {
        return match state.jwt.verify(token).await {
            // A token issued before the user's last "sign out everywhere", password reset or
            // Google takeover of the address is over, however long it has left (not counted as
            // a failed credential: it was once really issued).
            Ok(access) => match still_current(state, &access).await {
                Ok(true) => Ok(Some(match access.app {
                    None => Recognised::User(access.user),
                    Some(app) => Recognised::App {
                        user: access.user,
                        access: app,
                    },
                })),
                Ok(false) => Err(Refused {
                    error: unauthenticated(),
                    counts: false,
                }),
                Err(e) => Err(store_unavailable(&e).into()),
            },
            Err(crate::jwt::Rejected::Invalid) => Err(unauthenticated().into()),
            Err(crate::jwt::Rejected::Expired) => Err(Refused {
                error: unauthenticated(),
                counts: false,
            }),
            Err(crate::jwt::Rejected::KeysUnavailable(e)) => Err(store_unavailable(&e).into()),
        };
    }
    if bearer.is_some() {
        return Err(unauthenticated().into());
    }
    Ok(None)
}

/// Whether an access token is still good: issued in the user's current token epoch, and for an
/// app's token, under a grant the user has not disconnected.
async fn still_current(
    state: &AppState,
    access: &crate::jwt::AccessToken,
) -> Result<bool, hub_sessions::SessionError> {
    if !state
        .sessions
        .epoch_is_current(access.user, &access.epoch)
        .await?
    {
        return Ok(false);
    }
    let Some(app) = &access.app else {
        return Ok(true);
    };
    let revoked = state
        .sessions
        .store()
        .peek_once(
            &hub_sessions::grant_revoked_key(&app.grant),
            state.sessions.clock().now(),
        )
        .await?;
    Ok(revoked.is_none())
}

/// Service keys the gateway has looked up, kept for a few seconds so that a busy key costs one
/// database read per interval instead of one per request. A revoked key stops working within
/// that interval. Keys that do not exist are kept as unknown for the same interval, so that
/// repeating a made-up key does not reach the database either (a key created just after it was
/// tried may take that long to work).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    keys: Mutex<HashMap<String, (Option<Recognised>, Instant)>>,
}

/// Entries kept before expired ones are dropped.
const KEY_CACHE_ENTRIES: usize = 10_000;

impl KeyCache {
    /// Keys are kept for `ttl` (zero: no cache).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            keys: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self, hash: &str) -> KnownKey {
        let Ok(keys) = self.keys.lock() else {
            return KnownKey::NotSeen;
        };
        match keys.get(hash) {
            None => KnownKey::NotSeen,
            Some((caller, at)) if at.elapsed() < self.ttl => match caller {
                Some(caller) => KnownKey::Live(caller.clone()),
                None => KnownKey::Unknown,
            },
            Some((Some(_), _)) => KnownKey::WasLive,
            Some((None, _)) => KnownKey::NotSeen,
        }
    }

    fn put(&self, hash: String, caller: Option<Recognised>) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut keys) = self.keys.lock() else {
            return;
        };
        if keys.len() >= KEY_CACHE_ENTRIES {
            // Unknown keys go first, live ones that have expired next: the memory of a live
            // key lets it past the failed-credential budget of a busy shared address.
            let ttl = self.ttl;
            keys.retain(|_, (caller, at)| caller.is_some() || at.elapsed() < ttl);
            if keys.len() >= KEY_CACHE_ENTRIES {
                keys.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            if keys.len() >= KEY_CACHE_ENTRIES && caller.is_none() {
                // A flood of made-up keys: they are not remembered, the budget limits them.
                return;
            }
        }
        keys.insert(hash, (caller, Instant::now()));
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
    caller: Option<&Recognised>,
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
        Recognised::User(id) => {
            if claimed.is_some_and(|claimed| claimed != *id) {
                return Err(ApiError::forbidden("An end user acts only as themselves."));
            }
            set(headers, CALLER_HEADER, "user")?;
            set(headers, USER_ID_HEADER, &id.to_string())?;
        }
        Recognised::App { user, access } => {
            if claimed.is_some_and(|claimed| claimed != *user) {
                return Err(ApiError::forbidden(
                    "An app acts only for the user who connected it.",
                ));
            }
            set(headers, CALLER_HEADER, "user")?;
            set(headers, USER_ID_HEADER, &user.to_string())?;
            set(headers, hub_http::caller::GRANT_HEADER, &access.grant)?;
        }
        Recognised::ServiceKey { id, scopes } => {
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
