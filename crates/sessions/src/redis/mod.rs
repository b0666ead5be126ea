//! Sessions in Redis (production), on one server or a Redis Cluster: every key expires by itself.
//!
//! - `hub:session:<token hash>`: the record as JSON, expiring with the session;
//! - `hub:user-sessions:<user id>`: a sorted set of the user's token hashes scored by expiry, for
//!   listing, revoke-all and the per-user cap;
//! - `hub:once:<key>`: one-time values (sign-in states, refresh tokens), taken with `GETDEL`;
//! - `hub:counter:<key>`: counters of attempts in a window.
//!
//! On a cluster a script may touch the keys of one hash slot only, and a user's sessions live in
//! as many slots as they have sessions. So each script here touches one key, and the writes that
//! span a record and the user's index run in an order that keeps what revoking relies on: a
//! session that can be verified is in its user's index. Making one adds it to the index first
//! and checks it is still there after storing the record (a revoke-all in between wins); ending
//! one deletes the record first and then takes it out of the index, so a step cut short leaves at
//! most an index entry with no record, which listing skips and the next revoke clears.
//! [`SessionStore::take_and_keep`]'s two keys must share a hash tag (`refresh:{<hash>}`,
//! `refresh-used:{<hash>}`).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hub_storage::redis_connection::RedisConnection;
use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{SessionError, SessionRecord, SessionStore};

mod records;
mod scripts;

/// The default prefix of every key (`REDIS_KEY_PREFIX`).
pub const DEFAULT_PREFIX: &str = "hub:";

/// Sessions in Redis through one shared, self-reconnecting connection. Every call has a
/// deadline, so an unreachable Redis is an error within it, never a hang.
#[derive(Clone)]
pub struct RedisSessions {
    connection: RedisConnection,
    session: String,
    index: String,
    once: String,
    counter: String,
    deadline: Duration,
    index_add: Script,
    index_settle: Script,
    hit: Script,
    unhit: Script,
    take_and_keep: Script,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions").finish_non_exhaustive()
    }
}

/// Connects to `url` (with `cluster`, the comma-separated seed nodes of a Redis Cluster);
/// commands that get no answer within `timeout` fail instead of hanging.
pub async fn connect(
    url: &str,
    cluster: bool,
    timeout: Duration,
) -> Result<RedisConnection, SessionError> {
    hub_storage::redis_connection::connect(url, cluster, timeout)
        .await
        .map_err(|e| SessionError::Unavailable(e.to_string()))
}

fn unavailable(e: redis::RedisError) -> SessionError {
    SessionError::Unavailable(e.to_string())
}

impl RedisSessions {
    /// Runs one Redis call within the deadline.
    async fn within<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        tokio::time::timeout(self.deadline, call)
            .await
            .map_err(|_| {
                SessionError::Unavailable(format!("no answer within {:?}", self.deadline))
            })?
    }
}

impl RedisSessions {
    /// Over a connection.
    pub fn new(connection: RedisConnection) -> Self {
        Self::with_prefix(connection, DEFAULT_PREFIX)
    }

    /// Over a connection, with every key under `prefix` (several hubs, or tests, on one Redis).
    pub fn with_prefix(connection: RedisConnection, prefix: &str) -> Self {
        Self {
            connection,
            session: format!("{prefix}session:"),
            index: format!("{prefix}user-sessions:"),
            once: format!("{prefix}once:"),
            counter: format!("{prefix}counter:"),
            deadline: Duration::from_millis(750),
            index_add: scripts::index_add(),
            index_settle: scripts::index_settle(),
            unhit: scripts::unhit(),
            take_and_keep: scripts::take_and_keep(),
            hit: scripts::hit(),
        }
    }
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create(
        &self,
        token_hash: &str,
        record: &SessionRecord,
        max_per_user: usize,
        now: DateTime<Utc>,
    ) -> Result<u64, SessionError> {
        self.within(self.create_now(token_hash, record, max_per_user, now))
            .await
    }

    async fn get(&self, token_hash: &str) -> Result<Option<SessionRecord>, SessionError> {
        self.within(self.get_now(token_hash)).await
    }

    async fn list(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        self.within(self.list_now(user_id, now)).await
    }

    async fn revoke(&self, token_hash: &str) -> Result<bool, SessionError> {
        self.within(self.revoke_now(token_hash)).await
    }

    async fn revoke_by_id(&self, user_id: Uuid, id: &str) -> Result<bool, SessionError> {
        self.within(self.revoke_by_id_now(user_id, id)).await
    }

    async fn revoke_all(&self, user_id: Uuid) -> Result<u64, SessionError> {
        self.within(self.revoke_all_now(user_id)).await
    }

    async fn put_once(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), SessionError> {
        self.within(self.put_once_now(key, value, ttl, now)).await
    }

    async fn take_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        self.within(self.take_once_now(key, now)).await
    }

    async fn take_and_keep(
        &self,
        key: &str,
        keep_key: &str,
        ttl: Duration,
        _now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        let mut connection = self.connection.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.take_and_keep.key(format!("{}{key}", self.once));
        invocation
            .key(format!("{}{keep_key}", self.once))
            .arg(ttl_ms);
        self.within(async move {
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn unhit(&self, key: &str) -> Result<(), SessionError> {
        let mut connection = self.connection.clone();
        let invocation = self.unhit.key(format!("{}{key}", self.counter));
        self.within(async move {
            let _: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn peek_once(
        &self,
        key: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        let mut connection = self.connection.clone();
        self.within(async move {
            connection
                .get(format!("{}{key}", self.once))
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn hit(
        &self,
        key: &str,
        window: Duration,
        _now: DateTime<Utc>,
    ) -> Result<u64, SessionError> {
        let mut connection = self.connection.clone();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.hit.key(format!("{}{key}", self.counter));
        invocation.arg(window_ms);
        self.within(async move {
            invocation
                .invoke_async(&mut connection)
                .await
                .map_err(unavailable)
        })
        .await
    }

    async fn count(&self, key: &str, _now: DateTime<Utc>) -> Result<(u64, Duration), SessionError> {
        let mut connection = self.connection.clone();
        let key = format!("{}{key}", self.counter);
        self.within(async move {
            let (count, left_ms): (Option<u64>, i64) = redis::pipe()
                .get(&key)
                .pttl(&key)
                .query_async(&mut connection)
                .await
                .map_err(unavailable)?;
            let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
            Ok((count.unwrap_or(0), left))
        })
        .await
    }
}

impl RedisSessions {
    async fn put_once_now(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        _now: DateTime<Utc>,
    ) -> Result<(), SessionError> {
        let mut connection = self.connection.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: () = connection
            .pset_ex(format!("{}{key}", self.once), value, ttl_ms)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn take_once_now(
        &self,
        key: &str,
        _now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        let mut connection = self.connection.clone();
        connection
            .get_del(format!("{}{key}", self.once))
            .await
            .map_err(unavailable)
    }
}
