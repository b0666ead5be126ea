//! Service keys, stored by the hash of their secret.

use super::*;

pub(super) fn service_key(row: &SqliteRow) -> Result<ServiceKey, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ServiceKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

#[async_trait]
impl ServiceKeyStore for SqliteStore {
    async fn insert_service_key(&self, key: &NewServiceKey) -> Result<(), StoreError> {
        let (id, name, hash, scopes) = (
            key.record.id.clone(),
            key.record.name.clone(),
            crate::service_keys::key_hash(&key.key),
            key.record.scopes.join(" "),
        );
        let created_at = timestamp(key.record.created_at);
        self.writer
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO service_keys (id, name, key_hash, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, name, hash, scopes, created_at])?;
                Ok(())
            })
            .await
    }

    async fn find_service_key(&self, key_hash: &str) -> Result<Option<ServiceKey>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at, last_used_at FROM service_keys
             WHERE key_hash = ?1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(service_key).transpose()
    }

    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at, last_used_at FROM service_keys ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(service_key).collect()
    }

    async fn touch_service_key(&self, id: &str) -> Result<(), StoreError> {
        let (id, now) = (id.to_owned(), timestamp(Utc::now()));
        self.writer
            .write(move |conn| {
                conn.prepare_cached("UPDATE service_keys SET last_used_at = ?2 WHERE id = ?1")?
                    .execute(params![id, now])?;
                Ok(())
            })
            .await
    }

    async fn revoke_service_key(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let now = timestamp(Utc::now());
        self.writer
            .write(move |conn| {
                Ok(conn
                    .prepare_cached("UPDATE service_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
                    .execute(params![id, now])?
                    == 1)
            })
            .await
    }
}
