//! The session records and each user's index of them: making one (within the per-user cap),
//! reading, listing and ending them, in the order the module's notes on a cluster ask for.

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use uuid::Uuid;

use super::{RedisSessions, unavailable};
use crate::{SessionError, SessionRecord};

impl RedisSessions {
    pub(super) async fn create_now(
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

    pub(super) async fn get_now(
        &self,
        token_hash: &str,
    ) -> Result<Option<SessionRecord>, SessionError> {
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

    pub(super) async fn list_now(
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

    pub(super) async fn revoke_now(&self, token_hash: &str) -> Result<bool, SessionError> {
        let Some(record) = self.get_now(token_hash).await? else {
            return Ok(false);
        };
        let hash = [token_hash.to_owned()];
        let ended = self.delete_records(&hash).await?;
        self.unindex(record.user_id, &hash).await?;
        Ok(ended == 1)
    }

    pub(super) async fn revoke_by_id_now(
        &self,
        user_id: Uuid,
        id: &str,
    ) -> Result<bool, SessionError> {
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

    pub(super) async fn revoke_all_now(&self, user_id: Uuid) -> Result<u64, SessionError> {
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
}
