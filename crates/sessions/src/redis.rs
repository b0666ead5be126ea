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
            // Adds a session to the user's index, forgets the ended ones, and names the oldest
            // over the cap (the caller deletes their records, then settles the index).
            index_add: Script::new(
                r"
                redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
                redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
                local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
                local keep = tonumber(ARGV[2])
                local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
                if last[2] and tonumber(last[2]) > keep then keep = tonumber(last[2]) end
                redis.call('PEXPIREAT', KEYS[1], string.format('%d', keep))
                if over > 0 then return redis.call('ZRANGE', KEYS[1], 0, over - 1) end
                return {}
                ",
            ),
            // Takes ended sessions out of the index; says whether the new one (ARGV[1]) is
            // still in it.
            index_settle: Script::new(
                r"
                for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
                if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
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
        let index = format!("{}{}", self.index, record.user_id);
        let over: Vec<String> = self
            .index_add
            .key(&index)
            .arg(token_hash)
            .arg(record.expires_at.timestamp_millis())
            .arg(now.timestamp_millis())
            .arg(max_per_user)
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        let key = format!("{}{token_hash}", self.session);
        let _: () = connection
            .pset_ex(&key, serde_json::to_string(record)?, ttl_ms.unsigned_abs())
            .await
            .map_err(unavailable)?;
        let ended = self.delete_records(&over).await?;
        let mut settle = self.index_settle.key(&index);
        settle.arg(token_hash).arg(&over);
        let kept: i64 = settle
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        if kept == 0 {
            // Revoked between the two steps (or over the cap at once): it must not outlive that.
            let _: i64 = connection.del(&key).await.map_err(unavailable)?;
        }
        Ok(ended)
    }

    /// Deletes the records of these token hashes (on a cluster, slot by slot); returns how many
    /// there were.
    async fn delete_records(&self, hashes: &[String]) -> Result<u64, SessionError> {
        if hashes.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = hashes
            .iter()
            .map(|h| format!("{}{h}", self.session))
            .collect();
        let mut connection = self.connection.clone();
        connection.del(keys).await.map_err(unavailable)
    }

    /// Takes token hashes out of a user's index.
    async fn unindex(&self, user_id: Uuid, hashes: &[String]) -> Result<(), SessionError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let _: i64 = connection
            .zrem(format!("{}{user_id}", self.index), hashes)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_now(&self, token_hash: &str) -> Result<Option<SessionRecord>, SessionError> {
        let mut connection = self.connection.clone();
        let value: Option<String> = connection
            .get(format!("{}{token_hash}", self.session))
            .await
            .map_err(unavailable)?;
        Ok(value.as_deref().map(serde_json::from_str).transpose()?)
    }

    /// The records of these token hashes that still exist, with their hashes.
    async fn records(
        &self,
        hashes: Vec<String>,
    ) -> Result<Vec<(String, SessionRecord)>, SessionError> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes
            .iter()
            .map(|h| format!("{}{h}", self.session))
            .collect();
        let mut connection = self.connection.clone();
        // On a cluster the client splits MGET by slot and puts the answers back in order.
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut connection)
            .await
            .map_err(unavailable)?;
        hashes
            .into_iter()
            .zip(values)
            .filter_map(|(hash, value)| value.map(|v| (hash, v)))
            .map(|(hash, v)| Ok((hash, serde_json::from_str::<SessionRecord>(&v)?)))
            .collect()
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
        let mut records: Vec<SessionRecord> = self
            .records(hashes)
            .await?
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        records.retain(|r| r.expires_at > now);
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }

    async fn revoke_now(&self, token_hash: &str) -> Result<bool, SessionError> {
        let Some(record) = self.get_now(token_hash).await? else {
            return Ok(false);
        };
        let hash = [token_hash.to_owned()];
        let ended = self.delete_records(&hash).await?;
        self.unindex(record.user_id, &hash).await?;
        Ok(ended == 1)
    }

    async fn revoke_by_id_now(&self, user_id: Uuid, id: &str) -> Result<bool, SessionError> {
        let mut connection = self.connection.clone();
        let hashes: Vec<String> = connection
            .zrange(format!("{}{user_id}", self.index), 0, -1)
            .await
            .map_err(unavailable)?;
        let Some((hash, _)) = self
            .records(hashes)
            .await?
            .into_iter()
            .find(|(_, record)| record.id == id)
        else {
            return Ok(false);
        };
        let hash = [hash];
        let ended = self.delete_records(&hash).await?;
        self.unindex(user_id, &hash).await?;
        Ok(ended == 1)
    }

    async fn revoke_all_now(&self, user_id: Uuid) -> Result<u64, SessionError> {
        let mut connection = self.connection.clone();
        let hashes: Vec<String> = connection
            .zrange(format!("{}{user_id}", self.index), 0, -1)
            .await
            .map_err(unavailable)?;
        // Records first: if this is cut short, the index still names what is left to end.
        let ended = self.delete_records(&hashes).await?;
        self.unindex(user_id, &hashes).await?;
        Ok(ended)
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
