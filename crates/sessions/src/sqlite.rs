//! Sessions in the embedded SQLite file (the hub's default without Redis).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;
use uuid::Uuid;

use super::{SessionError, SessionRecord, SessionStore};

/// Sessions and one-time states in the SQLite file; expired rows are swept as new ones arrive.
#[derive(Debug, Clone)]
pub struct SqliteSessions {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteSessions {
    /// Over the migrated file's writer and reader pools.
    pub fn new(writer: SqlitePool, reader: SqlitePool) -> Self {
        Self { writer, reader }
    }
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn unavailable(e: sqlx::Error) -> SessionError {
    SessionError::Unavailable(e.to_string())
}

#[async_trait]
impl SessionStore for SqliteSessions {
    async fn create(
        &self,
        token_hash: &str,
        record: &SessionRecord,
        max_per_user: usize,
        now: DateTime<Utc>,
    ) -> Result<u64, SessionError> {
        let mut tx = self.writer.begin().await.map_err(unavailable)?;
        // The write comes first, so the transaction holds the write lock from its start.
        sqlx::query(
            "INSERT INTO sessions (token_hash, id, user_id, record, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(token_hash)
        .bind(&record.id)
        .bind(record.user_id.to_string())
        .bind(serde_json::to_string(record)?)
        .bind(text(record.created_at))
        .bind(text(record.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?1")
            .bind(text(now))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let ended = sqlx::query(
            "DELETE FROM sessions WHERE token_hash IN (
                SELECT token_hash FROM sessions WHERE user_id = ?1
                ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?2)",
        )
        .bind(record.user_id.to_string())
        .bind(i64::try_from(max_per_user).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected();
        tx.commit().await.map_err(unavailable)?;
        Ok(ended)
    }

    async fn get(&self, token_hash: &str) -> Result<Option<SessionRecord>, SessionError> {
        let record: Option<String> =
            sqlx::query_scalar("SELECT record FROM sessions WHERE token_hash = ?1")
                .bind(token_hash)
                .fetch_optional(&self.reader)
                .await
                .map_err(unavailable)?;
        Ok(record.as_deref().map(serde_json::from_str).transpose()?)
    }

    async fn list(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionRecord>, SessionError> {
        let records: Vec<String> = sqlx::query_scalar(
            "SELECT record FROM sessions WHERE user_id = ?1 AND expires_at > ?2 ORDER BY created_at, rowid",
        )
        .bind(user_id.to_string())
        .bind(text(now))
        .fetch_all(&self.reader)
        .await
        .map_err(unavailable)?;
        records
            .iter()
            .map(|r| Ok(serde_json::from_str(r)?))
            .collect()
    }

    async fn revoke(&self, token_hash: &str) -> Result<bool, SessionError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE token_hash = ?1")
            .bind(token_hash)
            .execute(&self.writer)
            .await
            .map_err(unavailable)?
            .rows_affected()
            == 1)
    }

    async fn revoke_by_id(&self, user_id: Uuid, id: &str) -> Result<bool, SessionError> {
        Ok(
            sqlx::query("DELETE FROM sessions WHERE user_id = ?1 AND id = ?2")
                .bind(user_id.to_string())
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(unavailable)?
                .rows_affected()
                == 1,
        )
    }

    async fn revoke_all(&self, user_id: Uuid) -> Result<u64, SessionError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE user_id = ?1")
            .bind(user_id.to_string())
            .execute(&self.writer)
            .await
            .map_err(unavailable)?
            .rows_affected())
    }

    async fn put_once(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<(), SessionError> {
        let expires =
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(10));
        let mut tx = self.writer.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT OR REPLACE INTO login_states (key, payload, expires_at) VALUES (?1, ?2, ?3)",
        )
        .bind(key)
        .bind(value)
        .bind(text(expires))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        sqlx::query("DELETE FROM login_states WHERE expires_at <= ?1")
            .bind(text(now))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn take_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        // One statement: of two concurrent takers, one deletes the row and the other finds none.
        let taken: Option<(String, String)> =
            sqlx::query_as("DELETE FROM login_states WHERE key = ?1 RETURNING payload, expires_at")
                .bind(key)
                .fetch_optional(&self.writer)
                .await
                .map_err(unavailable)?;
        Ok(taken
            .filter(|(_, expires)| expires.as_str() > text(now).as_str())
            .map(|(payload, _)| payload))
    }

    async fn peek_once(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        sqlx::query_scalar("SELECT payload FROM login_states WHERE key = ?1 AND expires_at > ?2")
            .bind(key)
            .bind(text(now))
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)
    }

    async fn hit(
        &self,
        key: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, SessionError> {
        let ends =
            now + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::minutes(15));
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO counters (key, count, window_ends) VALUES (?1, 1, ?2)
             ON CONFLICT (key) DO UPDATE SET
                count = CASE WHEN counters.window_ends <= ?3 THEN 1 ELSE counters.count + 1 END,
                window_ends = CASE WHEN counters.window_ends <= ?3 THEN excluded.window_ends ELSE counters.window_ends END
             RETURNING count",
        )
        .bind(key)
        .bind(text(ends))
        .bind(text(now))
        .fetch_one(&self.writer)
        .await
        .map_err(unavailable)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn count(&self, key: &str, now: DateTime<Utc>) -> Result<(u64, Duration), SessionError> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT count, window_ends FROM counters WHERE key = ?1 AND window_ends > ?2",
        )
        .bind(key)
        .bind(text(now))
        .fetch_optional(&self.reader)
        .await
        .map_err(unavailable)?;
        let Some((count, ends)) = row else {
            return Ok((0, Duration::ZERO));
        };
        let left = DateTime::parse_from_rfc3339(&ends)
            .map(|ends| {
                (ends.with_timezone(&Utc) - now)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::ZERO);
        Ok((u64::try_from(count).unwrap_or(0), left))
    }

    async fn take_and_keep(
        &self,
        key: &str,
        keep_key: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, SessionError> {
        let keep_until =
            now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::days(30));
        let mut tx = self.writer.begin().await.map_err(unavailable)?;
        let taken: Option<(String, String)> =
            sqlx::query_as("DELETE FROM login_states WHERE key = ?1 RETURNING payload, expires_at")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
        let live = taken
            .filter(|(_, expires)| expires.as_str() > text(now).as_str())
            .map(|(payload, _)| payload);
        if let Some(payload) = &live {
            sqlx::query("INSERT OR REPLACE INTO login_states (key, payload, expires_at) VALUES (?1, ?2, ?3)")
                .bind(keep_key)
                .bind(payload)
                .bind(text(keep_until))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(live)
    }

    async fn unhit(&self, key: &str) -> Result<(), SessionError> {
        sqlx::query("UPDATE counters SET count = max(count - 1, 0) WHERE key = ?1")
            .bind(key)
            .execute(&self.writer)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
