//! Sessions: the verification code a user pastes into ChatGPT is a bearer credential for a week.
//!
//! - The token is `VERIFIED-` and 32 base62 characters drawn from the operating system's random
//!   source (about 190 bits).
//! - It is stored only as its SHA-256 hash, with the user's id, email and name, the GPT's
//!   `session` parameter, and when it was made and ends.
//! - A user has at most `MAX_SESSIONS_PER_USER` live sessions; making one more ends the oldest.

pub mod clock;
pub mod redis;
pub mod sqlite;
mod token;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Clock;
pub use crate::token::{TOKEN_PREFIX, looks_like_token, new_token, token_hash};

/// Why a session store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The backing store is unreachable or timed out.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// The backing store answered something unreadable.
    #[error("session store: {0}")]
    Corrupt(String),
}

impl From<SessionError> for hub_http::ApiError {
    /// An unreachable store is a 503 worth retrying, never a 500.
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Unavailable(_) => {
                tracing::warn!(error = %error, "the session store is unavailable");
                let mut api = hub_http::ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Sign-in is briefly unavailable; try again in a moment.",
                );
                api.retry_after = Some(1);
                api
            }
            SessionError::Corrupt(_) => hub_http::ApiError::internal(&error),
        }
    }
}

impl From<serde_json::Error> for SessionError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}

/// A session as stored: everything but the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// A public id for listing and revoking (not the token).
    pub id: String,
    /// The user.
    pub user_id: Uuid,
    /// Their email when the session was made.
    pub email: String,
    /// Their name when the session was made.
    pub name: String,
    /// The GPT conversation that asked for the sign-in, if any.
    pub session_param: Option<String>,
    /// Where the user was sent back to (`chatgpt`).
    pub return_to: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Storage of sessions and of one-time sign-in states. Implementations: Redis (production) and
/// the embedded SQLite file.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a session under its token hash; then, if the user has more than `max_per_user`
    /// live sessions, ends the oldest. Returns how many it ended.
    async fn create(
        &self,
        token_hash: &str,
        record: &SessionRecord,
        max_per_user: usize,
        now: DateTime<Utc>,
    ) -> Result<u64, SessionError>;
    /// The session stored under a token hash, if any (expired ones may still be returned; the
    /// caller compares `expires_at` with its clock).
    async fn get(&self, token_hash: &str) -> Result<Option<SessionRecord>, SessionError>;
    /// The user's sessions that have not ended at `now`, oldest first.
    async fn list(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, SessionError>;
    /// Ends one session; `false` if there was none.
    async fn revoke(&self, token_hash: &str) -> Result<bool, SessionError>;
    /// Ends one of the user's sessions by its public id; `false` if there was none.
    async fn revoke_by_id(&self, user_id: Uuid, id: &str) -> Result<bool, SessionError>;
    /// Ends every session of a user; returns how many.
    async fn revoke_all(&self, user_id: Uuid) -> Result<u64, SessionError>;
    /// Keeps a one-time value (a sign-in's state) for `ttl`.
    async fn put_once(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), SessionError>;
    /// Takes a one-time value: the first call gets it, every later one nothing.
    async fn take_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError>;
    /// Takes a one-time value and, in the same atomic step, keeps it under `keep_key` for `ttl`
    /// (a refresh token is spent and remembered as spent at once). The two keys share a hash
    /// tag (`spent:{x}`, `x:{x}`), so that on a Redis Cluster they are in one slot.
    async fn take_and_keep(
        &self,
        key: &str,
        keep_key: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError>;
    /// Takes back one event counted under `key` (a success that was counted in advance).
    async fn unhit(&self, key: &str) -> Result<(), SessionError>;
    /// Reads a kept value without taking it.
    async fn peek_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError>;
    /// Counts one event under `key` in a window of `window` that starts at the first event;
    /// returns the count so far in the window.
    async fn hit(
        &self,
        key: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, SessionError>;
    /// The count under `key` in its current window, and how long the window has left.
    async fn count(&self, key: &str, now: DateTime<Utc>) -> Result<(u64, Duration), SessionError>;
}

/// The session store the configuration names: Redis at `redis_url` (a Redis Cluster through the
/// comma-separated seed nodes there with `cluster`; keys under `prefix`), else the embedded SQLite
/// database.
pub async fn open(
    redis_url: Option<&str>,
    cluster: bool,
    prefix: &str,
    database: &hub_storage::Database,
) -> Result<Arc<dyn SessionStore>, SessionError> {
    match (redis_url, database) {
        (Some(url), _) => {
            let connection = self::redis::connect(url, cluster, Duration::from_millis(800)).await?;
            Ok(Arc::new(self::redis::RedisSessions::with_prefix(
                connection, prefix,
            )))
        }
        (None, hub_storage::Database::Sqlite { writer, reader, .. }) => Ok(Arc::new(
            self::sqlite::SqliteSessions::new(writer.clone(), reader.clone()),
        )),
        (None, hub_storage::Database::Postgres(_)) => Err(SessionError::Unavailable(
            "REDIS_URL is required with PostgreSQL".into(),
        )),
    }
}

/// The marker of an OAuth grant a user disconnected (or that a replayed authorization code
/// ended): the auth service writes it, the gateway reads it on every call with an app's token, so
/// the grant's access tokens stop at once.
pub fn grant_revoked_key(grant_id: &str) -> String {
    format!("oauth-grant-revoked:{grant_id}")
}

/// How long a user's token epoch is kept: longer than any token of an earlier epoch lives
/// (refresh tokens, 30 days), so that none comes back to life when it is forgotten.
const EPOCH_KEPT_FOR: Duration = Duration::from_secs(31 * 24 * 3600);

fn epoch_key(user_id: Uuid) -> String {
    format!("token-epoch:{user_id}")
}

/// What verifying a token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A live session.
    Live(SessionRecord),
    /// Missing, malformed, unknown, expired or revoked: all answered alike.
    Invalid,
}

/// The session rules over a store and a clock.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    lifetime: chrono::Duration,
    max_per_user: usize,
}

