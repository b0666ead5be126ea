//! Sessions in Redis (production): every key expires by itself.
//!
//! - `hub:session:<token hash>`: the record as JSON, expiring with the session;
//! - `hub:user-sessions:<user id>`: a sorted set of the user's token hashes scored by expiry, for
//!   listing, revoke-all and the per-user cap;
//! - `hub:once:<key>`: one-time sign-in states, taken with `GETDEL`.
//!
//! Writes that touch several keys run as Lua scripts, so they are atomic. (Under Redis Cluster
//! those scripts need the session and index keys in one slot; the hub runs them on one primary.)

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{SessionError, SessionRecord, SessionStore};

/// The default prefix of every key (`REDIS_KEY_PREFIX`).
pub const DEFAULT_PREFIX: &str = "hub:";

/// Sessions in Redis through one multiplexed, self-reconnecting connection. Every call has a
/// deadline, so an unreachable Redis is an error within it, never a hang.
#[derive(Clone)]
pub struct RedisSessions {
    connection: ConnectionManager,
    session: String,
    index: String,
    once: String,
    counter: String,
    deadline: Duration,
    create: Script,
    revoke: Script,
    revoke_by_id: Script,
    revoke_all: Script,
    hit: Script,
    unhit: Script,
    take_and_keep: Script,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions").finish_non_exhaustive()
    }
}

/// Connects to `url`; commands that get no answer within `timeout` fail instead of hanging.
pub async fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, SessionError> {
    let client = redis::Client::open(url)
        .map_err(|e| SessionError::Unavailable(format!("REDIS_URL: {e}")))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(timeout)
        .set_response_timeout(timeout)
        .set_number_of_retries(0)
        .set_max_delay(200);
    ConnectionManager::new_with_config(client, config)
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
    pub fn new(connection: ConnectionManager) -> Self {
        Self::with_prefix(connection, DEFAULT_PREFIX)
    }

    /// Over a connection, with every key under `prefix` (several hubs, or tests, on one Redis).
    pub fn with_prefix(connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            connection,
            session: format!("{prefix}session:"),
            index: format!("{prefix}user-sessions:"),
            once: format!("{prefix}once:"),
            counter: format!("{prefix}counter:"),
            deadline: Duration::from_millis(750),
            create: Script::new(
                r"
                redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
                redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
                local ended = 0
                local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[6])
                if over > 0 then
                    for _, hash in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do
                        redis.call('DEL', ARGV[7] .. hash)
                        redis.call('ZREM', KEYS[2], hash)
                        ended = ended + 1
                    end
                end
                local keep = tonumber(ARGV[4])
                local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
                if last[2] and tonumber(last[2]) > keep then keep = tonumber(last[2]) end
                redis.call('PEXPIREAT', KEYS[2], string.format('%d', keep))
                return ended
                ",
            ),
            revoke: Script::new(
                r"
                local value = redis.call('GET', KEYS[1])
                if not value then return 0 end
                local record = cjson.decode(value)
                redis.call('DEL', KEYS[1])
                redis.call('ZREM', ARGV[1] .. record.user_id, ARGV[2])
                return 1
                ",
            ),
            revoke_by_id: Script::new(
                r"
                for _, hash in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
                    local value = redis.call('GET', ARGV[1] .. hash)
                    if value and cjson.decode(value).id == ARGV[2] then
                        redis.call('DEL', ARGV[1] .. hash)
                        redis.call('ZREM', KEYS[1], hash)
                        return 1
                    end
                end
                return 0
                ",
            ),
            unhit: Script::new(
                r"
                if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
                    redis.call('DECR', KEYS[1])
                end
                return 0
                ",
            ),
            take_and_keep: Script::new(
                r"
                local value = redis.call('GETDEL', KEYS[1])
                if value then redis.call('SET', KEYS[2], value, 'PX', ARGV[1]) end
                return value
                ",
            ),
            hit: Script::new(
                r"
                local count = redis.call('INCR', KEYS[1])
                if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
                return count
                ",
            ),
            revoke_all: Script::new(
                r"
                local ended = 0
                for _, hash in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
                    ended = ended + redis.call('DEL', ARGV[1] .. hash)
                end
                redis.call('DEL', KEYS[1])
                return ended
                ",
            ),
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
    async fn create_now(
        &self,
        token_hash: &str,
        record: &SessionRecord,
        max_per_user: usize,
        now: DateTime<Utc>,
    ) -> Result<u64, SessionError> {
        let ttl_ms = (record.expires_at - now).num_milliseconds().max(1);
        let mut connection = self.connection.clone();
        self.create
            .key(format!("{}{token_hash}", self.session))
            .key(format!("{}{}", self.index, record.user_id))
            .arg(serde_json::to_string(record)?)
            .arg(ttl_ms)
            .arg(token_hash)
            .arg(record.expires_at.timestamp_millis())
            .arg(now.timestamp_millis())
            .arg(max_per_user)
            .arg(&self.session)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)
    }

    async fn get_now(&self, token_hash: &str) -> Result<Option<SessionRecord>, SessionError> {
        let mut connection = self.connection.clone();
        let value: Option<String> = connection
            .get(format!("{}{token_hash}", self.session))
            .await
            .map_err(unavailable)?;
        Ok(value.as_deref().map(serde_json::from_str).transpose()?)
    }

    async fn list_now(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        let mut connection = self.connection.clone();
        let hashes: Vec<String> = connection
            .zrangebyscore(
                format!("{}{user_id}", self.index),
                format!("({}", now.timestamp_millis()),
                "+inf",
            )
            .await
            .map_err(unavailable)?;
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes
            .iter()
            .map(|h| format!("{}{h}", self.session))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let mut records = values
            .iter()
            .flatten()
            .map(|v| Ok(serde_json::from_str::<SessionRecord>(v)?))
            .collect::<Result<Vec<_>, SessionError>>()?;
        records.retain(|r| r.expires_at > now);
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }

    async fn revoke_now(&self, token_hash: &str) -> Result<bool, SessionError> {
        let mut connection = self.connection.clone();
        let ended: i64 = self
            .revoke
            .key(format!("{}{token_hash}", self.session))
            .arg(&self.index)
            .arg(token_hash)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(ended == 1)
    }

    async fn revoke_by_id_now(&self, user_id: Uuid, id: &str) -> Result<bool, SessionError> {
        let mut connection = self.connection.clone();
        let ended: i64 = self
            .revoke_by_id
            .key(format!("{}{user_id}", self.index))
            .arg(&self.session)
            .arg(id)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(ended == 1)
    }

    async fn revoke_all_now(&self, user_id: Uuid) -> Result<u64, SessionError> {
        let mut connection = self.connection.clone();
        self.revoke_all
            .key(format!("{}{user_id}", self.index))
            .arg(&self.session)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)
    }

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
