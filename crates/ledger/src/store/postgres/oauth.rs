//! OAuth clients and the grants users gave them.

use super::*;
use crate::oauth::{NewGrant, NewOAuthClient, OAuthClient, OAuthGrant, OAuthStore, Registration};

const CLIENT_COLUMNS: &str =
    "id, name, redirect_uris, secret_hash, scopes, registration, created_at, revoked_at";
const GRANT_COLUMNS: &str =
    "id, user_id, client_id, client_name, scopes, daily_cap, created_at, last_used_at";

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn client(row: &PgRow) -> Result<(OAuthClient, Option<String>), StoreError> {
    let redirect_uris: String = row.try_get("redirect_uris")?;
    let secret_hash: Option<String> = row.try_get("secret_hash")?;
    let scopes: String = row.try_get("scopes")?;
    let registration: String = row.try_get("registration")?;
    Ok((
        OAuthClient {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            redirect_uris: redirect_uris.lines().map(str::to_owned).collect(),
            confidential: secret_hash.is_some(),
            scopes: words(&scopes),
            registration: Registration::parse(&registration)?,
            created_at: row.try_get("created_at")?,
            revoked_at: row.try_get("revoked_at")?,
        },
        secret_hash,
    ))
}

fn grant(row: &PgRow) -> Result<OAuthGrant, StoreError> {
    let scopes: String = row.try_get("scopes")?;
    Ok(OAuthGrant {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        client_id: row.try_get("client_id")?,
        client_name: row.try_get("client_name")?,
        scopes: words(&scopes),
        daily_cap: row.try_get("daily_cap")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

#[async_trait]
impl OAuthStore for PgStore {
    async fn insert_oauth_client(&self, new: &NewOAuthClient) -> Result<(), StoreError> {
        let c = &new.record;
        sqlx::query(
            "INSERT INTO oauth_clients (id, name, redirect_uris, secret_hash, scopes, registration, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(c.redirect_uris.join("\n"))
        .bind(new.secret_hash())
        .bind(c.scopes.join(" "))
        .bind(c.registration.as_str())
        .bind(c.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_oauth_client(
        &self,
        id: &str,
    ) -> Result<Option<(OAuthClient, Option<String>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients WHERE id = $1 AND revoked_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client).transpose()
    }

    async fn list_oauth_clients(&self) -> Result<Vec<OAuthClient>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| client(r).map(|(c, _)| c)).collect()
    }

    async fn revoke_oauth_client(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(
            "UPDATE oauth_clients SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        sqlx::query(
            "UPDATE oauth_grants SET revoked_at = now() WHERE client_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn upsert_grant(&self, new: &NewGrant) -> Result<OAuthGrant, StoreError> {
        let id = crate::oauth::new_grant_id().map_err(|e| StoreError::Corrupt(e.message))?;
        // One statement: the partial unique index makes a concurrent consent update the one row.
        let row = sqlx::query(&format!(
            "INSERT INTO oauth_grants (id, user_id, client_id, client_name, scopes, daily_cap)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, client_id) WHERE revoked_at IS NULL
             DO UPDATE SET client_name = EXCLUDED.client_name, scopes = EXCLUDED.scopes,
                           daily_cap = EXCLUDED.daily_cap
             RETURNING {GRANT_COLUMNS}"
        ))
        .bind(&id)
        .bind(new.user_id)
        .bind(&new.client_id)
        .bind(&new.client_name)
        .bind(new.scopes.join(" "))
        .bind(new.daily_cap)
        .fetch_one(&self.pool)
        .await?;
        grant(&row)
    }

    async fn find_grant(&self, id: &str) -> Result<Option<OAuthGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id = $1 AND revoked_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant).transpose()
    }

    async fn live_grant(
        &self,
        user_id: Uuid,
        client_id: &str,
    ) -> Result<Option<OAuthGrant>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants
             WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL"
        ))
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(grant).transpose()
    }

    async fn list_grants(&self, user_id: Uuid) -> Result<Vec<OAuthGrant>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants
             WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(grant).collect()
    }

    async fn revoke_grant(&self, user_id: Uuid, id: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE oauth_grants SET revoked_at = now()
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    async fn touch_grant(&self, id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE oauth_grants SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
