//! Service keys, stored by the hash of their secret.

use super::*;

pub(super) fn service_key(row: &PgRow) -> Result<ServiceKey, sqlx::Error> {
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
impl ServiceKeyStore for PgStore {
    async fn insert_service_key(&self, key: &NewServiceKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO service_keys (id, name, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&key.record.id)
            .bind(&key.record.name)
            .bind(crate::service_keys::key_hash(&key.key))
            .bind(key.record.scopes.join(" "))
            .bind(key.record.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_service_key(&self, key_hash: &str) -> Result<Option<ServiceKey>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at, last_used_at FROM service_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(service_key).transpose()?)
    }

    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, revoked_at, last_used_at FROM service_keys ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(service_key).collect::<Result<_, _>>()?)
    }

    async fn touch_service_key(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE service_keys SET last_used_at = now() WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_service_key(&self, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE service_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }
}