/// A session just made, with its token (shown once, never stored).
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The token to hand to the user.
    pub token: String,
    /// What was stored.
    pub record: SessionRecord,
}

impl Sessions {
    /// Sessions that last `lifetime`, at most `max_per_user` per user.
    pub fn new(
        store: Arc<dyn SessionStore>,
        clock: Arc<dyn Clock>,
        lifetime: chrono::Duration,
        max_per_user: usize,
    ) -> Self {
        Self {
            store,
            clock,
            lifetime,
            max_per_user: max_per_user.max(1),
        }
    }

    /// The store underneath (sign-in states share it).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The clock the rules use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How long a session lasts.
    pub fn lifetime(&self) -> chrono::Duration {
        self.lifetime
    }

    /// Makes a session for a user.
    pub async fn create(
        &self,
        user_id: Uuid,
        email: &str,
        name: &str,
        session_param: Option<&str>,
        return_to: Option<&str>,
    ) -> Result<NewSession, SessionError> {
        let token = new_token()?;
        let now = self.clock.now();
        let mut id = [0u8; 12];
        getrandom::fill(&mut id)
            .map_err(|e| SessionError::Unavailable(format!("OS random source: {e}")))?;
        let record = SessionRecord {
            id: hex::encode(id),
            user_id,
            email: email.to_owned(),
            name: name.to_owned(),
            session_param: session_param.map(str::to_owned),
            return_to: return_to.map(str::to_owned),
            created_at: now,
            expires_at: now + self.lifetime,
        };
        self.store
            .create(&token_hash(&token), &record, self.max_per_user, now)
            .await?;
        Ok(NewSession { token, record })
    }

    /// Checks a token.
    pub async fn verify(&self, token: &str) -> Result<Verified, SessionError> {
        if !looks_like_token(token) {
            return Ok(Verified::Invalid);
        }
        Ok(match self.store.get(&token_hash(token)).await? {
            Some(record) if record.expires_at > self.clock.now() => Verified::Live(record),
            _ => Verified::Invalid,
        })
    }

    /// The user's live sessions.
    pub async fn list(&self, user_id: Uuid) -> Result<Vec<SessionRecord>, SessionError> {
        self.store.list(user_id, self.clock.now()).await
    }

    /// Ends the session of this token.
    pub async fn revoke(&self, token: &str) -> Result<bool, SessionError> {
        if !looks_like_token(token) {
            return Ok(false);
        }
        self.store.revoke(&token_hash(token)).await
    }

    /// Ends all of a user's sessions.
    pub async fn revoke_all(&self, user_id: Uuid) -> Result<u64, SessionError> {
        self.store.revoke_all(user_id).await
    }

    /// Ends everything issued to a user until now: every session code, and every access token
    /// and refresh-token family. Access and refresh tokens carry the user's token epoch from when
    /// they were issued; this starts a new epoch, so that all earlier ones are refused wherever
    /// they are presented (whatever the clocks say). For "sign out everywhere", a password reset,
    /// and a Google account taking over an address someone registered. Returns how many session
    /// codes ended.
    pub async fn end_everything(&self, user_id: Uuid) -> Result<u64, SessionError> {
        let now = self.clock.now();
        let mut epoch = [0u8; 16];
        getrandom::fill(&mut epoch)
            .map_err(|e| SessionError::Unavailable(format!("OS random source: {e}")))?;
        // The epoch first: a token refreshed while the sessions are being ended is refused too.
        self.store
            .put_once(
                &epoch_key(user_id),
                &hex::encode(epoch),
                EPOCH_KEPT_FOR,
                now,
            )
            .await?;
        self.store.revoke_all(user_id).await
    }

    /// The user's token epoch, for a token issued now (empty until their first
    /// [`Sessions::end_everything`]).
    pub async fn token_epoch(&self, user_id: Uuid) -> Result<String, SessionError> {
        Ok(self
            .store
            .peek_once(&epoch_key(user_id), self.clock.now())
            .await?
            .unwrap_or_default())
    }

    /// Whether a token issued in `epoch` is still good: nothing has ended everything since.
    pub async fn epoch_is_current(&self, user_id: Uuid, epoch: &str) -> Result<bool, SessionError> {
        Ok(self.token_epoch(user_id).await? == epoch)
    }
}
